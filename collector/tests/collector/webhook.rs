//! Webhook notifications against a tiny receiver on a random port: raised alerts of the chosen
//! severities are posted once with a Slack-compatible `text`, a failed delivery is retried, and
//! after 3 failed tries the notifier gives up; with two processes on one Redis an alert is
//! posted once; hostile ids never become Slack markup; a flood stays within the budget, with one
//! summary, and a webhook that never answers costs neither `/healthz` nor file descriptors.

use crate::support;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use vitals_collector::alerts::Severity;
use vitals_collector::stream::RedisFanout;
use vitals_collector::webhook::{Budget, Webhook};
use vitals_collector::{AppState, Secret};

const INGEST_KEY: &str = "ingest-key-for-tests";
const ADMIN_TOKEN: &str = "admin-token-for-tests";

/// What the receiver saw: every request's body, and how many requests still fail with 500.
#[derive(Default)]
struct Receiver {
    requests: Vec<Value>,
    /// Every request's body as it came, to check for markup.
    raw: Vec<String>,
    fail_next: usize,
}

type Shared = Arc<Mutex<Receiver>>;

async fn hook(State(shared): State<Shared>, raw: String) -> StatusCode {
    let mut receiver = shared.lock().unwrap();
    receiver.requests.push(serde_json::from_str(&raw).expect("a JSON body"));
    receiver.raw.push(raw);
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
        raw: Vec::new(),
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
    let response = post_ingest(&reqwest::Client::new(), addr, "m-1", "p-1", seq, metrics).await;
    assert_eq!(response.status(), 200);
}

async fn post_ingest(
    client: &reqwest::Client,
    addr: SocketAddr,
    meeting: &str,
    participant: &str,
    seq: u64,
    metrics: Value,
) -> reqwest::Response {
    let batch = json!({"meeting_id": meeting, "participant_id": participant,
        "events": [{"seq": seq, "ts_ms": 1.0e12, "full": false, "metrics": metrics}]});
    let batch = crate::support::signed(ADMIN_TOKEN, batch);
    client
        .post(format!("http://{addr}/api/v1/ingest"))
        .bearer_auth(INGEST_KEY)
        .json(&batch)
        .send()
        .await
        .unwrap()
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

#[tokio::test]
async fn hostile_ids_are_escaped_or_refused_and_never_become_slack_markup() {
    let (url, shared) = receiver(0).await;
    let addr = collector(&url, vec![Severity::Warning]).await;
    let client = reqwest::Client::new();
    let (meeting, participant) = (
        "https://m.example/<http://evil.example|Reset your password>",
        "<!channel>",
    );
    let response = post_ingest(&client, addr, meeting, participant, 1, json!({"rtt_ms": 900.0})).await;
    assert_eq!(response.status(), 200);
    let seen = requests(&shared, 1).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    let raw = shared.lock().unwrap().raw[0].clone();
    assert!(!raw.contains("<!") && !raw.contains("<http"), "{raw}");
    let text = seen[0]["text"].as_str().unwrap();
    assert!(
        text.contains("participant &lt;!channel&gt; in meeting https://m.example/&lt;http://evil.example|"),
        "{text}"
    );
    assert_eq!(seen[0]["alert"]["participant_id"], participant);
    // Line breaks (a fake second message) and bidirectional overrides are refused at ingest,
    // naming the field.
    for (meeting, participant, field) in [
        ("m-1\n[CRITICAL] all calls down", "p-2", "meeting_id"),
        ("m-1", "p-\u{202E}gnp.exe", "participant_id"),
    ] {
        let response = post_ingest(&client, addr, meeting, participant, 1, json!({"rtt_ms": 900.0})).await;
        assert_eq!(response.status(), 400);
        let error = response.text().await.unwrap();
        assert!(error.contains(field) && error.contains("printable"), "{error}");
    }
}

#[tokio::test]
async fn alerts_over_the_budget_are_posted_as_one_summary() {
    let (url, shared) = receiver(0).await;
    let state = AppState::for_tests(INGEST_KEY, ADMIN_TOKEN);
    let window = Duration::from_millis(1500);
    Webhook::new(&url, vec![Severity::Warning])
        .unwrap()
        .with_budget(Budget { alerts: 3, window })
        .spawn(state.hub());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(vitals_collector::serve(listener, state));
    let client = reqwest::Client::new();
    for i in 0..10 {
        let response = post_ingest(&client, addr, "m-1", &format!("p-{i}"), 1, json!({"rtt_ms": 900.0})).await;
        assert_eq!(response.status(), 200);
    }
    let seen = requests(&shared, 4).await;
    let (alerts, summaries): (Vec<_>, Vec<_>) = seen.iter().partition(|body| body.get("alert").is_some());
    assert_eq!(alerts.len(), 3, "{seen:?}");
    assert_eq!(summaries.len(), 1, "{seen:?}");
    let text = summaries[0]["text"].as_str().unwrap();
    assert!(text.starts_with("[SUMMARY] 7 more alerts were not posted"), "{text}");
    assert_eq!(summaries[0]["held_back"], 7);
    // The next window has its budget again, and nothing more to sum up.
    tokio::time::sleep(window).await;
    let response = post_ingest(&client, addr, "m-1", "p-late", 1, json!({"rtt_ms": 900.0})).await;
    assert_eq!(response.status(), 200);
    let seen = requests(&shared, 5).await;
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen[4]["alert"]["participant_id"], "p-late");
}

