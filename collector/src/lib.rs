//! Call Vitals collector: ingest from the extension, live participant state, the admin API and dashboard.
//!
//! `main.rs` only parses configuration and calls into here, so tests build the same router with
//! [`app`] and drive it without a socket, or run it in-process with [`serve`].

mod admin;
pub mod alerts;
mod api;
pub mod config;
mod error;
pub mod metrics;
mod pipeline;
pub mod ratelimit;
mod secret;
pub mod socketio;
pub mod store;
pub mod stream;
pub mod turn;
pub mod webhook;

pub use api::INGEST_BODY_LIMIT_BYTES;
pub use error::ApiError;
pub use secret::Secret;

use alerts::AlertThresholds;
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use store::{MemoryStore, Store};
use tokio::net::TcpListener;

/// The collector's tunable behaviour (the store's own settings, such as retention, live apart).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// Alert thresholds and hold time, and the TURN price per GB.
    pub alerts: AlertThresholds,
    /// Ingest requests allowed per participant (per process).
    pub rate_limit: ratelimit::RateLimit,
}

/// What every request handler shares: the store, the credentials and the settings.
#[derive(Clone)]
pub struct AppState {
    store: Arc<dyn Store>,
    ingest_key: Secret,
    admin_token: Secret,
    settings: Arc<Settings>,
    metrics: Arc<metrics::Metrics>,
    limiter: Arc<std::sync::Mutex<ratelimit::RateLimiter>>,
    hub: Arc<stream::Hub>,
}

impl AppState {
    /// State over `store`, accepting `ingest_key` on ingest and `admin_token` on admin routes.
    pub fn new(store: Arc<dyn Store>, ingest_key: Secret, admin_token: Secret) -> Self {
        Self {
            store,
            ingest_key,
            admin_token,
            settings: Arc::new(Settings::default()),
            metrics: Arc::default(),
            limiter: Arc::new(std::sync::Mutex::new(ratelimit::RateLimiter::new(Default::default()))),
            hub: Arc::new(stream::Hub::default()),
        }
    }

    /// The same state with other settings.
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.limiter = Arc::new(std::sync::Mutex::new(ratelimit::RateLimiter::new(settings.rate_limit)));
        self.settings = Arc::new(settings);
        self
    }

    /// The same state with the admin stream fanned out through Redis: alerts and metrics
    /// updates published by any process sharing `fanout`'s Redis and prefix reach the admins of
    /// every one of them, and the per-participant metrics limit holds across them. Spawns the
    /// Redis subscriber, so it needs a Tokio runtime.
    pub fn with_stream_fanout(mut self, fanout: stream::RedisFanout) -> Self {
        self.hub = Arc::new(stream::Hub::redis(fanout, stream::METRICS_INTERVAL));
        self
    }

    /// The admin stream's fan-out.
    pub fn hub(&self) -> &Arc<stream::Hub> {
        &self.hub
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// State over a fresh in-memory store, for tests and demos.
    pub fn for_tests(ingest_key: &str, admin_token: &str) -> Self {
        Self::new(
            Arc::new(MemoryStore::default()),
            Secret::new(ingest_key),
            Secret::new(admin_token),
        )
    }

    /// The store, for callers that want to look behind the API.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("ingest_key", &self.ingest_key)
            .field("admin_token", &self.admin_token)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The whole HTTP application, Socket.IO included. Call it inside a Tokio runtime, or the
/// Socket.IO admin room receives no alerts and updates.
pub fn app(state: AppState) -> Router {
    api::router(state.clone()).merge(socketio::router(state))
}

/// Serves [`app`] on `listener` until the process ends (or an accept loop error).
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    axum::serve(listener, app(state)).await
}

/// Serves [`app`] on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}
