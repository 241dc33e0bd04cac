//! A real Redis for the browser tests that run the collector over the Redis store.
//!
//! Redis comes from `VITALS_TEST_REDIS_URL` when set (each test then uses its own key prefix);
//! otherwise each test starts its own `redis-server` on a free loopback port and stops it when
//! done, so the tests never skip silently. The collector's own tests have the same helper in
//! collector/tests/collector/support.rs (imports point from here to the collector, never back,
//! so the two cannot share it).

use crate::free_port;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use vitals_collector::store::{RedisOptions, RedisStore};

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
async fn wait_ready(url: &str, server: &mut Option<Child>) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
            if redis::cmd("PING").query_async::<String>(&mut connection).await.is_ok() {
                return Ok(());
            }
        }
        if let Some(child) = server {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server exited: {status}"));
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no Redis answered at {url}"));
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
        let mut last_error = String::new();
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
                Err(e) => last_error = e,
            }
        }
        panic!("could not start redis-server: {last_error}");
    }

    /// The Redis store over this server, under this test's key prefix, with live state kept for
    /// `live_ttl_ms`.
    pub fn store(&self, live_ttl_ms: u64) -> RedisStore {
        RedisStore::new(
            &self.url,
            RedisOptions {
                key_prefix: self.key_prefix.clone(),
                live_ttl_ms,
                ..RedisOptions::default()
            },
        )
        .expect("Redis store")
    }
}
