//! `POST /api/v1/ingest`: the route, its body extractor, and the direct path that answers the usual request without the router.

use super::auth::{self, Ingest, IngestKey};
use super::error::ApiError;
use crate::clock::now_ms;
use crate::state::AppState;
use crate::store::MAX_SEQ;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use std::convert::Infallible;
use std::net::IpAddr;
use std::time::Instant;
use tower_http::cors::{Any, CorsLayer};
use vitals_shared::wire::{IngestAck, IngestBatch, InvalidBatch};

/// Largest ingest body accepted. A full batch of 100 events with every field is about 25 KiB.
pub const INGEST_BODY_LIMIT_BYTES: usize = 64 * 1024;

/// The ingest route, open to any origin with its body limit and metrics.
pub fn router(state: AppState) -> Router<AppState> {
    // The extension's offscreen document posts from a chrome-extension:// origin that differs
    // per install, so ingest accepts any origin; the key, not the origin, is the credential.
    let ingest_cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]);
    Router::new()
        .route("/api/v1/ingest", post(ingest))
        .layer(DefaultBodyLimit::max(INGEST_BODY_LIMIT_BYTES))
        .layer(middleware::from_fn_with_state(state, observe_ingest))
        .layer(ingest_cors)
}

static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
static ANY_ORIGIN: HeaderValue = HeaderValue::from_static("*");

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

/// [`super::App`]'s path for `POST /api/v1/ingest`: see there.
pub(super) async fn direct_ingest(
    state: AppState,
    mut router: Router,
    request: Request,
) -> Result<Response, Infallible> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let direct = auth::bearer(&parts).is_some_and(|credential| auth::holds::<Ingest>(&state, credential))
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
            Ok(batch) => match ingest_batch(&state, &batch, super::client_of(&state, &parts)).await {
                Ok(ack) => ack_response(&ack),
                Err(error) => error.into_response(),
            },
        },
    };
    Ok(finish_direct(&state, response, started))
}

/// Admits, validates and ingests a parsed batch from `client` (both ingest paths: the direct
/// one and the router's).
async fn ingest_batch(state: &AppState, batch: &IngestBatch, client: IpAddr) -> Result<IngestAck, ApiError> {
    let now = now_ms();
    state.admission.admit_request(client, now)?;
    validate(batch).map_err(|refused| ApiError::BadRequest(refused.to_string()))?;
    let outcome = state.ingest_from(batch, now, client).await?;
    Ok(IngestAck {
        accepted: outcome.accepted,
        participant_token: outcome.participant_token,
    })
}

/// A 200 answer carrying `ack` as JSON.
fn ack_response(ack: &IngestAck) -> Response {
    let mut body = Vec::with_capacity(112 + 8 * ack.accepted.len());
    serde_json::to_writer(&mut body, ack).expect("plain data always serializes");
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, APPLICATION_JSON.clone());
    response
}

/// What the router's layers do to an ingest answer: the CORS and security headers, the ingest
/// metrics, and the request trace (at debug level, and server errors at error level).
fn finish_direct(state: &AppState, mut response: Response, started: Instant) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN.clone());
    super::security_headers(headers);
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

/// Why a batch was refused before it reached the pipeline.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(super) enum Refused {
    #[error(transparent)]
    Invalid(#[from] InvalidBatch),
    #[error("event {0}: seq must be from 1 to {MAX_SEQ}")]
    Seq(u64),
}

/// `IngestBatch::validate` plus what the stores need: sequence numbers from 1 to `MAX_SEQ`.
pub(super) fn validate(batch: &IngestBatch) -> Result<(), Refused> {
    batch.validate()?;
    if let Some(event) = batch.events.iter().find(|e| e.seq == 0 || e.seq > MAX_SEQ) {
        return Err(Refused::Seq(event.seq));
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
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    IngestBody(batch): IngestBody,
) -> Result<Json<IngestAck>, ApiError> {
    let client = super::client_from(&state, &extensions, &headers);
    ingest_batch(&state, &batch, client).await.map(Json)
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
