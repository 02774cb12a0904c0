//! Command-line and environment configuration: one clap tree, every setting also
//! readable from a `FERRY_*` variable so containers need no flags.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

/// ferry imports container images between OCI registries through an ARM-compatible API.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What the process should do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API and run the import workers (applies migrations first).
    Serve(Box<ServeConfig>),
    /// Apply database migrations and exit.
    Migrate(DatabaseConfig),
    /// Print a development token signed with FERRY_JWT_SECRET.
    Token(TokenArgs),
}

/// Where the database is; shared by `serve` and `migrate`.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// Postgres URL; unset runs ferry's own private cluster under the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,
    /// Directory for the embedded Postgres cluster and the generated encryption key.
    #[arg(long, env = "FERRY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

/// Everything `ferry serve` needs.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Socket address the API listens on.
    #[arg(long, env = "FERRY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// PEM certificate chain; with --tls-key, ferry serves HTTPS.
    #[arg(long, env = "FERRY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching --tls-cert.
    #[arg(long, env = "FERRY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Base URL clients reach ferry at, used in Location headers behind proxies.
    #[arg(long, env = "FERRY_PUBLIC_URL")]
    pub public_url: Option<url::Url>,
    /// HS256 secret that signs and verifies bearer tokens (at least 32 bytes).
    #[arg(long, env = "FERRY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: SecretString,
    /// 64 hex characters: the AES-256-GCM key for stored credentials; unset, a key is
    /// generated once into the data directory.
    #[arg(long, env = "FERRY_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<SecretString>,
    /// Imports run at once by this process; 0 serves the API only.
    #[arg(long, env = "FERRY_WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// Registries (host:port) reached over plain HTTP instead of HTTPS.
    #[arg(long, env = "FERRY_INSECURE_REGISTRIES", value_delimiter = ',', num_args = 0..)]
    pub insecure_registries: Vec<String>,
    /// Blobs copied in parallel within one import.
    #[arg(long, env = "FERRY_BLOB_CONCURRENCY", default_value_t = 6)]
    pub blob_concurrency: usize,
    /// Blob transfers at once to or from one registry host, across this process's imports.
    #[arg(long, env = "FERRY_HOST_CONCURRENCY", default_value_t = 16)]
    pub host_concurrency: usize,
    /// Log format: text or json.
    #[arg(long, env = "FERRY_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Arguments of `ferry token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Tenant id (the `tid` claim).
    #[arg(long)]
    pub tenant: uuid::Uuid,
    /// Comma-separated role claim values, e.g. ContainerRegistryDataImporter.
    #[arg(long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Lifetime such as 30m, 1h, 2d.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Principal id (the `sub` and `oid` claims); a random one when omitted.
    #[arg(long)]
    pub subject: Option<String>,
    /// HS256 signing secret.
    #[arg(long, env = "FERRY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: SecretString,
}

/// Parses `90s`, `30m`, `1h`, `2d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 30m or 1h"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit `{unit}`: use s, m, h or d")),
    };
    Ok(Duration::from_secs(number * seconds))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
    }
}
