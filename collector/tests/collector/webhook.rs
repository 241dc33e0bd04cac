//! Webhook notifications against a tiny receiver on a random port: raised alerts of the chosen
//! severities are posted once with a Slack-compatible `text`, a failed delivery is retried, and
//! after 3 failed tries the notifier gives up; with two processes on one Redis an alert is
//! posted once.

use crate::support;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use vitals_collector::alerts::Severity;
use vitals_collector::stream::RedisFanout;
use vitals_collector::webhook::Webhook;
use vitals_collector::{AppState, Secret};

const INGEST_KEY: &str = "ingest-key-for-tests";
const ADMIN_TOKEN: &str = "admin-token-for-tests";

/// What the receiver saw: every request's body, and how many requests still fail with 500.
#[derive(Default)]
struct Receiver {
    requests: Vec<Value>,
    fail_next: usize,
}

type Shared = Arc<Mutex<Receiver>>;

async fn hook(State(shared): State<Shared>, Json(body): Json<Value>) -> StatusCode {
    let mut receiver = shared.lock().unwrap();
    receiver.requests.push(body);
    if receiver.fail_next > 0 {
        receiver.fail_next -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn receiver(fail_next: usize) -> (String, Shared) {
    let shared = Shared::new(Mutex::new(Receiver {
        requests: Vec::new(),
        fail_next,
    }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/hooks/abc", post(hook)).with_state(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hooks/abc"), shared)
}

async fn collector(url: &str, severities: Vec<Severity>) -> SocketAddr {
    collector_with(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN), url, severities).await
}

async fn collector_with(state: AppState, url: &str, severities: Vec<Severity>) -> SocketAddr {
    Webhook::new(url, severities)
        .unwrap()
        .with_retry_delay(Duration::from_millis(50))
        .spawn(state.hub());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(vitals_collector::serve(listener, state));
    addr
}

async fn ingest(addr: SocketAddr, seq: u64, metrics: Value) {
    let batch = json!({"meeting_id": "m-1", "participant_id": "p-1",
        "events": [{"seq": seq, "ts_ms": 1.0e12, "full": false, "metrics": metrics}]});
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/ingest"))
        .bearer_auth(INGEST_KEY)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Waits until the receiver holds `count` requests, then a little longer to catch extra ones.
async fn requests(shared: &Shared, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while shared.lock().unwrap().requests.len() < count && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    shared.lock().unwrap().requests.clone()
}

#[tokio::test]
async fn raised_alerts_of_the_chosen_severities_are_posted_and_retried() {
    let (url, shared) = receiver(1).await;
    let addr = collector(&url, vec![Severity::Critical, Severity::Warning]).await;
    // Warning: the first try fails (500), the second is delivered.
    ingest(addr, 1, json!({"rtt_ms": 500.0})).await;
    let seen = requests(&shared, 2).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], seen[1]);
    let text = seen[1]["text"].as_str().unwrap();
    assert!(
        text.contains("[WARNING] high-latency") && text.contains("p-1") && text.contains("m-1"),
        "{text}"
    );
    assert_eq!(seen[1]["alert"]["type"], "high-latency");
    assert_eq!(seen[1]["alert"]["state"], "raised");
    // Info (TURN) is not chosen; the still-high latency is not raised again.
    ingest(addr, 2, json!({"using_relay": true, "rtt_ms": 510.0})).await;
    // Critical is.
    ingest(addr, 3, json!({"quality": "poor"})).await;
    let seen = requests(&shared, 3).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[2]["alert"]["type"], "poor-connection");
    assert!(seen[2]["text"].as_str().unwrap().starts_with("[CRITICAL]"));
}

#[tokio::test]
async fn a_delivery_is_tried_three_times_then_dropped() {
    let (url, shared) = receiver(usize::MAX).await;
    let addr = collector(&url, vec![Severity::Warning]).await;
    ingest(addr, 1, json!({"loss_pct": 20.0})).await;
    let seen = requests(&shared, 3).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|body| body["alert"]["type"] == "packet-loss"));
    // Nothing more after the third try (the backoff would have allowed a 4th by now).
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(shared.lock().unwrap().requests.len(), 3);
}

#[tokio::test]
async fn with_redis_each_alert_is_posted_by_one_process_only() {
    let redis = support::TestRedis::start().await;
    let (url, shared) = receiver(0).await;
    let mut processes = Vec::new();
    for _ in 0..2 {
        let state = AppState::new(
            Arc::new(redis.store(60_000)),
            Secret::new(INGEST_KEY),
            Secret::new(ADMIN_TOKEN),
        )
        .with_stream_fanout(RedisFanout::new(&redis.url, &redis.key_prefix).unwrap());
        tokio::time::timeout(Duration::from_secs(5), state.hub().ready())
            .await
            .expect("subscribed to Redis");
        processes.push(collector_with(state, &url, vec![Severity::Warning]).await);
    }
    ingest(processes[0], 1, json!({"rtt_ms": 800.0})).await;
    ingest(processes[1], 2, json!({"loss_pct": 30.0})).await;
    let seen = requests(&shared, 2).await;
    let mut kinds: Vec<_> = seen.iter().map(|body| body["alert"]["type"].clone()).collect();
    kinds.sort_by_key(|kind| kind.to_string());
    assert_eq!(kinds, vec![json!("high-latency"), json!("packet-loss")], "{seen:?}");
}
