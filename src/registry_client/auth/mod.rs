//! Registry authentication. Requests go out anonymously until a 401 challenge says
//! what the registry wants: HTTP Basic with the configured credentials, or a Bearer
//! token from the challenge's realm. Once the realm is known, tokens for new scopes
//! are fetched before the request (no extra 401 round trip), cached per scope until
//! shortly before they expire, and fetched again when a registry refuses one.
//!
//! Credentials: a username and password use the token endpoint's Basic flow; a
//! password alone (or with ACR's all-zero username) is an identity/refresh token,
//! exchanged with an OAuth2 `grant_type=refresh_token` POST, and used directly as the
//! bearer token when the realm does not accept it.

mod cache;
mod scope;
mod token;

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
    time::{Duration, Instant},
};

use regex::Regex;
use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

pub(super) use cache::AuthCache;
pub(super) use scope::Scope;

use super::{RegistryError, retry::RetryPolicy};
use crate::{egress::EgressPolicy, operations::spec::Credentials};

static PARAM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(\w+)=(?:"([^"]*)"|([^,\s]*))"#).expect("challenge regex"));

/// Where bearer tokens come from, as the registry's challenge said.
#[derive(Debug, Clone)]
struct Realm {
    url: String,
    service: Option<String>,
    /// Whether the realm may see the registry's credentials (see
    /// [`EgressPolicy::realm_may_receive_credentials`]); otherwise it is asked for
    /// an anonymous token.
    trusted: bool,
}

/// The registry an authenticator works for, and the guard its realms must pass.
#[derive(Debug, Clone)]
pub(in crate::registry_client) struct Origin {
    /// `scheme://host[:port]` of the registry.
    pub(in crate::registry_client) base: String,
    pub(in crate::registry_client) egress: Arc<EgressPolicy>,
}

#[derive(Debug)]
struct CachedToken {
    token: SecretString,
    fresh_until: Instant,
}

#[derive(Debug, Default)]
struct State {
    basic: bool,
    realm: Option<Realm>,
    tokens: HashMap<String, CachedToken>,
    /// The realm refused the password as a refresh token: use it as a bearer token.
    refresh_refused: bool,
}

/// Per-registry authentication state.
#[derive(Debug)]
pub(super) struct Authenticator {
    http: reqwest::Client,
    credentials: Option<Credentials>,
    retry: RetryPolicy,
    origin: Origin,
    state: Mutex<State>,
}

/// What was attached to a request, so a refusal can tell a stale token from a
/// missing right.
#[derive(Debug, Default)]
pub(super) struct Sent {
    token: Option<String>,
    /// Basic credentials went with the request.
    basic: bool,
}

impl Authenticator {
    /// `http` must not follow redirects: token requests carry credentials.
    pub(super) fn new(
        http: reqwest::Client,
        credentials: Option<Credentials>,
        retry: RetryPolicy,
        origin: Origin,
    ) -> Self {
        Self {
            http,
            credentials,
            retry,
            origin,
            state: Mutex::new(State::default()),
        }
    }

    fn username(&self) -> Option<&str> {
        self.credentials.as_ref()?.username.as_deref()
    }

    /// Adds whatever credentials the registry is known to want for `scope`.
    pub(super) async fn apply(
        &self,
        request: RequestBuilder,
        scope: &Scope,
    ) -> Result<(RequestBuilder, Sent), RegistryError> {
        let mut state = self.state.lock().await;
        if let Some(realm) = state.realm.clone() {
            // Holding the lock while fetching makes parallel requests share one token.
            let token = self.token(&mut state, &realm, scope).await?;
            let sent = Sent {
                token: Some(token.clone()),
                basic: false,
            };
            return Ok((request.bearer_auth(token), sent));
        }
        match (&self.credentials, self.username(), state.basic) {
            (Some(credentials), Some(user), true) => Ok((
                request.basic_auth(user, Some(credentials.password.expose_secret())),
                Sent {
                    token: None,
                    basic: true,
                },
            )),
            _ => Ok((request, Sent::default())),
        }
    }

