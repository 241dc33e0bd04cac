//! Test support (feature `testing`): a real Redis per test, and participant tokens for tests that post many batches, for this crate's tests and the e2e crate's.
//!
//! Redis comes from `VITALS_TEST_REDIS_URL` when set (each test then uses its own key prefix);
//! otherwise each test starts its own `redis-server` on a free loopback port and stops it when
//! done, so `cargo test` alone runs the Redis tests and they never skip silently.

use crate::store::{RedisOptions, RedisStore};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The participant token that a collector with `admin_token` and no participant secret of its
/// own issues for (`meeting_id`, `participant_id`): what a real client keeps from its first
/// acknowledgement. For tests that post many batches of one participant and are about something
/// else; the binding itself is tested with the tokens of real acknowledgements.
pub fn participant_token(admin_token: &str, meeting_id: &str, participant_id: &str) -> String {
    crate::participant::ParticipantTokens::derived_from(&crate::Secret::new(admin_token))
        .issue(meeting_id, participant_id)
}

/// `batch`, an ingest batch as JSON, carrying its participant's [`participant_token`] (a first
/// batch may carry it too: a new participant's token is not checked).
pub fn signed(admin_token: &str, mut batch: serde_json::Value) -> serde_json::Value {
    let id = |name: &str| batch[name].as_str().unwrap_or_default().to_owned();
    let token = participant_token(admin_token, &id("meeting_id"), &id("participant_id"));
    batch["participant_token"] = token.into();
    batch
}

/// Why a Redis did not become ready.
#[derive(Debug, thiserror::Error)]
enum NotReady {
    #[error("not a Redis URL: {0}")]
    Url(#[from] redis::RedisError),
    #[error("redis-server exited: {0}")]
    Exited(ExitStatus),
    #[error("no Redis answered at {0}")]
    NoAnswer(String),
}

/// A Redis for one test: either the external one, or a `redis-server` this test owns.
pub struct TestRedis {
    pub url: String,
    /// Unique per test, so tests sharing an external Redis do not see each other's keys.
    pub key_prefix: String,
    server: Option<Child>,
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn unique_prefix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "vitals-test:{}:{nanos}:{}:",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Waits until a Redis at `url` answers PING.
async fn wait_ready(url: &str, server: &mut Option<Child>) -> Result<(), NotReady> {
    let client = redis::Client::open(url)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
            if redis::cmd("PING").query_async::<String>(&mut connection).await.is_ok() {
                return Ok(());
            }
        }
        if let Some(child) = server {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(NotReady::Exited(status));
            }
        }
        if Instant::now() > deadline {
            return Err(NotReady::NoAnswer(url.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestRedis {
    pub async fn start() -> Self {
        if let Ok(url) = std::env::var("VITALS_TEST_REDIS_URL") {
            let mut none = None;
            wait_ready(&url, &mut none)
                .await
                .unwrap_or_else(|e| panic!("VITALS_TEST_REDIS_URL is set but unusable: {e}"));
            return Self {
                url,
                key_prefix: unique_prefix(),
                server: None,
            };
        }
        // The free port can be taken between probing and binding; try a few.
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start redis-server ({e}); install it (apt-get install redis-server) or set VITALS_TEST_REDIS_URL")
                });
            let mut redis = Self {
                url: format!("redis://127.0.0.1:{port}/"),
                key_prefix: unique_prefix(),
                server: Some(child),
            };
            match wait_ready(&redis.url.clone(), &mut redis.server).await {
                Ok(()) => return redis,
                Err(e) => last_error = Some(e),
            }
        }
        panic!("could not start redis-server: {}", last_error.expect("tried"));
    }

    pub fn store(&self, live_ttl_ms: u64) -> RedisStore {
        self.store_with_retention(live_ttl_ms, RedisOptions::default().retention_ms)
    }

    /// A store that keeps history, alerts and TURN usage for `retention_ms`.
    pub fn store_with_retention(&self, live_ttl_ms: u64, retention_ms: u64) -> RedisStore {
        RedisStore::new(
            &self.url,
            RedisOptions {
                key_prefix: self.key_prefix.clone(),
                live_ttl_ms,
                retention_ms,
                ..RedisOptions::default()
            },
        )
        .expect("Redis store")
    }

    /// Stops the server this test owns (to test an unreachable store).
    pub fn stop(&mut self) {
        let server = self.server.as_mut().expect("only an owned redis-server can be stopped");
        let _ = server.kill();
        let _ = server.wait();
    }

    pub fn owns_server(&self) -> bool {
        self.server.is_some()
    }
}
