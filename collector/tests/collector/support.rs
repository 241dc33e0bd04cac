//! Support for the collector's tests: a real Redis for the store tests, batch builders, and requests through the router.
//!
//! Redis comes from `VITALS_TEST_REDIS_URL` when set (each test then uses its own key prefix);
//! otherwise each test starts its own `redis-server` on a free loopback port and stops it when
//! done, so `cargo test` alone runs the Redis tests and they never skip silently.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use vitals_collector::store::{RedisOptions, RedisStore};
use vitals_shared::wire::Event;
use vitals_shared::wire::{IngestBatch, MetricsFields};

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
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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

pub fn event(seq: u64, full: bool, metrics: MetricsFields) -> Event {
    Event {
        seq,
        ts_ms: 1_700_000_000_000.0 + seq as f64 * 1000.0,
        full,
        metrics,
    }
}

pub fn batch(meeting_id: &str, participant_id: &str, events: Vec<Event>) -> IngestBatch {
    IngestBatch {
        meeting_id: meeting_id.into(),
        participant_id: participant_id.into(),
        label: None,
        events,
    }
}

/// Collector settings whose alerts resolve once clear for `clear_after_ms`.
pub fn hold(clear_after_ms: u64) -> vitals_collector::Settings {
    vitals_collector::Settings {
        alerts: vitals_collector::alerts::AlertThresholds {
            clear_after_ms,
            ..Default::default()
        },
        ..Default::default()
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// An HTTP answer: the body as text, and as JSON (a JSON string of the text when it is not JSON).
pub struct Answer {
    pub status: axum::http::StatusCode,
    pub headers: axum::http::HeaderMap,
    pub text: String,
    pub body: serde_json::Value,
}

/// Sends `request` through the router (no socket) and reads the whole answer.
pub async fn send(app: &vitals_collector::App, request: axum::http::Request<axum::body::Body>) -> Answer {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| serde_json::Value::String(text.clone()));
    Answer {
        status,
        headers,
        text,
        body,
    }
}
