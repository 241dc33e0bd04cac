//! The embedded pages (dashboard, and the demo call when asked for), their scripts and styles, health, readiness and the JSON 404.

use super::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::LazyLock;
use vitals_shared::wire::FIELD_INFO;

const DASHBOARD_HTML: &str = include_str!("../../static/dashboard.html");

/// The dashboard with the metric fields it shows (`FIELD_INFO`) filled in, made once.
static DASHBOARD: LazyLock<String> = LazyLock::new(|| {
    let fields = serde_json::to_string(&FIELD_INFO).expect("plain data always serializes");
    // In a <script> element, so "</" must not appear in the JSON (it does not: names and labels
    // are the declaration's own words); escaped anyway.
    DASHBOARD_HTML.replacen("__VITALS_FIELDS__", &fields.replace("</", "<\\/"), 1)
});
const DEMO_HTML: &str = include_str!("../../static/demo.html");

/// The pages and the health routes; the demo call page only if `demo_page` (`--demo`).
pub fn router(demo_page: bool) -> Router<AppState> {
    let router = Router::new()
        .route("/", get(dashboard))
        .route(
            "/dashboard.js",
            get(asset(JAVASCRIPT, include_str!("../../static/dashboard.js"))),
        )
        .route(
            "/dashboard.css",
            get(asset(CSS, include_str!("../../static/dashboard.css"))),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if !demo_page {
        return router;
    }
    router
        .route("/demo", get(demo))
        .route("/demo.js", get(asset(JAVASCRIPT, include_str!("../../static/demo.js"))))
        .route("/demo.css", get(asset(CSS, include_str!("../../static/demo.css"))))
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// A handler answering an embedded script or style sheet.
fn asset(
    content_type: &'static str,
    text: &'static str,
) -> impl Fn() -> std::future::Ready<([(header::HeaderName, &'static str); 1], &'static str)> + Clone {
    move || std::future::ready(([(header::CONTENT_TYPE, content_type)], text))
}

/// `GET /readyz`: 200 when the store answers, 503 otherwise (take the process out of rotation).
async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state.store.ping().await?;
    Ok("ready")
}

/// `GET /healthz`: the process answers (store reachability is a readiness question).
async fn healthz() -> &'static str {
    "ok"
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD.as_str())
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_dashboard_carries_the_field_declaration() {
        let page = super::DASHBOARD.as_str();
        assert!(!page.contains("__VITALS_FIELDS__"));
        let start = page.find(r#"<script type="application/json" id="fields">"#).unwrap();
        let json = &page[start..][page[start..].find('>').unwrap() + 1..];
        let json = &json[..json.find("</script>").unwrap()];
        let fields: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(fields, serde_json::to_value(super::FIELD_INFO).unwrap());
    }
}
