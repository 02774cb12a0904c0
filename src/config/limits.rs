//! Resource limits: how much one tenant may queue and submit, how large one import
//! may be, and how long a small registry request may take. Every limit has a
//! production default; 0 turns a count or size limit off.

use std::time::Duration;

use clap::Args;

use crate::{
    operations::quota::TenantLimits,
    registry_client::DEFAULT_REQUEST_TIMEOUT,
    worker::copy::{DEFAULT_MAX_IMPORT_BLOBS, DEFAULT_MAX_IMPORT_BYTES, ImportLimits},
};

/// Per-tenant admission limits, per-import caps and the registry request timeout.
#[derive(Debug, Clone, Args)]
pub struct LimitsConfig {
    /// Imports one tenant may have queued or running at once (across replicas);
    /// more are refused with 429 TooManyRequests. 0: unlimited.
    #[arg(long, env = "FERRY_TENANT_MAX_ACTIVE", default_value_t = TenantLimits::DEFAULT.max_active)]
    pub tenant_max_active: u32,
    /// importImage submissions one tenant may make per sliding minute (across
    /// replicas); more are refused with 429 TooManyRequests. 0: unlimited.
    #[arg(long, env = "FERRY_TENANT_SUBMISSIONS_PER_MINUTE", default_value_t = TenantLimits::DEFAULT.per_minute)]
    pub tenant_submissions_per_minute: u32,
    /// Distinct blobs one import may copy (image and referrers); a larger image
    /// fails with ImportTooLarge before any blob is copied. 0: unlimited.
    #[arg(long, env = "FERRY_MAX_IMPORT_BLOBS", default_value_t = DEFAULT_MAX_IMPORT_BLOBS)]
    pub max_import_blobs: usize,
    /// Total declared size of the blobs one import may copy, in bytes or with a
    /// binary suffix (KiB, MiB, GiB, TiB); a larger image fails with ImportTooLarge
    /// before any blob is copied. 0: unlimited.
    #[arg(long, env = "FERRY_MAX_IMPORT_BYTES", default_value = "100GiB", value_parser = parse_size)]
    pub max_import_bytes: u64,
    /// Longest a small registry request (manifest, HEAD, upload session, token)
    /// may take from connect to last byte; blob streams are bounded by a read
    /// timeout on stalls instead.
    #[arg(long, env = "FERRY_REGISTRY_REQUEST_TIMEOUT", default_value = "60s", value_parser = super::parse_duration)]
    pub registry_request_timeout: Duration,
}

impl Default for LimitsConfig {
    /// The documented defaults.
    fn default() -> Self {
        Self {
            tenant_max_active: TenantLimits::DEFAULT.max_active,
            tenant_submissions_per_minute: TenantLimits::DEFAULT.per_minute,
            max_import_blobs: DEFAULT_MAX_IMPORT_BLOBS,
            max_import_bytes: DEFAULT_MAX_IMPORT_BYTES,
            registry_request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl LimitsConfig {
    /// The admission limits the importImage handler applies.
    pub fn tenant(&self) -> TenantLimits {
        TenantLimits {
            max_active: self.tenant_max_active,
            per_minute: self.tenant_submissions_per_minute,
        }
    }

    /// The caps the copy engine applies to each import.
    pub fn import(&self) -> ImportLimits {
        ImportLimits {
            max_blobs: self.max_import_blobs,
            max_bytes: self.max_import_bytes,
        }
    }
}

/// Parses `1048576`, `512KiB`, `64MiB`, `100GiB`, `1TiB` (binary units only, so
/// no one wonders whether a "GB" means 10⁹ or 2³⁰).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = super::number_and_unit(text, "a size like 512MiB or 100GiB")?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kib" => 10,
        "mib" => 20,
        "gib" => 30,
        "tib" => 40,
        _ => return Err(format!("unknown unit `{unit}`: use KiB, MiB, GiB or TiB")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{}` is too large", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::{LimitsConfig, parse_size};

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("1234").unwrap(), 1234);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("64 mib").unwrap(), 64 << 20);
        assert_eq!(parse_size("100GiB").unwrap(), 100 << 30);
        assert_eq!(parse_size("2TiB").unwrap(), 2 << 40);
        assert!(parse_size("1GB").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn the_default_byte_cap_matches_its_flag_default() {
        assert_eq!(
            parse_size("100GiB").unwrap(),
            LimitsConfig::default().max_import_bytes
        );
    }
}
