//! The HTTP routes: ingest, the admin API, health, and the embedded pages.

use crate::admin;
use crate::error::ApiError;
use crate::store::MAX_SEQ;
use crate::AppState;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tower_http::cors::{Any, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use vitals_shared::wire::{IngestAck, IngestBatch};

/// Largest ingest body accepted. A full batch of 100 events with every field is about 25 KiB.
pub const INGEST_BODY_LIMIT_BYTES: usize = 64 * 1024;

const DASHBOARD_HTML: &str = include_str!("../static/dashboard.html");
const DEMO_HTML: &str = include_str!("../static/demo.html");

/// All routes over `state`.
pub fn router(state: AppState) -> Router {
    // The extension's offscreen document posts from a chrome-extension:// origin that differs
    // per install, so ingest accepts any origin; the key, not the origin, is the credential.
    let ingest_cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]);
    let ingest = Router::new()
        .route("/api/v1/ingest", post(ingest))
        .layer(DefaultBodyLimit::max(INGEST_BODY_LIMIT_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), observe_ingest))
        .layer(ingest_cors);
    Router::new()
        .route("/", get(dashboard))
        .route("/demo", get(demo))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/meetings", get(meetings))
        .route("/api/v1/meetings/{id}", get(admin::meeting))
        .route("/api/v1/meetings/{id}/history", get(admin::history))
        .route("/api/v1/alerts", get(admin::alerts))
        .route("/api/v1/turn-usage", get(admin::turn_usage))
        .route("/api/v1/export", get(admin::export))
        .route("/api/v1/stream", get(crate::stream::handler))
        .merge(ingest)
        .fallback(not_found)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The whole HTTP application: [`router`] behind a direct path for the usual ingest request.
///
/// A `POST /api/v1/ingest` with the ingest key, a JSON content type and a known length within the
/// limit is read, parsed, ingested and answered here, with the headers the router's layers
/// add (CORS, `nosniff`), counted in the ingest metrics like the router's. So the request that
/// makes up nearly all of the load skips the router's per-request work (its routing, layers,
/// boxed services and extractors). Any other request, and an ingest body that does not parse,
/// goes to the router, whose answers (and error messages) are the reference.
#[derive(Clone)]
pub struct App {
    state: AppState,
    router: Router,
}

/// The future of one [`App`] answer.
pub type AppFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl App {
    pub(crate) fn new(state: AppState, router: Router) -> Self {
        Self { state, router }
    }
}

impl tower_service::Service<Request> for App {
    type Response = Response;
    type Error = Infallible;
    type Future = AppFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> AppFuture {
        if request.method() == Method::POST && request.uri().path() == "/api/v1/ingest" {
            Box::pin(direct_ingest(self.state.clone(), self.router.clone(), request))
        } else {
            let mut router = self.router.clone();
            Box::pin(async move { tower_service::Service::call(&mut router, request).await })
        }
    }
}

/// `axum::serve` asks for a service per connection: the same application.
impl<'a, L: axum::serve::Listener> tower_service::Service<axum::serve::IncomingStream<'a, L>> for App {
    type Response = App;
    type Error = Infallible;
    type Future = std::future::Ready<Result<App, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _stream: axum::serve::IncomingStream<'a, L>) -> Self::Future {
        std::future::ready(Ok(self.clone()))
    }
}

static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
static ANY_ORIGIN: HeaderValue = HeaderValue::from_static("*");
static NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");

/// Whether the content type is `application/json` (parameters such as `charset` allowed).
fn is_plain_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether the body's length is known (declared) and within the ingest limit.
fn known_length_within_limit(body: &Body) -> bool {
    axum::body::HttpBody::size_hint(body)
        .upper()
        .is_some_and(|length| length <= INGEST_BODY_LIMIT_BYTES as u64)
}

