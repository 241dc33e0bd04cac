//! Command-line and environment configuration of the `collector` binary.

use crate::secret::Secret;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Call Vitals collector: ingest, live state and the admin dashboard.
#[derive(Debug, Parser)]
#[command(name = "collector", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Without a subcommand the collector serves, with these options.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once at start: boxing the serve options would buy nothing"
)]
pub enum Command {
    /// Serve the API and the dashboard (the default).
    Serve(ServeArgs),
    /// Print the metrics of a getStats recording as JSON lines (one per connection per interval,
    /// then a summary per connection); exit code 2 if it is not a recording.
    Analyze(AnalyzeArgs),
    /// Print the meeting id the extension uploads for a page address when its meeting id salt is
    /// set (its options page, or the build's VITALS_MEETING_ID_SALT): how an admin finds a known
    /// meeting among hashed ids.
    MeetingId(MeetingIdArgs),
}

/// Arguments of `collector meeting-id`.
#[derive(Debug, Clone, Args)]
pub struct MeetingIdArgs {
    /// The salt the extensions are configured with.
    #[arg(long, env = "VITALS_MEETING_ID_SALT", hide_env_values = true)]
    pub salt: String,
    /// The meeting's page address, e.g. https://meet.example.com/team-standup.
    pub url: String,
}

/// Arguments of `collector analyze`.
#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// The recording: `{"snapshots": [[{"pc": id, "reports": [...]}, ...], ...]}`; `-` reads stdin.
    pub file: PathBuf,
}

