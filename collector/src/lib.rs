//! Call Vitals collector: ingest from the extension, live participant state, the admin API and dashboard.
//!
//! `main.rs` only parses configuration and calls into here, so tests build the same router with
//! [`app`] and drive it without a socket, or run it in-process with [`serve`].

pub mod admission;
pub mod alerts;
mod clock;
pub mod config;
mod http;
pub mod metrics;
pub mod participant;
mod pipeline;
pub mod ratelimit;
mod secret;
mod state;
pub mod store;
pub mod stream;
#[cfg(feature = "testing")]
pub mod testing;
mod tickets;
pub mod turn;
pub mod webhook;

pub use http::{ApiError, App, ServerLimits, EXPORT_MAX_ROWS, INGEST_BODY_LIMIT_BYTES};
pub use pipeline::{IngestError, MAX_SEQ_JUMP, SWEEP_INTERVAL};
pub use secret::Secret;
pub use state::{AppState, Settings, Shared};

use axum::Router;
use std::future::Future;
use tokio::net::TcpListener;

/// The whole HTTP application, Socket.IO included (a `tower` service of `Request`s). Call it
/// inside a Tokio runtime, or the Socket.IO admin room receives no alerts and updates and nothing
/// is swept (held stream updates, alerts resolving without a new event); it starts the state's
/// sweeper.
pub fn app(state: AppState) -> App {
    state.start_sweeper();
    let router: Router = http::router(state.clone());
    App::new(state, router)
}

/// Serves [`app`] on `listener` until the process ends.
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    serve_with_shutdown(listener, state, std::future::pending()).await
}

/// Serves [`app`] on `listener` until `shutdown` completes, then finishes in-flight requests.
/// Connections are hyper's with the settings' header read timeout (`http/serve.rs`).
pub async fn serve_with_shutdown(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    http::serve::serve(listener, app(state), shutdown).await
}
