//! Settings of the SSRF guard: which internal hosts ferry may reach anyway, which
//! registries a `registryUri` may name, and which token realms get credentials.

use std::sync::Arc;

use clap::Args;

use crate::egress::{EgressPolicy, Lookup};

/// Where ferry's outbound requests may go.
#[derive(Debug, Clone, Default, Args)]
pub struct EgressConfig {
    /// Internal hosts ferry may reach although they are loopback, private,
    /// link-local or otherwise non-public: host names, `host:port`, IP addresses or
    /// CIDR networks (e.g. `registry.internal,10.20.0.0/16,127.0.0.1:5000`).
    #[arg(long, env = "FERRY_ALLOWED_PRIVATE_HOSTS", value_delimiter = ',', num_args = 0..)]
    pub allowed_private_hosts: Vec<String>,
    /// When set, the only registries a `registryUri` source may name (`host`,
    /// `host:port` or `*.domain`); registry resources are not limited by it.
    #[arg(long, env = "FERRY_SOURCE_ALLOWLIST", value_delimiter = ',', num_args = 0..)]
    pub source_allowlist: Vec<String>,
    /// Token realm hosts (`host`, `host:port`, `*.domain`) that may receive registry
    /// credentials besides the registry's own host and domain.
    #[arg(long, env = "FERRY_TRUSTED_TOKEN_REALMS", value_delimiter = ',', num_args = 0..)]
    pub trusted_token_realms: Vec<String>,
    /// Replaces the system resolver (tests map names to loopback addresses with it).
    #[arg(skip)]
    pub lookup: Option<Arc<dyn Lookup>>,
}

impl EgressConfig {
    /// The parsed policy; a malformed entry is a startup error.
    pub fn policy(&self) -> anyhow::Result<EgressPolicy> {
        EgressPolicy::new(
            &self.allowed_private_hosts,
            &self.source_allowlist,
            &self.trusted_token_realms,
        )
        .map_err(|e| anyhow::anyhow!("invalid egress setting: {e}"))
    }
}
