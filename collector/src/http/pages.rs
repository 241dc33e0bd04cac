//! The embedded pages (dashboard, demo call), health, readiness, Prometheus metrics and the JSON 404.

use super::error::ApiError;
use crate::clock::now_ms;
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};

const DASHBOARD_HTML: &str = include_str!("../../static/dashboard.html");
const DEMO_HTML: &str = include_str!("../../static/demo.html");

/// The pages and the health routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/demo", get(demo))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
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

pub(super) async fn not_found() -> impl IntoResponse {
    (
        axum::http::StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": "no such route" })),
    )
}
