//! Admin API tests beyond the live list: alerts, one meeting, history, TURN usage and export,
//! their pages and the streamed export (memory store and a real Redis).

use crate::support::{now_ms, send, unlimited_clients, Answer, TestRedis};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;
use vitals_collector::alerts::AlertThresholds;
use vitals_collector::ratelimit::RateLimit;
use vitals_collector::store::{RedisStore, LIVE_TTL_MS};
use vitals_collector::App as Router;
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

/// The app over the memory store, or over a real Redis (which lives as long as the guard).
async fn app_on(backend: Backend, alerts: AlertThresholds) -> (Router, Option<TestRedis>) {
    // Every request here comes from the one in-process client, for thousands of participants.
    let settings = Settings {
        alerts,
        ..unlimited_clients()
    };
    match backend {
        Backend::Memory => (
            app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN).with_settings(settings)),
            None,
        ),
        Backend::Redis => {
            let redis = TestRedis::start().await;
            let store = Arc::new(redis.store(LIVE_TTL_MS));
            let state = AppState::new(store, Secret::new(INGEST_KEY), Secret::new(ADMIN_TOKEN));
            (app(state.with_settings(settings)), Some(redis))
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Backend {
    Memory,
    Redis,
}

async fn get(app: &Router, uri: &str) -> Answer {
    let request = Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    send(app, request).await
}

async fn ingest(app: &Router, participant: &str, seq: u64, metrics: Value) {
    ingest_to(app, MEETING, participant, seq, metrics).await
}

async fn ingest_to(app: &Router, meeting: &str, participant: &str, seq: u64, metrics: Value) {
    let answer = post_ingest_to(app, meeting, participant, seq, metrics).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

/// One delta event of `participant` in [`MEETING`], whatever the answer.
async fn post_ingest(app: &Router, participant: &str, seq: u64, metrics: Value) -> Answer {
    post_ingest_to(app, MEETING, participant, seq, metrics).await
}

async fn post_ingest_to(app: &Router, meeting: &str, participant: &str, seq: u64, metrics: Value) -> Answer {
    let batch = json!({"meeting_id": meeting, "participant_id": participant,
        "events": [{"seq": seq, "ts_ms": 0, "full": false, "metrics": metrics}]});
    let batch = crate::support::signed(ADMIN_TOKEN, batch);
    let request = Request::post("/api/v1/ingest")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {INGEST_KEY}"))
        .body(Body::from(batch.to_string()))
        .unwrap();
    send(app, request).await
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
async fn findings_from_the_browser_are_alerts_of_the_same_id_raised_and_resolved_once() {
    // The default hold: a finding still resolves as soon as the browser drops it.
    let app = test_app(AlertThresholds::default());
    let since = now_ms();
    ingest(&app, "p", 1, json!({"rtt_ms": 80.0, "findings": ""})).await;
    ingest(&app, "p", 2, json!({"findings": "bandwidth-limited,mic-silent"})).await;
    ingest(
        &app,
        "p",
        3,
        json!({"findings": "bandwidth-limited,mic-silent", "rtt_ms": 90.0}),
    )
    .await;
    let answer = get(&app, &format!("/api/v1/alerts?since={since}")).await;
    assert_eq!(
        kinds(&answer),
        [pair("bandwidth-limited", "raised"), pair("mic-silent", "raised")]
    );
    assert_eq!(answer.body["alerts"][0]["severity"], "warning");
    assert!(
        answer.body["alerts"][0]["message"]
            .as_str()
            .unwrap()
            .contains("network limits the video"),
        "{}",
        answer.text
    );
    let detail = get(&app, &format!("/api/v1/meetings/{}", encode(MEETING))).await;
    assert_eq!(
        detail.body["participants"][0]["findings"],
        "bandwidth-limited,mic-silent"
    );
    ingest(&app, "p", 4, json!({"findings": "mic-silent"})).await;
    assert_eq!(
        kinds(&get(&app, &format!("/api/v1/alerts?since={since}")).await),
        [
            pair("bandwidth-limited", "raised"),
            pair("mic-silent", "raised"),
            pair("bandwidth-limited", "resolved")
        ]
    );
    // An id the collector does not know is refused, and changes nothing.
    let refused = post_ingest(&app, "p", 5, json!({"findings": "mic-silent,made-up"})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert!(refused.text.contains("metrics.findings"), "{}", refused.text);
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
async fn unknown_meeting_is_404_and_bad_queries_are_400_naming_the_parameter() {
    let app = test_app(AlertThresholds::default());
    let missing = get(&app, "/api/v1/meetings/https%3A%2F%2Fnowhere.example%2F").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body["error"].is_string());
    for (uri, named) in [
        ("/api/v1/alerts?since=yesterday", "since"),
        ("/api/v1/alerts?bogus=1", "bogus"),
        ("/api/v1/alerts?since=10&to=5", "since"),
        ("/api/v1/alerts?to=later", "to"),
        ("/api/v1/alerts?limit=0", "limit"),
        ("/api/v1/alerts?limit=10001", "limit"),
        ("/api/v1/alerts?limit=ten", "limit"),
        ("/api/v1/alerts?limit=-5", "limit"),
        ("/api/v1/alerts?cursor=nonsense", "cursor"),
        ("/api/v1/alerts?cursor=12:x", "cursor"),
        ("/api/v1/alerts?meeting=a&meeting=b", "meeting"),
        ("/api/v1/turn-usage?from=10&to=5", "from"),
        ("/api/v1/turn-usage?to=soon", "to"),
        ("/api/v1/turn-usage?limit=5", "limit"),
        ("/api/v1/export?format=xml", "format"),
        ("/api/v1/export?from=-1", "from"),
        ("/api/v1/export?from=9&to=1", "from"),
        ("/api/v1/export?to=1e12", "to"),
        ("/api/v1/meetings/m/history?from=9&to=1", "from"),
        ("/api/v1/meetings/m/history?from=", "from"),
        ("/api/v1/meetings/m/history?to=1.5", "to"),
        ("/api/v1/meetings/m/history?limit=0", "limit"),
        ("/api/v1/meetings/m/history?limit=20001", "limit"),
        ("/api/v1/meetings/m/history?cursor=p:1", "cursor"),
        ("/api/v1/meetings/m/history?participant=p&since=1", "since"),
    ] {
        let answer = get(&app, uri).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}: {}", answer.text);
        let error = answer.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{uri}: {}", answer.text));
        assert!(error.contains(named), "{uri}: {error:?} should name {named}");
    }
    // The largest limits are taken, as is a time range with from = to.
    for uri in [
        "/api/v1/alerts?limit=10000",
        "/api/v1/meetings/m/history?limit=20000&from=5&to=5",
        "/api/v1/export?from=5&to=5",
    ] {
        assert_eq!(get(&app, uri).await.status, StatusCode::OK, "{uri}");
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
    let answer = post_ingest(&app, "fast", 4, json!({"rtt_ms": 999.0})).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "{}", answer.text);
    let retry_after: u64 = answer.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    assert!(answer.body["error"].as_str().unwrap().contains("too many"));
    // The rejected event was not stored; another participant is not limited.
    let detail = get(&app, &format!("/api/v1/meetings/{}", encode(MEETING))).await;
    assert_eq!(detail.body["participants"][0]["rtt_ms"], 10.0);
    assert_eq!(
        post_ingest(&app, "calm", 4, json!({"rtt_ms": 999.0})).await.status,
        StatusCode::OK
    );
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

/// Sleeps into the next 10 s history bucket, so that the next ingest makes a new point.
async fn next_history_bucket() {
    let now = now_ms();
    tokio::time::sleep(Duration::from_millis(10_000 - now % 10_000 + 20)).await;
}

/// Every row of `first_uri` (with a `limit`), following `next_cursor` page by page.
async fn all_pages(app: &Router, first_uri: &str, rows: &str, limit: usize) -> (Vec<Value>, usize) {
    let mut all = Vec::new();
    let mut uri = first_uri.to_owned();
    for pages in 1.. {
        let answer = get(app, &uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}: {}", answer.text);
        assert_eq!(answer.body["limit"], limit, "{uri}");
        let page = answer.body[rows].as_array().unwrap();
        assert!(page.len() <= limit, "{uri}: {} rows", page.len());
        all.extend(page.iter().cloned());
        match answer.body["next_cursor"].as_str() {
            // Only a full page has a next one.
            Some(cursor) => {
                assert_eq!(page.len(), limit, "{uri}");
                uri = format!("{first_uri}&cursor={}", encode(cursor));
            }
            None => return (all, pages),
        }
        assert!(pages < 1000, "{uri}: the cursor does not advance");
    }
    unreachable!()
}

/// (meeting id, participant id, time) of each row, in order.
fn keys(rows: &[Value], time: &str) -> Vec<(String, String, u64)> {
    rows.iter()
        .map(|r| {
            (
                r["meeting_id"].as_str().unwrap().to_owned(),
                r["participant_id"].as_str().unwrap().to_owned(),
                r[time].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn history_and_alerts_come_in_pages_with_every_row_once(backend: Backend) {
    let (app, _redis) = app_on(
        backend,
        AlertThresholds {
            clear_after_ms: 0,
            ..Default::default()
        },
    )
    .await;
    let from = now_ms();
    // Ids with the cursor's separator, commas and quotes; one participant in another meeting.
    let participants = ["a", "b:1", "c, \"d\"", "e", ":f"];
    for p in participants {
        ingest(&app, p, 1, json!({"rtt_ms": 400.0, "loss_pct": 9.0})).await;
    }
    ingest_to(&app, "https://other.example/", "a", 1, json!({"rtt_ms": 400.0})).await;
    next_history_bucket().await;
    for p in participants {
        ingest(&app, p, 2, json!({"rtt_ms": 50.0, "loss_pct": 0.0})).await;
    }
    let to = now_ms() + 10_000;

    // History: one point per participant per bucket, ordered by participant, then time.
    let history = format!("/api/v1/meetings/{}/history?from={from}&to={to}", encode(MEETING));
    // A participant's point is written when the stream publishes its state, at most every 2 s
    // (a state held by that limit is written when its window ends): wait for the second bucket.
    let waited = std::time::Instant::now();
    let (full, pages) = loop {
        let (full, pages) = all_pages(&app, &format!("{history}&limit=20000"), "points", 20_000).await;
        if full.len() >= 2 * participants.len() || waited.elapsed() > Duration::from_secs(5) {
            break (full, pages);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(pages, 1);
    let full = keys(&full, "t");
    assert_eq!(full.len(), 2 * participants.len(), "{full:?}");
    let mut sorted = full.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, full, "ordered, each once");
    for limit in [1, 3, 4] {
        let (paged, pages) = all_pages(&app, &format!("{history}&limit={limit}"), "points", limit).await;
        assert_eq!(keys(&paged, "t"), full, "limit {limit}");
        assert_eq!(pages, full.len().div_ceil(limit), "limit {limit}");
    }
    let one = format!("{history}&participant={}&limit=1", encode("b:1"));
    let (paged, _) = all_pages(&app, &one, "points", 1).await;
    let of_b: Vec<_> = full.iter().filter(|(_, p, _)| p == "b:1").cloned().collect();
    assert_eq!((keys(&paged, "t"), of_b.len()), (of_b, 2));
    // Without a limit, a page holds up to 5,000 points.
    let answer = get(&app, &history).await;
    assert_eq!(answer.body["limit"], 5_000);
    assert_eq!(answer.body["points"].as_array().unwrap().len(), full.len());
    assert_eq!(answer.body["next_cursor"], Value::Null);

    // Alerts: each participant raised two at once (same time) and resolved them at once.
    let alerts = format!("/api/v1/alerts?since={from}");
    let (full, _) = all_pages(&app, &format!("{alerts}&limit=10000"), "alerts", 10_000).await;
    assert_eq!(full.len(), 4 * participants.len() + 1, "{full:?}");
    for limit in [1, 2, 7] {
        let (paged, _) = all_pages(&app, &format!("{alerts}&limit={limit}"), "alerts", limit).await;
        assert_eq!(paged, full, "limit {limit}");
    }
    let of_meeting = format!("{alerts}&meeting={}", encode(MEETING));
    let (paged, _) = all_pages(&app, &format!("{of_meeting}&limit=3"), "alerts", 3).await;
    let expected: Vec<Value> = full.iter().filter(|a| a["meeting_id"] == MEETING).cloned().collect();
    assert_eq!(paged, expected);
    // `to` bounds the range: nothing before `since`, nothing after `to`.
    let first_at = full[0]["at"].as_u64().unwrap();
    let (until, _) = all_pages(&app, &format!("{alerts}&to={first_at}&limit=1"), "alerts", 1).await;
    let at_first: Vec<Value> = full.iter().filter(|a| a["at"] == first_at).cloned().collect();
    assert_eq!(until, at_first);
}

#[tokio::test]
async fn history_and_alerts_come_in_pages_with_every_row_once_memory() {
    history_and_alerts_come_in_pages_with_every_row_once(Backend::Memory).await;
}

#[tokio::test]
async fn history_and_alerts_come_in_pages_with_every_row_once_redis() {
    history_and_alerts_come_in_pages_with_every_row_once(Backend::Redis).await;
}

/// A cursor whose skip no page could have (past Redis's i64 offsets) is a 400 naming it, not a
/// 500 from the store.
#[tokio::test]
async fn a_huge_alerts_cursor_is_400_on_either_store() {
    for backend in [Backend::Memory, Backend::Redis] {
        let (app, _redis) = app_on(backend, AlertThresholds::default()).await;
        ingest(&app, "p-1", 1, json!({"rtt_ms": 900.0})).await;
        for cursor in ["1:18446744073709551615", "1:9223372036854775808", "1:1000001"] {
            let answer = get(&app, &format!("/api/v1/alerts?cursor={cursor}")).await;
            assert_eq!(
                answer.status,
                StatusCode::BAD_REQUEST,
                "{backend:?} {cursor}: {}",
                answer.text
            );
            assert!(answer.text.contains("cursor"), "{backend:?}: {}", answer.text);
        }
        let answer = get(&app, "/api/v1/alerts?cursor=1:1000000").await;
        assert_eq!(answer.status, StatusCode::OK, "{backend:?}: {}", answer.text);
    }
}

/// The body's chunks as the server sent them.
async fn chunks(app: &Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, Vec<String>) {
    let request = Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, mut body) = response.into_parts();
    let mut chunks = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            chunks.push(String::from_utf8(data.to_vec()).unwrap());
        }
    }
    (parts.status, parts.headers, chunks)
}

/// Rows the export reads and sends at a time (`EXPORT_CHUNK_ROWS`).
const EXPORT_CHUNK_ROWS: usize = 1_000;

async fn export_streams_a_wide_range_in_bounded_chunks(backend: Backend) {
    let (app, _redis) = app_on(backend, AlertThresholds::default()).await;
    // 1,250 participants in 5 meetings, each with one history point and one alert.
    let count = 1_250;
    let meeting = |i: usize| format!("https://meet.example.com/m{}", i % 5);
    for i in 0..count {
        ingest_to(&app, &meeting(i), &format!("p{i:04}"), 1, json!({"rtt_ms": 400.0})).await;
    }
    // A week wide: the whole retention.
    let to = now_ms() + 10_000;
    let from = to - 7 * 24 * 3_600_000;

    let (status, headers, body) = chunks(&app, &format!("/api/v1/export?format=json&from={from}&to={to}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert!(!headers.contains_key(header::CONTENT_LENGTH), "streamed");
    // Streamed as it is read: several chunks, none with more than one page of rows.
    assert!(body.len() >= 4, "{} chunks", body.len());
    for chunk in &body {
        let rows = chunk.matches("\"participant_id\"").count();
        assert!(rows <= EXPORT_CHUNK_ROWS, "{rows} rows in one chunk");
    }
    let export: Value = serde_json::from_str(&body.concat()).unwrap();
    assert_eq!((export["from"].as_u64(), export["to"].as_u64()), (Some(from), Some(to)));
    let history = keys(export["history"].as_array().unwrap(), "t");
    let alerts = keys(export["alerts"].as_array().unwrap(), "at");
    for (rows, what) in [(history, "history"), (alerts, "alerts")] {
        let mut ids: Vec<(String, String)> = rows.into_iter().map(|(m, p, _)| (m, p)).collect();
        ids.sort();
        let expected: Vec<(String, String)> = {
            let mut all: Vec<_> = (0..count).map(|i| (meeting(i), format!("p{i:04}"))).collect();
            all.sort();
            all
        };
        assert_eq!(ids, expected, "{what}: every participant exactly once");
    }

    let (status, headers, body) = chunks(&app, &format!("/api/v1/export?format=csv&from={from}&to={to}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/csv"));
    assert!(body.len() >= 4, "{} chunks", body.len());
    for chunk in &body {
        assert!(chunk.matches("\r\n").count() <= EXPORT_CHUNK_ROWS + 1);
    }
    let csv = body.concat();
    let lines: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 1 + 2 * count);
    assert!(lines[0].starts_with("record,time_ms,"));
    let mut rows: Vec<&str> = lines[1..].to_vec();
    assert_eq!(rows.iter().filter(|l| l.starts_with("metrics,")).count(), count);
    assert_eq!(rows.iter().filter(|l| l.starts_with("alert,")).count(), count);
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), 2 * count, "no row twice");

    // An empty range is a complete, empty document.
    let (_, _, body) = chunks(&app, "/api/v1/export?format=json&from=0&to=1").await;
    let empty: Value = serde_json::from_str(&body.concat()).unwrap();
    assert_eq!(empty, json!({"from": 0, "to": 1, "history": [], "alerts": []}));
}

#[tokio::test]
async fn export_streams_a_wide_range_in_bounded_chunks_memory() {
    export_streams_a_wide_range_in_bounded_chunks(Backend::Memory).await;
}

#[tokio::test]
async fn export_streams_a_wide_range_in_bounded_chunks_redis() {
    export_streams_a_wide_range_in_bounded_chunks(Backend::Redis).await;
}
