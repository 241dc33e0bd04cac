//! HTTP API tests: requests through the router with `oneshot`, no socket.

use crate::support::{now_ms, send, Answer, TestRedis};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vitals_collector::store::RedisStore;
use vitals_collector::App as Router;
use vitals_collector::{app, AppState, Secret, INGEST_BODY_LIMIT_BYTES};

const INGEST_KEY: &str = "ingest-key-for-tests";
const ADMIN_TOKEN: &str = "admin-token-for-tests";

fn test_app() -> Router {
    app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN))
}

fn ingest_request(key: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut request = Request::post("/api/v1/ingest").header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    request.body(body.into()).unwrap()
}

/// Posts `batch` with its participant's token (as the client that created it).
async fn ingest(app: &Router, batch: Value) -> Answer {
    let batch = crate::support::signed(ADMIN_TOKEN, batch);
    send(app, ingest_request(Some(INGEST_KEY), batch.to_string())).await
}

async fn meetings(app: &Router) -> Answer {
    let request = Request::get("/api/v1/meetings")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    send(app, request).await
}

fn batch(participant: &str, events: Value) -> Value {
    json!({"meeting_id": "https://meet.example.com/abc", "participant_id": participant, "label": "Alice", "events": events})
}

fn the_participant(answer: &Answer) -> &Value {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let meetings = answer.body["meetings"].as_array().unwrap();
    assert_eq!(meetings.len(), 1, "{}", answer.body);
    let participants = meetings[0]["participants"].as_array().unwrap();
    assert_eq!(participants.len(), 1, "{}", answer.body);
    &participants[0]
}

#[tokio::test]
async fn ingest_then_meetings_shows_merged_deltas() {
    let app = test_app();
    let before = now_ms();
    let first = ingest(
        &app,
        batch(
            "p-1",
            json!([{"seq": 1, "ts_ms": 0, "full": true, "metrics": {
                "upload_kbps": 812.5, "download_kbps": 1400.0, "rtt_ms": 42.0, "using_relay": true,
                "relay_protocol": "udp", "relay_server": "turn.example.com", "quality": "excellent"}}]),
        ),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["accepted"], json!([1]));
    let deltas = ingest(
        &app,
        batch(
            "p-1",
            json!([
                {"seq": 2, "ts_ms": 0, "full": false, "metrics": {"rtt_ms": 310.5, "quality": "fair"}},
                {"seq": 3, "ts_ms": 0, "full": false, "metrics": {"loss_pct": 2.5, "mos": 3.9, "jitter_ms": 4.0}}
            ]),
        ),
    )
    .await;
    assert_eq!(deltas.body["accepted"], json!([2, 3]));

    let answer = meetings(&app).await;
    let p = the_participant(&answer);
    assert_eq!(answer.body["meetings"][0]["meeting_id"], "https://meet.example.com/abc");
    let last_seen = p["last_seen"].as_u64().unwrap();
    assert!(last_seen >= before && last_seen <= now_ms(), "{p}");
    let mut shown = p.clone();
    shown.as_object_mut().unwrap().remove("last_seen");
    assert_eq!(
        shown,
        json!({
            "participant_id": "p-1", "label": "Alice", "last_seq": 3,
            "upload_kbps": 812.5, "download_kbps": 1400.0, "rtt_ms": 310.5, "loss_pct": 2.5,
            "jitter_ms": 4.0, "quality": "fair", "mos": 3.9, "using_relay": true,
            "relay_protocol": "udp", "relay_server": "turn.example.com", "findings": null
        })
    );
}