impl Cli {
    /// The subcommand to run; none means `serve`.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}

/// Options of `collector serve`. Every flag mirrors an environment variable.
// The keys are optional to clap so that the error for a missing one can say how to get one.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "VITALS_LISTEN", default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,
    /// Key the extension sends as `Authorization: Bearer <key>` on ingest (required).
    #[arg(long, env = "VITALS_INGEST_KEY", hide_env_values = true)]
    pub ingest_key: Option<Secret>,
    /// Token for the admin API and the dashboard (required).
    #[arg(long, env = "VITALS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// Key of the participant tokens (at least 16 characters, different from the ingest key and
    /// the admin token). Unset: a key derived from the admin token, so collectors sharing a
    /// Redis and an admin token accept each other's tokens.
    #[arg(long, env = "VITALS_PARTICIPANT_SECRET", hide_env_values = true)]
    pub participant_secret: Option<Secret>,
    /// Redis URL (redis://host:port/db); without it live state is kept in this process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,
    /// Raise `high-latency` while the round-trip time is above this many ms.
    #[arg(long, env = "VITALS_ALERT_LATENCY_MS", default_value = "300", value_parser = non_negative)]
    pub alert_latency_ms: f64,
    /// Raise `packet-loss` while the loss is above this many percent.
    #[arg(long, env = "VITALS_ALERT_LOSS_PCT", default_value = "5", value_parser = non_negative)]
    pub alert_loss_pct: f64,
    /// Resolve an alert once its condition has been clear this many seconds.
    #[arg(long, env = "VITALS_ALERT_CLEAR_SECS", default_value = "10", value_parser = non_negative)]
    pub alert_clear_secs: f64,
    /// Keep history, alert history and TURN usage this many days.
    #[arg(long, env = "VITALS_HISTORY_DAYS", default_value = "7", value_parser = non_negative)]
    pub history_days: f64,
    /// Price of relayed TURN traffic, dollars per GB.
    #[arg(long, env = "VITALS_TURN_PRICE_PER_GB", default_value = "0.40", value_parser = non_negative)]
    pub turn_price_per_gb: f64,
    /// Ingest requests per second allowed per participant (refill rate; one limit for all the
    /// collector processes sharing a Redis).
    #[arg(long, env = "VITALS_RATE_LIMIT_PER_SEC", default_value = "2", value_parser = non_negative)]
    pub rate_limit_per_sec: f64,
    /// Ingest requests a participant may send at once.
    #[arg(long, env = "VITALS_RATE_LIMIT_BURST", default_value = "20", value_parser = non_negative)]
    pub rate_limit_burst: f64,
    /// POST a JSON `{"text", "alert"}` (Slack-compatible) to this URL for every alert raised of
    /// the severities below; tried 3 times. Unset: no notifications.
    #[arg(long, env = "VITALS_WEBHOOK_URL", hide_env_values = true)]
    pub webhook_url: Option<Secret>,
    /// Severities posted to the webhook, comma-separated: info, warning, critical.
    #[arg(long, env = "VITALS_WEBHOOK_SEVERITIES", default_value = "critical,warning", value_parser = severities)]
    pub webhook_severities: SeverityList,
    /// Alerts posted to the webhook a minute at most; the rest are posted as one "N more alerts"
    /// message when the minute ends.
    #[arg(long, env = "VITALS_WEBHOOK_PER_MINUTE", default_value_t = crate::webhook::BUDGET_PER_MINUTE,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub webhook_per_minute: u32,
    /// Serve the demo call page at `/demo` (for trying the extension; not for production, where
    /// it would share the dashboard's origin).
    #[arg(long, env = "VITALS_DEMO")]
    pub demo: bool,
    /// Ingest requests per second (HTTP and Socket.IO emits) of all clients together.
    #[arg(long, env = "VITALS_GLOBAL_RATE_PER_SEC", default_value = "5000", value_parser = non_negative)]
    pub global_rate_per_sec: f64,
    /// Ingest requests all clients together may send at once.
    #[arg(long, env = "VITALS_GLOBAL_RATE_BURST", default_value = "10000", value_parser = non_negative)]
    pub global_rate_burst: f64,
    /// Ingest requests per second of one client address (refill rate, this process).
    #[arg(long, env = "VITALS_CLIENT_RATE_PER_SEC", default_value = "50", value_parser = non_negative)]
    pub client_rate_per_sec: f64,
    /// Ingest requests one client address may send at once.
    #[arg(long, env = "VITALS_CLIENT_RATE_BURST", default_value = "200", value_parser = non_negative)]
    pub client_rate_burst: f64,
    /// New (meeting, participant) ids one client address may create per minute.
    #[arg(long, env = "VITALS_NEW_IDS_PER_MIN", default_value = "120")]
    pub new_ids_per_min: u32,
    /// Take the client's address from the last `X-Forwarded-For` entry (only behind a proxy
    /// that sets it; otherwise any client could pick its address).
    #[arg(long, env = "VITALS_TRUST_PROXY")]
    pub trust_proxy: bool,
    /// Bearer token for `GET /metrics` (the admin token is accepted too).
    #[arg(long, env = "VITALS_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,
    /// Requests served at once; beyond, 503 with `Retry-After`.
    #[arg(long, env = "VITALS_MAX_CONCURRENT_REQUESTS", default_value = "1024")]
    pub max_concurrent_requests: usize,
    /// Seconds to read a request (headers and body) and answer it; beyond, 408 and the
    /// connection is closed.
    #[arg(long, env = "VITALS_REQUEST_TIMEOUT_SECS", default_value = "30", value_parser = non_negative)]
    pub request_timeout_secs: f64,
    /// Seconds a client has to send a request's headers (also the most a kept-alive connection
    /// waits idle for the next request); beyond, the connection is closed.
    #[arg(long, env = "VITALS_HEADER_READ_TIMEOUT_SECS", default_value = "10", value_parser = non_negative)]
    pub header_read_timeout_secs: f64,
    /// Live meetings the collector holds at most (all processes sharing a Redis); a batch that
    /// would start one more is answered 507 with `Retry-After`.
    #[arg(long, env = "VITALS_MAX_LIVE_MEETINGS", default_value = "10000")]
    pub max_live_meetings: usize,
    /// Live participants the collector holds at most (all processes sharing a Redis).
    #[arg(long, env = "VITALS_MAX_LIVE_PARTICIPANTS", default_value = "50000")]
    pub max_live_participants: usize,
    /// Rows (history points and alerts) one `GET /api/v1/export` answers at most; a larger range
    /// is answered 413, to be narrowed by meeting or time.
    #[arg(long, env = "VITALS_EXPORT_MAX_ROWS", default_value = "1000000",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub export_max_rows: u64,
}

/// A comma-separated list of alert severities.
#[derive(Debug, Clone, PartialEq)]
pub struct SeverityList(pub Vec<crate::alerts::Severity>);

fn severities(text: &str) -> Result<SeverityList, crate::webhook::WebhookError> {
    crate::webhook::parse_severities(text).map(SeverityList)
}

/// A finite number from 0 up.
fn non_negative(text: &str) -> Result<f64, ConfigError> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err(ConfigError::NotNonNegative(text.to_owned())),
    }
}

