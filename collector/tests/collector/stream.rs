//! The admin live stream `GET /api/v1/stream` over a real socket: alerts at once, metrics at most
//! once per participant per 2 s with the last state delivered, the token check, and the Redis
//! fan-out between two collector "processes".

use crate::support::{self, hold};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use vitals_collector::stream::RedisFanout;
use vitals_collector::{AppState, Secret, Settings};

const INGEST_KEY: &str = "ingest-key-for-tests";
const ADMIN_TOKEN: &str = "admin-token-for-tests";
const MEETING: &str = "https://meet.example.com/abc-defg";

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn start(state: AppState) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(vitals_collector::serve(listener, state));
    addr
}

async fn ticket(addr: SocketAddr) -> String {
    support::stream_ticket(addr, ADMIN_TOKEN).await
}

async fn connect(addr: SocketAddr) -> Socket {
    let url = format!("ws://{addr}/api/v1/stream?ticket={}", ticket(addr).await);
    let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("stream connects");
    socket
}

/// The status of a refused WebSocket handshake to `request`.
async fn refused(request: impl tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin) -> u16 {
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("expected a refusal, got {:?}", other.map(|(_, r)| r.status())),
    }
}

async fn ingest(addr: SocketAddr, participant: &str, seq: u64, metrics: Value) {
    let batch = json!({"meeting_id": MEETING, "participant_id": participant,
        "events": [{"seq": seq, "ts_ms": 1.0e12, "full": false, "metrics": metrics}]});
    let batch = crate::support::signed(ADMIN_TOKEN, batch);
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/ingest"))
        .bearer_auth(INGEST_KEY)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}

/// The next JSON message within `within`, or None.
async fn next(socket: &mut Socket, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("stream ended: {other:?}"),
            Err(_) => return None,
        }
    }
}

/// The next message of `kind` within `within` (others skipped).
async fn next_of(socket: &mut Socket, kind: &str, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = next(socket, left).await?;
        if message["type"] == kind {
            return Some(message);
        }
    }
}

/// Records every metrics message with its arrival time, from now until the stream has been quiet
/// for 3 s (read as they arrive, so the times are those of delivery).
fn collect_metrics(mut socket: Socket) -> tokio::task::JoinHandle<Vec<(Instant, Value)>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(message) = next_of(&mut socket, "metrics", Duration::from_secs(3)).await {
            seen.push((Instant::now(), message));
        }
        seen
    })
}

/// Consecutive deliveries are 2 s apart (less a little slack for the receiving side), there are
/// no more than the windows the updates spanned allow, and the last one arrives when the window
/// open at the last update ends, not later.
fn assert_spaced(seen: &[(Instant, Value)], started: Instant, done: Instant) {
    assert!(!seen.is_empty());
    for pair in seen.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(1_900),
            "two updates {gap:?} apart: {seen:?}"
        );
    }
    let windows = (done - started).as_millis() as usize / 2_000 + 2;
    assert!(
        seen.len() <= windows,
        "{} updates over {:?}: {seen:?}",
        seen.len(),
        done - started
    );
    let last = seen.last().unwrap().0;
    assert!(last - done < Duration::from_millis(2_500), "{seen:?}");
}

#[tokio::test]
async fn an_admin_gets_an_alert_within_a_second_of_the_ingest_that_raises_it() {
    let addr = start(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN)).await;
    let mut socket = connect(addr).await;
    let sent = Instant::now();
    ingest(addr, "alice", 1, json!({"rtt_ms": 450.0})).await;
    let alert = next_of(&mut socket, "alert", Duration::from_secs(1))
        .await
        .expect("an alert within 1 s");
    assert!(sent.elapsed() < Duration::from_secs(1));
    let record = &alert["alert"];
    assert_eq!(record["type"], "high-latency");
    assert_eq!(record["state"], "raised");
    assert_eq!(record["severity"], "warning");
    assert_eq!(record["meeting_id"], MEETING);
    assert_eq!(record["participant_id"], "alice");
}

