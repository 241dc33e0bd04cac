//! A token bucket per participant for ingest, kept in this process's memory.
//!
//! Each collector process limits on its own, so behind a load balancer spreading one
//! participant over N processes the effective limit is up to N times higher; that is accepted
//! for now (the extension itself sends at most 10 events a minute). Pure: the caller passes the
//! time.

use std::collections::HashMap;

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

/// The buckets of every participant seen recently.
#[derive(Debug, Default)]
pub struct RateLimiter {
    limit: RateLimit,
    /// Tokens left and when they were counted.
    buckets: HashMap<String, (f64, u64)>,
    last_sweep_ms: u64,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            ..Default::default()
        }
    }

    /// Takes a token for `key` at `now_ms`; when none is left, returns the whole seconds (at
    /// least 1) until one is.
    pub fn check(&mut self, key: &str, now_ms: u64) -> Result<(), u64> {
        let limit = self.limit;
        let refill = |tokens: f64, since: u64| {
            (tokens + now_ms.saturating_sub(since) as f64 / 1000.0 * limit.per_sec).min(limit.burst)
        };
        // A bucket that has refilled completely is the same as none: drop those now and then so
        // that memory follows the number of active participants.
        if now_ms >= self.last_sweep_ms.saturating_add(10_000) {
            self.last_sweep_ms = now_ms;
            self.buckets
                .retain(|_, (tokens, at)| refill(*tokens, *at) < limit.burst);
        }
        let bucket = self.buckets.entry(key.to_owned()).or_insert((limit.burst, now_ms));
        let tokens = refill(bucket.0, bucket.1);
        if tokens >= 1.0 {
            *bucket = (tokens - 1.0, now_ms);
            Ok(())
        } else {
            *bucket = (tokens, now_ms);
            let wait_secs = if limit.per_sec > 0.0 {
                ((1.0 - tokens) / limit.per_sec).ceil()
            } else {
                3600.0
            };
            Err((wait_secs as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_participant() {
        let mut limiter = RateLimiter::new(RateLimit {
            per_sec: 0.5,
            burst: 3.0,
        });
        for _ in 0..3 {
            assert_eq!(limiter.check("a", 1_000), Ok(()));
        }
        assert_eq!(limiter.check("a", 1_000), Err(2), "one token takes 2 s");
        assert_eq!(limiter.check("b", 1_000), Ok(()), "participants are apart");
        assert_eq!(limiter.check("a", 2_000), Err(1));
        assert_eq!(limiter.check("a", 3_000), Ok(()));
        assert_eq!(limiter.check("a", 3_000), Err(2));
    }

    #[test]
    fn idle_participants_are_forgotten() {
        let mut limiter = RateLimiter::new(RateLimit::default());
        limiter.check("a", 0).unwrap();
        limiter.check("b", 0).unwrap();
        assert_eq!(limiter.buckets.len(), 2);
        limiter.check("c", 60_000).unwrap();
        assert_eq!(limiter.buckets.keys().collect::<Vec<_>>(), ["c"]);
    }
}
