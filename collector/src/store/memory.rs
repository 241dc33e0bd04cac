//! The embedded in-memory store: the default, so one command runs the collector.

use super::{
    events_in_seq_order, group_meetings, history_bucket, turn_bucket, unique_seqs, usage_rows, Derived, DerivedCommit,
    DerivedSlot, HistoryPoint, HistoryQuery, IngestOutcome, LiveState, MeetingView, MetricsView, ParticipantView,
    Store, StoreFuture, UsageSums, DEFAULT_RETENTION_MS, LIVE_TTL_MS,
};
use crate::alerts::AlertRecord;
use crate::turn::TurnUsage;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use vitals_shared::wire::IngestBatch;

/// Live state of one participant.
#[derive(Debug, Default)]
struct Participant {
    label: Option<String>,
    last_seen_ms: u64,
    live: LiveState,
    /// Sequence numbers already applied, for idempotency.
    held_seqs: BTreeSet<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Keyed by (meeting id, participant id).
    participants: BTreeMap<(String, String), Participant>,
    last_prune_ms: u64,
    /// Derived state by (meeting id, participant id): version, state, last commit time.
    derived: BTreeMap<(String, String), (u64, Derived, u64)>,
    /// Alert history by (time, arrival number).
    alerts: BTreeMap<(u64, u64), AlertRecord>,
    alert_count: u64,
    /// History by (meeting id, participant id), then bucket start.
    history: BTreeMap<(String, String), BTreeMap<u64, MetricsView>>,
    /// TURN usage by bucket start, then (meeting id, participant id, server).
    turn: BTreeMap<u64, UsageSums>,
    last_retention_prune_ms: u64,
}

/// Keeps live state in a map behind one mutex: every operation is short and never awaits while
/// holding it, so the lock makes each batch atomic without hurting throughput.
#[derive(Debug)]
pub struct MemoryStore {
    live_ttl_ms: u64,
    retention_ms: u64,
    inner: Mutex<Inner>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(LIVE_TTL_MS)
    }
}

impl MemoryStore {
    /// A store whose participants expire `live_ttl_ms` after their last batch.
    pub fn new(live_ttl_ms: u64) -> Self {
        Self::with_retention(live_ttl_ms, DEFAULT_RETENTION_MS)
    }