/// [`App`]'s path for `POST /api/v1/ingest`: see there.
async fn direct_ingest(state: AppState, mut router: Router, request: Request) -> Result<Response, Infallible> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let direct = bearer(&parts).is_some_and(|credential| state.ingest_key.matches(credential))
        && is_plain_json(&parts.headers)
        && known_length_within_limit(&body);
    if !direct {
        return tower_service::Service::call(&mut router, Request::from_parts(parts, body)).await;
    }
    let response = match axum::body::to_bytes(body, INGEST_BODY_LIMIT_BYTES).await {
        Err(error) => ApiError::BadRequest(format!("Failed to buffer the request body: {error}")).into_response(),
        Ok(bytes) => match serde_json::from_slice::<IngestBatch>(&bytes) {
            // The router's JSON extractor names the offending field.
            Err(_) => {
                return tower_service::Service::call(&mut router, Request::from_parts(parts, Body::from(bytes))).await
            }
            Ok(batch) => match ingest_batch(&state, &batch).await {
                Ok(ack) => ack_response(&ack),
                Err(error) => error.into_response(),
            },
        },
    };
    Ok(finish_direct(&state, response, started))
}

/// Validates and ingests a parsed batch (both ingest paths: the direct one and the router's).
async fn ingest_batch(state: &AppState, batch: &IngestBatch) -> Result<IngestAck, ApiError> {
    validate(batch).map_err(ApiError::BadRequest)?;
    let outcome = state.ingest(batch, now_ms()).await?;
    Ok(IngestAck {
        accepted: outcome.accepted,
    })
}

/// A 200 answer carrying `ack` as JSON.
fn ack_response(ack: &IngestAck) -> Response {
    let mut body = Vec::with_capacity(16 + 8 * ack.accepted.len());
    serde_json::to_writer(&mut body, ack).expect("plain data always serializes");
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, APPLICATION_JSON.clone());
    response
}

/// What the router's layers do to an ingest answer: the CORS and `nosniff` headers, the ingest
/// metrics, and the request trace (at debug level, and server errors at error level).
fn finish_direct(state: &AppState, mut response: Response, started: Instant) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN.clone());
    if !headers.contains_key(header::X_CONTENT_TYPE_OPTIONS) {
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF.clone());
    }
    let elapsed = started.elapsed();
    let status = response.status();
    state.metrics.observe_ingest(status.as_u16(), elapsed);
    if status.is_server_error() {
        tracing::error!(
            status = status.as_u16(),
            latency_us = elapsed.as_micros() as u64,
            "ingest: response failed"
        );
    } else {
        tracing::debug!(
            status = status.as_u16(),
            latency_us = elapsed.as_micros() as u64,
            "ingest: finished processing request"
        );
    }
    response
}

/// Proof that the request carries the ingest key.
pub struct IngestKey;

/// Proof that the request carries the admin token.
pub struct AdminToken;

/// The credential of `Authorization: Bearer <credential>` (scheme case-insensitive).
fn bearer(parts: &Parts) -> Option<&[u8]> {
    let value = parts.headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, credential) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(credential)
}

impl FromRequestParts<AppState> for IngestKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match bearer(parts) {
            Some(credential) if state.ingest_key.matches(credential) => Ok(Self),
            _ => Err(ApiError::Unauthorized("ingest key")),
        }
    }
}

impl FromRequestParts<AppState> for AdminToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match bearer(parts) {
            Some(credential) if state.admin_token.matches(credential) => Ok(Self),
            _ => Err(ApiError::Unauthorized("admin token")),
        }
    }
}

/// Proof that the request carries the admin token, as a bearer header or (for browsers, which
/// cannot set headers on a WebSocket) as the `token` query parameter.
pub struct StreamToken;

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

impl FromRequestParts<AppState> for StreamToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(credential) = bearer(parts) {
            return if state.admin_token.matches(credential) {
                Ok(Self)
            } else {
                Err(ApiError::Unauthorized("admin token"))
            };
        }
        let query = axum::extract::Query::<TokenQuery>::try_from_uri(&parts.uri).ok();
        match query.and_then(|q| q.0.token) {
            Some(token) if state.admin_token.matches(token.as_bytes()) => Ok(Self),
            _ => Err(ApiError::Unauthorized("admin token")),
        }
    }
}

