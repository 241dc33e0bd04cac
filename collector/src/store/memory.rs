//! The embedded in-memory store: the default, so one command runs the collector.

use super::{
    group_meetings, turn_bucket, usage_rows, AlertPage, Commit, CommitOutcome, DueChange, HistoryPage, HistoryPoint,
    HistoryQuery, MeetingView, MetricsView, ParticipantKey, Record, Store, StoreFuture, UsageSums, Versioned,
    DEFAULT_RETENTION_MS, LIVE_TTL_MS, RECORD_GRACE_MS,
};
use crate::alerts::AlertRecord;
use crate::turn::TurnUsage;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Mutex;

#[derive(Debug, Default)]
struct Inner {
    /// Participant records and their versions.
    records: HashMap<ParticipantKey, (u64, Record)>,
    /// The sweep index: (due time, participant), and each participant's entry.
    due: BTreeSet<(u64, ParticipantKey)>,
    due_of: HashMap<ParticipantKey, u64>,
    last_prune_ms: u64,
    /// Alert history by (time, arrival number).
    alerts: BTreeMap<(u64, u64), AlertRecord>,
    alert_count: u64,
    /// History by (meeting id, participant id), then bucket start.
    history: BTreeMap<(String, String), BTreeMap<u64, MetricsView>>,
    /// TURN usage by bucket start, then (meeting id, participant id, server).
    turn: BTreeMap<u64, UsageSums>,
    last_retention_prune_ms: u64,
}

