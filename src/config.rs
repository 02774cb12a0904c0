//! Command-line and environment configuration: one clap tree, every setting also
//! readable from a `FERRY_*` variable so containers need no flags.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

use crate::auth::Role;

mod egress;
mod limits;
mod secrets;

pub use egress::EgressConfig;
pub use limits::{LimitsConfig, parse_size};
pub use secrets::{RotateKeysArgs, SecretsConfig};

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
    /// Re-seal every stored credential not sealed with the current key, then exit.
    RotateKeys(RotateKeysArgs),
}

/// Where the database is; shared by `serve` and `migrate`.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// Postgres URL; unset runs ferry's own private cluster under the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,
    /// Directory for the embedded Postgres cluster and the generated secret key.
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
    #[command(flatten)]
    pub auth: AuthConfig,
    #[command(flatten)]
    pub egress: EgressConfig,
    #[command(flatten)]
    pub secrets: SecretsConfig,
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
    /// Blob transfers at once to or from one registry host across all replicas on this
    /// database (slots in Postgres); 0 turns the cluster-wide cap off.
    #[arg(long, env = "FERRY_CLUSTER_HOST_CONCURRENCY", default_value_t = 32)]
    pub cluster_host_concurrency: usize,
    /// How long a claimed operation stays leased without a heartbeat (heartbeats
    /// come every third of it); a crashed worker's import resumes elsewhere after it.
    #[arg(long, env = "FERRY_LEASE", default_value = "30s", value_parser = parse_duration)]
    pub lease: Duration,
    /// On SIGTERM, how long running imports may take to finish before their leases
    /// are released for another replica.
    #[arg(long, env = "FERRY_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// How long finished operations stay pollable before they are pruned.
    #[arg(long, env = "FERRY_OPERATION_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub operation_retention: Duration,
    /// Run workers only, without the HTTP API (a worker replica).
    #[arg(long, env = "FERRY_NO_API")]
    pub no_api: bool,
    /// Log format: text or json.
    #[arg(long, env = "FERRY_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub limits: LimitsConfig,
}

/// How bearer tokens are checked: where the verification keys come from, which
/// audiences and issuers are accepted, and which role claim values mean which role.
/// At least one key source is required; `ferry serve` refuses to start otherwise.
#[derive(Debug, Clone, Args)]
pub struct AuthConfig {
    /// HS256 secret that verifies development tokens (at least 32 bytes); `ferry token`
    /// signs with it.
    #[arg(long, env = "FERRY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,
    /// PEM files holding RSA or EC (P-256, P-384) public keys or certificates; the key
    /// type decides the accepted algorithms (RS256/384/512, ES256, ES384).
    #[arg(long, env = "FERRY_JWT_PUBLIC_KEYS", value_delimiter = ',', num_args = 0..)]
    pub jwt_public_keys: Vec<PathBuf>,
    /// A JWKS URL (https, or http on loopback) whose RSA and EC keys verify tokens.
    #[arg(long, env = "FERRY_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// An OpenID Connect issuer: its discovery document names the JWKS, and its
    /// `issuer` becomes an accepted `iss`.
    #[arg(long, env = "FERRY_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// Accepted `aud` values; required with public keys, a JWKS or OIDC.
    #[arg(long, env = "FERRY_JWT_AUDIENCES", value_delimiter = ',', num_args = 0..)]
    pub jwt_audiences: Vec<String>,
    /// Accepted `iss` values; `{tid}` stands for the token's own tenant id.
    #[arg(long, env = "FERRY_JWT_ISSUERS", value_delimiter = ',', num_args = 0..)]
    pub jwt_issuers: Vec<String>,
    /// Extra role claim values, `value=Role` (Role: DataImporter, DataReader,
    /// Contributor or Owner), on top of the ContainerRegistry* defaults.
    #[arg(long, env = "FERRY_ROLE_CLAIMS", value_delimiter = ',', num_args = 0.., value_parser = parse_role_claim)]
    pub role_claims: Vec<RoleClaim>,
    /// Fetched JWKS are refreshed after this long.
    #[arg(long, env = "FERRY_JWKS_REFRESH", default_value = "10m", value_parser = parse_duration)]
    pub jwks_refresh: Duration,
    /// At most one refresh for an unknown `kid` (or retry after a failed fetch) per
    /// this interval and key source.
    #[arg(long, env = "FERRY_JWKS_MIN_REFRESH", default_value = "30s", value_parser = parse_duration)]
    pub jwks_min_refresh: Duration,
}

impl Default for AuthConfig {
    /// No key source and the documented refresh intervals.
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_public_keys: Vec::new(),
            jwks_url: None,
            oidc_issuer: None,
            jwt_audiences: Vec::new(),
            jwt_issuers: Vec::new(),
            role_claims: Vec::new(),
            jwks_refresh: Duration::from_secs(600),
            jwks_min_refresh: Duration::from_secs(30),
        }
    }
}

/// One `FERRY_ROLE_CLAIMS` entry: a `roles` claim value that grants a ferry role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleClaim {
    pub value: String,
    pub role: Role,
}

/// Parses `AcrImporter=DataImporter`; the role may also be spelled as its default
/// claim value (`ContainerRegistryDataImporter`).
pub fn parse_role_claim(text: &str) -> Result<RoleClaim, String> {
    let (value, name) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not `claim-value=Role`"))?;
    let (value, name) = (value.trim(), name.trim());
    if value.is_empty() {
        return Err(format!("`{text}` has an empty claim value"));
    }
    let role = Role::ALL
        .into_iter()
        .find(|role| {
            let full = role.claim_value();
            full.eq_ignore_ascii_case(name)
                || full
                    .strip_prefix("ContainerRegistry")
                    .is_some_and(|short| short.eq_ignore_ascii_case(name))
        })
        .ok_or_else(|| {
            format!("unknown role `{name}`: use DataImporter, DataReader, Contributor or Owner")
        })?;
    Ok(RoleClaim {
        value: value.to_owned(),
        role,
    })
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
    /// `aud` of the token (needed when the server sets FERRY_JWT_AUDIENCES).
    #[arg(long)]
    pub audience: Option<String>,
    /// `iss` of the token (needed when the server sets FERRY_JWT_ISSUERS).
    #[arg(long)]
    pub issuer: Option<String>,
    /// HS256 signing secret.
    #[arg(long, env = "FERRY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: SecretString,
}

/// Parses `90s`, `30m`, `1h`, `2d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = number_and_unit(text, "a duration like 30m or 1h")?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit `{unit}`: use s, m, h or d")),
    };
    Ok(Duration::from_secs(number * seconds))
}

/// Splits `30m` or `64 MiB` into its number and its (trimmed) unit; `what` names
/// the expected form in the error.
fn number_and_unit<'a>(text: &'a str, what: &str) -> Result<(u64, &'a str), String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = number
        .parse()
        .map_err(|_| format!("`{text}` is not {what}"))?;
    Ok((number, unit.trim()))
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, parse_role_claim};
    use crate::auth::Role;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn role_claims_name_a_role_short_or_long() {
        let claim = parse_role_claim("AcrImporter=DataImporter").unwrap();
        assert_eq!(
            (claim.value.as_str(), claim.role),
            ("AcrImporter", Role::DataImporter)
        );
        let claim = parse_role_claim(" Readers = containerregistrydatareader ").unwrap();
        assert_eq!(
            (claim.value.as_str(), claim.role),
            ("Readers", Role::DataReader)
        );
        assert!(parse_role_claim("Admins=Root").is_err());
        assert!(parse_role_claim("=Owner").is_err());
        assert!(parse_role_claim("Owner").is_err());
    }
}
