//! Socket.IO compatibility: the protocol of the Node.js call-metrics gateways, on the same port.
//!
//! Served by socketioxide as a tower service on the axum router (`/socket.io/`, Engine.IO v4 /
//! Socket.IO v5, polling and WebSocket, CORS open to any origin). Namespace [`NAMESPACE`]:
//!
//! - **Connecting** needs the auth payload `{token, userId?, meetingId?, participantToken?,
//!   adminToken?}`. `token` is the ingest key (the admin token is accepted too); compared in
//!   constant time. Without a valid token the connection is refused with a `connect_error`
//!   (`{"message": "unauthorized"}`). `userId` (1 to 256 bytes) is the participant id of this
//!   socket's metrics; without it the socket id is. A connection counts as one request of its
//!   client address against the flood limits; beyond them it is refused (`{"message": "too many
//!   requests from this client"}`).
//! - **Binding.** A participant is (meeting, user), as on the ingest API, and its participant
//!   token (`crate::participant`) covers both ids. Since a socket's `userId` is fixed but each
//!   emit names its meeting, the token is checked per emit: an emit for a (meetingId, userId)
//!   that already exists needs that pair's token; the first emit of a new pair claims it. Every
//!   accepted emit's ack carries the pair's `participantToken`, and the socket keeps it too (up
//!   to 64 meetings), so the connection that created a participant writes on without sending it
//!   back. An emit's token is its own `participantToken`, else the one the socket was acked for
//!   that meeting, else the auth's `participantToken`. A socket whose auth also names the
//!   `meetingId` it reports is checked at connect: if that participant exists, a missing or wrong
//!   `participantToken` is refused with `connect_error` `{"message": "participant token
//!   required"}` or `{"message": "wrong participant token"}`. So a client reconnecting for one
//!   meeting puts that meeting and the token of an earlier ack in its auth; one reporting
//!   several meetings from a new socket sends each meeting's token with its emits.
//! - **`meeting:metrics`** `{meetingId, metrics, timestamp, participantToken?}`: `metrics` holds
//!   any of `uploadBitrate`, `downloadBitrate` (kbps), `latency` (ms), `packetLoss` (%), `quality`
//!   (`excellent|good|fair|poor`) and `usingRelay` (bool), only the changed ones (a `null` or an
//!   unknown key is ignored). It goes through the same admission as `POST /api/v1/ingest` (the
//!   global and per-client buckets by the socket's address, the client's quota of new ids, the
//!   caps on live meetings and participants; refused: the ack's `error` says why and when to
//!   retry) and the same pipeline (merge, alerts, history, TURN usage, admin stream, rate limit,
//!   participant token) as one delta event of participant `userId` in meeting `meetingId`. Its sequence number is `timestamp` (ms since
//!   the Unix epoch, as from `Date.now()`), so a re-sent emit is not counted twice and emits
//!   arriving out of order merge in the order they were made, also across reconnects. Two
//!   different emits of one user with the same millisecond timestamp therefore count once (the
//!   second is a duplicate). A `timestamp` is accepted only from 7 days before to 30 s after the
//!   collector's clock, so a huge one cannot freeze the user (every later real emit would be
//!   older); this bound replaces the ingest API's bound on seq jumps, which timestamps would
//!   exceed in any pause of 100 s. Without a `timestamp` the collector's clock is used, kept
//!   increasing per socket. Invalid data is answered with an `error` event `{event, message}`
//!   (and an ack `{ok: false, error}` when the client asked for one); accepted data is acked
//!   `{ok: true, applied, participantToken}`.
//! - **`admin:subscribe`** joins the admin room; it needs the admin token, as `adminToken` (or
//!   `token`) in the connection auth or in the event's data (`{token}` or `{adminToken}`).
//!   **`admin:unsubscribe`** leaves it. Both ack `{ok}`.
//! - The admin room receives **`meeting:alerts`** `{meetingId, userId, alerts: [{type, severity,
//!   message, cost?}], timestamp}` for every alert raised, and **`meeting:metrics:update`**
//!   `{meetingId, userId, metrics, timestamp}` with the merged metrics (the names above), at most
//!   once per user per 2 s. Both are translated from the admin stream [`Hub`], so they carry what
//!   every collector process sharing the Redis published, under the same 2 s limit.

