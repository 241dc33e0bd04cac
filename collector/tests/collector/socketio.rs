//! Socket.IO compatibility over a real socket, with a minimal Engine.IO v4 / Socket.IO v5 client
//! (WebSocket transport) written here: metrics emitted by a client reach the store and the admin
//! API, admins subscribed to the admin room get `meeting:alerts` and `meeting:metrics:update`,
//! bad data is answered with an error and the socket keeps working, and the key is required;
//! with two collector processes on one Redis, an admin at one hears a client of the other.

use crate::support;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use vitals_collector::stream::RedisFanout;
use vitals_collector::{AppState, Secret};

const INGEST_KEY: &str = "ingest-key-for-tests";
const ADMIN_TOKEN: &str = "admin-token-for-tests";
const NS: &str = "/meeting-metrics";
const WAIT: Duration = Duration::from_secs(5);

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn start() -> SocketAddr {
    start_with(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN)).await
}

async fn start_with(state: AppState) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(vitals_collector::serve(listener, state));
    addr
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A Socket.IO packet of our namespace: type digit, ack id, JSON data.
fn parse(text: &str) -> Option<(u8, Option<u64>, Value)> {
    let kind = text.as_bytes().get(1).copied()?;
    if !text.starts_with('4') {
        return None;
    }
    let rest = text[2..].strip_prefix(NS)?.strip_prefix(',').unwrap_or("");
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack = rest[..digits].parse().ok();
    let data = if rest[digits..].is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&rest[digits..]).ok()?
    };
    Some((kind - b'0', ack, data))
}

pub(crate) struct Client {
    ws: Ws,
    next_ack: u64,
    /// Events received while waiting for something else.
    events: VecDeque<(String, Value)>,
}

impl Client {
    /// Opens the Engine.IO session and connects to the namespace with `auth`; the `connect_error`
    /// data if refused.
    pub(crate) async fn connect(addr: SocketAddr, auth: Value) -> Result<Client, Value> {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("engine.io connects");
        let mut client = Client {
            ws,
            next_ack: 0,
            events: VecDeque::new(),
        };
        let open = client.recv_text().await.expect("engine.io open packet");
        assert!(open.starts_with('0'), "{open}");
        client.send(format!("40{NS},{auth}")).await;
        loop {
            let text = client.recv_text().await.expect("connect answer");
            match parse(&text) {
                Some((0, _, _)) => return Ok(client),
                Some((4, _, error)) => return Err(error),
                _ => continue,
            }
        }
    }

    async fn send(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next Engine.IO message packet's text (pings answered), None after `WAIT`.
    async fn recv_text(&mut self) -> Option<String> {
        self.recv_text_within(WAIT).await
    }

    async fn recv_text_within(&mut self, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()??.ok()?;
            let Message::Text(text) = message else { continue };
            match text.as_str() {
                "2" => self.send("3".into()).await,
                text => return Some(text.to_owned()),
            }
        }
    }

    async fn emit(&mut self, event: &str, data: Value) {
        self.send(format!("42{NS},{}", json!([event, data]))).await;
    }

    /// Emits with an ack id and returns the server's ack data (its first argument).
    pub(crate) async fn emit_ack(&mut self, event: &str, data: Value) -> Value {
        self.next_ack += 1;
        let id = self.next_ack;
        self.send(format!("42{NS},{id}{}", json!([event, data]))).await;
        loop {
            let text = self.recv_text().await.unwrap_or_else(|| panic!("no ack for {event}"));
            match parse(&text) {
                Some((3, Some(ack), data)) if ack == id => return data[0].clone(),
                Some((2, _, data)) => self
                    .events
                    .push_back((data[0].as_str().unwrap().to_owned(), data[1].clone())),
                _ => {}
            }
        }
    }

    /// The next event named `name` within `within` (others kept aside), or None.
    async fn next_event(&mut self, name: &str, within: Duration) -> Option<Value> {
        if let Some(index) = self.events.iter().position(|(n, _)| n == name) {
            return self.events.remove(index).map(|(_, data)| data);
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let text = self.recv_text_within(left).await?;
            if let Some((2, _, data)) = parse(&text) {
                let event = data[0].as_str().unwrap().to_owned();
                if event == name {
                    return Some(data[1].clone());
                }
                self.events.push_back((event, data[1].clone()));
            }
        }
    }
}

