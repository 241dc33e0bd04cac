//! The per-participant rate limit of ingest: a token bucket kept in the participant's record.
//!
//! The bucket is part of the record that every ingest reads and writes with a compare-and-set
//! (see `store::record`), so the limit holds across every collector process sharing a Redis and
//! costs no extra round trip. Pure: the caller passes the time.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Most client addresses a participant's record keeps a bucket for; a further one replaces the
/// fullest (which only gives that client a fresh bucket, never a drained one).
const MAX_CLIENT_BUCKETS: usize = 4;

/// A participant's buckets, one per client address writing as it: another client cannot
/// drain the bucket of the participant's own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientBuckets(Vec<(IpAddr, Bucket)>);

impl ClientBuckets {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

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

    /// Takes a token from the bucket of `client` in `buckets` at `now_ms` (see [`Self::take`]),
    /// dropping the buckets that have refilled.
    pub fn take_for(&self, buckets: &mut ClientBuckets, client: IpAddr, now_ms: u64) -> Result<(), u64> {
        let mut bucket = buckets.0.iter().find(|(c, _)| *c == client).map(|(_, b)| *b);
        self.take(&mut bucket, now_ms)?;
        buckets
            .0
            .retain(|(c, b)| *c != client && self.settle(Some(*b), now_ms).is_some());
        if buckets.0.len() >= MAX_CLIENT_BUCKETS {
            let fullest = (0..buckets.0.len())
                .max_by(|a, b| {
                    self.tokens(Some(buckets.0[*a].1), now_ms)
                        .total_cmp(&self.tokens(Some(buckets.0[*b].1), now_ms))
                })
                .expect("not empty");
            buckets.0.swap_remove(fullest);
        }
        buckets.0.push((client, bucket.expect("take leaves a bucket")));
        Ok(())
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
    fn clients_of_one_participant_have_their_own_buckets() {
        let limit = RateLimit {
            per_sec: 0.5,
            burst: 2.0,
        };
        let mut buckets = ClientBuckets::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(limit.take_for(&mut buckets, a, 0), Ok(()));
        assert_eq!(limit.take_for(&mut buckets, a, 0), Ok(()));
        assert_eq!(limit.take_for(&mut buckets, a, 0), Err(2));
        assert_eq!(limit.take_for(&mut buckets, b, 0), Ok(()), "b is not drained by a");
        for i in 3..20u8 {
            let other = IpAddr::from([10, 0, 0, i]);
            assert_eq!(limit.take_for(&mut buckets, other, 0), Ok(()));
        }
        assert!(buckets.0.len() <= MAX_CLIENT_BUCKETS);
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
