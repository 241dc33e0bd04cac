//! Admin API tests beyond the live list: alerts, one meeting, history, TURN usage and export.

mod support;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::now_ms;
use tower::ServiceExt;
use vitals_collector::alerts::AlertThresholds;
use vitals_collector::ratelimit::RateLimit;
use vitals_collector::store::RedisStore;
use vitals_collector::{app, AppState, Secret, Settings};

const INGEST_KEY: &str = "ingest-key-for-tests";
const ADMIN_TOKEN: &str = "admin-token-for-tests";
const MEETING: &str = "https://meet.example.com/abc-defg";

fn test_app(alerts: AlertThresholds) -> Router {
    app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN).with_settings(Settings {
        alerts,
        ..Default::default()
    }))
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
    body: Value,
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        text,
        body,
    }
}

async fn get(app: &Router, uri: &str) -> Answer {
    let request = Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    send(app, request).await
}

async fn ingest(app: &Router, participant: &str, seq: u64, metrics: Value) {
    let batch = json!({"meeting_id": MEETING, "participant_id": participant,
        "events": [{"seq": seq, "ts_ms": 1.0e12, "full": false, "metrics": metrics}]});
    let request = Request::post("/api/v1/ingest")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {INGEST_KEY}"))
        .body(Body::from(batch.to_string()))
        .unwrap();
    let answer = send(app, request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

/// Percent-encodes everything but unreserved characters, as `encodeURIComponent` does.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// (type, state) of every alert in an `/api/v1/alerts` answer.
fn kinds(answer: &Answer) -> Vec<(String, String)> {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["type"].as_str().unwrap().into(), a["state"].as_str().unwrap().into()))
        .collect()
}

fn pair(kind: &str, state: &str) -> (String, String) {
    (kind.into(), state.into())
}

#[tokio::test]
async fn alerts_are_raised_once_resolved_after_the_hold_and_listed() {
    let app = test_app(AlertThresholds {
        clear_after_ms: 0,
        ..Default::default()
    });
    let since = now_ms();
    ingest(&app, "p", 1, json!({"rtt_ms": 80.0})).await;
    assert_eq!(kinds(&get(&app, "/api/v1/alerts").await), []);
    ingest(&app, "p", 2, json!({"rtt_ms": 350.0})).await;
    ingest(&app, "p", 3, json!({"rtt_ms": 420.0, "loss_pct": 1.0})).await;
    // A retried batch applies nothing and raises nothing.
    ingest(&app, "p", 2, json!({"rtt_ms": 350.0})).await;
    let answer = get(&app, &format!("/api/v1/alerts?since={since}")).await;
    assert_eq!(kinds(&answer), [pair("high-latency", "raised")]);
    let alert = &answer.body["alerts"][0];
    assert_eq!(alert["meeting_id"], MEETING);
    assert_eq!(alert["participant_id"], "p");
    assert_eq!(alert["severity"], "warning");
    assert!(alert["message"].as_str().unwrap().contains("350 ms"), "{alert}");

    // The meeting, by its URL-encoded id, shows the active alert.
    let detail = get(&app, &format!("/api/v1/meetings/{}", encode(MEETING))).await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text);
    assert_eq!(detail.body["meeting_id"], MEETING);
    let participant = &detail.body["participants"][0];
    assert_eq!(participant["rtt_ms"], 420.0);
    assert_eq!(participant["alerts"][0]["type"], "high-latency");

    ingest(
        &app,
        "p",
        4,
        json!({"rtt_ms": 60.0, "using_relay": true, "quality": "poor"}),
    )
    .await;
    assert_eq!(
        kinds(
            &get(
                &app,
                &format!("/api/v1/alerts?since={since}&meeting={}", encode(MEETING))
            )
            .await
        ),
        [
            pair("high-latency", "raised"),
            pair("high-latency", "resolved"),
            pair("using-turn", "raised"),
            pair("poor-connection", "raised")
        ]
    );
    let other = get(&app, "/api/v1/alerts?meeting=https%3A%2F%2Fother.example%2F").await;
    assert_eq!(kinds(&other), []);
    assert_eq!(
        kinds(&get(&app, &format!("/api/v1/alerts?since={}", now_ms() + 1000)).await),
        []
    );
}

#[tokio::test]
async fn alerts_wait_for_the_hold_time_before_resolving() {
    let app = test_app(AlertThresholds::default());
    ingest(&app, "p", 1, json!({"loss_pct": 9.0})).await;
    ingest(&app, "p", 2, json!({"loss_pct": 0.0})).await;
    ingest(&app, "p", 3, json!({"loss_pct": 0.5})).await;
    // The default hold is 10 s: still active, only the raise is in the history.
    assert_eq!(
        kinds(&get(&app, "/api/v1/alerts").await),
        [pair("packet-loss", "raised")]
    );
    let detail = get(&app, &format!("/api/v1/meetings/{}", encode(MEETING))).await;
    assert_eq!(detail.body["participants"][0]["alerts"][0]["type"], "packet-loss");
    assert!(detail.body["participants"][0]["alerts"][0]["clear_since"].is_u64());
}