async fn meetings(addr: SocketAddr) -> Value {
    reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/meetings"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn emitted_metrics_are_merged_into_the_meetings_api_and_bad_data_is_answered() {
    let addr = start().await;
    let mut alice = Client::connect(addr, json!({"token": INGEST_KEY, "userId": "alice"}))
        .await
        .expect("connects with the ingest key");
    let t = now_ms();
    let first = json!({"meetingId": "m-1", "timestamp": t,
        "metrics": {"latency": 120, "uploadBitrate": 900, "quality": "good", "usingRelay": false}});
    let ack = alice.emit_ack("meeting:metrics", first.clone()).await;
    assert_eq!((&ack["ok"], &ack["applied"]), (&json!(true), &json!(true)), "{ack}");
    let token = ack["participantToken"]
        .as_str()
        .expect("the ack carries the token")
        .to_owned();
    // A re-sent emit (same timestamp) is not counted twice; the socket needs no token back.
    let ack = alice.emit_ack("meeting:metrics", first).await;
    assert_eq!(ack, json!({"ok": true, "applied": false, "participantToken": token}));
    // Wrong types and ranges: an error event and a negative ack, and the socket keeps working.
    for (bad, field) in [
        (
            json!({"meetingId": "m-1", "metrics": {"latency": "slow"}}),
            "metrics.latency",
        ),
        (
            json!({"meetingId": "m-1", "metrics": {"packetLoss": 250}}),
            "metrics.packetLoss",
        ),
        (
            json!({"meetingId": "m-1", "metrics": {"quality": "superb"}}),
            "metrics.quality",
        ),
        (json!({"metrics": {}}), "meetingId"),
        (json!(42), "object"),
    ] {
        let ack = alice.emit_ack("meeting:metrics", bad).await;
        assert_eq!(ack["ok"], false);
        assert!(ack["error"].as_str().unwrap().contains(field), "{ack}");
        let error = alice.next_event("error", WAIT).await.expect("an error event");
        assert_eq!(error["event"], "meeting:metrics");
        assert!(error["message"].as_str().unwrap().contains(field), "{error}");
    }
    // Only the changed field: the others are kept by the merge. Without an ack this time.
    alice
        .emit(
            "meeting:metrics",
            json!({"meetingId": "m-1", "timestamp": t + 1, "metrics": {"packetLoss": 2.5}}),
        )
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body = meetings(addr).await;
        let participant = body["meetings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["meeting_id"] == "m-1")
            .and_then(|m| m["participants"].as_array().unwrap().first().cloned());
        if let Some(p) = participant.filter(|p| p["loss_pct"] == 2.5) {
            assert_eq!(p["participant_id"], "alice");
            assert_eq!(p["rtt_ms"], 120.0);
            assert_eq!(p["upload_kbps"], 900.0);
            assert_eq!(p["quality"], "good");
            assert_eq!(p["using_relay"], false);
            assert_eq!(p["last_seq"], t + 1);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "metrics never merged: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_timestamp_far_from_the_collectors_clock_is_refused_and_freezes_nobody() {
    let addr = start().await;
    let mut henry = Client::connect(addr, json!({"token": INGEST_KEY, "userId": "henry"}))
        .await
        .unwrap();
    let t = now_ms();
    let ack = henry
        .emit_ack(
            "meeting:metrics",
            json!({"meetingId": "m-6", "timestamp": t, "metrics": {"latency": 40}}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    // A day ahead (and the largest seq there is): every later real emit would be older.
    for far in [t + 86_400_000, vitals_collector::store::MAX_SEQ, t - 8 * 86_400_000] {
        let ack = henry
            .emit_ack(
                "meeting:metrics",
                json!({"meetingId": "m-6", "timestamp": far, "metrics": {"latency": 999}}),
            )
            .await;
        assert_eq!(ack["ok"], false, "{far}: {ack}");
        assert!(ack["error"].as_str().unwrap().contains("timestamp"), "{ack}");
        let error = henry.next_event("error", WAIT).await.expect("an error event");
        assert!(error["message"].as_str().unwrap().contains("timestamp"), "{error}");
    }
    let ack = henry
        .emit_ack(
            "meeting:metrics",
            json!({"meetingId": "m-6", "timestamp": t + 1, "metrics": {"latency": 50}}),
        )
        .await;
    assert_eq!((&ack["ok"], &ack["applied"]), (&json!(true), &json!(true)), "{ack}");
    let body = meetings(addr).await;
    let henry = &body["meetings"][0]["participants"][0];
    assert_eq!(
        (henry["last_seq"].as_u64(), henry["rtt_ms"].as_f64()),
        (Some(t + 1), Some(50.0))
    );
}

#[tokio::test]
async fn a_second_socket_for_an_existing_user_needs_its_participant_token() {
    let addr = start().await;
    let emit = |t: u64, latency: u64| json!({"meetingId": "m-5", "timestamp": t, "metrics": {"latency": latency}});
    let t = now_ms();
    let mut first = Client::connect(addr, json!({"token": INGEST_KEY, "userId": "ivy"}))
        .await
        .unwrap();
    let ack = first.emit_ack("meeting:metrics", emit(t, 40)).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let token = ack["participantToken"].as_str().unwrap().to_owned();
    // The same token as the ingest API's for (m-5, ivy).
    assert_eq!(token, support::participant_token(ADMIN_TOKEN, "m-5", "ivy"));

    // Another socket naming the meeting: refused at connect without the token, or with another.
    let auth = json!({"token": INGEST_KEY, "userId": "ivy", "meetingId": "m-5"});
    let refused = Client::connect(addr, auth.clone()).await.err().expect("refused");
    assert_eq!(refused["message"], "participant token required");
    let mut wrong = auth.clone();
    wrong["participantToken"] = support::participant_token(ADMIN_TOKEN, "m-5", "mallory").into();
    let refused = Client::connect(addr, wrong).await.err().expect("refused");
    assert_eq!(refused["message"], "wrong participant token");
    // With it, the socket connects and writes.
    let mut with_token = auth.clone();
    with_token["participantToken"] = token.as_str().into();
    let mut second = Client::connect(addr, with_token)
        .await
        .expect("connects with the token");
    let ack = second.emit_ack("meeting:metrics", emit(t + 1, 50)).await;
    assert_eq!((&ack["ok"], &ack["applied"]), (&json!(true), &json!(true)), "{ack}");

    // A socket that does not name the meeting connects, but its emits need the token.
    let mut third = Client::connect(addr, json!({"token": INGEST_KEY, "userId": "ivy"}))
        .await
        .unwrap();
    let ack = third.emit_ack("meeting:metrics", emit(t + 2, 999)).await;
    assert_eq!(ack["ok"], false, "{ack}");
    assert!(
        ack["error"].as_str().unwrap().starts_with("missing participant token"),
        "{ack}"
    );
    let error = third.next_event("error", WAIT).await.expect("an error event");
    assert!(
        error["message"].as_str().unwrap().contains("participant token"),
        "{error}"
    );
    let mut signed = emit(t + 3, 60);
    signed["participantToken"] = token.as_str().into();
    let ack = third.emit_ack("meeting:metrics", signed).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let body = meetings(addr).await;
    let ivy = &body["meetings"][0]["participants"][0];
    assert_eq!(
        (ivy["last_seq"].as_u64(), ivy["rtt_ms"].as_f64()),
        (Some(t + 3), Some(60.0))
    );
    // The first socket writes on with the token its ack gave it; a new user needs none.
    assert_eq!(first.emit_ack("meeting:metrics", emit(t + 4, 70)).await["ok"], true);
    let mut newcomer = Client::connect(addr, json!({"token": INGEST_KEY, "userId": "jay", "meetingId": "m-5"}))
        .await
        .expect("a new user connects without a token");
    assert_eq!(newcomer.emit_ack("meeting:metrics", emit(t, 10)).await["ok"], true);
}

#[tokio::test]
async fn admins_in_the_admin_room_receive_alerts_and_metrics_updates() {
    let addr = start().await;
    // Admin token in the subscribe payload.
    let mut admin = Client::connect(addr, json!({"token": INGEST_KEY})).await.unwrap();
    assert_eq!(
        admin.emit_ack("admin:subscribe", json!({"token": ADMIN_TOKEN})).await,
        json!({"ok": true})
    );
    // Admin token in the connection auth.
    let mut admin2 = Client::connect(addr, json!({"token": ADMIN_TOKEN, "adminToken": ADMIN_TOKEN}))
        .await
        .unwrap();
    assert_eq!(
        admin2.emit_ack("admin:subscribe", json!(null)).await,
        json!({"ok": true})
    );
    // Not an admin: refused, and it hears nothing.
    let mut nosy = Client::connect(addr, json!({"token": INGEST_KEY})).await.unwrap();
    let refused = nosy.emit_ack("admin:subscribe", json!({"token": "guess"})).await;
    assert_eq!(refused["ok"], false);

    let mut bob = Client::connect(addr, json!({"token": INGEST_KEY, "userId": "bob"}))
        .await
        .unwrap();
    let t = now_ms();
    let ack = bob
        .emit_ack(
            "meeting:metrics",
            json!({"meetingId": "m-2", "timestamp": t, "metrics": {"latency": 500}}),
        )
        .await;
    assert_eq!(ack["ok"], true);

    for client in [&mut admin, &mut admin2] {
        let alerts = client.next_event("meeting:alerts", WAIT).await.expect("meeting:alerts");
        assert_eq!(alerts["meetingId"], "m-2");
        assert_eq!(alerts["userId"], "bob");
        assert!(alerts["timestamp"].as_u64().unwrap() >= t);
        let alert = &alerts["alerts"][0];
        assert_eq!(alert["type"], "high-latency");
        assert_eq!(alert["severity"], "warning");
        assert!(alert["message"].as_str().unwrap().contains("500"), "{alert}");
        let update = client
            .next_event("meeting:metrics:update", WAIT)
            .await
            .expect("meeting:metrics:update");
        assert_eq!(update["meetingId"], "m-2");
        assert_eq!(update["userId"], "bob");
        assert_eq!(update["metrics"], json!({"latency": 500.0}));
    }
    assert!(nosy
        .next_event("meeting:alerts", Duration::from_millis(300))
        .await
        .is_none());

    // After unsubscribing, nothing more arrives; the other admin still hears the next alert.
    assert_eq!(
        admin.emit_ack("admin:unsubscribe", json!(null)).await,
        json!({"ok": true})
    );
    bob.emit(
        "meeting:metrics",
        json!({"meetingId": "m-2", "timestamp": t + 1, "metrics": {"usingRelay": true, "uploadBitrate": 1000}}),
    )
    .await;
    let alerts = admin2
        .next_event("meeting:alerts", WAIT)
        .await
        .expect("using-turn alert");
    assert_eq!(alerts["alerts"][0]["type"], "using-turn");
    assert_eq!(alerts["alerts"][0]["severity"], "info");
    assert!(alerts["alerts"][0]["cost"].as_f64().unwrap() > 0.0, "{alerts}");
    assert!(admin
        .next_event("meeting:alerts", Duration::from_millis(300))
        .await
        .is_none());
}

#[tokio::test]
async fn the_polling_transport_is_open_to_pages_of_other_origins() {
    let addr = start().await;
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/socket.io/?EIO=4&transport=polling"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let body = response.text().await.unwrap();
    assert!(body.starts_with("0{") && body.contains("\"sid\""), "{body}");
    // The rest of the API keeps its own policy.
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/meetings"))
        .header("origin", "https://app.example.com")
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_client_without_the_key_is_refused() {
    let addr = start().await;
    for auth in [
        json!(null),
        json!({"userId": "mallory"}),
        json!({"token": "wrong", "userId": "mallory"}),
        json!({"token": INGEST_KEY, "userId": ""}),
    ] {
        let refused = Client::connect(addr, auth.clone())
            .await
            .err()
            .unwrap_or_else(|| panic!("{auth} connected"));
        assert_eq!(refused["message"], "unauthorized", "{auth}");
    }
    // The socket id is the user when there is no userId.
    let mut anonymous = Client::connect(addr, json!({"token": INGEST_KEY})).await.unwrap();
    let ack = anonymous
        .emit_ack(
            "meeting:metrics",
            json!({"meetingId": "m-3", "metrics": {"latency": 10}}),
        )
        .await;
    assert_eq!(ack["ok"], true);
    let body = meetings(addr).await;
    let id = &body["meetings"][0]["participants"][0]["participant_id"];
    assert!(id.as_str().is_some_and(|id| !id.is_empty()), "{body}");
}

#[tokio::test]
async fn with_redis_an_admin_of_one_process_hears_a_client_of_another() {
    let redis = support::TestRedis::start().await;
    let mut processes = Vec::new();
    for _ in 0..2 {
        let state = AppState::new(
            Arc::new(redis.store(60_000)),
            Secret::new(INGEST_KEY),
            Secret::new(ADMIN_TOKEN),
        )
        .with_stream_fanout(RedisFanout::new(&redis.url, &redis.key_prefix).unwrap());
        tokio::time::timeout(WAIT, state.hub().ready())
            .await
            .expect("subscribed to Redis");
        processes.push(start_with(state).await);
    }
    let (a, b) = (processes[0], processes[1]);
    let mut admin_b = Client::connect(b, json!({"token": ADMIN_TOKEN, "adminToken": ADMIN_TOKEN}))
        .await
        .unwrap();
    assert_eq!(
        admin_b.emit_ack("admin:subscribe", json!(null)).await,
        json!({"ok": true})
    );
    let mut dave = Client::connect(a, json!({"token": INGEST_KEY, "userId": "dave"}))
        .await
        .unwrap();
    let t = now_ms();
    let ack = dave
        .emit_ack(
            "meeting:metrics",
            json!({"meetingId": "m-4", "timestamp": t, "metrics": {"packetLoss": 12}}),
        )
        .await;
    assert_eq!(ack["ok"], true);
    let alerts = admin_b
        .next_event("meeting:alerts", WAIT)
        .await
        .expect("alert from A at B");
    assert_eq!(alerts["userId"], "dave");
    assert_eq!(alerts["alerts"][0]["type"], "packet-loss");
    let update = admin_b
        .next_event("meeting:metrics:update", WAIT)
        .await
        .expect("update at B");
    assert_eq!(update["metrics"]["packetLoss"], 12.0);
    // Once, not once per process.
    assert!(admin_b
        .next_event("meeting:alerts", Duration::from_millis(300))
        .await
        .is_none());
}
