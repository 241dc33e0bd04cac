//! The upload queues: one per participant session, bounded, kept in storage so they survive the offscreen document restarting, retried with backoff; acknowledged events dropped.
//!
//! [`Uploads`] is pure: every change it makes to its queues is also recorded as a [`StoreOp`]
//! (format in `upload_store.rs`) that the shell applies before it starts the next post, so an
//! event is stored before it can reach the collector. A restarted document reads the stored
//! entries back with [`Uploads::restore`] before its first upload.
//!
//! Participant tokens: the collector answers each accepted batch with its participant's token
//! and refuses (403) a later batch of that participant without it, so nobody else can write as
//! the participant. Each session keeps the latest token in its stored record (so a restarted
//! document still has it) and sends it with every batch.
//!
//! Sequence numbers: the collector keeps the first event it sees under each (participant, seq)
//! and drops any later one as a duplicate, so a number must never be given to two different
//! events. A tab's processor numbers its events from 1; when a restarted document resumes the
//! tab's session (same participant), its numbers are shifted past the session's stored
//! `last_seq`, which is written together with each queued event.

use crate::upload_store::{self as store, Entry, SessionRecord, StoreOp};
use std::collections::{BTreeMap, VecDeque};
use vitals_shared::wire::MAX_EVENTS_PER_BATCH;
use vitals_shared::wire::{Event, IngestAck};

/// Most events kept per participant while the collector is unreachable; the oldest go first
/// (a later full snapshot supersedes them anyway).
pub const MAX_QUEUED: usize = 500;
/// Most events kept for all participants together (about 300 bytes each when stored).
pub const MAX_STORED: usize = 2_000;
/// A restarted document continues a session that was live when it stopped if the same tab
/// sends a snapshot of the same meeting within this time (the service worker recreates the
/// document at the tab's next poll, a second later).
pub const RESUME_MS: f64 = 30_000.0;
/// First retry delay after a failure, doubled per further failure up to [`MAX_BACKOFF_MS`].
pub const BASE_BACKOFF_MS: f64 = 1_000.0;
pub const MAX_BACKOFF_MS: f64 = 60_000.0;
/// Delay before retrying after the collector refused the upload as a whole (401, 403, 404,
/// 413, ...): a key or URL the user has to fix, so asking again every second would only spam it.
pub const REFUSED_BACKOFF_MS: f64 = 60_000.0;

/// What the popup says when the collector refused a session's participant token.
pub const TOKEN_REFUSED: &str = "Collector refused this call's participant token (403): another client may be using its participant id, or the collector's secret changed; the events wait in the queue and are retried";

/// How an upload ended.
#[derive(Debug, Clone, PartialEq)]
pub enum UploadResult {
    /// 2xx: the collector holds the acknowledged sequence numbers (others of the batch stay
    /// queued), and gives the participant's token.
    Accepted(IngestAck),
    /// 400: the collector found this batch malformed; retrying it cannot help, so its events
    /// are dropped and counted.
    Rejected(String),
    /// The collector refused the upload as a whole (401, 403, 404, 413, another 4xx, or a
    /// request that could not be built): the queue is kept and retried after
    /// [`REFUSED_BACKOFF_MS`], until the user fixes the key or URL.
    Refused(String),
    /// Network error, 5xx, 408 or 429: try again later.
    Failed(String),
}

impl UploadResult {
    /// Classifies a collector's refusal by its status and the JSON `error` of its body (empty
    /// when it has none): a 403 about the participant token is told apart from a wrong key.
    pub fn from_refusal(status: u16, error: &str) -> Self {
        if status == 403 && error.contains("participant token") {
            return UploadResult::Refused(TOKEN_REFUSED.into());
        }
        Self::from_status(status)
    }

    /// Classifies a collector's answer status (not 2xx, which carries the acknowledgement).
    pub fn from_status(status: u16) -> Self {
        match status {
            400 => {
                UploadResult::Rejected("Collector rejected a batch as malformed (400); its events were dropped".into())
            }
            401 | 403 => {
                UploadResult::Refused(format!("Collector refused the upload ({status}): check the ingest key"))
            }
            404 => UploadResult::Refused("Collector refused the upload (404): check the collector URL".into()),
            413 => UploadResult::Refused("Collector refused the upload (413): the batch is too large for it".into()),
            408 | 429 => UploadResult::Failed(format!("collector answered {status}, retrying")),
            s if s >= 500 => UploadResult::Failed(format!("collector answered {status}, retrying")),
            _ => UploadResult::Refused(format!("Collector refused the upload ({status})")),
        }
    }
}

/// What happened to a finished batch's events.
#[derive(Debug, Default, PartialEq)]
pub struct Finished {
    /// Acknowledged by the collector: they leave the queue.
    pub acked: Vec<u64>,
    /// Rejected with their batch: they leave the queue and count as dropped.
    pub rejected: Vec<u64>,
}

/// A 2xx answer acknowledging `seqs`, without a token (for the tests of the queue's users).
#[cfg(test)]
pub(crate) fn acked(seqs: Vec<u64>) -> UploadResult {
    UploadResult::Accepted(IngestAck {
        accepted: seqs,
        participant_token: None,
    })
}

/// Delay before the retry that follows `failures` consecutive failures.
pub fn backoff_ms(failures: u32) -> f64 {
    if failures == 0 {
        return 0.0;
    }
    (BASE_BACKOFF_MS * 2f64.powi(failures.min(16) as i32 - 1)).min(MAX_BACKOFF_MS)
}