/// A configuration the collector cannot start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set: give it as --{1} or in the environment (scripts/run generates one)")]
    MissingSecret(&'static str, &'static str),
    #[error("{0:?} is not a number from 0 up")]
    NotNonNegative(String),
    #[error("{0} is too short: give at least {MIN_SECRET_CHARS} characters (scripts/run generates 48)")]
    WeakSecret(&'static str),
    #[error("VITALS_INGEST_KEY and VITALS_ADMIN_TOKEN are the same: the ingest key is public (it ships in every extension), so the admin token must differ")]
    SameSecrets,
    #[error("VITALS_PARTICIPANT_SECRET is the same as VITALS_INGEST_KEY or VITALS_ADMIN_TOKEN: it must differ from both (the ingest key is public)")]
    SameParticipantSecret,
    #[error(
        "history of {0} days is more than the {MAX_HISTORY_DAYS} days allowed (VITALS_HISTORY_DAYS / --history-days)"
    )]
    RetentionTooLong(f64),
    #[error(transparent)]
    Webhook(#[from] crate::webhook::WebhookError),
}

/// Fewest characters of the ingest key, the admin token and the participant secret: a short one
/// can be guessed.
pub const MIN_SECRET_CHARS: usize = 16;
/// Longest history retention: more would grow the store without bound.
pub const MAX_HISTORY_DAYS: f64 = 90.0;

impl ServeArgs {
    /// The ingest key and admin token, or which one is missing, too short, or that they are equal
    /// (the participant secret, if set, is checked the same way: long enough, equal to neither).
    pub fn secrets(&self) -> Result<(Secret, Secret), ConfigError> {
        let ingest_key = self
            .ingest_key
            .clone()
            .ok_or(ConfigError::MissingSecret("VITALS_INGEST_KEY", "ingest-key"))?;
        let admin_token = self
            .admin_token
            .clone()
            .ok_or(ConfigError::MissingSecret("VITALS_ADMIN_TOKEN", "admin-token"))?;
        let named = [
            ("VITALS_INGEST_KEY", Some(&ingest_key)),
            ("VITALS_ADMIN_TOKEN", Some(&admin_token)),
            ("VITALS_PARTICIPANT_SECRET", self.participant_secret.as_ref()),
        ];
        for (name, secret) in named.into_iter().filter_map(|(name, s)| s.map(|s| (name, s))) {
            if secret.expose().trim().chars().count() < MIN_SECRET_CHARS {
                return Err(ConfigError::WeakSecret(name));
            }
        }
        if ingest_key == admin_token {
            return Err(ConfigError::SameSecrets);
        }
        if self
            .participant_secret
            .as_ref()
            .is_some_and(|secret| *secret == ingest_key || *secret == admin_token)
        {
            return Err(ConfigError::SameParticipantSecret);
        }
        Ok((ingest_key, admin_token))
    }

    /// The collector's settings from these options.
    pub fn settings(&self) -> crate::state::Settings {
        crate::state::Settings {
            alerts: crate::alerts::AlertThresholds {
                rtt_ms: self.alert_latency_ms,
                loss_pct: self.alert_loss_pct,
                clear_after_ms: (self.alert_clear_secs * 1000.0).round() as u64,
                turn_price_per_gb: self.turn_price_per_gb,
            },
            rate_limit: crate::ratelimit::RateLimit {
                per_sec: self.rate_limit_per_sec,
                burst: self.rate_limit_burst,
            },
            demo_page: self.demo,
            admission: crate::admission::AdmissionLimits {
                global: crate::ratelimit::RateLimit {
                    per_sec: self.global_rate_per_sec,
                    burst: self.global_rate_burst,
                },
                per_client: crate::ratelimit::RateLimit {
                    per_sec: self.client_rate_per_sec,
                    burst: self.client_rate_burst,
                },
                new_ids_per_min: self.new_ids_per_min,
                trust_proxy: self.trust_proxy,
            },
            live_caps: crate::admission::LiveCaps {
                meetings: self.max_live_meetings,
                participants: self.max_live_participants,
            },
            export_max_rows: usize::try_from(self.export_max_rows).unwrap_or(usize::MAX),
            metrics_token: self.metrics_token.clone(),
            participant_secret: self.participant_secret.clone(),
            // main() refuses a retention over the limit before this is asked.
            retention_ms: self.retention_ms().unwrap_or((MAX_HISTORY_DAYS * 86_400_000.0) as u64),
            server: crate::http::ServerLimits {
                max_concurrent_requests: self.max_concurrent_requests.max(1),
                request_timeout: std::time::Duration::from_secs_f64(self.request_timeout_secs.clamp(0.1, 86_400.0)),
                header_read_timeout: std::time::Duration::from_secs_f64(
                    self.header_read_timeout_secs.clamp(0.1, 86_400.0),
                ),
            },
        }
    }

