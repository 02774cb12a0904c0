//! Resolve-then-connect: the DNS resolver of ferry's registry client. It hands the
//! connector only the addresses the policy allows for that name, so the address
//! checked is the address connected to and DNS rebinding has nothing to race.

use std::{
    collections::HashMap,
    fmt::Debug,
    io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use futures_util::future::BoxFuture;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::{EgressPolicy, Refused, ranges};

/// How long [`reaches_internal`] waits for a name.
const REACH_TIMEOUT: Duration = Duration::from_secs(2);

/// Where names get their addresses: the system resolver in production, a fixed
/// table in tests.
pub trait Lookup: Debug + Send + Sync {
    /// Every address `name` resolves to.
    fn lookup(&self, name: &str) -> BoxFuture<'static, io::Result<Vec<IpAddr>>>;
}

/// The operating system's resolver (getaddrinfo on tokio's blocking pool).
#[derive(Debug, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, name: &str) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> {
        let name = name.to_owned();
        Box::pin(async move {
            let addresses = tokio::net::lookup_host((name.as_str(), 0)).await?;
            Ok(addresses.map(|a| a.ip()).collect())
        })
    }
}

/// A fixed name → addresses table; names it lacks do not resolve. For tests, which
/// must never reach a real DNS server.
#[derive(Debug, Default, Clone)]
pub struct StaticLookup(pub HashMap<String, Vec<IpAddr>>);

impl Lookup for StaticLookup {
    fn lookup(&self, name: &str) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> {
        let found = self.0.get(&name.to_ascii_lowercase()).cloned();
        Box::pin(async move {
            found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unknown host"))
        })
    }
}

/// The resolver reqwest uses: looks a name up and keeps the addresses the policy
/// allows; a name left with none is refused.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
    lookup: Arc<dyn Lookup>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<EgressPolicy>, lookup: Arc<dyn Lookup>) -> Self {
        Self { policy, lookup }
    }

    /// The addresses `name` may be connected to.
    pub async fn allowed(
        &self,
        name: &str,
    ) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let addresses = self.lookup.lookup(&name).await?;
        let allowed: Vec<IpAddr> = addresses
            .iter()
            .copied()
            .filter(|ip| self.policy.allows_resolved(&name, *ip))
            .collect();
        if allowed.is_empty() && !addresses.is_empty() {
            return Err(Box::new(Refused(format!(
                "{name} resolves to no address ferry may reach"
            ))));
        }
        Ok(allowed)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let allowed = this.allowed(name.as_str()).await?;
            let addrs: Addrs = Box::new(allowed.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// Whether `authority` (`host[:port]`) is reached at an internal address from
/// where ferry runs: an internal IP literal, or a name with an internal address.
/// A lookup that fails or takes over [`REACH_TIMEOUT`] counts as internal, so that
/// doubt keeps a closed registry closed.
pub async fn reaches_internal(lookup: &dyn Lookup, authority: &str) -> bool {
    let Ok(url) = url::Url::parse(&format!("http://{authority}/")) else {
        return true;
    };
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ranges::is_internal(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => ranges::is_internal(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => {
            match tokio::time::timeout(REACH_TIMEOUT, lookup.lookup(name)).await {
                Ok(Ok(addresses)) if !addresses.is_empty() => {
                    addresses.into_iter().any(ranges::is_internal)
                }
                _ => true,
            }
        }
        None => true,
    }
}
