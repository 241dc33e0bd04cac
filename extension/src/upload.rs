//! The upload queue of one participant: bounded, acknowledged events dropped, retried with backoff.

use std::collections::VecDeque;
use vitals_shared::emit::Event;
use vitals_shared::wire::MAX_EVENTS_PER_BATCH;

/// Most events kept per participant while the collector is unreachable; the oldest go first
/// (a later full snapshot supersedes them anyway).
pub const MAX_QUEUED: usize = 500;
/// First retry delay after a failure, doubled per further failure up to [`MAX_BACKOFF_MS`].
pub const BASE_BACKOFF_MS: f64 = 1_000.0;
pub const MAX_BACKOFF_MS: f64 = 60_000.0;

/// How an upload ended.
#[derive(Debug, Clone, PartialEq)]
pub enum UploadResult {
    /// 2xx: the collector holds these sequence numbers.
    Accepted(Vec<u64>),
    /// The collector refused the batch for good (4xx other than 408 and 429): retrying cannot help.
    Refused(String),
    /// Network error, 5xx, 408 or 429: try again later.
    Failed(String),
}

/// Delay before the retry that follows `failures` consecutive failures.
pub fn backoff_ms(failures: u32) -> f64 {
    if failures == 0 {
        return 0.0;
    }
    (BASE_BACKOFF_MS * 2f64.powi(failures.min(16) as i32 - 1)).min(MAX_BACKOFF_MS)
}

/// Events waiting for the collector, at most one batch in flight.
#[derive(Debug, Default)]
pub struct UploadQueue {
    events: VecDeque<Event>,
    in_flight: Option<Vec<u64>>,
    failures: u32,
    retry_at_ms: f64,
    dropped: u64,
}

impl UploadQueue {
    pub fn push(&mut self, event: Event) {
        if self.events.len() >= MAX_QUEUED {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(event);
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
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

    /// When a waiting retry is due, if one waits.
    pub fn retry_at(&self) -> Option<f64> {
        (self.in_flight.is_none() && !self.events.is_empty() && self.failures > 0).then_some(self.retry_at_ms)
    }

    /// The in-flight batch ended. Accepted and refused batches leave the queue (a batch the
    /// collector answered but did not fully accept would never be); failed ones stay for a retry.
    pub fn finish(&mut self, result: &UploadResult, now_ms: f64) {
        let Some(sent) = self.in_flight.take() else {
            return;
        };
        match result {
            UploadResult::Accepted(_) | UploadResult::Refused(_) => {
                self.events.retain(|e| !sent.contains(&e.seq));
                self.failures = 0;
                self.retry_at_ms = 0.0;
            }
            UploadResult::Failed(_) => {
                self.failures = self.failures.saturating_add(1);
                self.retry_at_ms = now_ms + backoff_ms(self.failures);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_shared::wire::MetricsFields;

    fn event(seq: u64) -> Event {
        Event {
            seq,
            ts_ms: seq as f64,
            full: seq == 1,
            metrics: MetricsFields::default(),
        }
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
        for seq in 1..=(MAX_QUEUED as u64 + 3) {
            q.push(event(seq));
        }
        assert_eq!(q.len(), MAX_QUEUED);
        assert_eq!(q.dropped(), 3);
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
        q.finish(&UploadResult::Accepted(vec![1, 2]), 10.0);
        let batch = q.take_batch(10.0).unwrap();
        assert_eq!(batch.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn failures_are_retried_after_the_backoff() {
        let mut q = UploadQueue::default();
        q.push(event(1));
        q.take_batch(0.0).unwrap();
        q.finish(&UploadResult::Failed("down".into()), 100.0);
        assert_eq!(q.retry_at(), Some(1_100.0));
        assert!(q.take_batch(1_000.0).is_none());
        q.take_batch(1_100.0).unwrap();
        q.finish(&UploadResult::Failed("down".into()), 1_200.0);
        assert_eq!(q.retry_at(), Some(3_200.0));
        q.take_batch(3_200.0).unwrap();
        q.finish(&UploadResult::Accepted(vec![1]), 3_300.0);
        assert!(q.is_empty());
        assert_eq!(q.retry_at(), None);
    }

    #[test]
    fn refused_batches_are_not_retried() {
        let mut q = UploadQueue::default();
        q.push(event(1));
        q.take_batch(0.0).unwrap();
        q.finish(&UploadResult::Refused("400".into()), 1.0);
        assert!(q.is_empty());
    }
}