    /// The webhook notifier, if a URL is set.
    pub fn webhook(&self) -> Result<Option<crate::webhook::Webhook>, crate::webhook::WebhookError> {
        self.webhook_url
            .as_ref()
            .map(|url| {
                crate::webhook::Webhook::new(url.expose(), self.webhook_severities.0.clone()).map(|webhook| {
                    webhook.with_budget(crate::webhook::Budget {
                        alerts: self.webhook_per_minute,
                        window: std::time::Duration::from_secs(60),
                    })
                })
            })
            .transpose()
    }

    /// How long the store keeps history, alerts and TURN usage, at most [`MAX_HISTORY_DAYS`].
    pub fn retention_ms(&self) -> Result<u64, ConfigError> {
        if self.history_days > MAX_HISTORY_DAYS {
            return Err(ConfigError::RetentionTooLong(self.history_days));
        }
        Ok((self.history_days * 86_400_000.0).round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_subcommand_means_serve_and_debug_hides_secrets() {
        let cli = Cli::try_parse_from([
            "collector",
            "--ingest-key",
            "k-123-4567890abcdef",
            "--admin-token",
            "t-456-7890abcdef123",
        ])
        .unwrap();
        let text = format!("{cli:?}");
        assert!(!text.contains("k-123") && !text.contains("t-456"), "{text}");
        let Command::Serve(args) = cli.into_command() else {
            panic!("expected serve")
        };
        let (ingest, admin) = args.secrets().unwrap();
        assert_eq!(
            (ingest.expose(), admin.expose()),
            ("k-123-4567890abcdef", "t-456-7890abcdef123")
        );
    }

    #[test]
    fn serve_subcommand_and_missing_key_message() {
        let cli = Cli::try_parse_from(["collector", "serve", "--listen", "127.0.0.1:9"]).unwrap();
        let Command::Serve(args) = cli.into_command() else {
            panic!("expected serve")
        };
        assert_eq!(args.listen.port(), 9);
        // The environment may hold real keys; only the message format is checked here.
        let error = ConfigError::MissingSecret("VITALS_INGEST_KEY", "ingest-key").to_string();
        assert!(error.contains("VITALS_INGEST_KEY") && error.contains("--ingest-key"));
        assert!(Cli::try_parse_from(["collector", "--ingest-key", ""]).is_err());
    }

    #[test]
    fn alert_history_and_price_options() {
        // Flags, not the environment, so that a developer's environment cannot change the result.
        let cli = Cli::try_parse_from([
            "collector",
            "--alert-latency-ms",
            "250",
            "--alert-loss-pct",
            "2.5",
            "--alert-clear-secs",
            "30",
            "--history-days",
            "1.5",
            "--turn-price-per-gb",
            "0.1",
        ])
        .unwrap();
        let Command::Serve(args) = cli.into_command() else {
            panic!("expected serve")
        };
        let settings = args.settings();
        assert_eq!(settings.alerts.rtt_ms, 250.0);
        assert_eq!(settings.alerts.loss_pct, 2.5);
        assert_eq!(settings.alerts.clear_after_ms, 30_000);
        assert_eq!(settings.alerts.turn_price_per_gb, 0.1);
        assert_eq!(args.retention_ms().unwrap(), 36 * 3_600_000);
        assert!(!settings.demo_page, "the demo page is off unless asked for");
        assert!(serve_args(&["--demo"]).settings().demo_page);
        for bad in ["-1", "NaN", "inf", "fast"] {
            assert!(
                Cli::try_parse_from(["collector", "--alert-latency-ms", bad]).is_err(),
                "{bad}"
            );
        }
    }

    fn serve_args(flags: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from(std::iter::once("collector").chain(flags.iter().copied())).unwrap();
        let Command::Serve(args) = cli.into_command() else {
            panic!("expected serve")
        };
        args
    }

    #[test]
    fn short_or_equal_secrets_are_refused_with_the_variable_named() {
        let strong = "0123456789abcdef0123";
        let error = serve_args(&["--ingest-key", "short-key", "--admin-token", strong])
            .secrets()
            .unwrap_err()
            .to_string();
        assert!(error.contains("VITALS_INGEST_KEY is too short"), "{error}");
        let error = serve_args(&["--ingest-key", strong, "--admin-token", "0123456789abcde"])
            .secrets()
            .unwrap_err()
            .to_string();
        assert!(error.contains("VITALS_ADMIN_TOKEN is too short"), "{error}");
        let error = serve_args(&["--ingest-key", strong, "--admin-token", strong])
            .secrets()
            .unwrap_err()
            .to_string();
        assert!(error.contains("are the same"), "{error}");
        assert!(
            serve_args(&["--ingest-key", strong, "--admin-token", "0123456789abcdef"])
                .secrets()
                .is_ok()
        );
    }

    #[test]
    fn the_participant_secret_is_optional_long_and_distinct() {
        let (ingest, admin) = ("0123456789abcdef0123", "fedcba9876543210fedc");
        let with = |secret: &str| {
            serve_args(&[
                "--ingest-key",
                ingest,
                "--admin-token",
                admin,
                "--participant-secret",
                secret,
            ])
        };
        let unset = serve_args(&["--ingest-key", ingest, "--admin-token", admin]);
        assert!(unset.secrets().is_ok());
        let error = with("short-secret").secrets().unwrap_err().to_string();
        assert!(error.contains("VITALS_PARTICIPANT_SECRET is too short"), "{error}");
        for same in [ingest, admin] {
            let error = with(same).secrets().unwrap_err().to_string();
            assert!(error.contains("VITALS_PARTICIPANT_SECRET is the same"), "{error}");
        }
        let args = with("participant-secret-0123");
        assert!(args.secrets().is_ok());
        assert!(!format!("{args:?}").contains("participant-secret-0123"));
        assert_eq!(
            args.settings().participant_secret.map(|s| s.expose().to_owned()),
            Some("participant-secret-0123".to_owned())
        );
    }

    #[test]
    fn history_beyond_90_days_is_refused() {
        assert_eq!(
            serve_args(&["--history-days", "90"]).retention_ms().unwrap(),
            90 * 86_400_000
        );
        let error = serve_args(&["--history-days", "1e300"])
            .retention_ms()
            .unwrap_err()
            .to_string();
        assert!(error.contains("more than the 90 days"), "{error}");
        assert!(serve_args(&["--history-days", "90.5"]).retention_ms().is_err());
    }

    #[test]
    fn webhook_options() {
        use crate::alerts::Severity;
        let cli = Cli::try_parse_from(["collector", "--webhook-url", "http://127.0.0.1:9/hook"]).unwrap();
        let Command::Serve(args) = cli.into_command() else {
            panic!("expected serve")
        };
        assert!(!format!("{args:?}").contains("/hook"));
        assert!(args.webhook().unwrap().is_some());
        let cli = Cli::try_parse_from(["collector", "--webhook-severities", "info,critical"]).unwrap();
        let Command::Serve(args) = cli.into_command() else {
            panic!("expected serve")
        };
        assert_eq!(args.webhook_severities.0, vec![Severity::Info, Severity::Critical]);
        assert!(Cli::try_parse_from(["collector", "--webhook-severities", "loud"]).is_err());
        assert_eq!(serve_args(&["--webhook-per-minute", "5"]).webhook_per_minute, 5);
        assert!(Cli::try_parse_from(["collector", "--webhook-per-minute", "0"]).is_err());
        let cli = Cli::try_parse_from(["collector", "--webhook-url", "mailto:x@example.com"]).unwrap();
        let Command::Serve(args) = cli.into_command() else {
            panic!("expected serve")
        };
        assert!(args.webhook().is_err());
    }

    #[test]
    fn live_caps_export_bound_and_header_timeout_options() {
        let defaults = serve_args(&[]).settings();
        assert_eq!(
            (defaults.live_caps.meetings, defaults.live_caps.participants),
            (10_000, 50_000)
        );
        assert_eq!(defaults.export_max_rows, 1_000_000);
        assert_eq!(defaults.server.header_read_timeout, std::time::Duration::from_secs(10));
        let settings = serve_args(&[
            "--max-live-meetings",
            "3",
            "--max-live-participants",
            "7",
            "--export-max-rows",
            "50",
            "--header-read-timeout-secs",
            "0.5",
        ])
        .settings();
        assert_eq!((settings.live_caps.meetings, settings.live_caps.participants), (3, 7));
        assert_eq!(settings.export_max_rows, 50);
        assert_eq!(
            settings.server.header_read_timeout,
            std::time::Duration::from_millis(500)
        );
        assert!(Cli::try_parse_from(["collector", "--export-max-rows", "0"]).is_err());
    }

    #[test]
    fn analyze_takes_a_file_or_stdin() {
        let cli = Cli::try_parse_from(["collector", "analyze", "-"]).unwrap();
        let Command::Analyze(args) = cli.into_command() else {
            panic!("expected analyze")
        };
        assert_eq!(args.file, PathBuf::from("-"));
        assert!(Cli::try_parse_from(["collector", "analyze"]).is_err());
    }
}
