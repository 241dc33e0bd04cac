//! What follows a stored batch: alert evaluation, the history point and TURN usage, committed atomically.
//!
//! Every collector process may handle any participant, so the derived state is read from the
//! store, evaluated, and written back with a compare-and-set; on a conflict (another process
//! committed in between) it is read and evaluated again. A merged state older than the one
//! already evaluated (a concurrent request that finished later) is skipped, so nothing is
//! counted twice and alerts are never raised twice.

use crate::alerts::{self, AlertRecord, AlertThresholds};
use crate::store::{DerivedCommit, IngestOutcome, Store, StoreError};
use crate::stream::Hub;
use crate::turn;
use std::sync::Arc;

/// How many times a conflicting commit is retried before giving up (and logging it).
const MAX_ATTEMPTS: usize = 8;

/// Evaluates the participant's merged state after `outcome` at `now_ms`; returns the alerts raised
/// or resolved. Does nothing when the batch applied nothing new and the state was evaluated.
pub async fn after_ingest(
    store: &dyn Store,
    thresholds: &AlertThresholds,
    meeting_id: &str,
    outcome: &IngestOutcome,
    now_ms: u64,
) -> Result<Vec<AlertRecord>, StoreError> {
    let participant = &outcome.participant;
    for _ in 0..MAX_ATTEMPTS {
        let slot = store.derived(meeting_id, &participant.participant_id).await?;
        let seq = participant.last_seq;
        // Applied events at or above the evaluated seq are news (an older event filling a gap
        // leaves last_seq as it was). A retried batch that applied nothing is evaluated only if
        // its first attempt failed before the evaluation was committed.
        let news = if outcome.applied.is_empty() {
            seq > slot.derived.evaluated_seq
        } else {
            seq >= slot.derived.evaluated_seq
        };
        if !news {
            return Ok(Vec::new());
        }
        let mut derived = slot.derived;
        let records = alerts::evaluate(
            thresholds,
            &mut derived.alerts,
            &participant.metrics,
            meeting_id,
            &participant.participant_id,
            now_ms,
        );
        let relayed = turn::account(&mut derived.relay, &participant.metrics, now_ms);
        derived.evaluated_seq = seq;
        let commit = DerivedCommit {
            meeting_id: meeting_id.to_owned(),
            participant_id: participant.participant_id.clone(),
            expected_version: slot.version,
            derived,
            records,
            history: Some(participant.metrics.clone()),
            relayed,
            now_ms,
        };
        if store.commit_derived(&commit).await? {
            return Ok(commit.records);
        }
    }
    tracing::warn!("derived state of a participant kept changing; this evaluation is skipped");
    Ok(Vec::new())
}

/// The publish point of the admin stream, after a batch was stored and evaluated: every alert
/// raised or resolved at once, and the merged state when the batch applied something new (the
/// hub limits those per participant). The hub decides where this goes: this process's admins,
/// or a Redis channel that every process forwards to its own admins.
pub async fn publish(hub: &Arc<Hub>, meeting_id: &str, outcome: &IngestOutcome, records: &[AlertRecord]) {
    for record in records {
        hub.publish_alert(record).await;
    }
    if !outcome.applied.is_empty() {
        hub.publish_metrics(meeting_id, &outcome.participant).await;
    }
}