    /// Answers a 401 challenge; returns whether sending again can succeed.
    pub(super) async fn answer(
        &self,
        challenge: Option<&str>,
        scope: &Scope,
        sent: &Sent,
    ) -> Result<bool, RegistryError> {
        let Some(challenge) = challenge else {
            return Ok(false);
        };
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        let params: HashMap<String, String> = PARAM
            .captures_iter(params)
            .map(|c| {
                (
                    c[1].to_ascii_lowercase(),
                    c.get(2).or(c.get(3)).map_or("", |m| m.as_str()).to_owned(),
                )
            })
            .collect();
        let mut state = self.state.lock().await;
        if scheme.eq_ignore_ascii_case("basic") {
            // A request sent anonymously while a parallel one learnt that Basic is
            // wanted is retried too; one refused with Basic is not.
            let usable = self.username().is_some();
            state.basic |= usable;
            return Ok(usable && !sent.basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(false);
        }
        let url = params
            .get("realm")
            .ok_or_else(|| RegistryError::Protocol("Bearer challenge without a realm".into()))?;
        state.realm = Some(self.realm(url, params.get("service").cloned())?);
        // The token we sent was refused: it expired early or was revoked.
        if let Some(sent) = &sent.token {
            state
                .tokens
                .retain(|_, cached| cached.token.expose_secret() != sent);
        }
        let realm = state.realm.clone().expect("just set");
        let token = self.token(&mut state, &realm, scope).await?;
        Ok(sent.token.as_deref() != Some(token.as_str()))
    }

    /// A challenge's realm, if the guard lets ferry ask it for tokens: http(s), never
    /// plain http for an https registry, and on an address ferry may reach (the
    /// resolver checks names when the token request connects).
    fn realm(&self, url: &str, service: Option<String>) -> Result<Realm, RegistryError> {
        let refused = |why: String| {
            RegistryError::NotAllowed(format!("the registry's token realm is refused: {why}"))
        };
        let parsed = url::Url::parse(url)
            .map_err(|_| RegistryError::Protocol("the token realm is not a URL".into()))?;
        let base = url::Url::parse(&self.origin.base)
            .map_err(|_| RegistryError::Protocol("bad registry address".into()))?;
        self.origin
            .egress
            .check_redirect(Some(&base), &parsed)
            .map_err(|e| refused(e.to_string()))?;
        let registry_host = base.authority().to_owned();
        let trusted = self
            .origin
            .egress
            .realm_may_receive_credentials(&registry_host, &parsed);
        if !trusted && self.credentials.is_some() {
            tracing::warn!(
                registry = %registry_host,
                realm = %parsed.host_str().unwrap_or_default(),
                "the token realm is outside the registry's domain; asking it for an anonymous token"
            );
        }
        Ok(Realm {
            url: url.to_owned(),
            service,
            trusted,
        })
    }

    /// A cached token for `scope`, or a fresh one from the realm.
    async fn token(
        &self,
        state: &mut State,
        realm: &Realm,
        scope: &Scope,
    ) -> Result<String, RegistryError> {
        let key = scope.key();
        for candidate in [key.clone(), scope.widened().key()] {
            if let Some(cached) = state.tokens.get(&candidate) {
                if cached.fresh_until > Instant::now() {
                    return Ok(cached.token.expose_secret().to_owned());
                }
            }
        }
        let (token, lifetime) = self.fetch(state, realm, scope).await?;
        // Renew a little early so a token never expires in flight.
        let margin = (lifetime / 10)
            .max(Duration::from_secs(5))
            .min(lifetime / 2);
        state.tokens.insert(
            key,
            CachedToken {
                token: SecretString::from(token.clone()),
                fresh_until: Instant::now() + lifetime - margin,
            },
        );
        Ok(token)
    }
}
