//! `GET /metrics`: the Prometheus text, for a bearer of the metrics token or the admin token, with no store access.

use super::auth;
use super::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, request::Parts};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Whether `parts` carry the metrics token (when one is set) or the admin token.
fn may_read(state: &AppState, parts: &Parts) -> bool {
    let Some(credential) = auth::bearer(parts) else {
        return false;
    };
    let metrics_token = state
        .settings
        .metrics_token
        .as_ref()
        .is_some_and(|token| token.matches(credential));
    // Both compared in full, so the time does not tell which one was close.
    metrics_token | auth::holds::<auth::Admin>(state, credential)
}

/// `GET /metrics`: counters and gauges kept as events arrive (see `crate::metrics`), so a scrape
/// costs the same whatever the number of participants and never waits on the store.
async fn metrics(State(state): State<AppState>, request: Request) -> Result<impl IntoResponse, ApiError> {
    let (parts, _) = request.into_parts();
    if !may_read(&state, &parts) {
        return Err(ApiError::Unauthorized("metrics or admin token"));
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    ))
}