/// A webhook server that accepts TCP connections and never reads or answers; counts them.
async fn hanging_server() -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            *count.lock().unwrap() += 1;
            held.push(stream);
        }
    });
    (format!("http://{addr}/hooks/abc"), accepted)
}

/// Sockets of this machine connected to `port` on loopback (each one a file descriptor of the
/// client that opened it), from /proc/net/tcp: exact even while other tests run in this process.
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| line.split_whitespace().nth(2) == Some(remote.as_str()))
        .count()
}

/// What a flood of new participants cost the collector.
#[derive(Debug)]
struct Flood {
    ingest: Duration,
    healthz_median: Duration,
    healthz_max: Duration,
    /// Connections open to the webhook right after the flood (file descriptors they hold).
    webhook_connections: usize,
}

/// 500 new participants, 16 at a time, each with one event that raises three alerts (latency
/// and loss warnings, poor quality critical), while `/healthz` is asked every 50 ms.
async fn flood(webhook: Option<&str>) -> Flood {
    const PARTICIPANTS: usize = 500;
    let state = AppState::for_tests(INGEST_KEY, ADMIN_TOKEN).with_settings(support::unlimited_clients());
    if let Some(url) = webhook {
        Webhook::new(url, vec![Severity::Critical, Severity::Warning])
            .unwrap()
            .spawn(state.hub());
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(vitals_collector::serve(listener, state));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = tokio::spawn({
        let done = done.clone();
        async move {
            let client = reqwest::Client::new();
            let mut times = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let started = std::time::Instant::now();
                let answer = client.get(format!("http://{addr}/healthz")).send().await.unwrap();
                assert_eq!(answer.status(), 200);
                times.push(started.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            times
        }
    });
    let started = std::time::Instant::now();
    let client = reqwest::Client::new();
    let mut senders = Vec::new();
    for sender in 0..16 {
        let client = client.clone();
        senders.push(tokio::spawn(async move {
            for i in (sender..PARTICIPANTS).step_by(16) {
                let metrics = json!({"rtt_ms": 900.0, "loss_pct": 20.0, "quality": "poor"});
                let response = post_ingest(&client, addr, "m-flood", &format!("p-{i}"), 1, metrics).await;
                assert_eq!(response.status(), 200);
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let ingest = started.elapsed();
    // The deliveries still under way hold what they hold now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let webhook_connections = webhook.map_or(0, |url| {
        let port = url.split(':').nth(2).and_then(|rest| rest.split('/').next()).unwrap();
        connections_to(port.parse().unwrap())
    });
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut times = probe.await.unwrap();
    times.sort();
    let flood = Flood {
        ingest,
        healthz_median: times[times.len() / 2],
        healthz_max: *times.last().unwrap(),
        webhook_connections,
    };
    eprintln!(
        "webhook flood ({}): {flood:?}",
        webhook.map_or("no webhook", |_| "webhook")
    );
    flood
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_alerts_against_a_webhook_that_never_answers_leave_healthz_quick_and_descriptors_bounded() {
    let (url, accepted) = hanging_server().await;
    let flood = flood(Some(&url)).await;
    let connections = *accepted.lock().unwrap();
    assert!(connections <= 8, "{connections} connections to the webhook");
    assert!(flood.webhook_connections <= 8, "{flood:?}");
    assert!(flood.healthz_median < Duration::from_millis(100), "{flood:?}");
    assert!(flood.healthz_max < Duration::from_millis(500), "{flood:?}");
    assert!(flood.ingest < Duration::from_secs(20), "{flood:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_posts_the_budget_and_ingests_about_as_fast_as_without_a_webhook() {
    let without = flood(None).await;
    let (url, shared) = receiver(0).await;
    let with = flood(Some(&url)).await;
    // 1,500 alerts raised within the first minute: the budget's 30 are posted, the rest wait
    // for the minute's summary.
    let seen = requests(&shared, vitals_collector::webhook::BUDGET_PER_MINUTE as usize).await;
    assert_eq!(seen.len(), vitals_collector::webhook::BUDGET_PER_MINUTE as usize);
    assert!(seen.iter().all(|body| body.get("alert").is_some()));
    assert!(
        with.ingest < without.ingest * 3 + Duration::from_secs(2),
        "with {with:?}, without {without:?}"
    );
    assert!(with.healthz_max < Duration::from_millis(500), "{with:?}");
}
