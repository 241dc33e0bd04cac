//! Support for the collector's tests: batch builders, and requests through the router (the real Redis is `vitals_collector::testing`).

pub use vitals_collector::testing::{participant_token, signed, TestRedis};
use vitals_shared::wire::Event;
use vitals_shared::wire::{IngestBatch, MetricsFields};

/// An event with no time of its own (`ts_ms` 0), so the collector's clock (the `now` a test
/// passes) places it; the event-time tests set times.
pub fn event(seq: u64, full: bool, metrics: MetricsFields) -> Event {
    Event {
        seq,
        ts_ms: 0.0,
        full,
        metrics,
    }
}

pub fn batch(meeting_id: &str, participant_id: &str, events: Vec<Event>) -> IngestBatch {
    IngestBatch {
        meeting_id: meeting_id.into(),
        participant_id: participant_id.into(),
        label: None,
        participant_token: None,
        client_health: None,
        events,
    }
}

/// Settings whose flood limits by client are out of the way: a test whose one in-process client
/// stands for thousands of participants (the limits themselves are tested in `flood`).
pub fn unlimited_clients() -> vitals_collector::Settings {
    let unlimited = vitals_collector::ratelimit::RateLimit {
        per_sec: 1e9,
        burst: 1e9,
    };
    vitals_collector::Settings {
        admission: vitals_collector::admission::AdmissionLimits {
            global: unlimited,
            per_client: unlimited,
            new_ids_per_min: u32::MAX,
            trust_proxy: false,
        },
        ..Default::default()
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

/// A stream ticket of `POST /api/v1/stream-ticket` at `addr`, as the dashboard asks for one.
pub async fn stream_ticket(addr: std::net::SocketAddr, admin_token: &str) -> String {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/stream-ticket"))
        .bearer_auth(admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["expires_in_ms"], 30_000);
    answer["ticket"].as_str().unwrap().to_owned()
}

/// A one-event full batch of `participant` in `meeting` (an RTT of 10 ms, sequence `seq`), as
/// JSON carrying its participant token under `admin_token`'s default secret.
pub fn rtt_batch(admin_token: &str, meeting: &str, participant: &str, seq: u64) -> String {
    let metrics = MetricsFields {
        rtt_ms: Some(10.0),
        ..Default::default()
    };
    let batch = serde_json::to_value(batch(meeting, participant, vec![event(seq, true, metrics)])).unwrap();
    signed(admin_token, batch).to_string()
}