#[tokio::test]
async fn duplicate_seq_is_accepted_but_not_applied_twice() {
    let app = test_app();
    let event = |seq: u64, rtt: f64| json!({"seq": seq, "ts_ms": 0, "full": false, "metrics": {"rtt_ms": rtt}});
    assert_eq!(
        ingest(&app, batch("p", json!([event(1, 10.0)]))).await.body["accepted"],
        json!([1])
    );
    // A retry of seq 1 (different content to make a second application visible) plus a new one.
    let retry = ingest(&app, batch("p", json!([event(1, 99.0), event(2, 20.0)]))).await;
    assert_eq!(retry.body["accepted"], json!([1, 2]));
    let again = ingest(&app, batch("p", json!([event(2, 77.0)]))).await;
    assert_eq!(again.body["accepted"], json!([2]));
    let answer = meetings(&app).await;
    let p = the_participant(&answer);
    assert_eq!((p["rtt_ms"].as_f64(), p["last_seq"].as_u64()), (Some(20.0), Some(2)));
}

#[tokio::test]
async fn out_of_order_seq_does_not_overwrite_newer_fields() {
    let app = test_app();
    let newer = json!({"seq": 9, "ts_ms": 0, "full": false, "metrics": {"rtt_ms": 50.0}});
    let older = json!({"seq": 4, "ts_ms": 0, "full": false, "metrics": {"rtt_ms": 500.0, "upload_kbps": 64.0}});
    assert_eq!(ingest(&app, batch("p", json!([newer]))).await.status, StatusCode::OK);
    assert_eq!(
        ingest(&app, batch("p", json!([older]))).await.body["accepted"],
        json!([4])
    );
    let answer = meetings(&app).await;
    let p = the_participant(&answer);
    assert_eq!(p["rtt_ms"], json!(50.0));
    assert_eq!(p["upload_kbps"], json!(64.0));
    assert_eq!(p["last_seq"], json!(9));
}

