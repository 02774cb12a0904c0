//! The SSRF guard: which hosts and addresses ferry may reach when it talks to the
//! registries its callers name. Names are checked on the addresses they actually
//! resolve to, at connection time ([`resolver`]), so DNS rebinding cannot slip past
//! a check made earlier; IP literals, redirect hops and token realms are checked on
//! their URLs ([`EgressPolicy::check_url`]). Operators open exceptions explicitly.

mod exceptions;
pub mod ranges;
mod resolver;

use std::{net::IpAddr, sync::Arc};

use url::{Host, Url};

pub use exceptions::{Exception, HostPattern};
pub use resolver::{GuardedResolver, Lookup, StaticLookup, SystemLookup, reaches_internal};

/// Redirect hops one request may follow.
pub const MAX_REDIRECTS: usize = 5;

/// A connection ferry refused to make. The text names only what the caller or the
/// registry wrote (a host, a scheme), never an address a name resolved to.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

impl Refused {
    /// Whether `error` (or anything it wraps) is a refusal of the guard.
    pub fn found_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
        let mut current = Some(error);
        while let Some(error) = current {
            if let Some(refused) = error.downcast_ref::<Refused>() {
                return Some(refused);
            }
            current = error.source();
        }
        None
    }
}

/// What ferry may connect to on a caller's behalf.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    /// Internal hosts, host:port pairs and networks the operator allows.
    exceptions: Vec<Exception>,
    /// When set, the only registries a `registryUri` may name.
    sources: Option<Vec<HostPattern>>,
    /// Token realm hosts that may receive credentials besides the registry's own domain.
    realms: Vec<HostPattern>,
}

impl EgressPolicy {
    /// Parses the operator's lists (`FERRY_ALLOWED_PRIVATE_HOSTS`,
    /// `FERRY_SOURCE_ALLOWLIST`, `FERRY_TRUSTED_TOKEN_REALMS`).
    pub fn new(
        allowed_private: &[String],
        source_allowlist: &[String],
        trusted_realms: &[String],
    ) -> Result<Self, String> {
        let listed = |entries: &[String]| -> Result<Vec<HostPattern>, String> {
            entries
                .iter()
                .filter(|e| !e.trim().is_empty())
                .map(|e| e.parse())
                .collect()
        };
        let sources = listed(source_allowlist)?;
        Ok(Self {
            exceptions: allowed_private
                .iter()
                .filter(|e| !e.trim().is_empty())
                .map(|e| e.parse())
                .collect::<Result<_, _>>()?,
            sources: (!sources.is_empty()).then_some(sources),
            realms: listed(trusted_realms)?,
        })
    }

    /// A policy that also allows the given internal hosts, networks or host:ports.
    pub fn allowing(mut self, entries: &[&str]) -> Result<Self, String> {
        for entry in entries {
            self.exceptions.push(entry.parse()?);
        }
        Ok(self)
    }

    /// Checks a URL before a request to it goes out: an http(s) scheme, and an IP
    /// literal outside the internal ranges unless allowed. Names pass here; their
    /// addresses are checked when they are resolved.
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused(format!(
                "the {} scheme is not allowed",
                url.scheme()
            )));
        }
        let port = url.port_or_known_default();
        let allowed = match url.host() {
            Some(Host::Ipv4(ip)) => self.allows_literal(IpAddr::V4(ip), port),
            Some(Host::Ipv6(ip)) => self.allows_literal(IpAddr::V6(ip), port),
            Some(Host::Domain(name)) => self.name_port_allowed(name, port),
            None => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(Refused(format!(
                "{} is not a host ferry may reach",
                url.host_str().unwrap_or("(none)")
            )))
        }
    }

    /// A redirect hop: checked like any URL, and never from https down to http.
    pub fn check_redirect(&self, from: Option<&Url>, to: &Url) -> Result<(), Refused> {
        if from.is_some_and(|f| f.scheme() == "https") && to.scheme() != "https" {
            return Err(Refused(
                "a redirect from https to http is not allowed".into(),
            ));
        }
        self.check_url(to)
    }

    /// Whether a name may connect to `ip`, one of the addresses it resolved to.
    pub fn allows_resolved(&self, name: &str, ip: IpAddr) -> bool {
        !ranges::is_internal(ip)
            || self
                .exceptions
                .iter()
                .any(|e| e.allows_resolved(name, ip.to_canonical()))
    }

    fn allows_literal(&self, ip: IpAddr, port: Option<u16>) -> bool {
        !ranges::is_internal(ip)
            || self
                .exceptions
                .iter()
                .any(|e| e.allows_literal(ip.to_canonical(), port))
    }

    /// A name listed only with ports may not be reached on another port: the
    /// resolver, which sees names without ports, would otherwise let it through.
    fn name_port_allowed(&self, name: &str, port: Option<u16>) -> bool {
        let mut ports = self.exceptions.iter().filter_map(|e| e.name_port(name));
        match ports.next() {
            None => true,
            Some(first) => std::iter::once(first)
                .chain(ports)
                .any(|p| p.is_none() || p == port),
        }
    }

    /// Whether a `registryUri` may name `host` (`host[:port]`): any host when no
    /// allow-list is configured.
    pub fn source_listed(&self, host: &str) -> bool {
        self.sources
            .as_ref()
            .is_none_or(|sources| sources.iter().any(|p| p.matches_authority(host)))
    }

    /// Whether a token realm may receive the credentials of `registry_host`: the
    /// registry's own host, its parent domain's hosts (`registry-1.docker.io` →
    /// `auth.docker.io`), or an operator-trusted realm.
    pub fn realm_may_receive_credentials(&self, registry_host: &str, realm: &Url) -> bool {
        let Some(realm_host) = realm.host_str() else {
            return false;
        };
        let realm_host = realm_host.to_ascii_lowercase();
        let registry = Url::parse(&format!("http://{registry_host}"))
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        let Some(registry) = registry else {
            return false;
        };
        if realm_host == registry || realm_host.ends_with(&format!(".{registry}")) {
            return true;
        }
        let is_name = matches!(realm.host(), Some(Host::Domain(_)));
        let parent = registry.split_once('.').map(|(_, parent)| parent);
        let same_site = is_name
            && parent.is_some_and(|parent| {
                parent.contains('.')
                    && (realm_host == parent || realm_host.ends_with(&format!(".{parent}")))
            });
        same_site
            || self
                .realms
                .iter()
                .any(|p| p.matches_authority(realm.authority()))
    }
}

/// The redirect policy of the registry client: at most [`MAX_REDIRECTS`] hops,
/// each checked by `policy`.
pub fn redirect_policy(policy: Arc<EgressPolicy>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(Refused(format!("more than {MAX_REDIRECTS} redirects")));
        }
        match policy.check_redirect(attempt.previous().last(), attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(refused) => attempt.error(refused),
        }
    })
}

#[cfg(test)]
mod tests;
