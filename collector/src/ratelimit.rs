//! The per-participant rate limit of ingest: a token bucket kept in the participant's record.
//!
//! The bucket is part of the record that every ingest reads and writes with a compare-and-set
//! (see `store::record`), so the limit holds across every collector process sharing a Redis and
//! costs no extra round trip. Pure: the caller passes the time.

use serde::{Deserialize, Serialize};

/// Requests allowed per participant: `burst` at once, refilled at `per_sec`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_sec: f64,
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        // The emission policy sends about one batch every 6 s; retries after an outage come
        // as a few full batches. This leaves a wide margin for both.
        Self {
            per_sec: 2.0,
            burst: 20.0,
        }
    }
}

/// Tokens left and when they were counted (ms since the Unix epoch). No bucket means a full one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub tokens: f64,
    pub at: u64,
}

impl RateLimit {
    /// The tokens of `bucket` at `now_ms`, refilled.
    fn tokens(&self, bucket: Option<Bucket>, now_ms: u64) -> f64 {
        match bucket {
            None => self.burst,
            Some(bucket) => {
                let refill = now_ms.saturating_sub(bucket.at) as f64 / 1000.0 * self.per_sec;
                (bucket.tokens + refill).min(self.burst)
            }
        }
    }

    /// Takes a token from `bucket` at `now_ms`; when none is left, changes nothing and returns
    /// the whole seconds (at least 1) until one is. A bucket that would be full again is
    /// dropped, so idle participants carry none.
    pub fn take(&self, bucket: &mut Option<Bucket>, now_ms: u64) -> Result<(), u64> {
        let tokens = self.tokens(*bucket, now_ms);
        if tokens >= 1.0 {
            *bucket = Some(Bucket {
                tokens: tokens - 1.0,
                at: now_ms,
            });
            Ok(())
        } else {
            let wait_secs = if self.per_sec > 0.0 {
                ((1.0 - tokens) / self.per_sec).ceil()
            } else {
                3600.0
            };
            Err((wait_secs as u64).max(1))
        }
    }

    /// `bucket` at `now_ms`, or `None` once it has refilled completely.
    pub fn settle(&self, bucket: Option<Bucket>, now_ms: u64) -> Option<Bucket> {
        bucket.filter(|_| self.tokens(bucket, now_ms) < self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let limit = RateLimit {
            per_sec: 0.5,
            burst: 3.0,
        };
        let mut a = None;
        for _ in 0..3 {
            assert_eq!(limit.take(&mut a, 1_000), Ok(()));
        }
        assert_eq!(limit.take(&mut a, 1_000), Err(2), "one token takes 2 s");
        let mut b = None;
        assert_eq!(limit.take(&mut b, 1_000), Ok(()), "buckets are apart");
        assert_eq!(limit.take(&mut a, 2_000), Err(1));
        assert_eq!(limit.take(&mut a, 3_000), Ok(()));
        assert_eq!(limit.take(&mut a, 3_000), Err(2));
    }

    #[test]
    fn a_refilled_bucket_is_dropped() {
        let limit = RateLimit::default();
        let mut bucket = None;
        limit.take(&mut bucket, 0).unwrap();
        assert!(limit.settle(bucket, 100).is_some());
        assert_eq!(limit.settle(bucket, 60_000), None);
    }
}
