//! Call Vitals collector: ingest from the extension, live participant state, the admin API and dashboard.
//!
//! `main.rs` only parses configuration and calls into here, so tests build the same router with
//! [`app`] and drive it without a socket, or run it in-process with [`serve`].

mod api;
pub mod config;
mod error;
mod secret;
pub mod store;

pub use api::INGEST_BODY_LIMIT_BYTES;
pub use error::ApiError;
pub use secret::Secret;

use axum::Router;
use std::future::Future;
use std::sync::Arc;
use store::{MemoryStore, Store};
use tokio::net::TcpListener;

/// What every request handler shares: the store and the credentials.
#[derive(Clone)]
pub struct AppState {
    store: Arc<dyn Store>,
    ingest_key: Secret,
    admin_token: Secret,
}

impl AppState {
    /// State over `store`, accepting `ingest_key` on ingest and `admin_token` on admin routes.
    pub fn new(store: Arc<dyn Store>, ingest_key: Secret, admin_token: Secret) -> Self {
        Self {
            store,
            ingest_key,
            admin_token,
        }
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
            .finish_non_exhaustive()
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    api::router(state)
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
