//! The live caps, paged meetings, the bounded export, the header read timeout and Socket.IO under flood, over both stores.

use crate::flood::{serve, Counting};
use crate::socketio::Client;
use crate::support::{batch, event, now_ms, send, unlimited_clients, Answer, TestRedis};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vitals_collector::admission::LiveCaps;
use vitals_collector::ratelimit::RateLimit;
use vitals_collector::store::{self as store, MemoryStore, Store};
use vitals_collector::{AppState, IngestError, Secret, ServerLimits, Settings};
use vitals_shared::wire::MetricsFields;

const INGEST_KEY: &str = "caps-ingest-key-0123";
const ADMIN_TOKEN: &str = "caps-admin-token-0123";

fn body(meeting: &str, participant: &str, seq: u64) -> String {
    crate::support::rtt_batch(ADMIN_TOKEN, meeting, participant, seq)
}

/// An ingest request from `client` (taken from `X-Forwarded-For`: the settings trust it).
fn ingest_from(client: &str, body: String) -> Request<Body> {
    Request::post("/api/v1/ingest")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {INGEST_KEY}"))
        .header("x-forwarded-for", client)
        .body(Body::from(body))
        .unwrap()
}

fn admin_get(path: &str) -> Request<Body> {
    Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .unwrap()
}

fn state_over(store: Arc<dyn Store>, settings: Settings) -> AppState {
    AppState::new(store, Secret::new(INGEST_KEY), Secret::new(ADMIN_TOKEN)).with_settings(settings)
}

/// Client limits out of the way, the client taken from `X-Forwarded-For`, and these caps.
fn capped(meetings: usize, participants: usize) -> Settings {
    let mut settings = unlimited_clients();
    settings.admission.trust_proxy = true;
    settings.live_caps = LiveCaps { meetings, participants };
    settings
}

fn assert_at_cap(answer: &Answer, what: &str) {
    assert_eq!(answer.status, StatusCode::INSUFFICIENT_STORAGE, "{}", answer.text);
    assert_eq!(answer.headers[header::RETRY_AFTER], "30");
    let error = answer.body["error"].as_str().unwrap_or_default();
    assert!(error.contains(&format!("live {what}")), "{error}");
}