use super::auth::{self, Admin, Ingest};
use crate::alerts::AlertState;
use crate::clock::now_ms;
use crate::participant::{ParticipantTokens, TokenRefusal};
use crate::state::AppState;
use crate::stream::{StreamEvent, StreamMessage};
use axum::http::{header, Method};
use axum::Router;
use serde_json::{json, Map, Value};
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::broadcast;
use tower_http::cors::{Any, CorsLayer};
use vitals_shared::fields::FieldValue;
use vitals_shared::wire::Event;
use vitals_shared::wire::{IngestBatch, MetricsFields, SetFieldError, MAX_ID_LEN};

/// The namespace of the call-metrics protocol.
pub const NAMESPACE: &str = "/meeting-metrics";
/// The room of subscribed admins.
pub const ADMIN_ROOM: &str = "admin";

/// Socket.IO metric names and the collector's (`FIELD_NAMES`): the numbers first, then the class
/// and the relay flag. The protocol has no name for the other fields.
const SOCKET_NAMES: [(&str, &str); 6] = [
    ("uploadBitrate", "upload_kbps"),
    ("downloadBitrate", "download_kbps"),
    ("latency", "rtt_ms"),
    ("packetLoss", "loss_pct"),
    ("quality", "quality"),
    ("usingRelay", "using_relay"),
];
/// The number fields of [`SOCKET_NAMES`].
const NUMBER_FIELDS: &[(&str, &str)] = SOCKET_NAMES.split_at(4).0;

/// The Socket.IO routes (`/socket.io/` and below) over `state`, open to any origin (pages of
/// other sites connect, with the polling transport too; the key in the auth payload is the
/// credential). Spawns the task that forwards the admin stream to the admin room when a Tokio
/// runtime is running (it ends with the runtime).
pub fn router<S: Clone + Send + Sync + 'static>(state: AppState) -> Router<S> {
    let (service, io) = SocketIo::builder()
        .max_payload(super::ingest::INGEST_BODY_LIMIT_BYTES as u64)
        .build_svc();
    // Subscribed now, so that nothing published once the app serves is missed.
    let messages = state.hub().subscribe();
    let guard_state = state.clone();
    let guard = move |socket: SocketRef, TryData(auth): TryData<Value>| {
        let state = guard_state.clone();
        async move {
            let auth = auth.unwrap_or(Value::Null);
            authorize(&state, &auth).await?;
            // A connection counts as a request of its client, so a connect flood meets the
            // same buckets as a flood of emits.
            let parts = socket.req_parts();
            let client = super::client_from(&state, &parts.extensions, &parts.headers);
            state
                .admission
                .admit_request(client, now_ms())
                .map_err(|_| Refused::Limited)
        }
    };
    let connect = move |socket: SocketRef, TryData(auth): TryData<Value>| {
        let state = state.clone();
        async move { on_connect(state, socket, auth.unwrap_or(Value::Null)) }
    };
    io.ns(NAMESPACE, connect.with(guard));
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(forward(io, messages));
    }
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE]);
    Router::new()
        .route_service("/socket.io", service.clone())
        .route_service("/socket.io/", service.clone())
        .route_service("/socket.io/{*rest}", service)
        .layer(cors)
}

/// Why a connection is refused (the client's `connect_error` message).
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("unauthorized")]
    Unauthorized,
    #[error("participant token required")]
    TokenRequired,
    #[error("wrong participant token")]
    WrongToken,
    #[error("the store is unavailable, retry later")]
    StoreUnavailable,
    /// The client (or the collector) is at its request rate.
    #[error("too many requests from this client")]
    Limited,
}

