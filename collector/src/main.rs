//! The `collector` binary: parse configuration, init tracing, build the store, serve (or analyze a recording).

mod analyze;

use clap::Parser;
use std::process::ExitCode;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;
use vitals_collector::config::{Cli, Command, ConfigError, ServeArgs};
use vitals_collector::store::{MemoryStore, RedisOptions, RedisStore, Store, LIVE_TTL_MS};
use vitals_collector::stream::RedisFanout;
use vitals_collector::AppState;

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(quiet_wire_logs(filter))
        .init();
    let result = match Cli::parse().into_command() {
        Command::Serve(args) => serve(args).await,
        Command::Analyze(args) => return analyze_command(&args.file),
        Command::MeetingId(args) => return meeting_id_command(&args.url, &args.salt),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("collector: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `filter` with Socket.IO's libraries and the WebSocket one at `info` at most, whatever
/// `RUST_LOG` says: their debug and trace lines print connection auth payloads and messages,
/// which hold the ingest key and the admin token.
fn quiet_wire_logs(filter: EnvFilter) -> EnvFilter {
    ["socketioxide=info", "engineioxide=info", "tungstenite=info"]
        .into_iter()
        .fold(filter, |filter, directive| {
            filter.add_directive(directive.parse().expect("a valid directive"))
        })
}

/// `collector analyze FILE`: JSON lines on stdout, the error on stderr (exit code 2: not a recording).
fn analyze_command(file: &std::path::Path) -> ExitCode {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match analyze::run(file, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("collector analyze: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// `collector meeting-id --salt SALT URL`: the hashed meeting id on stdout (exit code 2 when the
/// address is not an http(s) page or the salt is empty).
fn meeting_id_command(url: &str, salt: &str) -> ExitCode {
    if salt.trim().is_empty() {
        eprintln!("collector meeting-id: the salt is empty: without one the extension sends the page address itself");
        return ExitCode::from(2);
    }
    match vitals_shared::privacy::uploaded_meeting_id(url, salt) {
        Some(id) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("collector meeting-id: {url:?} is not an http(s) page address");
            ExitCode::from(2)
        }
    }
}

/// Why the collector could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Webhook(#[from] vitals_collector::webhook::WebhookError),
    #[error(transparent)]
    Store(#[from] vitals_collector::store::StoreError),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Server(#[source] std::io::Error),
}

async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    let (ingest_key, admin_token) = args.secrets()?;
    let webhook = args.webhook()?;
    let retention_ms = args.retention_ms()?;
    let store: Arc<dyn Store> = match &args.redis_url {
        Some(url) => {
            let options = RedisOptions {
                retention_ms,
                ..RedisOptions::default()
            };
            let store = RedisStore::new(url.expose(), options)?;
            // Not fatal: ingest answers 503 until Redis is reachable, and the client retries.
            match store.ping().await {
                Ok(()) => tracing::info!("store: Redis"),
                Err(error) => tracing::warn!(%error, "store: Redis, not reachable yet"),
            }
            Arc::new(store)
        }
        None => {
            tracing::info!("store: in memory (set REDIS_URL to share state between processes)");
            Arc::new(MemoryStore::with_retention(LIVE_TTL_MS, retention_ms))
        }
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Listen {
            address: args.listen,
            source,
        })?;
    tracing::info!("listening on http://{}", args.listen);
    let mut state = AppState::new(store, ingest_key, admin_token).with_settings(args.settings());
    if let Some(url) = &args.redis_url {
        // Admins connected to any process sharing this Redis see every alert and update.
        let fanout = RedisFanout::new(url.expose(), &RedisOptions::default().key_prefix)?;
        state = state.with_stream_fanout(fanout);
    }
    if let Some(webhook) = webhook {
        tracing::info!(?webhook, "alerts: webhook notifications");
        webhook.spawn(state.hub());
    }
    vitals_collector::serve_with_shutdown(listener, state, shutdown_signal())
        .await
        .map_err(ServeError::Server)
}

/// Completes on Ctrl-C or SIGTERM, so in-flight requests finish before the process exits.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