/// Events of one participant waiting for the collector, at most one batch in flight.
#[derive(Debug, Default)]
pub struct UploadQueue {
    events: VecDeque<Event>,
    in_flight: Option<Vec<u64>>,
    failures: u32,
    retry_at_ms: f64,
}

impl UploadQueue {
    /// Queues `event`; returns the oldest event when the queue was full and it had to go.
    pub fn push(&mut self, event: Event) -> Option<Event> {
        let evicted = (self.events.len() >= MAX_QUEUED)
            .then(|| self.events.pop_front())
            .flatten();
        self.events.push_back(event);
        evicted
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    fn front(&self) -> Option<&Event> {
        self.events.front()
    }

    fn pop_front(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next batch to post, if nothing is in flight and the backoff has passed.
    pub fn take_batch(&mut self, now_ms: f64) -> Option<Vec<Event>> {
        if self.in_flight.is_some() || self.events.is_empty() || now_ms < self.retry_at_ms {
            return None;
        }
        let batch: Vec<Event> = self.events.iter().take(MAX_EVENTS_PER_BATCH).cloned().collect();
        self.in_flight = Some(batch.iter().map(|e| e.seq).collect());
        Some(batch)
    }

    /// The next batch may go at once (the user changed the collector URL or key, so the
    /// refusal that set the backoff may be fixed).
    pub fn retry_now(&mut self) {
        self.failures = 0;
        self.retry_at_ms = 0.0;
    }

    /// When a waiting retry is due, if one waits.
    pub fn retry_at(&self) -> Option<f64> {
        (self.in_flight.is_none() && !self.events.is_empty() && self.failures > 0).then_some(self.retry_at_ms)
    }

    /// The in-flight batch ended. Only the sequence numbers the collector acknowledged leave on
    /// a 2xx (a sent event it did not acknowledge is retried after the backoff); a rejected
    /// (400) batch leaves whole; refused and failed ones stay for a retry, refused ones slowly.
    pub fn finish(&mut self, result: &UploadResult, now_ms: f64) -> Finished {
        let Some(sent) = self.in_flight.take() else {
            return Finished::default();
        };
        let mut finished = Finished::default();
        match result {
            UploadResult::Accepted(ack) => {
                finished.acked = self.remove(|seq| sent.contains(&seq) && ack.accepted.contains(&seq));
                if finished.acked.len() < sent.len() {
                    self.failures = self.failures.saturating_add(1);
                    self.retry_at_ms = now_ms + backoff_ms(self.failures);
                } else {
                    self.failures = 0;
                    self.retry_at_ms = 0.0;
                }
            }
            UploadResult::Rejected(_) => {
                finished.rejected = self.remove(|seq| sent.contains(&seq));
                self.failures = 0;
                self.retry_at_ms = 0.0;
            }
            UploadResult::Refused(_) => {
                self.failures = self.failures.saturating_add(1);
                self.retry_at_ms = now_ms + REFUSED_BACKOFF_MS;
            }
            UploadResult::Failed(_) => {
                self.failures = self.failures.saturating_add(1);
                self.retry_at_ms = now_ms + backoff_ms(self.failures);
            }
        }
        finished
    }

    /// Removes the queued events whose sequence number `leaves`; returns their numbers.
    fn remove(&mut self, leaves: impl Fn(u64) -> bool) -> Vec<u64> {
        let mut left = Vec::new();
        self.events.retain(|e| {
            let keep = !leaves(e.seq);
            if !keep {
                left.push(e.seq);
            }
            keep
        });
        left
    }
}

/// The uploads of one participant session (one tab's call).
#[derive(Debug)]
struct Outbox {
    tab: i64,
    meeting: String,
    queue: UploadQueue,
    /// Added to the feeding processor's sequence numbers (non-zero for a resumed session).
    base: u64,
    /// The highest sequence number given out (stored with every queued event).
    last_seq: u64,
    /// A processor of this document feeds it.
    live: bool,
    /// Restored from storage where it was live: its tab may resume it until then.
    resumable_until: Option<f64>,
    /// The collector's participant token of the latest acknowledgement.
    token: Option<String>,
}

impl Outbox {
    fn record(&self) -> SessionRecord {
        SessionRecord {
            tab: self.tab,
            meeting: self.meeting.clone(),
            last_seq: self.last_seq,
            live: self.live || self.resumable_until.is_some(),
            participant_token: self.token.clone(),
        }
    }

    fn drained(&self) -> bool {
        !self.live && self.resumable_until.is_none() && self.queue.is_empty() && !self.queue.in_flight()
    }
}

/// One post to make: the events of a session, for its meeting, with its participant token.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub session: String,
    pub meeting: String,
    pub token: Option<String>,
    pub events: Vec<Event>,
}

/// Every participant session's queue, and the writes that keep storage in step.
#[derive(Debug, Default)]
pub struct Uploads {
    outboxes: BTreeMap<String, Outbox>,
    /// Events the bounds evicted (kept in storage as well).
    dropped: u64,
    writes: Vec<StoreOp>,
}

impl Uploads {
    /// The queues as stored (every `(key, value)` of the storage; foreign keys are skipped).
    /// Damaged entries are removed; an event whose session record is gone cannot be sent (its
    /// meeting is unknown) and counts as dropped, as do events over the bounds.
    pub fn restore(stored: impl IntoIterator<Item = (String, String)>, now_ms: f64) -> Self {
        let mut records = BTreeMap::new();
        let mut events: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        let mut up = Uploads::default();
        let mut dropped_before = 0;
        for (key, value) in stored {
            match store::parse(&key, &value) {
                None => {}
                Some(Entry::Session(session, record)) => {
                    records.insert(session, record);
                }
                Some(Entry::Event(session, event)) => events.entry(session).or_default().push(event),
                Some(Entry::Dropped(n)) => dropped_before = n,
                Some(Entry::Bad(key)) => {
                    if store::is_event_key(&key) {
                        up.dropped += 1;
                    }
                    up.writes.push(StoreOp::Remove(key));
                }
            }
        }
        up.dropped += dropped_before;
        for (session, mut stored_events) in events {
            let Some(record) = records.get_mut(&session) else {
                for e in stored_events {
                    up.drop_event(&session, e.seq);
                }
                continue;
            };
            stored_events.sort_by_key(|e| e.seq);
            stored_events.dedup_by_key(|e| e.seq);
            record.last_seq = record.last_seq.max(stored_events.last().map_or(0, |e| e.seq));
            let mut queue = UploadQueue::default();
            for e in stored_events {
                if let Some(old) = queue.push(e) {
                    up.drop_event(&session, old.seq);
                }
            }
            up.outboxes.insert(session, outbox_of(record, queue, now_ms));
        }
        for (session, record) in records {
            up.outboxes
                .entry(session)
                .or_insert_with(|| outbox_of(&record, UploadQueue::default(), now_ms));
        }
        up.enforce_total_bound();
        up.forget_drained();
        let records: Vec<StoreOp> = up
            .outboxes
            .iter()
            .map(|(s, o)| store::put_session(s, &o.record()))
            .collect();
        up.writes.extend(records);
        if up.dropped != dropped_before {
            up.write_dropped();
        }
        up
    }

