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

pub use http::{ApiError, App, ServerLimits, INGEST_BODY_LIMIT_BYTES};
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

/// Serves [`app`] on `listener` until the process ends (or an accept loop error).
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    axum::serve(no_delay(listener), app(state)).await
}

/// `listener` with `TCP_NODELAY` on every connection: an answer goes out at once, not after the
/// client's delayed acknowledgement of the previous one.
fn no_delay(listener: TcpListener) -> impl axum::serve::Listener<Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    })
}

/// Serves [`app`] on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(no_delay(listener), app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