#[tokio::test]
async fn metrics_are_pushed_at_most_once_per_participant_per_two_seconds_and_the_last_state_arrives() {
    let addr = start(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN)).await;
    let collector = collect_metrics(connect(addr).await);
    let started = Instant::now();
    for seq in 1..=10 {
        ingest(addr, "bob", seq, json!({"upload_kbps": seq as f64 * 100.0})).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = Instant::now();
    let seen = collector.await.unwrap();
    // 10 updates in about 1 s: the first at once, the last held until its window ends (2 messages).
    assert_spaced(&seen, started, done);
    let last = &seen.last().unwrap().1;
    assert_eq!(last["meeting_id"], MEETING);
    assert_eq!(last["participant_id"], "bob");
    assert_eq!(last["upload_kbps"], 1000.0);
    assert_eq!(last["last_seq"], 10);
    assert!(last["last_seen"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn each_participant_has_its_own_window() {
    let addr = start(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN)).await;
    let mut socket = connect(addr).await;
    ingest(addr, "p1", 1, json!({"rtt_ms": 10.0})).await;
    ingest(addr, "p2", 1, json!({"rtt_ms": 20.0})).await;
    let a = next_of(&mut socket, "metrics", Duration::from_secs(1)).await.unwrap();
    let b = next_of(&mut socket, "metrics", Duration::from_secs(1)).await.unwrap();
    let mut ids = [a["participant_id"].clone(), b["participant_id"].clone()];
    ids.sort_by_key(|v| v.to_string());
    assert_eq!(ids, [json!("p1"), json!("p2")]);
}

#[tokio::test]
async fn a_wrong_missing_or_query_token_is_refused_before_the_upgrade() {
    let addr = start(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN)).await;
    for url in [
        format!("ws://{addr}/api/v1/stream?ticket=wrong"),
        format!("ws://{addr}/api/v1/stream"),
        // The admin token never goes in a URL, where proxies log it: the old `?token=` is gone.
        format!("ws://{addr}/api/v1/stream?token={ADMIN_TOKEN}"),
        format!("ws://{addr}/api/v1/stream?ticket={ADMIN_TOKEN}"),
    ] {
        assert_eq!(refused(url.clone()).await, 401, "{url}");
    }
    // A ticket needs the admin token; the ingest key is not one.
    let status = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/stream-ticket"))
        .bearer_auth(INGEST_KEY)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    // A wrong bearer header is refused even with a right ticket.
    let mut request = format!("ws://{addr}/api/v1/stream?ticket={}", ticket(addr).await)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", "Bearer wrong".parse().unwrap());
    assert_eq!(refused(request).await, 401);
    // The right bearer header is accepted (programs can set it).
    let mut request = format!("ws://{addr}/api/v1/stream").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {ADMIN_TOKEN}").parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .expect("bearer accepted");
}

#[tokio::test]
async fn a_stream_ticket_opens_the_stream_once() {
    let addr = start(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN)).await;
    let ticket = ticket(addr).await;
    let url = format!("ws://{addr}/api/v1/stream?ticket={ticket}");
    let (_socket, _) = tokio_tungstenite::connect_async(url.clone()).await.expect("first use");
    assert_eq!(refused(url).await, 401, "a ticket used twice");
}

#[tokio::test]
async fn an_alert_resolves_on_the_stream_without_a_new_event() {
    let addr = start(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN).with_settings(hold(300))).await;
    let mut socket = connect(addr).await;
    ingest(addr, "dave", 1, json!({"rtt_ms": 450.0})).await;
    ingest(addr, "dave", 2, json!({"rtt_ms": 40.0})).await;
    let raised = next_of(&mut socket, "alert", Duration::from_secs(1)).await.unwrap();
    assert_eq!(raised["alert"]["state"], "raised");
    // No further event: the sweeper resolves it once the hold time has passed.
    let resolved = next_of(&mut socket, "alert", Duration::from_secs(3))
        .await
        .expect("resolved without a new event");
    assert_eq!(resolved["alert"]["state"], "resolved");
    assert_eq!(resolved["alert"]["type"], "high-latency");
    assert_eq!(resolved["alert"]["participant_id"], "dave");
    assert!(next_of(&mut socket, "alert", Duration::from_millis(800))
        .await
        .is_none());
}