/// The collector's clock, ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `IngestBatch::validate` plus what the stores need: sequence numbers from 1 to `MAX_SEQ`.
pub(crate) fn validate(batch: &IngestBatch) -> Result<(), String> {
    batch.validate()?;
    if let Some(event) = batch.events.iter().find(|e| e.seq == 0 || e.seq > MAX_SEQ) {
        return Err(format!("event {}: seq must be from 1 to {MAX_SEQ}", event.seq));
    }
    Ok(())
}

/// An ingest body: `Json<IngestBatch>`, with a fast path. A body with the plain JSON content type
/// is parsed straight from its bytes; only a body that does not parse (or any other content
/// type) goes through axum's `Json`, whose error names the offending field's path.
pub struct IngestBody(IngestBatch);

impl FromRequest<AppState> for IngestBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let plain_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        let rejected = |rejection| ApiError::from_json_rejection(rejection, INGEST_BODY_LIMIT_BYTES);
        if !plain_json {
            let Json(batch) = Json::<IngestBatch>::from_request(request, state)
                .await
                .map_err(rejected)?;
            return Ok(Self(batch));
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| match rejection.status() {
                axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge {
                    limit_bytes: INGEST_BODY_LIMIT_BYTES,
                },
                _ => ApiError::BadRequest(rejection.body_text()),
            })?;
        match serde_json::from_slice(&bytes) {
            Ok(batch) => Ok(Self(batch)),
            Err(_) => Json::<IngestBatch>::from_bytes(&bytes)
                .map(|Json(batch)| Self(batch))
                .map_err(rejected),
        }
    }
}

/// `POST /api/v1/ingest`: stores a batch and acknowledges every sequence number now held.
async fn ingest(
    State(state): State<AppState>,
    _key: IngestKey,
    IngestBody(batch): IngestBody,
) -> Result<Json<IngestAck>, ApiError> {
    ingest_batch(&state, &batch).await.map(Json)
}

#[derive(Serialize)]
struct MeetingsResponse {
    meetings: Vec<crate::store::MeetingView>,
}

/// `GET /api/v1/meetings`: live meetings with their participants' merged metrics.
async fn meetings(State(state): State<AppState>, _token: AdminToken) -> Result<impl IntoResponse, ApiError> {
    let meetings = state.store.live_meetings(now_ms()).await?;
    Ok(Json(MeetingsResponse { meetings }))
}

/// Counts every ingest answer (including rejections) and times it.
async fn observe_ingest(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .observe_ingest(response.status().as_u16(), started.elapsed());
    response
}

/// `GET /readyz`: 200 when the store answers, 503 otherwise (take the process out of rotation).
async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state.store.ping().await?;
    Ok("ready")
}

/// `GET /metrics`: Prometheus text. Open like `/healthz`: it holds counts only, no ids or URLs.
async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let meetings = state.store.live_meetings(now_ms()).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(&meetings),
    ))
}

/// `GET /healthz`: the process answers (store reachability is a readiness question).
async fn healthz() -> &'static str {
    "ok"
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD_HTML)
}

async fn demo() -> Html<&'static str> {
    Html(DEMO_HTML)
}

async fn not_found() -> impl IntoResponse {
    (
        axum::http::StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": "no such route" })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(authorization: Option<&str>) -> Parts {
        let mut request = Request::builder();
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn bearer_takes_the_credential_of_a_bearer_header_only() {
        assert_eq!(bearer(&parts(Some("Bearer abc"))), Some(&b"abc"[..]));
        assert_eq!(bearer(&parts(Some("bearer abc"))), Some(&b"abc"[..]));
        assert_eq!(bearer(&parts(Some("Basic abc"))), None);
        assert_eq!(bearer(&parts(Some("Bearer"))), None);
        assert_eq!(bearer(&parts(None)), None);
    }
}