/// The auth payload's `name`: absent, or a string of 1 to [`MAX_ID_LEN`] bytes.
fn auth_id<'a>(auth: &'a Value, name: &str) -> Result<Option<&'a str>, Refused> {
    match auth.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_ID_LEN => Ok(Some(id)),
        Some(_) => Err(Refused::Unauthorized),
    }
}

/// The connect middleware: a valid `token`, a `userId` and `meetingId` of the right shape if
/// any, and when both are given and that participant exists, its `participantToken`.
async fn authorize(state: &AppState, auth: &Value) -> Result<(), Refused> {
    let token = auth.get("token").and_then(Value::as_str).unwrap_or("");
    // Both compared in full, so the time does not tell which one was close.
    let ingest = auth::holds::<Ingest>(state, token.as_bytes());
    let admin = auth::holds::<Admin>(state, token.as_bytes());
    if !(ingest | admin) {
        return Err(Refused::Unauthorized);
    }
    let (Some(user), Some(meeting)) = (auth_id(auth, "userId")?, auth_id(auth, "meetingId")?) else {
        return Ok(());
    };
    let loaded = state
        .store
        .load(&crate::store::ParticipantKey::new(meeting, user))
        .await
        .map_err(|_| Refused::StoreUnavailable)?;
    if loaded.record.is_none() {
        return Ok(());
    }
    let expected = state.participant_tokens.issue(meeting, user);
    ParticipantTokens::check(&expected, participant_token(auth)).map_err(|refusal| match refusal {
        TokenRefusal::Missing => Refused::TokenRequired,
        TokenRefusal::Wrong => Refused::WrongToken,
    })
}

/// The `participantToken` of an auth payload or an emit's data.
fn participant_token(value: &Value) -> Option<&str> {
    value.get("participantToken").and_then(Value::as_str)
}

/// Does `value` carry the admin token as `adminToken` or `token`?
fn carries_admin_token(state: &AppState, value: &Value) -> bool {
    ["adminToken", "token"].iter().any(|key| {
        value
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|token| auth::holds::<Admin>(state, token.as_bytes()))
    })
}

fn on_connect(state: AppState, socket: SocketRef, auth: Value) {
    let user = match auth.get("userId").and_then(Value::as_str) {
        Some(id) => id.to_owned(),
        None => socket.id.to_string(),
    };
    let admin = carries_admin_token(&state, &auth);
    let tokens = Arc::new(SocketTokens {
        auth: participant_token(&auth).map(str::to_owned),
        acked: Mutex::default(),
    });
    let parts = socket.req_parts();
    let client = super::client_from(&state, &parts.extensions, &parts.headers);
    let last_seq = Arc::new(AtomicU64::new(0));
    let metrics_state = state.clone();
    socket.on(
        "meeting:metrics",
        move |socket: SocketRef, ack: AckSender, TryData(data): TryData<Value>| {
            let state = metrics_state.clone();
            let user = user.clone();
            let tokens = Arc::clone(&tokens);
            let last_seq = Arc::clone(&last_seq);
            async move {
                let data = data.unwrap_or(Value::Null);
                let socket_user = SocketUser {
                    id: &user,
                    tokens: &tokens,
                    client,
                };
                match on_metrics(&state, socket_user, &last_seq, &data).await {
                    Ok((applied, token)) => {
                        let _ = ack.send(&json!({ "ok": true, "applied": applied, "participantToken": token }));
                    }
                    Err(error) => {
                        let message = error.to_string();
                        let _ = socket.emit("error", &json!({ "event": "meeting:metrics", "message": message }));
                        let _ = ack.send(&json!({ "ok": false, "error": message }));
                    }
                }
            }
        },
    );
    socket.on(
        "admin:subscribe",
        move |socket: SocketRef, ack: AckSender, TryData(data): TryData<Value>| {
            let state = state.clone();
            async move {
                let data = data.unwrap_or(Value::Null);
                if admin || carries_admin_token(&state, &data) {
                    socket.join(ADMIN_ROOM);
                    let _ = ack.send(&json!({ "ok": true }));
                } else {
                    let message = "admin:subscribe needs the admin token";
                    let _ = socket.emit("error", &json!({ "event": "admin:subscribe", "message": message }));
                    let _ = ack.send(&json!({ "ok": false, "error": message }));
                }
            }
        },
    );
    socket.on("admin:unsubscribe", async |socket: SocketRef, ack: AckSender| {
        socket.leave(ADMIN_ROOM);
        let _ = ack.send(&json!({ "ok": true }));
    });
}

