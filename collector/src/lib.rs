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

pub use api::{App, INGEST_BODY_LIMIT_BYTES};
pub use error::ApiError;
pub use pipeline::{IngestError, SWEEP_INTERVAL};
pub use secret::Secret;

use alerts::AlertThresholds;
use axum::Router;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use store::{IngestOutcome, MemoryStore, Store, StoreError};
use tokio::net::TcpListener;
use vitals_shared::wire::IngestBatch;

/// The collector's tunable behaviour (the store's own settings, such as retention, live apart).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// Alert thresholds and hold time, and the TURN price per GB.
    pub alerts: AlertThresholds,
    /// Ingest requests allowed per participant (across every process sharing the store).
    pub rate_limit: ratelimit::RateLimit,
}

impl Settings {
    /// A participant's metrics go to the admin stream at most once per this many ms.
    pub fn metrics_interval_ms(&self) -> u64 {
        stream::METRICS_INTERVAL.as_millis() as u64
    }
}

/// What every request handler shares: the store, the credentials and the settings. One `Arc`,
/// so the clones axum makes for every request cost one counter update.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The fields of [`AppState`] (reached through it by `Deref`).
#[derive(Clone)]
pub struct Shared {
    store: Arc<dyn Store>,
    ingest_key: Secret,
    admin_token: Secret,
    settings: Arc<Settings>,
    metrics: Arc<metrics::Metrics>,
    hub: Arc<stream::Hub>,
    /// The Redis channel commits publish stream messages to, when the store and the stream's
    /// fan-out are on the same Redis.
    publish_channel: Option<Arc<str>>,
    sweeper_started: Arc<AtomicBool>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// State over `store`, accepting `ingest_key` on ingest and `admin_token` on admin routes.
    pub fn new(store: Arc<dyn Store>, ingest_key: Secret, admin_token: Secret) -> Self {
        Self(Arc::new(Shared {
            store,
            ingest_key,
            admin_token,
            settings: Arc::new(Settings::default()),
            metrics: Arc::default(),
            hub: Arc::new(stream::Hub::default()),
            publish_channel: None,
            sweeper_started: Arc::default(),
        }))
    }

    /// The same state with other settings.
    pub fn with_settings(mut self, settings: Settings) -> Self {
        let shared = Arc::make_mut(&mut self.0);
        shared.settings = Arc::new(settings);
        // A state built anew runs its own sweeper (a clone made before does not share it).
        shared.sweeper_started = Arc::default();
        self
    }

    /// The same state with the admin stream fanned out through Redis: alerts and metrics
    /// updates published by any process sharing `fanout`'s Redis and prefix reach the admins of
    /// every one of them. Spawns the Redis subscriber, so it needs a Tokio runtime.
    pub fn with_stream_fanout(mut self, fanout: stream::RedisFanout) -> Self {
        let hub = stream::Hub::redis(fanout);
        let shared = Arc::make_mut(&mut self.0);
        shared.publish_channel = match (hub.redis_channel(), shared.store.publish_target()) {
            (Some((target, channel)), Some(store)) if target == store => Some(Arc::from(channel)),
            _ => None,
        };
        shared.hub = Arc::new(hub);
        shared.sweeper_started = Arc::default();
        self
    }

    /// Ingests a batch that passed validation, at `now_ms` (ms since the Unix epoch): the rate
    /// limit, the merge (idempotent by sequence number), alerts, history, TURN usage and the
    /// admin stream, as one atomic change of the participant's record.
    pub async fn ingest(&self, batch: &IngestBatch, now_ms: u64) -> Result<IngestOutcome, IngestError> {
        pipeline::ingest(self, batch, now_ms).await
    }

    /// Does what is due at `now_ms` without a new event (held stream updates, alerts that
    /// cleared or whose participant went silent, idle TURN accounting); returns how many
    /// participants changed. [`app`] runs this every [`SWEEP_INTERVAL`] by itself.
    pub async fn sweep(&self, now_ms: u64) -> Result<usize, StoreError> {
        pipeline::sweep(self, now_ms).await
    }

    /// Starts the background sweeper of this state (once, whatever the number of calls).
    fn start_sweeper(&self) {
        if tokio::runtime::Handle::try_current().is_ok() && !self.sweeper_started.swap(true, Ordering::SeqCst) {
            pipeline::spawn_sweeper(Arc::downgrade(&self.0));
        }
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

/// The whole HTTP application, Socket.IO included (a `tower` service of `Request`s). Call it
/// inside a Tokio runtime, or the Socket.IO admin room receives no alerts and updates and nothing
/// is swept (held stream updates, alerts resolving without a new event); it starts the state's
/// sweeper.
pub fn app(state: AppState) -> App {
    state.start_sweeper();
    let router: Router = api::router(state.clone()).merge(socketio::router(state.clone()));
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
