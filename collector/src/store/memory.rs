//! The embedded in-memory store: the default, so one command runs the collector.

use super::{
    lowest_bucket, series_from, turn_bucket, usage_rows, AlertPage, Commit, CommitOutcome, DueChange, HistoryPage,
    HistoryPoint, HistoryQuery, LiveCount, MeetingView, MeetingsPage, MetricsView, ParticipantKey, Record, SeriesKey,
    Store, StoreFuture, UsageSums, Versioned, DEFAULT_RETENTION_MS, LIVE_TTL_MS, RECORD_GRACE_MS,
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
    /// The participant ids of `records` by meeting: what the live caps count and what the
    /// meetings are listed from, in order.
    meetings: BTreeMap<String, BTreeSet<String>>,
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
                if inner
                    .records
                    .insert(commit.key.clone(), (commit.version, record))
                    .is_none()
                {
                    inner
                        .meetings
                        .entry(commit.key.meeting_id.clone())
                        .or_default()
                        .insert(commit.key.participant_id.clone());
                }
            }
            None => {
                if inner.records.remove(&commit.key).is_some() {
                    forget(&mut inner.meetings, &commit.key);
                }
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
            let Inner { records, meetings, .. } = &mut *inner;
            records.retain(|key, (_, record)| {
                let keep = record.last_seen >= keep_after;
                if !keep {
                    forget(meetings, key);
                }
                keep
            });
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

    fn live_meetings_page_now(&self, now_ms: u64, page: &MeetingsPage) -> Vec<MeetingView> {
        let inner = self.lock();
        let start = page.after.clone().map_or(Bound::Unbounded, Bound::Excluded);
        let mut meetings = Vec::new();
        for (meeting_id, participant_ids) in inner.meetings.range::<String, _>((start, Bound::Unbounded)) {
            if meetings.len() >= page.limit {
                break;
            }
            let participants: Vec<_> = participant_ids
                .iter()
                .filter_map(|participant_id| {
                    let key = ParticipantKey::new(meeting_id.as_str(), participant_id.as_str());
                    let (_, record) = inner.records.get(&key)?;
                    (!record.expired(now_ms, self.live_ttl_ms)).then(|| record.view(participant_id))
                })
                .collect();
            if !participants.is_empty() {
                meetings.push(MeetingView {
                    meeting_id: meeting_id.clone(),
                    participants,
                });
            }
        }
        meetings
    }

    fn live_count_now(&self, meeting_id: &str, now_ms: u64) -> LiveCount {
        let mut inner = self.lock();
        // A collector refusing every new id commits nothing: records still expire.
        self.prune(&mut inner, now_ms);
        LiveCount {
            meetings: inner.meetings.len(),
            participants: inner.records.len(),
            meeting_known: inner.meetings.contains_key(meeting_id),
        }
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

    fn history_series_now(&self, query: &HistoryQuery) -> Vec<SeriesKey> {
        let inner = self.lock();
        if query.from_ms > query.to_ms {
            return Vec::new();
        }
        // Of one meeting: its series only (they sort together).
        let first = (query.meeting_id.clone().unwrap_or_default(), String::new());
        inner
            .history
            .range(first..)
            .take_while(|((meeting_id, _), _)| query.meeting_id.as_ref().is_none_or(|m| m == meeting_id))
            .filter(|((_, participant_id), points)| {
                query.participant_id.as_ref().is_none_or(|p| p == participant_id)
                    && points.range(query.from_ms..=query.to_ms).next().is_some()
            })
            .map(|(series, _)| series.clone())
            .collect()
    }

    fn series_page_now(&self, series: &[SeriesKey], page: &HistoryPage) -> Vec<HistoryPoint> {
        let query = &page.query;
        let mut points = Vec::new();
        if query.from_ms > query.to_ms {
            return points;
        }
        let inner = self.lock();
        for key in &series[series_from(series, page.after.as_ref())..] {
            let (Some(stored), Some(lowest)) = (inner.history.get(key), lowest_bucket(page, &key.0, &key.1)) else {
                continue;
            };
            for (t, metrics) in stored.range((lowest, Bound::Included(query.to_ms))) {
                if points.len() >= page.limit {
                    return points;
                }
                points.push(HistoryPoint {
                    meeting_id: key.0.clone(),
                    participant_id: key.1.clone(),
                    t: *t,
                    metrics: metrics.clone(),
                });
            }
        }
        points
    }

    fn history_count_now(&self, series: &[SeriesKey], from_ms: u64, to_ms: u64, cap: usize) -> usize {
        if from_ms > to_ms {
            return 0;
        }
        let inner = self.lock();
        let mut count = 0;
        for key in series {
            if let Some(stored) = inner.history.get(key) {
                count += stored
                    .range(from_ms..=to_ms)
                    .take(cap.saturating_add(1) - count)
                    .count();
            }
            if count > cap {
                break;
            }
        }
        count
    }

    fn alert_count_now(&self, page: &AlertPage) -> usize {
        if page.from_ms > page.to_ms {
            return 0;
        }
        let inner = self.lock();
        alerts_of(&inner, page).take(page.limit).count()
    }

    fn alert_page_now(&self, page: &AlertPage) -> Vec<AlertRecord> {
        if page.from_ms > page.to_ms {
            return Vec::new();
        }
        let inner = self.lock();
        alerts_of(&inner, page)
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

/// The alert records of `page`'s range and meeting (`from_ms <= to_ms`), oldest first.
fn alerts_of<'a>(inner: &'a Inner, page: &'a AlertPage) -> impl Iterator<Item = &'a AlertRecord> + 'a {
    inner
        .alerts
        .range((page.from_ms, 0)..=(page.to_ms, u64::MAX))
        .map(|(_, record)| record)
        .filter(|r| page.meeting_id.as_ref().is_none_or(|m| &r.meeting_id == m))
}

/// Takes `key` out of the meetings' participant lists (and its meeting, when it was the last).
fn forget(meetings: &mut BTreeMap<String, BTreeSet<String>>, key: &ParticipantKey) {
    if let Some(participants) = meetings.get_mut(&key.meeting_id) {
        participants.remove(&key.participant_id);
        if participants.is_empty() {
            meetings.remove(&key.meeting_id);
        }
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

    fn live_meetings_page<'a>(&'a self, now_ms: u64, page: &'a MeetingsPage) -> StoreFuture<'a, Vec<MeetingView>> {
        Box::pin(async move { Ok(self.live_meetings_page_now(now_ms, page)) })
    }

    fn live_count<'a>(&'a self, meeting_id: &'a str, now_ms: u64) -> StoreFuture<'a, LiveCount> {
        Box::pin(async move { Ok(self.live_count_now(meeting_id, now_ms)) })
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

    fn history_series<'a>(&'a self, query: &'a HistoryQuery) -> StoreFuture<'a, Vec<SeriesKey>> {
        Box::pin(async move { Ok(self.history_series_now(query)) })
    }

    fn series_page<'a>(&'a self, series: &'a [SeriesKey], page: &'a HistoryPage) -> StoreFuture<'a, Vec<HistoryPoint>> {
        Box::pin(async move { Ok(self.series_page_now(series, page)) })
    }

    fn history_count<'a>(
        &'a self,
        series: &'a [SeriesKey],
        from_ms: u64,
        to_ms: u64,
        cap: usize,
    ) -> StoreFuture<'a, usize> {
        Box::pin(async move { Ok(self.history_count_now(series, from_ms, to_ms, cap)) })
    }

    fn alert_count<'a>(&'a self, page: &'a AlertPage) -> StoreFuture<'a, usize> {
        Box::pin(async move { Ok(self.alert_count_now(page)) })
    }

    fn turn_usage(&self, from_ms: u64, to_ms: u64) -> StoreFuture<'_, Vec<TurnUsage>> {
        Box::pin(async move { Ok(self.turn_usage_now(from_ms, to_ms)) })
    }
}