/// Why a `meeting:metrics` emit was refused: its text is what the client is told.
#[derive(Debug, thiserror::Error)]
enum EmitError {
    #[error("data must be an object {{meetingId, metrics, timestamp}}")]
    NotAnObject,
    #[error("meetingId must be a string of 1 to {MAX_ID_LEN} bytes")]
    MeetingId,
    #[error("metrics must be an object")]
    NotMetrics,
    #[error("metrics.{socket} must be {expected}")]
    FieldType {
        socket: &'static str,
        expected: &'static str,
    },
    #[error("timestamp must be ms since the Unix epoch, from 7 days before to 30 s after the collector's clock")]
    TimestampRange,
    #[error("timestamp must be a number (ms since the Unix epoch)")]
    TimestampType,
    /// Refused by the ingest checks; the text uses the protocol's names.
    #[error("{0}")]
    Invalid(String),
    #[error("too many events; retry after {0} s")]
    RateLimited(u64),
    /// This (meetingId, userId) exists and the emit (or the auth) lacks its token.
    #[error("{0} (as participantToken, in the emit or the connection auth)")]
    Token(TokenRefusal),
    #[error(transparent)]
    Failed(#[from] super::error::ApiError),
}

/// Who emits on a socket: its user (participant) id, the participant tokens it holds, and the
/// client's address.
#[derive(Clone, Copy)]
struct SocketUser<'a> {
    id: &'a str,
    tokens: &'a SocketTokens,
    client: std::net::IpAddr,
}

/// Most meetings whose tokens one socket keeps; beyond, it forgets them all (its emits then
/// carry their tokens).
const MAX_HELD_TOKENS: usize = 64;

/// The participant tokens of one socket: its auth's, and those its acks carried, by meeting.
struct SocketTokens {
    auth: Option<String>,
    acked: Mutex<HashMap<String, String>>,
}

impl SocketTokens {
    /// The token this socket holds for its user in `meeting_id`.
    fn for_meeting(&self, meeting_id: &str) -> Option<String> {
        let acked = self.acked.lock().unwrap_or_else(PoisonError::into_inner);
        acked.get(meeting_id).or(self.auth.as_ref()).cloned()
    }

    fn keep(&self, meeting_id: &str, token: &str) {
        let mut acked = self.acked.lock().unwrap_or_else(PoisonError::into_inner);
        if acked.get(meeting_id).is_some_and(|held| held == token) {
            return;
        }
        if acked.len() >= MAX_HELD_TOKENS {
            acked.clear();
        }
        acked.insert(meeting_id.to_owned(), token.to_owned());
    }
}