#[tokio::test]
async fn bad_input_is_400_with_a_json_error_naming_the_problem() {
    let app = test_app();
    let cases = [
        ("{not json", "as JSON"),
        (
            r#"{"meeting_id":"m","participant_id":"p","events":[{"seq":1,"ts_ms":1,"full":true,"metrics":{"rtt_ms":"fast"}}]}"#,
            "rtt_ms",
        ),
        (
            r#"{"meeting_id":"m","participant_id":"p","events":[{"seq":1,"ts_ms":1,"full":true,"metrics":{"loss_pct":140}}]}"#,
            "loss_pct",
        ),
        (
            r#"{"meeting_id":"m","participant_id":"p","events":[{"seq":1,"ts_ms":1,"full":true,"metrics":{"bogus":1}}]}"#,
            "bogus",
        ),
        (r#"{"meeting_id":"m","participant_id":"p","events":[]}"#, "events"),
        (r#"{"meeting_id":"","participant_id":"p","events":[]}"#, "meeting_id"),
        (r#"{"participant_id":"p","events":[]}"#, "meeting_id"),
        (
            r#"{"meeting_id":"m","participant_id":"p","events":[{"seq":0,"ts_ms":1,"full":true,"metrics":{}}]}"#,
            "seq",
        ),
        (
            r#"{"meeting_id":"m","participant_id":"p","events":[{"seq":1,"ts_ms":1,"full":true,"metrics":{"relay_protocol":"<b>"}}]}"#,
            "relay_protocol",
        ),
    ];
    for (body, named) in cases {
        let answer = send(&app, ingest_request(Some(INGEST_KEY), body)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body} -> {}", answer.body);
        let message = answer.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("JSON error for {body}: {}", answer.body));
        assert!(message.contains(named), "{body}: {message:?} should name {named}");
    }
    // Nothing of the rejected batches was stored.
    let answer = meetings(&app).await;
    assert_eq!(answer.body, json!({"meetings": [], "limit": 100, "next_cursor": null}));

    let no_type = Request::post("/api/v1/ingest")
        .header(header::AUTHORIZATION, format!("Bearer {INGEST_KEY}"))
        .body(Body::from("{}"))
        .unwrap();
    let answer = send(&app, no_type).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(answer.body["error"].as_str().unwrap().contains("application/json"));
}

#[tokio::test]
async fn ingest_needs_the_ingest_key() {
    let app = test_app();
    let body = batch("p", json!([{"seq": 1, "ts_ms": 0, "full": true, "metrics": {}}])).to_string();
    for key in [None, Some("wrong"), Some(ADMIN_TOKEN), Some("")] {
        let answer = send(&app, ingest_request(key, body.clone())).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{key:?}");
        assert_eq!(answer.body, json!({"error": "missing or wrong ingest key"}));
        assert_eq!(answer.headers[header::WWW_AUTHENTICATE], "Bearer");
    }
    let basic = Request::post("/api/v1/ingest")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Basic {INGEST_KEY}"))
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(send(&app, basic).await.status, StatusCode::UNAUTHORIZED);
    // Auth is checked before the body is read: garbage with no key is still 401.
    assert_eq!(
        send(&app, ingest_request(None, "{garbage")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, ingest_request(Some(INGEST_KEY), body)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn admin_routes_need_the_admin_token() {
    let app = test_app();
    for auth in [
        None,
        Some("Bearer wrong".to_string()),
        Some(format!("Bearer {INGEST_KEY}")),
    ] {
        let mut request = Request::get("/api/v1/meetings");
        if let Some(auth) = &auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let answer = send(&app, request.body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(answer.body, json!({"error": "missing or wrong admin token"}));
    }
    assert_eq!(meetings(&app).await.status, StatusCode::OK);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let app = test_app();
    let padding = "x".repeat(INGEST_BODY_LIMIT_BYTES);
    let body = json!({"meeting_id": "m", "participant_id": "p", "label": padding, "events": []}).to_string();
    let answer = send(&app, ingest_request(Some(INGEST_KEY), body.clone())).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        answer.body["error"].as_str().unwrap().contains("larger than"),
        "{}",
        answer.body
    );
    // Also without a Content-Length (a streamed body).
    let answer = send(&app, ingest_request(Some(INGEST_KEY), chunked(body))).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// A body in 1 KiB chunks, so the request carries no Content-Length.
fn chunked(body: String) -> Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body.into_bytes().chunks(1024).map(|c| Ok(c.to_vec())).collect();
    Body::from_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn ingest_allows_cross_origin_posts_from_the_extension() {
    let app = test_app();
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/v1/ingest")
        .header(header::ORIGIN, "chrome-extension://abcdefghijklmnop")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization,content-type")
        .body(Body::empty())
        .unwrap();
    let answer = send(&app, preflight).await;
    assert!(answer.status.is_success(), "{}", answer.status);
    assert_eq!(answer.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let allowed = answer.headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    let mut post = ingest_request(
        Some(INGEST_KEY),
        batch("p", json!([{"seq": 1, "ts_ms": 0, "full": true, "metrics": {}}])).to_string(),
    );
    post.headers_mut()
        .insert(header::ORIGIN, "chrome-extension://abcdefghijklmnop".parse().unwrap());
    let answer = send(&app, post).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}

#[tokio::test]
async fn health_dashboard_and_demo_pages() {
    let app = test_app();
    let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    let health = send(&app, get("/healthz")).await;
    assert_eq!(
        (health.status, health.body),
        (StatusCode::OK, Value::String("ok".into()))
    );
    let with_demo = vitals_collector::app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN).with_demo_page());
    for (uri, marker, content_type) in [
        ("/", "/dashboard.js", "text/html"),
        ("/dashboard.js", "/api/v1/meetings", "text/javascript"),
        ("/dashboard.css", "font:", "text/css"),
        ("/demo", "/demo.js", "text/html"),
        ("/demo.js", "RTCPeerConnection", "text/javascript"),
    ] {
        let answer = send(&with_demo, get(uri)).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}");
        assert!(answer.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with(content_type));
        assert!(
            answer.body.as_str().unwrap().contains(marker),
            "{uri} should mention {marker}"
        );
    }
    let dashboard = send(&app, get("/dashboard.js")).await;
    let page = send(&app, get("/")).await;
    for (text, panel) in [
        (&dashboard, "/api/v1/alerts"),
        (&dashboard, "/api/v1/turn-usage"),
        (&dashboard, "/api/v1/stream-ticket"),
        (&page, "id=\"alerts\""),
        (&page, "id=\"turn\""),
        (&page, "id=\"sign-out\""),
    ] {
        assert!(text.text.contains(panel), "dashboard lacks {panel}");
    }
    assert!(
        !dashboard.body.as_str().unwrap().contains("innerHTML"),
        "untrusted strings go through textContent"
    );
    let missing = send(&app, get("/nope")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body["error"].is_string());
}

/// A Redis store that cannot be reached answers 503 with a generic message (the client keeps its
/// events and retries), and serves again by itself once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_store_is_503_and_recovers() {
    let mut redis = TestRedis::start().await;
    if !redis.owns_server() {
        // An external Redis cannot be stopped from here; point at a closed port instead.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        redis.url = format!("redis://127.0.0.1:{closed}/");
    } else {
        redis.stop();
    }
    let store = RedisStore::new(&redis.url, Default::default()).unwrap();
    let app = app(AppState::new(
        Arc::new(store),
        Secret::new(INGEST_KEY),
        Secret::new(ADMIN_TOKEN),
    ));
    let body = batch(
        "p",
        json!([{"seq": 1, "ts_ms": 0, "full": true, "metrics": {"rtt_ms": 5.0}}]),
    );
    let started = Instant::now();
    let answer = ingest(&app, body.clone()).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.body);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fails fast: {:?}",
        started.elapsed()
    );
    assert_eq!(answer.body, json!({"error": "the store is unavailable, retry later"}));
    assert!(answer.headers.contains_key(header::RETRY_AFTER));
    assert_eq!(meetings(&app).await.status, StatusCode::SERVICE_UNAVAILABLE);

    if redis.owns_server() {
        // Restart Redis on the same port; the store reconnects without a restart of the app.
        let port = redis.url.trim_end_matches('/').rsplit(':').next().unwrap().to_string();
        let mut server = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let recovered = loop {
            let answer = ingest(&app, body.clone()).await;
            if answer.status == StatusCode::OK || Instant::now() > deadline {
                break answer;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let _ = server.kill();
        let _ = server.wait();
        assert_eq!(recovered.status, StatusCode::OK, "{}", recovered.body);
        assert_eq!(recovered.body["accepted"], json!([1]));
    }
}

/// Two collector processes on one Redis share each participant's rate limit: a participant
/// spreading its requests over both gets the limit once, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_the_rate_limit_holds_across_processes() {
    let redis = TestRedis::start().await;
    let settings = vitals_collector::Settings {
        rate_limit: vitals_collector::ratelimit::RateLimit {
            per_sec: 0.1,
            burst: 3.0,
        },
        ..Default::default()
    };
    let process = || {
        app(AppState::new(
            Arc::new(redis.store(60_000)),
            Secret::new(INGEST_KEY),
            Secret::new(ADMIN_TOKEN),
        )
        .with_settings(settings.clone()))
    };
    let (a, b) = (process(), process());
    let event = |seq: u64| json!([{"seq": seq, "ts_ms": 0, "full": false, "metrics": {"rtt_ms": 5.0}}]);
    for (seq, app) in [(1, &a), (2, &b), (3, &a)] {
        assert_eq!(ingest(app, batch("fast", event(seq))).await.status, StatusCode::OK);
    }
    for app in [&b, &a] {
        let answer = ingest(app, batch("fast", event(4))).await;
        assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "{}", answer.body);
        let retry_after: u64 = answer.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=10).contains(&retry_after), "{retry_after}");
    }
    assert_eq!(ingest(&b, batch("calm", event(1))).await.status, StatusCode::OK);
}
