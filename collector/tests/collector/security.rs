//! The pages' and the admin API's security headers, the demo page served only when asked for, and no admin token or stream ticket in the logs even at TRACE.

use crate::support::{self, send};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use futures_util::StreamExt;
use serde_json::json;
use vitals_collector::{app, AppState};

const INGEST_KEY: &str = "ingest-key-for-tests";
const ADMIN_TOKEN: &str = "admin-token-for-tests";

fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .unwrap()
}

/// The headers every answer must carry; `what` names it in a failure.
fn assert_security_headers(headers: &axum::http::HeaderMap, what: &str) {
    let value = |name: header::HeaderName| {
        headers
            .get(&name)
            .unwrap_or_else(|| panic!("{what}: no {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let csp = value(header::CONTENT_SECURITY_POLICY);
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.split(';').any(|d| d.trim() == directive), "{what}: {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: {csp}"
    );
    assert_eq!(value(header::X_FRAME_OPTIONS), "DENY", "{what}");
    assert_eq!(value(header::REFERRER_POLICY), "no-referrer", "{what}");
    assert_eq!(value(header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{what}");
}

#[tokio::test]
async fn every_page_and_admin_answer_sends_the_security_headers() {
    let app = app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN).with_demo_page());
    for uri in [
        "/",
        "/dashboard.js",
        "/dashboard.css",
        "/demo",
        "/demo.js",
        "/demo.css",
        "/healthz",
        "/nowhere",
    ] {
        let answer = send(&app, get(uri)).await;
        assert_ne!(answer.status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
        assert_security_headers(&answer.headers, uri);
    }
    // Admin JSON is never cached, nor is a stream ticket.
    let ticket = Request::post("/api/v1/stream-ticket")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let mut answers = vec![("/api/v1/stream-ticket", send(&app, ticket).await)];
    for uri in [
        "/api/v1/meetings",
        "/api/v1/alerts",
        "/api/v1/turn-usage",
        "/api/v1/export",
    ] {
        answers.push((uri, send(&app, get(uri)).await));
    }
    for (uri, answer) in answers {
        assert_eq!(answer.status, StatusCode::OK, "{uri}: {}", answer.text);
        assert_security_headers(&answer.headers, uri);
        assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store", "{uri}");
    }
    // Refused admin requests too, and the direct ingest path as the router's.
    let refused = send(&app, Request::get("/api/v1/alerts").body(Body::empty()).unwrap()).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_security_headers(&refused.headers, "refused admin request");
    let batch = support::batch("m", "p", vec![support::event(1, true, Default::default())]);
    let ingest = Request::post("/api/v1/ingest")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {INGEST_KEY}"))
        .body(Body::from(serde_json::to_vec(&batch).unwrap()))
        .unwrap();
    let answer = send(&app, ingest).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_security_headers(&answer.headers, "ingest");
}

/// The CSP allows no inline script or style: the pages must have none (a JSON data block is no
/// script), nor inline event handlers or style attributes.
#[tokio::test]
async fn the_pages_have_no_inline_script_or_style_for_the_csp_to_block() {
    let app = app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN).with_demo_page());
    for uri in ["/", "/demo"] {
        let page = send(&app, get(uri)).await.text;
        let scripts: Vec<&str> = page
            .split("<script")
            .skip(1)
            .map(|s| &s[..s.find('>').unwrap()])
            .collect();
        assert!(!scripts.is_empty(), "{uri}");
        for attributes in scripts {
            assert!(
                attributes.contains(" src=\"/") || attributes.contains("type=\"application/json\""),
                "{uri}: inline <script{attributes}>"
            );
        }
        assert!(!page.contains("<style") && !page.contains(" style="), "{uri}");
        assert!(!page.contains(" onclick=") && !page.contains(" onload="), "{uri}");
    }
}

#[tokio::test]
async fn the_demo_page_is_served_only_when_asked_for() {
    let production = app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN));
    let demo = app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN).with_demo_page());
    for uri in ["/demo", "/demo.js", "/demo.css"] {
        assert_eq!(send(&production, get(uri)).await.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(send(&demo, get(uri)).await.status, StatusCode::OK, "{uri}");
    }
    assert_eq!(send(&production, get("/")).await.status, StatusCode::OK);
}

/// The `collector` binary at TRACE, its log read back once it is stopped: every log line of its
/// router, the WebSocket, hyper and axum.
#[tokio::test]
async fn no_admin_token_or_ticket_appears_in_the_logs_at_trace() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let log_path = std::env::temp_dir().join(format!("vitals-trace-{}-{port}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut collector = std::process::Command::new(env!("CARGO_BIN_EXE_collector"))
        .env(
            "RUST_LOG",
            "trace,socketioxide=trace,engineioxide=trace,tungstenite=trace",
        )
        .env("VITALS_LISTEN", &addr)
        .env("VITALS_INGEST_KEY", INGEST_KEY)
        .env("VITALS_ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove("REDIS_URL")
        .env_remove("VITALS_WEBHOOK_URL")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the collector binary starts");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while client.get(format!("http://{addr}/healthz")).send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the collector did not start");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ticket = support::stream_ticket(addr.parse().unwrap(), ADMIN_TOKEN).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/stream?ticket={ticket}"))
        .await
        .expect("the ticket opens the stream");
    // An old dashboard's `?token=`, refused, and admin reads with the token in a header.
    let old = tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/stream?token={ADMIN_TOKEN}")).await;
    assert!(old.is_err(), "?token= is refused");
    for path in ["/api/v1/meetings", &format!("/api/v1/alerts?token={ADMIN_TOKEN}"), "/"] {
        client
            .get(format!("http://{addr}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
    }
    // A Socket.IO admin, with both credentials in its connection auth.
    let auth = json!({"token": INGEST_KEY, "adminToken": ADMIN_TOKEN});
    let _admin = crate::socketio::Client::connect(addr.parse().unwrap(), auth)
        .await
        .expect("a Socket.IO admin connects");
    let response = client
        .post(format!("http://{addr}/api/v1/ingest"))
        .bearer_auth(INGEST_KEY)
        .json(&json!({"meeting_id": "m", "participant_id": "p",
            "events": [{"seq": 1, "ts_ms": 1.0e12, "full": true, "metrics": {"rtt_ms": 900.0}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The alert reaches the socket, so the stream's own logging ran too.
    let message = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
        .await
        .expect("an alert on the stream");
    assert!(message.is_some());
    drop(socket);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    collector.kill().unwrap();
    collector.wait().unwrap();
    let logs = std::fs::read_to_string(&log_path).unwrap();
    std::fs::remove_file(&log_path).unwrap();
    // The requests were logged (at TRACE there is plenty), but without their secrets.
    assert!(logs.contains("/api/v1/stream"), "{logs}");
    assert!(logs.contains("/api/v1/alerts"), "{logs}");
    for secret in [ADMIN_TOKEN, ticket.as_str(), INGEST_KEY] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
}