/// Keeps everything in maps behind one mutex: every operation is short and never awaits while
/// holding it, so the lock makes each commit atomic without hurting throughput.
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied commit behind that matters
        // more than serving on, so a poisoned lock is taken over.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn load_now(&self, key: &ParticipantKey) -> Versioned {
        let inner = self.lock();
        match inner.records.get(key) {
            Some((version, record)) => Versioned {
                version: *version,
                record: Some(record.clone()),
            },
            None => Versioned::default(),
        }
    }

    fn commit_now(&self, commit: Commit) -> CommitOutcome {
        let mut inner = self.lock();
        let now = commit.now_ms;
        let stored = inner.records.get(&commit.key);
        let version = stored.map_or(0, |(v, _)| *v);
        if version != commit.expected_version {
            return CommitOutcome::Conflict(Box::new(Versioned {
                version,
                record: stored.map(|(_, r)| r.clone()),
            }));
        }
        match commit.record {
            Some(record) => {
                inner.records.insert(commit.key.clone(), (commit.version, record));
            }
            None => {
                inner.records.remove(&commit.key);
            }
        }
        if commit.due != DueChange::Keep {
            if let Some(old) = inner.due_of.remove(&commit.key) {
                inner.due.remove(&(old, commit.key.clone()));
            }
            if let DueChange::At(at) = commit.due {
                inner.due_of.insert(commit.key.clone(), at);
                inner.due.insert((at, commit.key.clone()));
            }
        }
        for record in commit.alerts {
            inner.alert_count += 1;
            let n = inner.alert_count;
            inner.alerts.insert((record.at, n), record);
        }
        let ParticipantKey {
            meeting_id,
            participant_id,
        } = commit.key;
        if let Some(relayed) = commit.relayed {
            let usage_key = (meeting_id.clone(), participant_id.clone(), relayed.server);
            *inner
                .turn
                .entry(turn_bucket(commit.usage_at_ms))
                .or_default()
                .entry(usage_key)
                .or_default() += relayed.bytes;
        }
        if !commit.history.is_empty() {
            let series = inner.history.entry((meeting_id, participant_id)).or_default();
            series.extend(commit.history);
        }
        self.prune(&mut inner, now);
        CommitOutcome::Committed
    }

    /// Drops what has expired. Walking everything is O(n): records once a second, the history
    /// once a minute, which bounds memory at little cost. As in Redis, a record stays for
    /// `RECORD_GRACE_MS` after its live state expired, so the sweeper can still see it (and a
    /// sweep index entry outlives its record until the sweeper clears it).
    fn prune(&self, inner: &mut Inner, now: u64) {
        if now >= inner.last_prune_ms.saturating_add(1000) {
            inner.last_prune_ms = now;
            let keep_after = now.saturating_sub(self.live_ttl_ms.saturating_add(RECORD_GRACE_MS));
            inner.records.retain(|_, (_, record)| record.last_seen >= keep_after);
        }
        if now >= inner.last_retention_prune_ms.saturating_add(60_000) {
            let oldest = now.saturating_sub(self.retention_ms);
            inner.last_retention_prune_ms = now;
            inner.alerts = inner.alerts.split_off(&(oldest, 0));
            inner.history.retain(|_, points| {
                *points = points.split_off(&oldest);
                !points.is_empty()
            });
            inner.turn = inner.turn.split_off(&turn_bucket(oldest));
        }
    }

    fn live_meetings_now(&self, now_ms: u64) -> Vec<MeetingView> {
        let inner = self.lock();
        let live = inner
            .records
            .iter()
            .filter(|(_, (_, r))| !r.expired(now_ms, self.live_ttl_ms))
            .map(|(key, (_, r))| (key.meeting_id.clone(), r.view(&key.participant_id)));
        group_meetings(live)
    }

    fn due_now(&self, now_ms: u64, limit: usize) -> Vec<ParticipantKey> {
        let inner = self.lock();
        inner
            .due
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .take(limit)
            .map(|(_, key)| key.clone())
            .collect()
    }

    fn history_page_now(&self, page: &HistoryPage) -> Vec<HistoryPoint> {
        let (query, after, limit) = (&page.query, page.after.as_ref(), page.limit);
        let inner = self.lock();
        let mut points = Vec::new();
        if query.from_ms > query.to_ms {
            return points;
        }
        let first_series = after.map(|(m, p, _)| (m.clone(), p.clone())).unwrap_or_default();
        for ((meeting_id, participant_id), series) in inner.history.range(first_series..) {
            if query.meeting_id.as_ref().is_some_and(|m| m != meeting_id)
                || query.participant_id.as_ref().is_some_and(|p| p != participant_id)
            {
                continue;
            }
            // In the series of `after`, only the buckets after its bucket.
            let start = match after {
                Some((m, p, t)) if m == meeting_id && p == participant_id && *t >= query.from_ms => {
                    if *t >= query.to_ms {
                        continue;
                    }
                    Bound::Excluded(*t)
                }
                _ => Bound::Included(query.from_ms),
            };
            for (t, metrics) in series.range((start, Bound::Included(query.to_ms))) {
                if points.len() == limit {
                    return points;
                }
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

    fn alert_page_now(&self, page: &AlertPage) -> Vec<AlertRecord> {
        if page.from_ms > page.to_ms {
            return Vec::new();
        }
        let inner = self.lock();
        inner
            .alerts
            .range((page.from_ms, 0)..=(page.to_ms, u64::MAX))
            .map(|(_, record)| record)
            .filter(|r| page.meeting_id.as_ref().is_none_or(|m| &r.meeting_id == m))
            .skip(page.skip)
            .take(page.limit)
            .cloned()
            .collect()
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

impl Store for MemoryStore {
    fn live_ttl_ms(&self) -> u64 {
        self.live_ttl_ms
    }

    fn load<'a>(&'a self, key: &'a ParticipantKey) -> StoreFuture<'a, Versioned> {
        Box::pin(async move { Ok(self.load_now(key)) })
    }

    fn commit(&self, commit: Commit) -> StoreFuture<'_, CommitOutcome> {
        Box::pin(async move { Ok(self.commit_now(commit)) })
    }

    fn due(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<ParticipantKey>> {
        Box::pin(async move { Ok(self.due_now(now_ms, limit)) })
    }

    fn live_meetings(&self, now_ms: u64) -> StoreFuture<'_, Vec<MeetingView>> {
        Box::pin(async move { Ok(self.live_meetings_now(now_ms)) })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn alert_history<'a>(&'a self, since_ms: u64, meeting_id: Option<&'a str>) -> StoreFuture<'a, Vec<AlertRecord>> {
        Box::pin(async move { Ok(self.alert_page_now(&AlertPage::since(since_ms, meeting_id))) })
    }

    fn alert_page<'a>(&'a self, page: &'a AlertPage) -> StoreFuture<'a, Vec<AlertRecord>> {
        Box::pin(async move { Ok(self.alert_page_now(page)) })
    }

    fn history<'a>(&'a self, query: &'a HistoryQuery) -> StoreFuture<'a, Vec<HistoryPoint>> {
        let page = HistoryPage {
            query: query.clone(),
            after: None,
            limit: usize::MAX,
        };
        Box::pin(async move { Ok(self.history_page_now(&page)) })
    }

    fn history_page<'a>(&'a self, page: &'a HistoryPage) -> StoreFuture<'a, Vec<HistoryPoint>> {
        Box::pin(async move { Ok(self.history_page_now(page)) })
    }

    fn turn_usage(&self, from_ms: u64, to_ms: u64) -> StoreFuture<'_, Vec<TurnUsage>> {
        Box::pin(async move { Ok(self.turn_usage_now(from_ms, to_ms)) })
    }
}