    /// A tab starts a call session: resumes the stored session that was live in this tab for
    /// the same meeting (within [`RESUME_MS`] of the restart), else names a new one.
    pub fn open_session(&mut self, tab: i64, meeting: Option<&str>, at_ms: f64, now_ms: f64) -> String {
        let resumable = self.outboxes.iter_mut().find(|(_, o)| {
            o.tab == tab
                && !o.live
                && o.resumable_until.is_some_and(|until| now_ms <= until)
                && Some(o.meeting.as_str()) == meeting
        });
        if let Some((session, outbox)) = resumable {
            outbox.live = true;
            outbox.resumable_until = None;
            outbox.base = outbox.last_seq;
            return session.clone();
        }
        let stem = format!("{tab}-{:x}", at_ms.max(0.0) as u64);
        let mut session = stem.clone();
        let mut n = 1;
        while self.outboxes.contains_key(&session) {
            n += 1;
            session = format!("{stem}-{n}");
        }
        session
    }

    /// Queues an event of `session` (numbered by its processor) for `meeting`; without a
    /// meeting (not an http(s) page) nothing is sent.
    pub fn push(&mut self, session: &str, tab: i64, meeting: Option<String>, mut event: Event) {
        let Some(meeting) = meeting else {
            return;
        };
        let outbox = self.outboxes.entry(session.to_string()).or_insert_with(|| Outbox {
            tab,
            meeting: meeting.clone(),
            queue: UploadQueue::default(),
            base: 0,
            last_seq: 0,
            live: true,
            resumable_until: None,
            token: None,
        });
        event.seq += outbox.base;
        outbox.meeting = meeting;
        outbox.last_seq = outbox.last_seq.max(event.seq);
        self.writes.push(store::put_session(session, &outbox.record()));
        self.writes.push(store::put_event(session, &event));
        if let Some(old) = outbox.queue.push(event) {
            self.drop_event(session, old.seq);
            self.write_dropped();
        }
        if self.enforce_total_bound() {
            self.write_dropped();
        }
    }

    /// The session's tab closed or navigated: its queue is kept until it drains.
    pub fn end_session(&mut self, session: &str) {
        if let Some(outbox) = self.outboxes.get_mut(session) {
            outbox.live = false;
            outbox.resumable_until = None;
            let record = store::put_session(session, &outbox.record());
            self.writes.push(record);
        }
        self.forget_drained();
    }

    /// Restored sessions that no tab resumed in time end.
    pub fn expire(&mut self, now_ms: f64) {
        let mut changed = Vec::new();
        for (session, outbox) in &mut self.outboxes {
            if outbox.resumable_until.is_some_and(|until| now_ms > until) {
                outbox.resumable_until = None;
                changed.push(store::put_session(session, &outbox.record()));
            }
        }
        self.writes.extend(changed);
        self.forget_drained();
    }

    /// Sending was turned off: queued events are discarded (not counted as dropped). Live
    /// sessions keep their numbering, so turning sending on again reuses no number.
    pub fn clear(&mut self) {
        for (session, outbox) in &mut self.outboxes {
            while let Some(e) = outbox.queue.pop_front() {
                self.writes.push(StoreOp::Remove(store::event_key(session, e.seq)));
            }
            outbox.queue = UploadQueue::default();
            outbox.resumable_until = None;
        }
        if self.dropped > 0 {
            self.dropped = 0;
            self.writes.push(StoreOp::Remove(store::dropped_key()));
        }
        self.forget_drained();
    }