/// 10,000 new ids from 1,000 client addresses against caps of 50 meetings and 200 participants;
/// then a participant already live writes on, and a new one is still refused.
async fn ten_thousand_new_ids_hit_the_caps(store: Arc<dyn Store>) {
    let app = vitals_collector::app(state_over(Arc::clone(&store), capped(50, 200)));
    let mut accepted = BTreeSet::new();
    let mut refused = [0; 2];
    for i in 0..10_000u32 {
        let client = format!("10.0.{}.{}", i / 10 / 250, i / 10 % 250);
        let (meeting, participant) = (format!("m{}", i % 500), format!("p{i}"));
        let answer = send(&app, ingest_from(&client, body(&meeting, &participant, 1))).await;
        match answer.status {
            StatusCode::OK => {
                accepted.insert((meeting, participant));
            }
            _ => {
                let meetings_full = answer.text.contains("live meetings");
                assert_at_cap(&answer, if meetings_full { "meetings" } else { "participants" });
                refused[usize::from(meetings_full)] += 1;
            }
        }
    }
    assert_eq!(accepted.len(), 200, "exactly the participant cap");
    assert!(refused[0] > 0 && refused[1] > 0, "both caps refused some: {refused:?}");
    let meetings = store.live_meetings(now_ms()).await.unwrap();
    assert!(meetings.len() <= 50, "{} meetings", meetings.len());
    let held: BTreeSet<(String, String)> = meetings
        .iter()
        .flat_map(|m| {
            m.participants
                .iter()
                .map(|p| (m.meeting_id.clone(), p.participant_id.clone()))
        })
        .collect();
    assert_eq!(held, accepted, "the store holds what was accepted, nothing else");
    // A live participant keeps writing; a new one in a live meeting is still refused.
    let (meeting, participant) = accepted.first().unwrap().clone();
    let answer = send(&app, ingest_from("10.9.9.9", body(&meeting, &participant, 2))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let answer = send(&app, ingest_from("10.9.9.9", body(&meeting, "newcomer", 1))).await;
    assert_at_cap(&answer, "participants");
}

#[tokio::test]
async fn ten_thousand_new_ids_from_many_clients_hit_the_live_caps_memory() {
    ten_thousand_new_ids_hit_the_caps(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn ten_thousand_new_ids_from_many_clients_hit_the_live_caps_redis() {
    let redis = TestRedis::start().await;
    ten_thousand_new_ids_hit_the_caps(Arc::new(redis.store(store::LIVE_TTL_MS))).await;
}

/// With the caps full at `t0`, a new participant is refused; once the live records expired (by
/// the time given to the pipeline), it is taken.
async fn the_cap_frees_up_as_records_expire(store: Arc<dyn Store>) {
    let state = state_over(store, capped(2, 3));
    let t0 = now_ms();
    let one = |meeting: &str, participant: &str, seq| {
        batch(
            meeting,
            participant,
            vec![event(
                seq,
                true,
                MetricsFields {
                    rtt_ms: Some(10.0),
                    ..Default::default()
                },
            )],
        )
    };
    for (meeting, participant) in [("a", "1"), ("a", "2"), ("b", "1")] {
        state.ingest(&one(meeting, participant, 1), t0).await.unwrap();
    }
    let refused = state.ingest(&one("a", "3", 1), t0 + 1).await.unwrap_err();
    assert!(
        matches!(
            refused,
            IngestError::AtCap {
                what: "participants",
                cap: 3,
                ..
            }
        ),
        "{refused}"
    );
    let refused = state.ingest(&one("c", "1", 1), t0 + 1).await.unwrap_err();
    assert!(matches!(refused, IngestError::AtCap { .. }), "{refused}");
    let later = t0 + store::LIVE_TTL_MS + store::RECORD_GRACE_MS + 1;
    state.ingest(&one("c", "1", 1), later).await.unwrap();
    state.ingest(&one("d", "1", 1), later).await.unwrap();
    let refused = state.ingest(&one("e", "1", 1), later).await.unwrap_err();
    assert!(
        matches!(
            refused,
            IngestError::AtCap {
                what: "meetings",
                cap: 2,
                ..
            }
        ),
        "{refused}"
    );
}

#[tokio::test]
async fn the_live_caps_free_up_as_records_expire_memory() {
    the_cap_frees_up_as_records_expire(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn the_live_caps_free_up_as_records_expire_redis() {
    let redis = TestRedis::start().await;
    the_cap_frees_up_as_records_expire(Arc::new(redis.store(store::LIVE_TTL_MS))).await;
}

/// Ingests `participants` participants, spread over `meetings` meetings (`m000`, `m001`, ...),
/// at `now` by the pipeline itself.
async fn seed(state: &AppState, meetings: usize, participants: usize, now: u64) {
    for i in 0..participants {
        let meeting = format!("m{:03}", i % meetings);
        let batch = serde_json::from_str(&body(&meeting, &format!("p{i}"), 1)).unwrap();
        state.ingest(&batch, now).await.unwrap();
    }
}

/// Follows `next_cursor` from the first page of `limit` meetings to the last; every id seen.
async fn walk_meetings(app: &vitals_collector::App, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1_000 {
        let mut path = format!("/api/v1/meetings?limit={limit}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let answer = send(app, admin_get(&path)).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        let page = answer.body["meetings"].as_array().unwrap();
        assert!(page.len() <= limit);
        seen.extend(page.iter().map(|m| m["meeting_id"].as_str().unwrap().to_owned()));
        match &answer.body["next_cursor"] {
            Value::String(next) => cursor = Some(next.clone()),
            Value::Null => return seen,
            other => panic!("next_cursor {other}"),
        }
    }
    panic!("the pages never ended");
}

async fn pagination_walks_every_meeting_once(store: Arc<dyn Store>) {
    let state = state_over(store, unlimited_clients());
    seed(&state, 250, 400, now_ms()).await;
    let app = vitals_collector::app(state);
    let expected: Vec<String> = (0..250).map(|i| format!("m{i:03}")).collect();
    for limit in [1, 7, 250, 1000] {
        assert_eq!(walk_meetings(&app, limit).await, expected, "pages of {limit}");
    }
    let first = send(&app, admin_get("/api/v1/meetings")).await;
    assert_eq!(
        first.body["meetings"].as_array().unwrap().len(),
        100,
        "the default page"
    );
    assert_eq!(first.body["limit"], 100);
    assert!(first.body["next_cursor"].is_string());
    let participants = first.body["meetings"][0]["participants"].as_array().unwrap();
    assert_eq!(participants.len(), 2, "m000 holds p0 and p250");
}

#[tokio::test]
async fn meetings_pagination_walks_every_meeting_exactly_once_memory() {
    pagination_walks_every_meeting_once(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn meetings_pagination_walks_every_meeting_exactly_once_redis() {
    let redis = TestRedis::start().await;
    pagination_walks_every_meeting_once(Arc::new(redis.store(store::LIVE_TTL_MS))).await;
}

#[tokio::test]
async fn a_bad_meetings_cursor_or_limit_is_a_400() {
    let app = vitals_collector::app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN));
    let huge = format!("m{}", "61".repeat(10_000));
    for query in [
        format!("cursor={huge}"),
        "cursor=zz".into(),
        "cursor=m6".into(),
        "cursor=mzz".into(),
        "cursor=mff".into(),
        "limit=0".into(),
        "limit=1001".into(),
        "limit=ten".into(),
        "page=2".into(),
    ] {
        let answer = send(&app, admin_get(&format!("/api/v1/meetings?{query}"))).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}: {}", answer.text);
        assert!(answer.body["error"].is_string(), "{}", answer.text);
    }
}

/// Exports the last hour of `series` series (10 meetings) as CSV: the answer, and the counting
/// store's calls, series read and series listings during the export.
async fn export_counted(inner: Arc<dyn Store>, series: usize) -> (Answer, usize, usize, usize) {
    let store = Arc::new(Counting::new(inner));
    let state = state_over(store.clone(), unlimited_clients());
    seed(&state, 10, series, now_ms()).await;
    let app = vitals_collector::app(state);
    let (calls, read) = (
        store.calls.load(Ordering::SeqCst),
        store.series_read.load(Ordering::SeqCst),
    );
    let answer = send(&app, admin_get("/api/v1/export?format=csv")).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{}",
        &answer.text[..answer.text.len().min(300)]
    );
    (
        answer,
        store.calls.load(Ordering::SeqCst) - calls,
        store.series_read.load(Ordering::SeqCst) - read,
        store.series_listed.load(Ordering::SeqCst),
    )
}

/// 1,000 then 4,000 series of one point each, on two fresh stores.
async fn export_is_linear(small: Arc<dyn Store>, large: Arc<dyn Store>) {
    let (small, small_calls, small_read, small_listed) = export_counted(small, 1_000).await;
    let (large, large_calls, large_read, large_listed) = export_counted(large, 4_000).await;
    let rows = |answer: &Answer| answer.text.lines().filter(|l| l.starts_with("metrics,")).count();
    assert_eq!((rows(&small), rows(&large)), (1_000, 4_000));
    assert_eq!((small_listed, large_listed), (1, 1), "the series are listed once");
    // Four times the series: four times the work, give or take a call, never sixteen.
    assert!(
        large_calls <= 4 * small_calls + 2,
        "{small_calls} then {large_calls} store calls"
    );
    assert!(
        large_read <= 4 * small_read + 256,
        "{small_read} then {large_read} series read"
    );
    assert!(large_read <= 3 * 4_000, "each series is read about twice: {large_read}");
}

#[tokio::test]
async fn export_without_a_meeting_is_linear_in_the_series_memory() {
    export_is_linear(Arc::new(MemoryStore::default()), Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn export_without_a_meeting_is_linear_in_the_series_redis() {
    let (first, second) = (TestRedis::start().await, TestRedis::start().await);
    export_is_linear(
        Arc::new(first.store(store::LIVE_TTL_MS)),
        Arc::new(second.store(store::LIVE_TTL_MS)),
    )
    .await;
}

async fn export_is_bounded(store: Arc<dyn Store>) {
    let mut settings = unlimited_clients();
    settings.export_max_rows = 1_000;
    let state = state_over(store, settings);
    seed(&state, 4, 1_200, now_ms()).await;
    let app = vitals_collector::app(state);
    for format in ["csv", "json"] {
        let answer = send(&app, admin_get(&format!("/api/v1/export?format={format}"))).await;
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{format}");
        let error = answer.body["error"].as_str().unwrap();
        assert!(
            error.contains("more than 1000 rows") && error.contains("meeting="),
            "{error}"
        );
    }
    // One meeting of it fits: 300 points.
    let answer = send(&app, admin_get("/api/v1/export?format=json&meeting=m002")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let history = answer.body["history"].as_array().unwrap();
    assert_eq!(history.len(), 300);
    assert!(history.iter().all(|p| p["meeting_id"] == "m002"));
}

#[tokio::test]
async fn export_is_bounded_and_says_how_to_narrow_it_memory() {
    export_is_bounded(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn export_is_bounded_and_says_how_to_narrow_it_redis() {
    let redis = TestRedis::start().await;
    export_is_bounded(Arc::new(redis.store(store::LIVE_TTL_MS))).await;
}

/// `GET /healthz` on a connection of its own; the status line.
async fn healthz(server: SocketAddr) -> String {
    let mut stream = TcpStream::connect(server).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_slow_loris_on_the_headers_is_cut_off_while_others_are_served() {
    let settings = Settings {
        server: ServerLimits {
            header_read_timeout: Duration::from_millis(500),
            ..Default::default()
        },
        ..Default::default()
    };
    let server = serve(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN).with_settings(settings)).await;
    let mut stalled = TcpStream::connect(server).await.unwrap();
    stalled.write_all(b"POST /api/v1/ing").await.unwrap();
    assert_eq!(healthz(server).await, "HTTP/1.1 200 OK", "served while one stalls");
    // The default would hold the stalled connection for good (axum::serve has no header timer).
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the half-sent request line still held its connection after 10 s"
    );
    assert_eq!(healthz(server).await, "HTTP/1.1 200 OK", "served after the cut too");
}

/// Emits `meeting:metrics` to `meeting` and returns the ack.
async fn emit(client: &mut Client, meeting: &str) -> Value {
    client
        .emit_ack(
            "meeting:metrics",
            json!({"meetingId": meeting, "metrics": {"latency": 20}}),
        )
        .await
}

#[tokio::test]
async fn a_socketio_flood_meets_the_caps_quota_and_client_buckets() {
    // The caps: 3 meetings. New ids of one socket beyond them are refused; an old one writes on.
    let server = serve(state_over(Arc::new(MemoryStore::default()), capped(3, 100))).await;
    let mut client = Client::connect(server, json!({"token": INGEST_KEY, "userId": "u"}))
        .await
        .unwrap();
    let mut acks = Vec::new();
    for i in 0..10 {
        acks.push(emit(&mut client, &format!("room-{i}")).await);
    }
    assert!(acks[..3].iter().all(|a| a["ok"] == true), "{acks:?}");
    for ack in &acks[3..] {
        assert_eq!(ack["ok"], false, "{ack}");
        let error = ack["error"].as_str().unwrap();
        assert!(
            error.contains("maximum of 3 live meetings") && error.contains("retry in 30 s"),
            "{error}"
        );
    }
    assert_eq!(
        emit(&mut client, "room-0").await["ok"],
        true,
        "a live participant writes on"
    );

    // The client's bucket (6 at once: the connection takes one) and its quota of new ids (2 a
    // minute), by its address.
    let mut settings = unlimited_clients();
    settings.admission.per_client = RateLimit {
        per_sec: 0.01,
        burst: 6.0,
    };
    settings.admission.new_ids_per_min = 2;
    let server = serve(state_over(Arc::new(MemoryStore::default()), settings)).await;
    let mut client = Client::connect(server, json!({"token": INGEST_KEY, "userId": "v"}))
        .await
        .unwrap();
    let mut acks = Vec::new();
    for i in 0..20 {
        acks.push(emit(&mut client, &format!("room-{}", i % 4)).await);
    }
    let ok = acks.iter().filter(|a| a["ok"] == true).count();
    assert_eq!(
        ok, 3,
        "two new ids, then their meetings again until the bucket ran dry: {acks:?}"
    );
    let refusals: Vec<&str> = acks.iter().filter_map(|a| a["error"].as_str()).collect();
    assert_eq!(refusals.len(), 17);
    assert!(refusals.iter().all(|e| e.contains("retry after")), "{refusals:?}");
    // Another socket from the same address meets the empty bucket when it connects.
    let refused = Client::connect(server, json!({"token": INGEST_KEY, "userId": "w"})).await;
    let error = refused.err().expect("the connection was accepted");
    assert_eq!(error["message"], "too many requests from this client", "{error}");
}