/// Admits (by the socket's client address), validates and ingests one `meeting:metrics` emit;
/// whether it applied something new, and the participant's token.
async fn on_metrics(
    state: &AppState,
    user: SocketUser<'_>,
    last_seq: &AtomicU64,
    data: &Value,
) -> Result<(bool, String), EmitError> {
    let now = now_ms();
    state
        .admission
        .admit_request(user.client, now)
        .map_err(|refusal| EmitError::RateLimited(refusal.retry_after_secs()))?;
    let mut batch = parse_metrics(data, user.id, now, |stamp| match stamp {
        Some(seq) => {
            last_seq.fetch_max(seq, Ordering::Relaxed);
            seq
        }
        None => {
            let previous = last_seq
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                    Some(last.max(now.saturating_sub(1)) + 1)
                })
                .unwrap_or(0);
            previous.max(now.saturating_sub(1)) + 1
        }
    })?;
    batch.participant_token = participant_token(data)
        .map(str::to_owned)
        .or_else(|| user.tokens.for_meeting(&batch.meeting_id));
    super::ingest::validate(&batch).map_err(|refused| EmitError::Invalid(socket_names(&refused.to_string())))?;
    let outcome = state
        .ingest_from_client(&batch, now, user.client, false)
        .await
        .map_err(|error| match error {
            crate::IngestError::RateLimited { retry_after_secs }
            | crate::IngestError::NewIdQuota { retry_after_secs } => EmitError::RateLimited(retry_after_secs),
            crate::IngestError::ParticipantToken(refusal) => EmitError::Token(refusal),
            other => super::error::ApiError::from(other).into(),
        })?;
    let token = outcome
        .participant_token
        .expect("a client's batch is answered with its token");
    user.tokens.keep(&batch.meeting_id, &token);
    Ok((!outcome.applied.is_empty(), token))
}

/// The collector's field names in a validation message, replaced by the protocol's.
fn socket_names(message: &str) -> String {
    let mut message = message.to_owned();
    for (socket, collector) in NUMBER_FIELDS {
        message = message.replace(collector, socket);
    }
    message
}

/// Oldest `timestamp` accepted, before the collector's clock.
const MAX_TIMESTAMP_AGE_MS: u64 = 7 * 24 * 3600 * 1000;

/// `{meetingId, metrics, timestamp}` as a one-event batch of `user`, at `now_ms` (the
/// collector's clock, which bounds the timestamp). `seq` turns the timestamp (ms, if given) into
/// the event's sequence number.
fn parse_metrics(
    data: &Value,
    user: &str,
    now_ms: u64,
    seq: impl FnOnce(Option<u64>) -> u64,
) -> Result<IngestBatch, EmitError> {
    let earliest = now_ms.saturating_sub(MAX_TIMESTAMP_AGE_MS).max(1) as f64;
    let latest = now_ms.saturating_add(crate::pipeline::MAX_EVENT_AHEAD_MS) as f64;
    let object = data.as_object().ok_or(EmitError::NotAnObject)?;
    let meeting_id = match object.get("meetingId") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_ID_LEN => id.clone(),
        _ => return Err(EmitError::MeetingId),
    };
    let metrics = match object.get("metrics") {
        Some(Value::Object(metrics)) => parse_fields(metrics)?,
        _ => return Err(EmitError::NotMetrics),
    };
    let (stamp, ts_ms) = match object.get("timestamp") {
        None | Some(Value::Null) => (None, now_ms as f64),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(ms) if ms >= earliest && ms <= latest => (Some(ms as u64), ms),
            _ => return Err(EmitError::TimestampRange),
        },
        Some(_) => return Err(EmitError::TimestampType),
    };
    Ok(IngestBatch {
        meeting_id,
        participant_id: user.to_owned(),
        label: None,
        participant_token: None,
        client_health: None,
        events: vec![Event {
            seq: seq(stamp),
            ts_ms,
            full: false,
            metrics,
        }],
    })
}

fn parse_fields(metrics: &Map<String, Value>) -> Result<MetricsFields, EmitError> {
    let mut fields = MetricsFields::default();
    for (socket, collector) in SOCKET_NAMES {
        match metrics.get(socket) {
            None | Some(Value::Null) => {}
            Some(value) => fields.set_json(collector, value).map_err(|error| match error {
                SetFieldError::WrongType { expected, .. } => EmitError::FieldType { socket, expected },
                // Not reached: every name in SOCKET_NAMES is a field (tested).
                unknown @ SetFieldError::Unknown(_) => EmitError::Invalid(unknown.to_string()),
            })?,
        }
    }
    Ok(fields)
}

