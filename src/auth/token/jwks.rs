//! Keys published by an identity provider: a JWKS URL, or the `jwks_uri` of an
//! OpenID Connect discovery document. Nothing is fetched at startup (ferry starts while
//! the IdP is down); the first token that needs the keys fetches them. The set is
//! refetched when older than the refresh period and when a token names an unknown
//! `kid` (key rotation), at most once per minimum interval so garbage tokens cannot
//! hammer the IdP. A failed fetch is logged and keeps the last good keys.

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use anyhow::Context;
use reqwest::header;
use serde::Deserialize;
use url::{Host, Url};

use super::keys::VerificationKey;

/// Largest discovery or JWKS document ferry reads.
const MAX_DOCUMENT: usize = 1 << 20;
/// Longest wait for a connection to the IdP.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a whole discovery or JWKS fetch may take: the documents are small, and a
/// token check waits on the first fetch, so a hung IdP must fail fast (the last good
/// keys stay in use).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// How often keys are refetched.
#[derive(Debug, Clone, Copy)]
pub(super) struct Refresh {
    /// A key set older than this is refetched on next use.
    pub(super) max_age: Duration,
    /// The least time between two unknown-`kid` refreshes, or between a failed fetch
    /// and the next attempt.
    pub(super) min_interval: Duration,
}

/// The client for IdP documents: short timeouts and no redirects, so the configured
/// host is the only one ferry takes keys from.
pub(super) fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(FETCH_TIMEOUT)
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the JWKS client")
}

enum Origin {
    Jwks(Url),
    Oidc { issuer: String, discovery: Url },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Jwks(url) => write!(f, "JWKS {url}"),
            Self::Oidc { issuer, .. } => write!(f, "OIDC issuer {issuer}"),
        }
    }
}

/// One fetched key set.
#[derive(Debug)]
pub(super) struct KeySet {
    pub(super) keys: Vec<VerificationKey>,
    /// The discovered issuer (OIDC only): tokens from it may use these keys.
    pub(super) issuer: Option<String>,
    fetched_at: Instant,
}

impl KeySet {
    pub(super) fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }
}

#[derive(Default)]
struct State {
    current: Option<Arc<KeySet>>,
    last_attempt: Option<Instant>,
    last_forced: Option<Instant>,
}

/// A remote key source with its cache.
pub(super) struct RemoteKeys {
    origin: Origin,
    http: reqwest::Client,
    refresh: Refresh,
    state: Mutex<State>,
    /// Held while fetching, so concurrent requests wait for one fetch.
    flight: tokio::sync::Mutex<()>,
}

