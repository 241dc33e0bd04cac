//! The embedded in-memory store: the default, so one command runs the collector.

use super::{
    events_in_seq_order, group_meetings, unique_seqs, IngestOutcome, LiveState, MeetingView, ParticipantView, Store,
    StoreFuture, LIVE_TTL_MS,
};
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
}

/// Keeps live state in a map behind one mutex: every operation is short and never awaits while
/// holding it, so the lock makes each batch atomic without hurting throughput.
#[derive(Debug)]
pub struct MemoryStore {
    live_ttl_ms: u64,
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
        Self {
            live_ttl_ms,
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
}