/// Translates the admin stream into the admin room's events until the hub goes away.
async fn forward(io: SocketIo, mut messages: broadcast::Receiver<Arc<StreamEvent>>) {
    loop {
        match messages.recv().await {
            Ok(message) => {
                let Some((event, payload)) = translate(&message.message) else {
                    continue;
                };
                let Some(namespace) = io.of(NAMESPACE) else {
                    return;
                };
                if let Err(error) = namespace.to(ADMIN_ROOM).emit(event, &payload).await {
                    tracing::debug!(%error, "socket.io: cannot emit to the admin room");
                }
            }
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                tracing::warn!(skipped, "socket.io: the admin room fell behind the stream");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// One admin stream message as a Socket.IO event; `None` for what the protocol has no event for
/// (a resolved alert).
fn translate(message: &StreamMessage) -> Option<(&'static str, Value)> {
    match message {
        StreamMessage::Alert { alert } => {
            if alert.state != AlertState::Raised {
                return None;
            }
            let mut entry = json!({
                "type": alert.kind,
                "severity": alert.severity,
                "message": alert.message,
            });
            if let Some(cost) = &alert.cost {
                entry["cost"] = json!(cost);
            }
            Some((
                "meeting:alerts",
                json!({
                    "meetingId": alert.meeting_id,
                    "userId": alert.participant_id,
                    "alerts": [entry],
                    "timestamp": alert.at,
                }),
            ))
        }
        StreamMessage::Metrics {
            meeting_id,
            participant,
        } => {
            let values = participant.metrics.values();
            let mut metrics = Map::new();
            for (socket, collector) in SOCKET_NAMES {
                let value = values.iter().find(|(name, _)| *name == collector).and_then(|(_, v)| *v);
                if let Some(value) = value {
                    metrics.insert(socket.to_owned(), field_json(value));
                }
            }
            Some((
                "meeting:metrics:update",
                json!({
                    "meetingId": meeting_id,
                    "userId": participant.participant_id,
                    "metrics": metrics,
                    "timestamp": participant.last_seen,
                }),
            ))
        }
    }
}

/// A field's value as JSON, as the collector's own API writes it.
fn field_json(value: FieldValue<'_>) -> Value {
    match value {
        FieldValue::Number(x) => json!(x),
        FieldValue::Bool(b) => json!(b),
        FieldValue::Text(s) => json!(s),
        FieldValue::Quality(q) => json!(q),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_shared::QualityClass;

    #[test]
    fn socket_names_are_collector_fields() {
        for (_, field) in SOCKET_NAMES {
            assert!(vitals_shared::wire::FIELD_NAMES.contains(&field), "{field}");
        }
    }

    /// The collector's clock in these tests.
    const NOW: u64 = 1_700_000_000_000;

    fn batch(data: Value) -> Result<IngestBatch, EmitError> {
        parse_metrics(&data, "u", NOW, |stamp| stamp.unwrap_or(7))
    }

    #[test]
    fn a_timestamp_is_accepted_only_near_the_collectors_clock() {
        let at = |timestamp: f64| batch(json!({"meetingId": "m", "metrics": {}, "timestamp": timestamp}));
        let week = MAX_TIMESTAMP_AGE_MS as f64;
        for ok in [NOW as f64, NOW as f64 + 30_000.0, NOW as f64 - week] {
            assert_eq!(at(ok).unwrap().events[0].seq, ok as u64, "{ok}");
        }
        for bad in [
            NOW as f64 + 30_001.0,
            NOW as f64 - week - 1.0,
            crate::store::MAX_SEQ as f64,
            1.0,
            1e300,
        ] {
            let error = at(bad).unwrap_err().to_string();
            assert!(
                error.contains("timestamp") && error.contains("30 s after"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn parses_the_changed_metrics_only() {
        let b = batch(json!({"meetingId": "m", "metrics": {"latency": 120, "quality": "good", "usingRelay": true, "x": 1}, "timestamp": NOW + 123})).unwrap();
        assert_eq!(b.meeting_id, "m");
        assert_eq!(b.participant_id, "u");
        let e = &b.events[0];
        assert_eq!(e.seq, 1_700_000_000_123);
        assert!(!e.full);
        assert_eq!(e.metrics.rtt_ms, Some(120.0));
        assert_eq!(e.metrics.quality, Some(QualityClass::Good));
        assert_eq!(e.metrics.using_relay, Some(true));
        assert_eq!(e.metrics.upload_kbps, None);
        assert_eq!(
            batch(json!({"meetingId": "m", "metrics": {}})).unwrap().events[0].seq,
            7
        );
    }

    #[test]
    fn rejects_wrong_types_and_ranges_with_the_protocol_names() {
        for (data, expected) in [
            (json!("x"), "data must be an object"),
            (json!({"metrics": {}}), "meetingId"),
            (json!({"meetingId": "m"}), "metrics must be an object"),
            (
                json!({"meetingId": "m", "metrics": {"latency": "1"}}),
                "metrics.latency",
            ),
            (
                json!({"meetingId": "m", "metrics": {"quality": "great"}}),
                "metrics.quality",
            ),
            (
                json!({"meetingId": "m", "metrics": {"usingRelay": 1}}),
                "metrics.usingRelay",
            ),
            (
                json!({"meetingId": "m", "metrics": {}, "timestamp": "now"}),
                "timestamp",
            ),
            (json!({"meetingId": "m", "metrics": {}, "timestamp": -1}), "timestamp"),
        ] {
            let error = batch(data).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        let b = batch(json!({"meetingId": "m", "metrics": {"packetLoss": 101}})).unwrap();
        let error = socket_names(&crate::http::ingest::validate(&b).unwrap_err().to_string());
        assert!(error.contains("metrics.packetLoss"), "{error}");
    }

    fn translate(text: &str) -> Option<(&'static str, Value)> {
        super::translate(&StreamEvent::parse(text).expect("a stream message").message)
    }

    #[test]
    fn translates_raised_alerts_and_metrics() {
        let (event, alert) = translate(
            r#"{"type":"alert","alert":{"at":5,"meeting_id":"m","participant_id":"u","type":"high-latency","severity":"warning","state":"raised","message":"High"}}"#,
        )
        .unwrap();
        assert_eq!(event, "meeting:alerts");
        assert_eq!(
            alert,
            json!({"meetingId": "m", "userId": "u", "timestamp": 5,
                   "alerts": [{"type": "high-latency", "severity": "warning", "message": "High"}]})
        );
        assert!(translate(r#"{"type":"alert","alert":{"at":5,"meeting_id":"m","participant_id":"u","type":"high-latency","severity":"warning","state":"resolved","message":"High"}}"#).is_none());
        let (event, update) = translate(
            r#"{"type":"metrics","meeting_id":"m","participant_id":"u","label":null,"last_seen":9,"last_seq":3,"upload_kbps":null,"download_kbps":800.0,"rtt_ms":40.0,"loss_pct":null,"jitter_ms":2.0,"quality":"good","mos":null,"using_relay":false,"relay_protocol":null,"relay_server":null}"#,
        )
        .unwrap();
        assert_eq!(event, "meeting:metrics:update");
        assert_eq!(
            update,
            json!({"meetingId": "m", "userId": "u", "timestamp": 9,
                   "metrics": {"downloadBitrate": 800.0, "latency": 40.0, "quality": "good", "usingRelay": false}})
        );
    }
}
