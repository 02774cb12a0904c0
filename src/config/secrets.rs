//! Settings of the keys that seal stored credentials, shared by `ferry serve` and
//! `ferry rotate-keys`: the current key (inline or from a file) and earlier keys
//! kept only to open what they sealed until `ferry rotate-keys` has re-sealed it.

use std::path::PathBuf;

use clap::Args;
use secrecy::SecretString;

use super::DatabaseConfig;

/// Where the AES-256-GCM keys for stored credentials come from. The first key
/// seals; every configured key opens what it sealed. The default configures no
/// key: `serve` then generates one into the data directory.
#[derive(Debug, Clone, Default, Args)]
pub struct SecretsConfig {
    /// 64 hex characters: the current key; unset (and no key file), the key in
    /// `$FERRY_DATA_DIR/encryption.key`, which `serve` generates on first start.
    #[arg(long, env = "FERRY_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<SecretString>,
    /// The former name of FERRY_SECRET_KEY, still accepted.
    #[arg(
        long,
        env = "FERRY_ENCRYPTION_KEY",
        hide_env_values = true,
        hide = true
    )]
    pub encryption_key: Option<SecretString>,
    /// A file of keys, one per line (64 hex characters; blank lines and `#`
    /// comments ignored): the first line is the current key, the others are
    /// previous keys. Instead of FERRY_SECRET_KEY.
    #[arg(long, env = "FERRY_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// Comma-separated previous keys (64 hex characters each; empty entries are
    /// ignored): they open what they sealed but never seal; drop them once
    /// `ferry rotate-keys` has run.
    #[arg(
        long,
        env = "FERRY_SECRET_KEYS_PREVIOUS",
        hide_env_values = true,
        value_delimiter = ',',
        num_args = 0..
    )]
    pub secret_keys_previous: Vec<SecretString>,
}

/// Arguments of `ferry rotate-keys`.
#[derive(Debug, Clone, Args)]
pub struct RotateKeysArgs {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub secrets: SecretsConfig,
    /// Rows read and re-sealed per batch.
    #[arg(long, env = "FERRY_ROTATE_BATCH", default_value_t = 500)]
    pub batch: u32,
}