impl fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteKeys({})", self.origin)
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl RemoteKeys {
    /// Keys from a JWKS URL.
    pub(super) fn jwks(url: &str, http: reqwest::Client, refresh: Refresh) -> anyhow::Result<Self> {
        let url = checked_url(url).context("FERRY_JWKS_URL")?;
        Ok(Self::new(Origin::Jwks(url), http, refresh))
    }

    /// Keys from `{issuer}/.well-known/openid-configuration`.
    pub(super) fn oidc(
        issuer: &str,
        http: reqwest::Client,
        refresh: Refresh,
    ) -> anyhow::Result<Self> {
        let issuer = issuer.trim_end_matches('/');
        let discovery = checked_url(&format!("{issuer}/.well-known/openid-configuration"))
            .context("FERRY_OIDC_ISSUER")?;
        let origin = Origin::Oidc {
            issuer: issuer.to_owned(),
            discovery,
        };
        Ok(Self::new(origin, http, refresh))
    }

    fn new(origin: Origin, http: reqwest::Client, refresh: Refresh) -> Self {
        Self {
            origin,
            http,
            refresh,
            state: Mutex::new(State::default()),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    /// The current keys, fetched first when there are none yet or they are stale
    /// (unless the last attempt was too recent). None: never fetched successfully.
    pub(super) async fn keys(&self) -> Option<Arc<KeySet>> {
        let max_age = self.refresh.max_age;
        if let Some(set) = &self.state().current {
            if set.fetched_at.elapsed() < max_age {
                return Some(set.clone());
            }
        }
        let min_interval = self.refresh.min_interval;
        self.refresh_if(|state, now| {
            let stale = state
                .current
                .as_ref()
                .is_none_or(|set| now.duration_since(set.fetched_at) >= max_age);
            stale && !recent(state.last_attempt, now, min_interval)
        })
        .await
    }

    /// Refetches because a token names `kid`, which the current keys lack: the IdP
    /// may have rotated. Rate-limited; returns the keys as they now are.
    pub(super) async fn refresh_for(&self, kid: &str) -> Option<Arc<KeySet>> {
        let min_interval = self.refresh.min_interval;
        self.refresh_if(|state, now| {
            let missing = state.current.as_ref().is_none_or(|set| !set.has_kid(kid));
            let due = missing && !recent(state.last_forced, now, min_interval);
            if due {
                state.last_forced = Some(now);
            } else if missing {
                tracing::debug!(source = %self.origin, kid, "unknown kid; refresh rate-limited");
            }
            due
        })
        .await
    }

    /// Fetches if `due` says so once this task is the only one fetching (another
    /// task may just have fetched what it needs).
    async fn refresh_if(
        &self,
        due: impl FnOnce(&mut State, Instant) -> bool,
    ) -> Option<Arc<KeySet>> {
        let _flight = self.flight.lock().await;
        let now = Instant::now();
        let fetch = {
            let mut state = self.state();
            let fetch = due(&mut state, now);
            if fetch {
                state.last_attempt = Some(now);
            }
            fetch
        };
        if fetch {
            match self.fetch().await {
                Ok(set) => {
                    tracing::info!(source = %self.origin, keys = set.keys.len(), "fetched token signing keys");
                    self.state().current = Some(Arc::new(set));
                }
                Err(error) => {
                    tracing::warn!(source = %self.origin, error = format!("{error:#}"), "could not fetch token signing keys; keeping the last good ones");
                }
            }
        }
        self.state().current.clone()
    }

    async fn fetch(&self) -> anyhow::Result<KeySet> {
        let (jwks, issuer) = match &self.origin {
            Origin::Jwks(url) => (url.clone(), None),
            Origin::Oidc { issuer, discovery } => {
                let document = get(&self.http, discovery).await?;
                let document: Discovery = serde_json::from_slice(&document)
                    .context("the discovery document lacks issuer or jwks_uri")?;
                // OIDC Discovery §4.3: the document must name the issuer it was fetched
                // for. Entra's multi-tenant documents name a `{tenantid}` template.
                let named = document.issuer.trim_end_matches('/');
                anyhow::ensure!(
                    named == issuer || named.contains("{tenantid}") || named.contains("{tid}"),
                    "the discovery document names issuer {}, not {issuer}",
                    document.issuer
                );
                let jwks = checked_url(&document.jwks_uri).context("jwks_uri")?;
                (jwks, Some(document.issuer))
            }
        };
        let document = get(&self.http, &jwks).await?;
        let keys = VerificationKey::from_jwks(&document)?;
        anyhow::ensure!(!keys.is_empty(), "{jwks} has no RSA or EC signing key");
        Ok(KeySet {
            keys,
            issuer,
            fetched_at: Instant::now(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn recent(at: Option<Instant>, now: Instant, interval: Duration) -> bool {
    at.is_some_and(|at| now.duration_since(at) < interval)
}

/// An IdP URL: https, or plain http only to a loopback host (tests, sidecars).
fn checked_url(text: &str) -> anyhow::Result<Url> {
    let url = Url::parse(text).with_context(|| format!("`{text}` is not a URL"))?;
    let loopback = match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => anyhow::bail!("`{text}` must use https (plain http only on loopback)"),
    }
}

/// GETs a JSON document of at most [`MAX_DOCUMENT`] bytes; a redirect is an error.
async fn get(http: &reqwest::Client, url: &Url) -> anyhow::Result<Vec<u8>> {
    let mut response = http
        .get(url.clone())
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "GET {url} answered {status}");
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("reading {url}"))?
    {
        anyhow::ensure!(
            body.len() + chunk.len() <= MAX_DOCUMENT,
            "{url} is larger than {MAX_DOCUMENT} bytes"
        );
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idp_urls_need_https_except_on_loopback() {
        for ok in [
            "https://login.microsoftonline.com/common/discovery/v2.0/keys",
            "http://127.0.0.1:8080/jwks",
            "http://localhost/jwks",
            "http://[::1]:1/jwks",
        ] {
            assert!(checked_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://idp.example/jwks",
            "http://10.0.0.1/jwks",
            "ftp://x/",
            "not a url",
        ] {
            assert!(checked_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn recent_means_within_the_interval() {
        let now = Instant::now();
        let interval = Duration::from_secs(30);
        assert!(!recent(None, now, interval));
        assert!(recent(Some(now), now, interval));
        assert!(!recent(Some(now), now + interval, interval));
        assert!(!recent(Some(now), now, Duration::ZERO));
    }
}