/// Two collector processes on one Redis: one store each (same prefix) and one fan-out each.
async fn redis_process(redis: &support::TestRedis) -> (SocketAddr, AppState) {
    redis_process_with(redis, Settings::default()).await
}

async fn redis_process_with(redis: &support::TestRedis, settings: Settings) -> (SocketAddr, AppState) {
    let state = AppState::new(
        Arc::new(redis.store(60_000)),
        Secret::new(INGEST_KEY),
        Secret::new(ADMIN_TOKEN),
    )
    .with_settings(settings)
    .with_stream_fanout(RedisFanout::new(&redis.url, &redis.key_prefix).unwrap());
    tokio::time::timeout(Duration::from_secs(5), state.hub().ready())
        .await
        .expect("subscribed to Redis");
    (start(state.clone()).await, state)
}

#[tokio::test]
async fn with_redis_an_ingest_to_one_process_reaches_an_admin_of_another() {
    let redis = support::TestRedis::start().await;
    let (a, _state_a) = redis_process(&redis).await;
    let (b, _state_b) = redis_process(&redis).await;
    let mut at_b = connect(b).await;
    let mut at_a = connect(a).await;
    let sent = Instant::now();
    ingest(a, "carol", 1, json!({"loss_pct": 9.0})).await;
    let alert = next_of(&mut at_b, "alert", Duration::from_secs(1))
        .await
        .expect("the alert raised at A reaches B within 1 s");
    assert!(sent.elapsed() < Duration::from_secs(1));
    assert_eq!(alert["alert"]["type"], "packet-loss");
    assert_eq!(alert["alert"]["participant_id"], "carol");
    // And A's own admins get it too, once (from A's commit at once; its copy from Redis is dropped).
    let alert_a = next_of(&mut at_a, "alert", Duration::from_secs(1)).await.unwrap();
    assert_eq!(alert_a["alert"]["type"], "packet-loss");
    assert!(next_of(&mut at_a, "alert", Duration::from_millis(300)).await.is_none());

    // The 2 s limit holds across the processes: updates alternate between A and B. The alert's
    // batch already opened a window, so wait for it to close first.
    next_of(&mut at_b, "metrics", Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let collector = collect_metrics(at_b);
    let started = Instant::now();
    for seq in 2..=11 {
        let process = if seq % 2 == 0 { b } else { a };
        ingest(process, "carol", seq, json!({"upload_kbps": seq as f64})).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = Instant::now();
    let seen = collector.await.unwrap();
    assert_spaced(&seen, started, done);
    let last = &seen.last().expect("metrics reach B").1;
    assert_eq!(last["last_seq"], 11, "{seen:?}");
    assert_eq!(last["upload_kbps"], 11.0);
}

/// Both processes sweep; the alert that cleared is resolved by one of them, and every admin of
/// either process hears of it once.
#[tokio::test]
async fn with_redis_a_swept_resolution_reaches_every_admin_once() {
    let redis = support::TestRedis::start().await;
    let (a, _state_a) = redis_process_with(&redis, hold(300)).await;
    let (b, _state_b) = redis_process_with(&redis, hold(300)).await;
    let mut at_a = connect(a).await;
    let mut at_b = connect(b).await;
    ingest(a, "erin", 1, json!({"quality": "poor"})).await;
    ingest(b, "erin", 2, json!({"quality": "good"})).await;
    for socket in [&mut at_a, &mut at_b] {
        let raised = next_of(socket, "alert", Duration::from_secs(1)).await.unwrap();
        assert_eq!(raised["alert"]["state"], "raised");
        let resolved = next_of(socket, "alert", Duration::from_secs(3))
            .await
            .expect("resolved without a new event");
        assert_eq!(resolved["alert"]["state"], "resolved");
        assert_eq!(resolved["alert"]["type"], "poor-connection");
    }
    for socket in [&mut at_a, &mut at_b] {
        assert!(next_of(socket, "alert", Duration::from_millis(800)).await.is_none());
    }
}
