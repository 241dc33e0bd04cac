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
pub enum Command {
    /// Serve the API and the dashboard (the default).
    Serve(ServeArgs),
    /// Print the metrics of a getStats recording as JSON lines (one per connection per interval,
    /// then a summary per connection); exit code 2 if it is not a recording.
    Analyze(AnalyzeArgs),
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
    /// Redis URL (redis://host:port/db); without it live state is kept in this process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,
}

/// A configuration the collector cannot start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set: give it as --{1} or in the environment (scripts/run generates one)")]
    MissingSecret(&'static str, &'static str),
}

impl ServeArgs {
    /// The ingest key and admin token, or which one is missing.
    pub fn secrets(&self) -> Result<(Secret, Secret), ConfigError> {
        let ingest_key = self
            .ingest_key
            .clone()
            .ok_or(ConfigError::MissingSecret("VITALS_INGEST_KEY", "ingest-key"))?;
        let admin_token = self
            .admin_token
            .clone()
            .ok_or(ConfigError::MissingSecret("VITALS_ADMIN_TOKEN", "admin-token"))?;
        Ok((ingest_key, admin_token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_subcommand_means_serve_and_debug_hides_secrets() {
        let cli = Cli::try_parse_from(["collector", "--ingest-key", "k-123", "--admin-token", "t-456"]).unwrap();
        let text = format!("{cli:?}");
        assert!(!text.contains("k-123") && !text.contains("t-456"), "{text}");
        let Command::Serve(args) = cli.into_command() else {
            panic!("expected serve")
        };
        let (ingest, admin) = args.secrets().unwrap();
        assert_eq!((ingest.expose(), admin.expose()), ("k-123", "t-456"));
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
    fn analyze_takes_a_file_or_stdin() {
        let cli = Cli::try_parse_from(["collector", "analyze", "-"]).unwrap();
        let Command::Analyze(args) = cli.into_command() else {
            panic!("expected analyze")
        };
        assert_eq!(args.file, PathBuf::from("-"));
        assert!(Cli::try_parse_from(["collector", "analyze"]).is_err());
    }
}
