//! The lab page (static/lab.html: scripted loopback calls, several at once, ICE restart, a stopped track), served on a loopback port for the fixture recorder and the extension benchmark.
//!
//! It is a test page, so the harness serves it and the production collector does not.

use axum::response::Html;
use axum::routing::get;
use axum::Router;

const LAB_HTML: &str = include_str!("../static/lab.html");

/// Serves the lab page at `/lab` on a free loopback port for as long as the Tokio runtime runs;
/// returns the base URL (`http://127.0.0.1:PORT`).
pub async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let pages = Router::new().route("/lab", get(|| async { Html(LAB_HTML) }));
    tokio::spawn(async move { axum::serve(listener, pages).await });
    base
}