    /// Every queue may post at once (see [`UploadQueue::retry_now`]).
    pub fn retry_now(&mut self) {
        for outbox in self.outboxes.values_mut() {
            outbox.queue.retry_now();
        }
    }

    /// The posts due now, one per session at most.
    pub fn take_batches(&mut self, now_ms: f64) -> Vec<Batch> {
        self.outboxes
            .iter_mut()
            .filter_map(|(session, o)| {
                o.queue.take_batch(now_ms).map(|events| Batch {
                    session: session.clone(),
                    meeting: o.meeting.clone(),
                    token: o.token.clone(),
                    events,
                })
            })
            .collect()
    }

    /// The post of `session` ended. Returns the acknowledged sequence numbers in the numbering
    /// of the processor that feeds the session (none when no processor feeds it). A new
    /// participant token of the acknowledgement is kept, in storage too.
    pub fn finish(&mut self, session: &str, result: &UploadResult, now_ms: f64) -> Vec<u64> {
        let Some(outbox) = self.outboxes.get_mut(session) else {
            return Vec::new();
        };
        let finished = outbox.queue.finish(result, now_ms);
        if let UploadResult::Accepted(IngestAck {
            participant_token: Some(token),
            ..
        }) = result
        {
            if outbox.token.as_ref() != Some(token) {
                outbox.token = Some(token.clone());
                self.writes.push(store::put_session(session, &outbox.record()));
            }
        }
        let acked = if outbox.live {
            finished
                .acked
                .iter()
                .filter(|s| **s > outbox.base)
                .map(|s| s - outbox.base)
                .collect()
        } else {
            Vec::new()
        };
        for seq in &finished.acked {
            self.writes.push(StoreOp::Remove(store::event_key(session, *seq)));
        }
        for seq in &finished.rejected {
            self.drop_event(session, *seq);
        }
        if !finished.rejected.is_empty() {
            self.write_dropped();
        }
        self.forget_drained();
        acked
    }

    /// When the next retry is due, if one waits.
    pub fn retry_at(&self) -> Option<f64> {
        self.outboxes
            .values()
            .filter_map(|o| o.queue.retry_at())
            .min_by(f64::total_cmp)
    }

    /// Events waiting (in flight included).
    pub fn queued(&self) -> usize {
        self.outboxes.values().map(|o| o.queue.len()).sum()
    }

    pub fn in_flight(&self) -> bool {
        self.outboxes.values().any(|o| o.queue.in_flight())
    }

    /// Events the bounds evicted or the collector rejected (400).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The storage changes made since the last call, in order.
    pub fn take_writes(&mut self) -> Vec<StoreOp> {
        std::mem::take(&mut self.writes)
    }

    fn drop_event(&mut self, session: &str, seq: u64) {
        self.dropped += 1;
        self.writes.push(StoreOp::Remove(store::event_key(session, seq)));
    }

    fn write_dropped(&mut self) {
        self.writes
            .push(StoreOp::Put(store::dropped_key(), self.dropped.to_string()));
    }