    /// A store that also keeps history, alerts and TURN usage for `retention_ms`.
    pub fn with_retention(live_ttl_ms: u64, retention_ms: u64) -> Self {
        Self {
            live_ttl_ms,
            retention_ms,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn is_live(&self, participant: &Participant, now_ms: u64) -> bool {
        now_ms < participant.last_seen_ms.saturating_add(self.live_ttl_ms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-merged participant behind that
        // matters more than serving on, so a poisoned lock is taken over.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn ingest_now(&self, batch: &IngestBatch, now_ms: u64) -> IngestOutcome {
        let mut inner = self.lock();
        // Sweeping every participant is O(n); once a second keeps memory bounded at little cost.
        if now_ms >= inner.last_prune_ms.saturating_add(1000) {
            inner.last_prune_ms = now_ms;
            inner.participants.retain(|_, p| self.is_live(p, now_ms));
        }
        let key = (batch.meeting_id.clone(), batch.participant_id.clone());
        let participant = inner.participants.entry(key).or_default();
        if !self.is_live(participant, now_ms) {
            *participant = Participant::default();
        }
        let mut applied = Vec::new();
        for event in events_in_seq_order(batch) {
            if participant.held_seqs.insert(event.seq) {
                participant.live.apply(event);
                applied.push(event.seq);
            }
        }
        if batch.label.is_some() {
            participant.label = batch.label.clone();
        }
        participant.last_seen_ms = participant.last_seen_ms.max(now_ms);
        IngestOutcome {
            accepted: unique_seqs(batch),
            applied,
            participant: view(&batch.participant_id, participant),
        }
    }

    fn live_meetings_now(&self, now_ms: u64) -> Vec<MeetingView> {
        let inner = self.lock();
        let live = inner
            .participants
            .iter()
            .filter(|(_, p)| self.is_live(p, now_ms))
            .map(|((meeting_id, participant_id), p)| (meeting_id.clone(), view(participant_id, p)));
        group_meetings(live)
    }
}

impl MemoryStore {
    fn commit_now(&self, commit: &DerivedCommit) -> bool {
        let mut inner = self.lock();
        let now = commit.now_ms;
        let oldest = now.saturating_sub(self.retention_ms);
        let key = (commit.meeting_id.clone(), commit.participant_id.clone());
        let version = inner.derived.get(&key).map_or(0, |(v, _, _)| *v);
        if version != commit.expected_version {
            return false;
        }
        inner
            .derived
            .insert(key.clone(), (version + 1, commit.derived.clone(), now));
        for record in &commit.records {
            inner.alert_count += 1;
            let n = inner.alert_count;
            inner.alerts.insert((record.at, n), record.clone());
        }
        if let Some(metrics) = &commit.history {
            inner
                .history
                .entry(key)
                .or_default()
                .insert(history_bucket(now), metrics.clone());
        }
        if let Some(relayed) = &commit.relayed {
            let usage_key = (
                commit.meeting_id.clone(),
                commit.participant_id.clone(),
                relayed.server.clone(),
            );
            *inner
                .turn
                .entry(turn_bucket(now))
                .or_default()
                .entry(usage_key)
                .or_default() += relayed.bytes;
        }
        // Dropping expired data walks everything: once a minute is enough to bound memory. It
        // runs after the commit, as in Redis, where keys expire after `retention_ms` unwritten.
        if now >= inner.last_retention_prune_ms.saturating_add(60_000) {
            inner.last_retention_prune_ms = now;
            inner.derived.retain(|_, (_, _, touched)| *touched >= oldest);
            inner.alerts = inner.alerts.split_off(&(oldest, 0));
            inner.history.retain(|_, points| {
                *points = points.split_off(&oldest);
                !points.is_empty()
            });
            inner.turn = inner.turn.split_off(&turn_bucket(oldest));
        }
        true
    }

    fn history_now(&self, query: &HistoryQuery) -> Vec<HistoryPoint> {
        let inner = self.lock();
        let mut points = Vec::new();
        if query.from_ms > query.to_ms {
            return points;
        }
        for ((meeting_id, participant_id), series) in &inner.history {
            if query.meeting_id.as_ref().is_some_and(|m| m != meeting_id)
                || query.participant_id.as_ref().is_some_and(|p| p != participant_id)
            {
                continue;
            }
            for (t, metrics) in series.range(query.from_ms..=query.to_ms) {
                points.push(HistoryPoint {
                    meeting_id: meeting_id.clone(),
                    participant_id: participant_id.clone(),
                    t: *t,
                    metrics: metrics.clone(),
                });
            }
        }
        points
    }

    fn turn_usage_now(&self, from_ms: u64, to_ms: u64) -> Vec<TurnUsage> {
        let inner = self.lock();
        let mut sums = UsageSums::new();
        let from = turn_bucket(from_ms);
        if from <= to_ms {
            for usage in inner.turn.range(from..=to_ms).map(|(_, usage)| usage) {
                for (key, bytes) in usage {
                    *sums.entry(key.clone()).or_default() += bytes;
                }
            }
        }
        usage_rows(sums)
    }
}

fn view(participant_id: &str, participant: &Participant) -> ParticipantView {
    ParticipantView {
        participant_id: participant_id.to_owned(),
        label: participant.label.clone(),
        last_seen: participant.last_seen_ms,
        last_seq: participant.live.last_seq,
        metrics: participant.live.metrics.clone().into(),
    }
}

impl Store for MemoryStore {
    fn ingest<'a>(&'a self, batch: &'a IngestBatch, now_ms: u64) -> StoreFuture<'a, IngestOutcome> {
        Box::pin(async move { Ok(self.ingest_now(batch, now_ms)) })
    }

    fn live_meetings(&self, now_ms: u64) -> StoreFuture<'_, Vec<MeetingView>> {
        Box::pin(async move { Ok(self.live_meetings_now(now_ms)) })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn derived<'a>(&'a self, meeting_id: &'a str, participant_id: &'a str) -> StoreFuture<'a, DerivedSlot> {
        Box::pin(async move {
            let inner = self.lock();
            let key = (meeting_id.to_owned(), participant_id.to_owned());
            Ok(inner
                .derived
                .get(&key)
                .map(|(version, derived, _)| DerivedSlot {
                    version: *version,
                    derived: derived.clone(),
                })
                .unwrap_or_default())
        })
    }

    fn commit_derived<'a>(&'a self, commit: &'a DerivedCommit) -> StoreFuture<'a, bool> {
        Box::pin(async move { Ok(self.commit_now(commit)) })
    }

    fn alert_history<'a>(&'a self, since_ms: u64, meeting_id: Option<&'a str>) -> StoreFuture<'a, Vec<AlertRecord>> {
        Box::pin(async move {
            let inner = self.lock();
            Ok(inner
                .alerts
                .range((since_ms, 0)..)
                .map(|(_, record)| record)
                .filter(|r| meeting_id.is_none_or(|m| r.meeting_id == m))
                .cloned()
                .collect())
        })
    }

    fn history<'a>(&'a self, query: &'a HistoryQuery) -> StoreFuture<'a, Vec<HistoryPoint>> {
        Box::pin(async move { Ok(self.history_now(query)) })
    }

    fn turn_usage(&self, from_ms: u64, to_ms: u64) -> StoreFuture<'_, Vec<TurnUsage>> {
        Box::pin(async move { Ok(self.turn_usage_now(from_ms, to_ms)) })
    }
}
