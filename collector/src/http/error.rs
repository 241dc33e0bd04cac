//! The API's one error type: every failure becomes a status and a JSON `{"error": "..."}` body.

use crate::pipeline::IngestError;
use crate::store::StoreError;
use axum::extract::rejection::JsonRejection;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An API failure. Messages of client errors name the problem; server errors are logged and
/// answered with a generic message, never with their internals.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("missing or wrong {0}")]
    Unauthorized(&'static str),
    /// The credential is right but does not allow this (a participant's batch without its
    /// participant token).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("too many requests from this participant, retry in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    /// A flood limit (of the client, of the collector, of new ids): `reason` says which.
    #[error("{reason}, retry in {retry_after_secs} s")]
    Limited {
        reason: &'static str,
        retry_after_secs: u64,
    },
    #[error("request body is larger than {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    /// The collector holds its cap of live meetings or participants (507).
    #[error("{message}")]
    AtCap { message: String, retry_after_secs: u64 },
    #[error(
        "this export holds more than {max_rows} rows (history points and alerts): narrow it to one meeting (meeting=) or a shorter range (from=, to=)"
    )]
    ExportTooLarge { max_rows: usize },
    #[error("the store is unavailable, retry later")]
    StoreUnavailable,
    #[error("internal error")]
    Internal,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TooManyRequests { .. } | Self::Limited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge { .. } | Self::ExportTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::AtCap { .. } => StatusCode::INSUFFICIENT_STORAGE,
            Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Maps a JSON extractor failure; `limit_bytes` is the route's body limit.
    pub fn from_json_rejection(rejection: JsonRejection, limit_bytes: usize) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge { limit_bytes },
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                Self::UnsupportedMediaType("expected Content-Type: application/json".into())
            }
            // Syntax errors and wrong types alike: axum's text names the line, column and the
            // path of the offending field (e.g. `events[0].metrics.rtt_ms: invalid type`).
            _ => Self::BadRequest(rejection.body_text()),
        }
    }
}

impl From<crate::admission::Refusal> for ApiError {
    fn from(refusal: crate::admission::Refusal) -> Self {
        use crate::admission::Refusal;
        let reason = match refusal {
            Refusal::Global(_) => "the collector is at its ingest rate",
            Refusal::Client(_) => "too many requests from this client",
            Refusal::NewIds(_) => "too many new participants from this client",
        };
        Self::Limited {
            reason,
            retry_after_secs: refusal.retry_after_secs(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "store unavailable");
                Self::StoreUnavailable
            }
            StoreError::Internal(detail) => {
                tracing::error!(%detail, "store failure");
                Self::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Json(json!({ "error": self.to_string() }));
        match self {
            Self::Unauthorized(_) => (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response(),
            // The client keeps its events and retries; tell it when.
            Self::StoreUnavailable => (status, [(header::RETRY_AFTER, "5")], body).into_response(),
            Self::TooManyRequests { retry_after_secs }
            | Self::Limited { retry_after_secs, .. }
            | Self::AtCap { retry_after_secs, .. } => {
                (status, [(header::RETRY_AFTER, retry_after_secs.to_string())], body).into_response()
            }
            _ => (status, body).into_response(),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::RateLimited { retry_after_secs } => Self::TooManyRequests { retry_after_secs },
            IngestError::NewIdQuota { retry_after_secs } => Self::Limited {
                reason: "too many new participants from this client",
                retry_after_secs,
            },
            error @ IngestError::AtCap { retry_after_secs, .. } => Self::AtCap {
                message: error.to_string(),
                retry_after_secs,
            },
            IngestError::ParticipantToken(refusal) => Self::Forbidden(refusal.to_string()),
            jump @ IngestError::SeqJump { .. } => Self::BadRequest(jump.to_string()),
            IngestError::Store(error) => error.into(),
        }
    }
}