    /// Evicts the oldest events of all sessions over [`MAX_STORED`]; whether any went.
    fn enforce_total_bound(&mut self) -> bool {
        let mut over = self.queued().saturating_sub(MAX_STORED);
        let evicted = over > 0;
        while over > 0 {
            let oldest = self
                .outboxes
                .iter()
                .filter_map(|(s, o)| o.queue.front().map(|e| (s.clone(), e.ts_ms)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(s, _)| s);
            let Some(session) = oldest else {
                break;
            };
            if let Some(e) = self.outboxes.get_mut(&session).and_then(|o| o.queue.pop_front()) {
                self.drop_event(&session, e.seq);
            }
            over -= 1;
        }
        evicted
    }

    fn forget_drained(&mut self) {
        let drained: Vec<String> = self
            .outboxes
            .iter()
            .filter(|(_, o)| o.drained())
            .map(|(s, _)| s.clone())
            .collect();
        for session in drained {
            self.outboxes.remove(&session);
            self.writes.push(StoreOp::Remove(store::session_key(&session)));
        }
    }
}

fn outbox_of(record: &SessionRecord, queue: UploadQueue, now_ms: f64) -> Outbox {
    Outbox {
        tab: record.tab,
        meeting: record.meeting.clone(),
        queue,
        base: record.last_seq,
        last_seq: record.last_seq,
        live: false,
        resumable_until: record.live.then_some(now_ms + RESUME_MS),
        token: record.participant_token.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use vitals_shared::wire::MetricsFields;

    fn event(seq: u64) -> Event {
        Event {
            seq,
            ts_ms: seq as f64,
            full: seq == 1,
            metrics: MetricsFields {
                upload_kbps: Some(seq as f64),
                ..MetricsFields::default()
            },
        }
    }

    const MEETING: &str = "http://127.0.0.1:8000/demo";

    /// A fake `localStorage`: the writes applied in order.
    #[derive(Default)]
    struct Disk(BTreeMap<String, String>);

    impl Disk {
        fn apply(&mut self, uploads: &mut Uploads) {
            store::apply_to(&mut self.0, uploads.take_writes());
        }

        fn entries(&self) -> Vec<(String, String)> {
            self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        }

        fn event_seqs(&self) -> Vec<u64> {
            let mut seqs: Vec<u64> = self
                .0
                .iter()
                .filter_map(|(k, v)| match store::parse(k, v) {
                    Some(Entry::Event(_, e)) => Some(e.seq),
                    _ => None,
                })
                .collect();
            seqs.sort_unstable();
            seqs
        }
    }

    /// Empty storage, and tab 4's call starting at 1 s.
    fn first_call() -> (Disk, Uploads, String) {
        let disk = Disk::default();
        let mut up = Uploads::restore(disk.entries(), 0.0);
        let s = up.open_session(4, Some(MEETING), 1_000.0, 1_000.0);
        (disk, up, s)
    }

    fn seqs(batch: &Batch) -> Vec<u64> {
        batch.events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff_ms(0), 0.0);
        assert_eq!(backoff_ms(1), 1_000.0);
        assert_eq!(backoff_ms(2), 2_000.0);
        assert_eq!(backoff_ms(4), 8_000.0);
        assert_eq!(backoff_ms(7), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(u32::MAX), MAX_BACKOFF_MS);
    }

    #[test]
    fn queue_is_bounded_and_drops_the_oldest() {
        let mut q = UploadQueue::default();
        let mut evicted = Vec::new();
        for seq in 1..=(MAX_QUEUED as u64 + 3) {
            evicted.extend(q.push(event(seq)).map(|e| e.seq));
        }
        assert_eq!(q.len(), MAX_QUEUED);
        assert_eq!(evicted, vec![1, 2, 3]);
        let batch = q.take_batch(0.0).unwrap();
        assert_eq!(batch[0].seq, 4);
        assert_eq!(batch.len(), MAX_EVENTS_PER_BATCH);
    }

    #[test]
    fn one_batch_in_flight_and_accepted_events_leave() {
        let mut q = UploadQueue::default();
        q.push(event(1));
        q.push(event(2));
        let batch = q.take_batch(0.0).unwrap();
        assert_eq!(batch.len(), 2);
        q.push(event(3));
        assert!(q.take_batch(0.0).is_none(), "a second batch while one is in flight");
        assert_eq!(q.finish(&acked(vec![1, 2]), 10.0).acked, vec![1, 2]);
        let batch = q.take_batch(10.0).unwrap();
        assert_eq!(batch.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn failures_are_retried_after_the_backoff() {
        let mut q = UploadQueue::default();
        q.push(event(1));
        q.take_batch(0.0).unwrap();
        assert_eq!(
            q.finish(&UploadResult::Failed("down".into()), 100.0),
            Finished::default()
        );
        assert_eq!(q.retry_at(), Some(1_100.0));
        assert!(q.take_batch(1_000.0).is_none());
        q.take_batch(1_100.0).unwrap();
        q.finish(&UploadResult::Failed("down".into()), 1_200.0);
        assert_eq!(q.retry_at(), Some(3_200.0));
        q.take_batch(3_200.0).unwrap();
        q.finish(&acked(vec![1]), 3_300.0);
        assert!(q.is_empty());
        assert_eq!(q.retry_at(), None);
    }

    #[test]
    fn statuses_are_classified_so_only_a_400_drops() {
        assert!(matches!(UploadResult::from_status(400), UploadResult::Rejected(_)));
        for status in [401, 403, 404, 413, 418] {
            assert!(
                matches!(UploadResult::from_status(status), UploadResult::Refused(_)),
                "{status}"
            );
        }
        for status in [408, 429, 500, 503] {
            assert!(
                matches!(UploadResult::from_status(status), UploadResult::Failed(_)),
                "{status}"
            );
        }
        let UploadResult::Refused(message) = UploadResult::from_status(401) else {
            unreachable!()
        };
        assert!(message.contains("check the ingest key"), "{message}");
    }

    #[test]
    fn a_refused_upload_keeps_the_queue_and_retries_slowly() {
        let (mut disk, mut up, s) = first_call();
        up.push(&s, 4, Some(MEETING.into()), event(1));
        up.push(&s, 4, Some(MEETING.into()), event(2));
        up.take_batches(1_000.0).remove(0);
        let refused = UploadResult::from_status(401);
        assert!(up.finish(&s, &refused, 1_100.0).is_empty());
        disk.apply(&mut up);
        assert_eq!(disk.event_seqs(), vec![1, 2], "still stored");
        assert_eq!((up.queued(), up.dropped()), (2, 0));
        assert_eq!(up.retry_at(), Some(1_100.0 + REFUSED_BACKOFF_MS));
        assert!(up.take_batches(1_100.0 + REFUSED_BACKOFF_MS - 1.0).is_empty());
        // The key is fixed: the same events go on the next retry and leave once acknowledged.
        let batch = up.take_batches(1_100.0 + REFUSED_BACKOFF_MS).remove(0);
        assert_eq!(seqs(&batch), vec![1, 2]);
        up.finish(&s, &acked(vec![1, 2]), 70_000.0);
        assert_eq!(up.queued(), 0);
    }

    #[test]
    fn a_rejected_batch_alone_is_dropped_and_counted() {
        let (mut disk, mut up, s) = first_call();
        for seq in 1..=(MAX_EVENTS_PER_BATCH as u64 + 2) {
            up.push(&s, 4, Some(MEETING.into()), event(seq));
        }
        let batch = up.take_batches(1_000.0).remove(0);
        assert_eq!(batch.events.len(), MAX_EVENTS_PER_BATCH);
        up.finish(&s, &UploadResult::from_status(400), 1_100.0);
        disk.apply(&mut up);
        assert_eq!(up.dropped(), MAX_EVENTS_PER_BATCH as u64);
        assert_eq!(
            disk.event_seqs(),
            vec![MAX_EVENTS_PER_BATCH as u64 + 1, MAX_EVENTS_PER_BATCH as u64 + 2]
        );
        assert_eq!(disk.0[&store::dropped_key()], MAX_EVENTS_PER_BATCH.to_string());
        // The rest is sent at once, no backoff.
        assert_eq!(seqs(&up.take_batches(1_100.0)[0]).len(), 2);
    }

    #[test]
    fn a_2xx_removes_only_the_acknowledged_events() {
        let (mut disk, mut up, s) = first_call();
        for seq in 1..=3 {
            up.push(&s, 4, Some(MEETING.into()), event(seq));
        }
        up.take_batches(1_000.0).remove(0);
        // The collector holds 1 and 3 (and names a number that was never sent, ignored).
        assert_eq!(up.finish(&s, &acked(vec![1, 3, 99]), 1_100.0), vec![1, 3]);
        disk.apply(&mut up);
        assert_eq!(disk.event_seqs(), vec![2]);
        assert_eq!(up.queued(), 1);
        let retry = up.retry_at().expect("the unacknowledged event is retried");
        assert_eq!(seqs(&up.take_batches(retry)[0]), vec![2]);
    }

    #[test]
    fn every_event_is_stored_before_its_post_and_removed_when_acknowledged() {
        let (mut disk, mut up, s) = first_call();
        assert_eq!(s, "4-3e8");
        up.push(&s, 4, Some(MEETING.into()), event(1));
        up.push(&s, 4, Some(MEETING.into()), event(2));
        let batch = up.take_batches(1_000.0).remove(0);
        disk.apply(&mut up);
        assert_eq!(disk.event_seqs(), seqs(&batch), "stored before the post goes");
        assert_eq!(up.finish(&s, &acked(vec![1, 2]), 1_100.0), vec![1, 2]);
        disk.apply(&mut up);
        assert!(disk.event_seqs().is_empty());
        // The live session's record stays, with the numbering.
        let record = store::parse(&store::session_key(&s), &disk.0[&store::session_key(&s)]);
        assert!(matches!(record, Some(Entry::Session(_, r)) if r.last_seq == 2 && r.live && r.tab == 4));
        // Its tab goes: the session is forgotten, in storage too.
        up.end_session(&s);
        disk.apply(&mut up);
        assert!(disk.0.is_empty(), "{:?}", disk.0);
        assert_eq!(up.queued(), 0);
    }

    #[test]
    fn a_restart_while_the_collector_is_down_loses_nothing_and_reuses_no_number() {
        let (mut disk, mut up, s) = first_call();
        for seq in 1..=3 {
            up.push(&s, 4, Some(MEETING.into()), event(seq));
        }
        up.take_batches(1_000.0);
        up.finish(&s, &acked(vec![1, 2, 3]), 1_100.0);
        for seq in 4..=6 {
            up.push(&s, 4, Some(MEETING.into()), event(seq));
        }
        let batch = up.take_batches(2_000.0).remove(0);
        assert_eq!(seqs(&batch), vec![4, 5, 6]);
        up.finish(&s, &UploadResult::Failed("collector unreachable".into()), 2_100.0);
        disk.apply(&mut up);
        drop(up); // the document goes (the failed batch was never acknowledged)

        let mut up = Uploads::restore(disk.entries(), 10_000.0);
        assert_eq!(up.queued(), 3);
        // The tab's next snapshot comes: the same session goes on, its processor starts at 1.
        let resumed = up.open_session(4, Some(MEETING), 10_500.0, 10_500.0);
        assert_eq!(resumed, s);
        up.push(&resumed, 4, Some(MEETING.into()), event(1));
        let batch = up.take_batches(10_500.0).remove(0);
        assert_eq!(
            seqs(&batch),
            vec![4, 5, 6, 7],
            "the restored events first, then 7, never 1 again"
        );
        assert!(batch.events[3].full);
        disk.apply(&mut up);
        assert_eq!(disk.event_seqs(), vec![4, 5, 6, 7]);
        // The collector's acknowledgement reaches the new processor in its own numbering.
        let acked = up.finish(&s, &acked(vec![4, 5, 6, 7]), 10_600.0);
        assert_eq!(acked, vec![1]);
        disk.apply(&mut up);
        assert!(disk.event_seqs().is_empty());

        // A second restart: still no number twice.
        let mut up = Uploads::restore(disk.entries(), 20_000.0);
        let again = up.open_session(4, Some(MEETING), 20_100.0, 20_100.0);
        assert_eq!(again, s);
        up.push(&again, 4, Some(MEETING.into()), event(1));
        assert_eq!(seqs(&up.take_batches(20_100.0)[0]), vec![8]);
    }

    #[test]
    fn a_session_is_resumed_only_by_its_tab_and_meeting_and_only_soon() {
        let (mut disk, mut up, s) = first_call();
        up.push(&s, 4, Some(MEETING.into()), event(1));
        disk.apply(&mut up);

        let mut up = Uploads::restore(disk.entries(), 5_000.0);
        assert_ne!(up.open_session(5, Some(MEETING), 5_100.0, 5_100.0), s, "another tab");
        assert_ne!(
            up.open_session(4, Some("http://x/other"), 5_100.0, 5_100.0),
            s,
            "another meeting"
        );
        let late = 5_000.0 + RESUME_MS + 1.0;
        assert_ne!(up.open_session(4, Some(MEETING), late, late), s, "too late");
        assert_eq!(up.open_session(4, Some(MEETING), 5_200.0, 5_200.0), s);

        // A session its tab ended is never resumed; once it drained it is gone.
        up.end_session(&s);
        disk.apply(&mut up);
        let mut up = Uploads::restore(disk.entries(), 6_000.0);
        assert_ne!(up.open_session(4, Some(MEETING), 6_100.0, 6_100.0), s);
        assert_eq!(up.queued(), 1, "its queued event still goes");
        let batch = up.take_batches(6_100.0).remove(0);
        assert_eq!((batch.session.as_str(), batch.meeting.as_str()), (s.as_str(), MEETING));
        up.finish(&s, &acked(vec![1]), 6_200.0);
        disk.apply(&mut up);
        assert!(disk.0.is_empty(), "{:?}", disk.0);
    }

    #[test]
    fn an_unresumed_session_ends_after_the_resume_window() {
        let (mut disk, mut up, s) = first_call();
        up.push(&s, 4, Some(MEETING.into()), event(1));
        up.take_batches(1_000.0);
        up.finish(&s, &acked(vec![1]), 1_100.0);
        disk.apply(&mut up);
        assert_eq!(disk.0.len(), 1, "the live session's record");
        let mut up = Uploads::restore(disk.entries(), 2_000.0);
        up.expire(2_000.0 + RESUME_MS);
        disk.apply(&mut up);
        assert_eq!(disk.0.len(), 1);
        up.expire(2_001.0 + RESUME_MS);
        disk.apply(&mut up);
        assert!(disk.0.is_empty(), "{:?}", disk.0);
    }

    #[test]
    fn the_stored_total_is_bounded_and_evictions_are_counted_across_restarts() {
        let mut disk = Disk::default();
        let mut up = Uploads::restore(disk.entries(), 0.0);
        let sessions = ["1-a", "2-b", "3-c", "4-d", "5-e"];
        // Five participants, interleaved in time: 2,100 events in all, 420 each.
        for i in 0..(MAX_STORED as u64 + 100) {
            let s = sessions[(i % 5) as usize];
            let mut e = event(i / 5 + 1);
            e.ts_ms = i as f64;
            up.push(s, (i % 5) as i64 + 1, Some(MEETING.into()), e);
        }
        assert_eq!(up.queued(), MAX_STORED);
        assert_eq!(up.dropped(), 100);
        disk.apply(&mut up);
        // The oldest went, whichever participant they belonged to.
        assert_eq!(disk.event_seqs().len(), MAX_STORED);
        assert!(!disk.0.contains_key(&store::event_key("1-a", 20)));
        assert!(disk.0.contains_key(&store::event_key("1-a", 21)));
        assert_eq!(disk.0[&store::dropped_key()], "100");

        let mut up = Uploads::restore(disk.entries(), 1.0);
        assert_eq!((up.queued(), up.dropped()), (MAX_STORED, 100));
        disk.apply(&mut up);
        // A newer participant: its first 500 events push out the oldest of the others, its
        // 501st meets its own bound and pushes out its own first.
        let s = up.open_session(9, Some(MEETING), 2.0, 2.0);
        for seq in 1..=(MAX_QUEUED as u64 + 1) {
            let mut e = event(seq);
            e.ts_ms = 1e6 + seq as f64;
            up.push(&s, 9, Some(MEETING.into()), e);
        }
        assert_eq!(up.dropped(), 100 + MAX_QUEUED as u64 + 1);
        disk.apply(&mut up);
        assert_eq!(disk.event_seqs().len(), MAX_STORED);
        assert!(!disk.0.contains_key(&store::event_key(&s, 1)));
        assert!(disk.0.contains_key(&store::event_key(&s, 2)));
        assert!(!disk.0.contains_key(&store::event_key("1-a", 120)));
        assert!(disk.0.contains_key(&store::event_key("1-a", 121)));
        // Turning sending off discards the queue without counting it as dropped.
        up.clear();
        disk.apply(&mut up);
        assert_eq!((up.queued(), up.dropped()), (0, 0));
        assert!(disk.event_seqs().is_empty());
    }

    #[test]
    fn damaged_entries_are_removed_and_orphan_events_counted() {
        let mut stored = vec![
            ("other-extension-key".to_string(), "kept".to_string()),
            (store::session_key("1-a"), "{broken".to_string()),
            (store::event_key("1-a", 1), serde_json::to_string(&event(1)).unwrap()),
            (store::event_key("2-b", 1), "not json".to_string()),
        ];
        let record = SessionRecord {
            tab: 3,
            meeting: MEETING.into(),
            last_seq: 1,
            live: false,
            participant_token: None,
        };
        let StoreOp::Put(k, v) = store::put_session("3-c", &record) else {
            panic!("a put")
        };
        stored.push((k, v));
        // The record says 1, but event 2 was stored: the numbering goes on from 2.
        stored.push((store::event_key("3-c", 2), serde_json::to_string(&event(2)).unwrap()));
        let mut disk = Disk(stored.into_iter().collect());
        let mut up = Uploads::restore(disk.entries(), 0.0);
        disk.apply(&mut up);
        assert_eq!(up.dropped(), 2, "the unreadable event and the one without a session");
        assert_eq!(up.queued(), 1);
        assert_eq!(
            disk.0.keys().cloned().collect::<Vec<_>>(),
            vec![
                store::dropped_key(),
                store::event_key("3-c", 2),
                store::session_key("3-c"),
                "other-extension-key".to_string(),
            ]
        );
        assert!(disk.0[&store::session_key("3-c")].contains(r#""last_seq":2"#));
    }

    #[test]
    fn turning_sending_off_and_on_reuses_no_number_of_a_resumed_session() {
        let (mut disk, mut up, s) = first_call();
        for seq in 1..=5 {
            up.push(&s, 4, Some(MEETING.into()), event(seq));
        }
        disk.apply(&mut up);
        let mut up = Uploads::restore(disk.entries(), 2_000.0);
        assert_eq!(up.open_session(4, Some(MEETING), 2_100.0, 2_100.0), s);
        up.clear();
        up.push(&s, 4, Some(MEETING.into()), event(1));
        assert_eq!(seqs(&up.take_batches(2_200.0)[0]), vec![6]);
    }

    fn ack_with_token(seqs: Vec<u64>, token: &str) -> UploadResult {
        UploadResult::Accepted(IngestAck {
            accepted: seqs,
            participant_token: Some(token.into()),
        })
    }

    #[test]
    fn the_participant_token_is_kept_sent_with_every_batch_and_survives_a_restart() {
        let (mut disk, mut up, s) = first_call();
        up.push(&s, 4, Some(MEETING.into()), event(1));
        let first = up.take_batches(1_000.0).remove(0);
        assert_eq!(first.token, None, "a new participant has none yet");
        up.finish(&s, &ack_with_token(vec![1], "tok-a"), 1_100.0);
        up.push(&s, 4, Some(MEETING.into()), event(2));
        let second = up.take_batches(1_100.0).remove(0);
        assert_eq!(second.token.as_deref(), Some("tok-a"));
        // A failed post keeps it; a newer token replaces it.
        up.finish(&s, &UploadResult::Failed("down".into()), 1_200.0);
        let retry = up.take_batches(up.retry_at().unwrap()).remove(0);
        assert_eq!(retry.token.as_deref(), Some("tok-a"));
        up.finish(&s, &ack_with_token(vec![2], "tok-b"), 3_000.0);
        up.push(&s, 4, Some(MEETING.into()), event(3));
        disk.apply(&mut up);
        let stored = &disk.0[&store::session_key(&s)];
        assert!(stored.contains(r#""participant_token":"tok-b""#), "{stored}");
        drop(up); // the document goes with event 3 queued

        // The restarted document sends the queued event, and the resumed session's next ones,
        // with the stored token.
        let mut up = Uploads::restore(disk.entries(), 10_000.0);
        assert_eq!(up.take_batches(10_000.0).remove(0).token.as_deref(), Some("tok-b"));
        up.finish(&s, &acked(vec![3]), 10_100.0);
        assert_eq!(up.open_session(4, Some(MEETING), 10_200.0, 10_200.0), s);
        up.push(&s, 4, Some(MEETING.into()), event(1));
        let batch = up.take_batches(10_200.0).remove(0);
        assert_eq!((seqs(&batch), batch.token.as_deref()), (vec![4], Some("tok-b")));
        // An answer without a token (an older collector) keeps the one held.
        up.finish(&s, &acked(vec![4]), 10_300.0);
        up.push(&s, 4, Some(MEETING.into()), event(2));
        assert_eq!(up.take_batches(10_300.0).remove(0).token.as_deref(), Some("tok-b"));
        // Another session has its own (none yet).
        let other = up.open_session(5, Some(MEETING), 10_400.0, 10_400.0);
        up.push(&other, 5, Some(MEETING.into()), event(1));
        assert_eq!(up.take_batches(10_400.0).remove(0).token, None);
    }

    #[test]
    fn a_refused_participant_token_keeps_the_queue_with_its_own_message() {
        let refused = UploadResult::from_refusal(
            403,
            "wrong participant token: it was not issued for this meeting and participant",
        );
        assert_eq!(refused, UploadResult::Refused(TOKEN_REFUSED.into()));
        assert!(TOKEN_REFUSED.contains("participant token") && !TOKEN_REFUSED.contains("ingest key"));
        // Any other 403 or 401 is still about the key.
        for (status, error) in [(403, "forbidden"), (401, "missing or wrong ingest key")] {
            let UploadResult::Refused(message) = UploadResult::from_refusal(status, error) else {
                panic!("{status} is a refusal")
            };
            assert!(message.contains("check the ingest key"), "{message}");
        }
        assert!(matches!(
            UploadResult::from_refusal(400, "event 9: seq"),
            UploadResult::Rejected(_)
        ));
        let (mut disk, mut up, s) = first_call();
        up.push(&s, 4, Some(MEETING.into()), event(1));
        up.push(&s, 4, Some(MEETING.into()), event(2));
        up.take_batches(1_000.0);
        assert!(up.finish(&s, &refused, 1_100.0).is_empty());
        disk.apply(&mut up);
        assert_eq!(disk.event_seqs(), vec![1, 2], "still stored");
        assert_eq!((up.queued(), up.dropped()), (2, 0));
        assert_eq!(up.retry_at(), Some(1_100.0 + REFUSED_BACKOFF_MS));
    }

    #[test]
    fn pages_without_a_meeting_send_nothing() {
        let mut up = Uploads::default();
        let s = up.open_session(4, None, 1.0, 1.0);
        up.push(&s, 4, None, event(1));
        assert_eq!(up.queued(), 0);
        assert!(up.take_writes().is_empty());
    }
}
