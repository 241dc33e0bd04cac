//! What every part of the collector shares: the store, the credentials, the settings, the counters and the stream's fan-out.

use crate::admission::{Admission, AdmissionLimits, LiveCaps};
use crate::alerts::AlertThresholds;
use crate::metrics::Metrics;
use crate::participant::ParticipantTokens;
use crate::ratelimit::RateLimit;
use crate::secret::Secret;
use crate::store::{MemoryStore, Store};
use crate::stream;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The collector's tunable behaviour (the store's own settings, such as retention, live apart).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Alert thresholds and hold time, and the TURN price per GB.
    pub alerts: AlertThresholds,
    /// Ingest requests allowed per participant (across every process sharing the store).
    pub rate_limit: RateLimit,
    /// Whether `/demo` (the demo call page, not for production) is served.
    pub demo_page: bool,
    /// Flood limits by client address (this process's).
    pub admission: AdmissionLimits,
    /// The most live meetings and participants (of the whole store).
    pub live_caps: LiveCaps,
    /// The most rows (history points and alerts) one export answers.
    pub export_max_rows: usize,
    /// How far back an event's own time is believed (the history's retention).
    pub retention_ms: u64,
    /// The server's concurrency limit and request timeout.
    pub server: crate::http::ServerLimits,
    /// Token for `GET /metrics` besides the admin token.
    pub metrics_token: Option<Secret>,
    /// Key of the participant tokens; `None`: derived from the admin token (`crate::participant`).
    pub participant_secret: Option<Secret>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            alerts: AlertThresholds::default(),
            rate_limit: RateLimit::default(),
            admission: AdmissionLimits::default(),
            live_caps: LiveCaps::default(),
            export_max_rows: crate::http::EXPORT_MAX_ROWS,
            retention_ms: crate::store::RedisOptions::default().retention_ms,
            server: crate::http::ServerLimits::default(),
            metrics_token: None,
            participant_secret: None,
            demo_page: false,
        }
    }
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
pub struct AppState(pub(crate) Arc<Shared>);

/// The fields of [`AppState`] (reached through it by `Deref`).
#[derive(Clone)]
pub struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) ingest_key: Secret,
    pub(crate) admin_token: Secret,
    /// Issues and checks participant tokens (keyed by the settings' secret or the admin token).
    pub(crate) participant_tokens: Arc<ParticipantTokens>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) admission: Arc<Admission>,
    pub(crate) hub: Arc<stream::Hub>,
    /// The Redis channel commits publish stream messages to, when the store and the stream's
    /// fan-out are on the same Redis.
    pub(crate) publish_channel: Option<Arc<str>>,
    pub(crate) sweeper_started: Arc<AtomicBool>,
    /// Single-use tickets for the admin WebSocket.
    pub(crate) tickets: Arc<crate::tickets::Tickets>,
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
        let settings = Settings::default();
        let participant_tokens = Arc::new(ParticipantTokens::configured(
            settings.participant_secret.as_ref(),
            &admin_token,
        ));
        Self(Arc::new(Shared {
            store,
            ingest_key,
            admin_token,
            participant_tokens,
            settings: Arc::new(settings),
            metrics: Arc::default(),
            admission: Arc::default(),
            hub: Arc::new(stream::Hub::default()),
            publish_channel: None,
            sweeper_started: Arc::default(),
            tickets: Arc::default(),
        }))
    }

    /// The same state with other settings.
    pub fn with_settings(mut self, settings: Settings) -> Self {
        let shared = Arc::make_mut(&mut self.0);
        shared.admission = Arc::new(Admission::new(settings.admission));
        shared.participant_tokens = Arc::new(ParticipantTokens::configured(
            settings.participant_secret.as_ref(),
            &shared.admin_token,
        ));
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

    /// The same state serving the demo call page at `/demo` (`--demo`; off by default, since
    /// it is not for production and shares the dashboard's origin).
    pub fn with_demo_page(mut self) -> Self {
        let shared = Arc::make_mut(&mut self.0);
        Arc::make_mut(&mut shared.settings).demo_page = true;
        shared.sweeper_started = Arc::default();
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

    /// The participant tokens this state issues and accepts.
    pub fn participant_tokens(&self) -> &ParticipantTokens {
        &self.participant_tokens
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
