//! Flood limits of ingest by client address (a global token bucket, one per client, and a quota of new ids per client per minute) and the caps on live meetings and participants.
//!
//! The ingest key is public, so the ids in a body prove nothing: these limits are keyed by the
//! address the request came from (the TCP peer, or the first untrusted hop of
//! `X-Forwarded-For` when the collector is told it sits behind a proxy). They are kept in this
//! process (one short lock per request, no store round trip) and use the collector's clock.
//!
//! The [`LiveCaps`] hold for the whole store (every process sharing a Redis): a batch that would
//! create a participant beyond them is refused (`pipeline`, from the counts the store keeps).

use crate::ratelimit::{Bucket, RateLimit};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Most clients tracked at once; beyond it, clients whose buckets have refilled are forgotten
/// (and if none has, new clients share the global bucket only until some do).
const MAX_CLIENTS: usize = 100_000;
/// The window of the new-id quota.
const ID_WINDOW_MS: u64 = 60_000;

/// The limits, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmissionLimits {
    /// Ingest requests (HTTP and Socket.IO emits) of every client together.
    pub global: RateLimit,
    /// Ingest requests of one client address.
    pub per_client: RateLimit,
    /// New (meeting, participant) ids one client may create per minute.
    pub new_ids_per_min: u32,
    /// Whether to take the client's address from `X-Forwarded-For` (only behind a proxy that
    /// sets it).
    pub trust_proxy: bool,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self {
            global: RateLimit {
                per_sec: 5_000.0,
                burst: 10_000.0,
            },
            per_client: RateLimit {
                per_sec: 50.0,
                burst: 200.0,
            },
            new_ids_per_min: 120,
            trust_proxy: false,
        }
    }
}

/// The most live meetings and participants the store holds: a batch or emit that would create
/// one more is refused with 507, while those already live keep writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveCaps {
    pub meetings: usize,
    pub participants: usize,
}

impl Default for LiveCaps {
    fn default() -> Self {
        Self {
            meetings: 10_000,
            participants: 50_000,
        }
    }
}

/// What a refusal at a cap tells the client to wait: live records expire 5 minutes after their
/// last batch, so a place may free up any time.
pub const CAP_RETRY_AFTER_SECS: u64 = 30;

/// Why a request is refused, and the whole seconds after which it may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The collector as a whole is at its rate.
    Global(u64),
    /// This client is at its rate.
    Client(u64),
    /// This client created its minute's share of new ids.
    NewIds(u64),
}

impl Refusal {
    pub fn retry_after_secs(self) -> u64 {
        match self {
            Self::Global(secs) | Self::Client(secs) | Self::NewIds(secs) => secs,
        }
    }
}

#[derive(Debug, Default)]
struct Client {
    bucket: Option<Bucket>,
    window_start_ms: u64,
    new_ids: u32,
}

#[derive(Debug, Default)]
struct Books {
    global: Option<Bucket>,
    clients: HashMap<IpAddr, Client>,
}

/// The counters of every client of this process.
#[derive(Debug, Default)]
pub struct Admission {
    limits: AdmissionLimits,
    books: Mutex<Books>,
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            limits,
            books: Mutex::default(),
        }
    }

    pub fn limits(&self) -> &AdmissionLimits {
        &self.limits
    }

    /// Takes one request of `client` at `now_ms` from the global and the client's bucket.
    pub fn admit_request(&self, client: IpAddr, now_ms: u64) -> Result<(), Refusal> {
        let mut books = self.books.lock().expect("admission lock");
        let books = &mut *books;
        if books.clients.len() >= MAX_CLIENTS && !books.clients.contains_key(&client) {
            let limit = self.limits.per_client;
            books.clients.retain(|_, c| {
                limit.settle(c.bucket, now_ms).is_some() || c.new_ids > 0 && now_ms < c.window_start_ms + ID_WINDOW_MS
            });
        }
        // The client's bucket first: a client at its own rate does not use up the global one.
        let entry = books.clients.entry(client).or_default();
        let mut bucket = entry.bucket;
        self.limits
            .per_client
            .take(&mut bucket, now_ms)
            .map_err(Refusal::Client)?;
        self.limits
            .global
            .take(&mut books.global, now_ms)
            .map_err(Refusal::Global)?;
        books.clients.get_mut(&client).expect("inserted above").bucket = bucket;
        Ok(())
    }

    /// Counts one new (meeting, participant) id created by `client` at `now_ms` against its
    /// quota of the minute.
    pub fn admit_new_id(&self, client: IpAddr, now_ms: u64) -> Result<(), Refusal> {
        let mut books = self.books.lock().expect("admission lock");
        let entry = books.clients.entry(client).or_default();
        if entry.new_ids == 0 || now_ms >= entry.window_start_ms + ID_WINDOW_MS {
            entry.window_start_ms = now_ms;
            entry.new_ids = 0;
        }
        if entry.new_ids >= self.limits.new_ids_per_min {
            let wait_ms = entry.window_start_ms + ID_WINDOW_MS - now_ms;
            return Err(Refusal::NewIds(wait_ms.div_ceil(1000).max(1)));
        }
        entry.new_ids += 1;
        Ok(())
    }
}

/// The client's address: the TCP `peer`, or with `trust_proxy` the last address of
/// `X-Forwarded-For` (the one the trusted proxy appended; earlier ones are the client's word).
pub fn client_address(peer: Option<IpAddr>, forwarded_for: Option<&str>, trust_proxy: bool) -> IpAddr {
    let forwarded = trust_proxy
        .then_some(forwarded_for)
        .flatten()
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse::<IpAddr>().ok());
    forwarded
        .or(peer)
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            global: RateLimit {
                per_sec: 1.0,
                burst: 5.0,
            },
            per_client: RateLimit {
                per_sec: 1.0,
                burst: 2.0,
            },
            new_ids_per_min: 3,
            trust_proxy: false,
        }
    }

    #[test]
    fn clients_have_their_own_bucket_under_the_global_one() {
        let admission = Admission::new(limits());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        assert_eq!(admission.admit_request(a, 0), Ok(()));
        assert_eq!(admission.admit_request(a, 0), Ok(()));
        assert_eq!(admission.admit_request(a, 0), Err(Refusal::Client(1)));
        assert_eq!(admission.admit_request(b, 0), Ok(()));
        assert_eq!(admission.admit_request(b, 0), Ok(()));
        assert_eq!(admission.admit_request(c, 0), Ok(()));
        assert_eq!(admission.admit_request(c, 0), Err(Refusal::Global(1)));
    }

    #[test]
    fn new_ids_are_counted_per_minute() {
        let admission = Admission::new(limits());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(admission.admit_new_id(a, 1_000), Ok(()));
        }
        assert_eq!(admission.admit_new_id(a, 31_000), Err(Refusal::NewIds(30)));
        assert_eq!(admission.admit_new_id("10.0.0.2".parse().unwrap(), 31_000), Ok(()));
        assert_eq!(admission.admit_new_id(a, 61_000), Ok(()));
    }

    #[test]
    fn forwarded_for_counts_only_when_trusted() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let header = Some("1.2.3.4, 10.9.8.7");
        assert_eq!(client_address(Some(peer), header, false), peer);
        assert_eq!(
            client_address(Some(peer), header, true),
            "10.9.8.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(Some(peer), Some("junk"), true), peer);
    }
}