#[tokio::test]
async fn unknown_meeting_is_404_and_bad_queries_are_400() {
    let app = test_app(AlertThresholds::default());
    let missing = get(&app, "/api/v1/meetings/https%3A%2F%2Fnowhere.example%2F").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body["error"].is_string());
    for uri in [
        "/api/v1/alerts?since=yesterday",
        "/api/v1/alerts?bogus=1",
        "/api/v1/turn-usage?from=10&to=5",
        "/api/v1/export?format=xml",
        "/api/v1/export?from=-1",
        "/api/v1/meetings/m/history?from=9&to=1",
    ] {
        let answer = get(&app, uri).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}: {}", answer.text);
        assert!(answer.body["error"].is_string(), "{uri}");
    }
    for uri in [
        "/api/v1/alerts",
        "/api/v1/turn-usage",
        "/api/v1/export",
        "/api/v1/meetings/m",
        "/api/v1/meetings/m/history",
    ] {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        assert_eq!(send(&app, request).await.status, StatusCode::UNAUTHORIZED, "{uri}");
    }
}

#[tokio::test]
async fn history_is_kept_per_participant_and_exported() {
    let app = test_app(AlertThresholds::default());
    let from = now_ms();
    ingest(
        &app,
        "p1",
        1,
        json!({"rtt_ms": 40.5, "quality": "excellent", "upload_kbps": 500.0}),
    )
    .await;
    ingest(&app, "p2, \"quoted\"", 1, json!({"rtt_ms": 900.0})).await;
    let to = now_ms() + 10_000;
    let uri = format!("/api/v1/meetings/{}/history?from={from}&to={to}", encode(MEETING));
    let answer = get(&app, &uri).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let points = answer.body["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "{}", answer.text);
    assert_eq!(points[0]["participant_id"], "p1");
    assert_eq!(points[0]["rtt_ms"], 40.5);
    assert_eq!(points[0]["quality"], "excellent");
    let t = points[0]["t"].as_u64().unwrap();
    assert!(t % 10_000 == 0 && t + 10_000 > from && t <= to, "{t}");
    let one = get(&app, &format!("{uri}&participant=p1")).await;
    assert_eq!(one.body["points"].as_array().unwrap().len(), 1);
    let later = format!(
        "/api/v1/meetings/{}/history?from={}&to={}",
        encode(MEETING),
        to + 10_000,
        to + 20_000
    );
    assert_eq!(get(&app, &later).await.body["points"], json!([]));

    let json_export = get(&app, &format!("/api/v1/export?format=json&from={from}&to={to}")).await;
    assert_eq!(json_export.status, StatusCode::OK);
    assert_eq!(json_export.body["history"].as_array().unwrap().len(), 2);
    assert_eq!(json_export.body["alerts"][0]["type"], "high-latency");
    let csv = get(&app, &format!("/api/v1/export?format=csv&from={from}&to={to}")).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(csv.headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let lines: Vec<&str> = csv.text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 4, "{}", csv.text);
    assert!(lines[0].starts_with("record,time_ms,meeting_id,participant_id,"));
    assert!(
        lines[1].starts_with(&format!("metrics,{t},{MEETING},p1,500,,40.5,")),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains(",\"p2, \"\"quoted\"\"\","), "{}", lines[2]);
    assert!(lines[3].starts_with("alert,") && lines[3].contains(",high-latency,warning,raised,"));
}

#[tokio::test]
async fn turn_usage_is_bitrate_times_time_relayed_at_the_configured_price() {
    let app = test_app(AlertThresholds {
        turn_price_per_gb: 1000.0,
        ..Default::default()
    });
    let relayed = json!({"using_relay": true, "relay_protocol": "udp", "relay_server": "turn.example.com",
        "upload_kbps": 1000.0, "download_kbps": 1000.0});
    let from = now_ms();
    let before_first = Instant::now();
    ingest(&app, "p", 1, relayed).await;
    let after_first = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_second = Instant::now();
    ingest(&app, "p", 2, json!({"using_relay": false})).await;
    let after_second = Instant::now();
    // Relay stopped: later ingests add nothing.
    ingest(&app, "p", 3, json!({"upload_kbps": 9000.0})).await;
    let answer = get(&app, &format!("/api/v1/turn-usage?from={from}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let usage = answer.body["usage"].as_array().unwrap();
    assert_eq!(usage.len(), 1, "{}", answer.text);
    assert_eq!(usage[0]["meeting_id"], MEETING);
    assert_eq!(usage[0]["participant_id"], "p");
    assert_eq!(usage[0]["relay_server"], "turn.example.com");
    // 2000 kbps = 250 bytes per ms, over the time between the two ingests.
    let bytes = usage[0]["relayed_bytes"].as_u64().unwrap();
    let shortest = (before_second - after_first).as_millis() as u64 * 250;
    let longest = (after_second - before_first).as_millis() as u64 * 250 + 250;
    assert!(
        (shortest..=longest).contains(&bytes),
        "{bytes} not in {shortest}..={longest}"
    );
    let cost = usage[0]["cost"].as_f64().unwrap();
    assert!((cost - bytes as f64 / 1e9 * 1000.0).abs() < 1e-9, "{cost}");
    assert_eq!(answer.body["total_bytes"], bytes);
    assert_eq!(answer.body["price_per_gb"], 1000.0);
    // The using-turn alert mentions the cost.
    let alerts = get(&app, "/api/v1/alerts").await;
    assert_eq!(alerts.body["alerts"][0]["type"], "using-turn");
    assert!(alerts.body["alerts"][0]["message"].as_str().unwrap().contains("cost"));
}

#[tokio::test]
async fn a_participant_sending_too_fast_gets_429_with_retry_after() {
    let app = app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN).with_settings(Settings {
        rate_limit: RateLimit {
            per_sec: 0.1,
            burst: 3.0,
        },
        ..Default::default()
    }));
    for seq in 1..=3 {
        ingest(&app, "fast", seq, json!({"rtt_ms": 10.0})).await;
    }
    let batch = |participant: &str| {
        json!({"meeting_id": MEETING, "participant_id": participant,
            "events": [{"seq": 4, "ts_ms": 1.0e12, "full": false, "metrics": {"rtt_ms": 999.0}}]})
    };
    let request = |participant: &str| {
        Request::post("/api/v1/ingest")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {INGEST_KEY}"))
            .body(Body::from(batch(participant).to_string()))
            .unwrap()
    };
    let answer = send(&app, request("fast")).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "{}", answer.text);
    let retry_after: u64 = answer.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    assert!(answer.body["error"].as_str().unwrap().contains("too many"));
    // The rejected event was not stored; another participant is not limited.
    let detail = get(&app, &format!("/api/v1/meetings/{}", encode(MEETING))).await;
    assert_eq!(detail.body["participants"][0]["rtt_ms"], 10.0);
    assert_eq!(send(&app, request("calm")).await.status, StatusCode::OK);
    // Rejections are counted in the metrics.
    let text = get(&app, "/metrics").await.text;
    assert!(
        text.contains("vitals_ingest_requests_total{status=\"429\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_count_ingest_and_show_participants_by_quality_without_ids() {
    let app = test_app(AlertThresholds::default());
    ingest(
        &app,
        "p1",
        1,
        json!({"quality": "poor", "using_relay": true, "rtt_ms": 500.0}),
    )
    .await;
    ingest(&app, "p2", 1, json!({"quality": "good"})).await;
    ingest(&app, "p2", 1, json!({"quality": "good"})).await;
    let answer = get(&app, "/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = answer.text;
    for line in [
        "vitals_ingest_requests_total{status=\"200\"} 3",
        "vitals_ingest_events_total{result=\"accepted\"} 3",
        "vitals_ingest_events_total{result=\"applied\"} 2",
        "vitals_ingest_duration_seconds_count 3",
        "vitals_participants{quality=\"poor\"} 1",
        "vitals_participants{quality=\"good\"} 1",
        "vitals_participants{quality=\"excellent\"} 0",
        "vitals_relayed_participants 1",
        "vitals_live_meetings 1",
        "vitals_alerts_raised_total{type=\"high-latency\"} 1",
        "vitals_alerts_raised_total{type=\"using-turn\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("meet.example.com") && !text.contains("p1"), "{text}");
    // Every sample line is `name{labels} value` or `name value` with a number.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}

#[tokio::test]
async fn readyz_follows_the_store() {
    let ready = send(
        &test_app(AlertThresholds::default()),
        Request::get("/readyz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!((ready.status, ready.text.as_str()), (StatusCode::OK, "ready"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = RedisStore::new(&format!("redis://127.0.0.1:{closed}/"), Default::default()).unwrap();
    let app = app(AppState::new(
        Arc::new(store),
        Secret::new(INGEST_KEY),
        Secret::new(ADMIN_TOKEN),
    ));
    let answer = send(&app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.text);
    assert!(answer.body["error"].is_string());
    // The liveness probe still answers: the process is fine, only the store is not.
    let health = send(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(health.status, StatusCode::OK);
}
