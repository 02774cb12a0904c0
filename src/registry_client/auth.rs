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

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
    time::{Duration, Instant},
};

use regex::Regex;
use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest as _, Sha256};
use tokio::sync::Mutex;

use super::{RegistryError, retry::RetryPolicy};
use crate::operations::{reference::Repository, spec::Credentials};

static PARAM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(\w+)=(?:"([^"]*)"|([^,\s]*))"#).expect("challenge regex"));

/// The username ACR and the Docker CLI pair with an identity (refresh) token.
const IDENTITY_TOKEN_USER: &str = "00000000-0000-0000-0000-000000000000";
/// Token lifetime when the token endpoint does not say (the distribution spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// How long an unused authenticator stays in the cache.
const IDLE_EVICTION: Duration = Duration::from_secs(600);

/// Authenticators by host and credentials. The key holds a hash of the
/// credentials, so imports with other credentials never share tokens.
#[derive(Debug, Default)]
pub(super) struct AuthCache {
    entries: HashMap<(String, [u8; 32]), (Arc<Authenticator>, Instant)>,
}

impl AuthCache {
    /// The shared authenticator for `host` and `credentials`, made on first use.
    pub(super) fn get_or_insert(
        &mut self,
        host: &str,
        credentials: Option<Credentials>,
        make: impl FnOnce() -> (reqwest::Client, RetryPolicy),
    ) -> Arc<Authenticator> {
        let now = Instant::now();
        self.entries
            .retain(|_, (auth, used)| Arc::strong_count(auth) > 1 || now - *used < IDLE_EVICTION);
        let mut hasher = Sha256::new();
        if let Some(credentials) = &credentials {
            hasher.update(credentials.username.as_deref().unwrap_or("").as_bytes());
            hasher.update([0]);
            hasher.update(credentials.password.expose_secret().as_bytes());
        }
        let key = (host.to_owned(), hasher.finalize().into());
        let (auth, used) = self.entries.entry(key).or_insert_with(|| {
            let (http, retry) = make();
            (Arc::new(Authenticator::new(http, credentials, retry)), now)
        });
        *used = now;
        auth.clone()
    }
}

/// The access a request needs: pull or push on one or more repositories (a
/// cross-repository mount needs push on the target and pull on the source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Scope {
    entries: Vec<(Repository, bool)>,
}

impl Scope {
    pub(super) fn pull(repository: &Repository) -> Self {
        Self {
            entries: vec![(repository.clone(), false)],
        }
    }

    pub(super) fn push(repository: &Repository) -> Self {
        Self {
            entries: vec![(repository.clone(), true)],
        }
    }

    /// Whether this is pull on one repository.
    pub(super) fn single_pull(&self) -> bool {
        matches!(self.entries.as_slice(), [(_, false)])
    }

    /// Adds pull access on another repository.
    pub(super) fn and_pull(mut self, repository: &Repository) -> Self {
        if !self.entries.iter().any(|(r, _)| r == repository) {
            self.entries.push((repository.clone(), false));
        }
        self
    }

    /// The scope strings of the token protocol.
    fn texts(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(repository, push)| {
                let actions = if *push { "pull,push" } else { "pull" };
                format!("repository:{repository}:{actions}")
            })
            .collect()
    }

    fn key(&self) -> String {
        let mut texts = self.texts();
        texts.sort();
        texts.join(" ")
    }

    /// The same repositories with push everywhere: a token for that also serves this.
    pub(super) fn widened(&self) -> Self {
        Self {
            entries: self
                .entries
                .iter()
                .map(|(r, _)| (r.clone(), true))
                .collect(),
        }
    }
}

/// Where bearer tokens come from, as the registry's challenge said.
#[derive(Debug, Clone)]
struct Realm {
    url: String,
    service: Option<String>,
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
    state: Mutex<State>,
}

/// What was attached to a request, so a refusal can tell a stale token from a
/// missing right.
#[derive(Debug, Default)]
pub(super) struct Sent {
    token: Option<String>,
}

impl Authenticator {
    /// `http` must not follow redirects: token requests carry credentials.
    pub(super) fn new(
        http: reqwest::Client,
        credentials: Option<Credentials>,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            http,
            credentials,
            retry,
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
            };
            return Ok((request.bearer_auth(token), sent));
        }
        match (&self.credentials, self.username(), state.basic) {
            (Some(credentials), Some(user), true) => Ok((
                request.basic_auth(user, Some(credentials.password.expose_secret())),
                Sent::default(),
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
            let usable = self.username().is_some();
            let retry = usable && !state.basic;
            state.basic |= usable;
            return Ok(retry);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(false);
        }
        let url = params
            .get("realm")
            .filter(|r| r.starts_with("https://") || r.starts_with("http://"))
            .ok_or_else(|| RegistryError::Protocol("Bearer challenge without a realm".into()))?;
        state.realm = Some(Realm {
            url: url.clone(),
            service: params.get("service").cloned(),
        });
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

    async fn fetch(
        &self,
        state: &mut State,
        realm: &Realm,
        scope: &Scope,
    ) -> Result<(String, Duration), RegistryError> {
        let Some(credentials) = &self.credentials else {
            return self.fetch_with(realm, scope, None).await;
        };
        let identity_token = match credentials.username.as_deref() {
            None => true,
            Some(user) => user == IDENTITY_TOKEN_USER,
        };
        if !identity_token {
            return self.fetch_with(realm, scope, Some(credentials)).await;
        }
        if !state.refresh_refused {
            match self.exchange_refresh_token(realm, scope, credentials).await {
                Ok(token) => return Ok(token),
                Err(RegistryError::Unauthorized { .. }) if credentials.username.is_none() => {
                    tracing::debug!("the realm refused the refresh token; using it as a bearer");
                    state.refresh_refused = true;
                }
                Err(error) => return Err(error),
            }
        }
        Ok((
            credentials.password.expose_secret().to_owned(),
            DEFAULT_TOKEN_LIFETIME,
        ))
    }

    /// The distribution token flow: `GET realm?service=…&scope=…` (Basic when known).
    async fn fetch_with(
        &self,
        realm: &Realm,
        scope: &Scope,
        credentials: Option<&Credentials>,
    ) -> Result<(String, Duration), RegistryError> {
        let mut query: Vec<(&str, String)> =
            scope.texts().into_iter().map(|s| ("scope", s)).collect();
        if let Some(service) = &realm.service {
            query.push(("service", service.clone()));
        }
        self.token_request(|| {
            let request = self.http.get(&realm.url).query(&query);
            match credentials {
                Some(Credentials {
                    username: Some(user),
                    password,
                }) => request.basic_auth(user, Some(password.expose_secret())),
                _ => request,
            }
        })
        .await
    }

    /// OAuth2: trade a refresh (identity) token for an access token.
    async fn exchange_refresh_token(
        &self,
        realm: &Realm,
        scope: &Scope,
        credentials: &Credentials,
    ) -> Result<(String, Duration), RegistryError> {
        let mut form = vec![
            ("grant_type", "refresh_token".to_owned()),
            (
                "refresh_token",
                credentials.password.expose_secret().to_owned(),
            ),
            ("client_id", "ferry".to_owned()),
            ("scope", scope.texts().join(" ")),
        ];
        if let Some(service) = &realm.service {
            form.push(("service", service.clone()));
        }
        self.token_request(|| self.http.post(&realm.url).form(&form))
            .await
    }

    /// Sends a token request (retrying transient failures) and reads the token.
    async fn token_request(
        &self,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<(String, Duration), RegistryError> {
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let (retry_after, error) = match build().send().await {
                Ok(r) if super::retry::retryable_status(r.status()) => (
                    super::retry::retry_after(&r),
                    RegistryError::from_status(r.status(), b""),
                ),
                Ok(r) => break r,
                Err(e) => (None, RegistryError::from(e)),
            };
            match self.retry.delay(attempt, retry_after) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Err(error),
            }
        };
        let status = response.status();
        if !status.is_success() {
            return Err(RegistryError::Unauthorized {
                status: status.as_u16(),
            });
        }
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| RegistryError::Protocol(format!("token response: {e}")))?;
        let token = body["token"]
            .as_str()
            .or(body["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Protocol("token response without a token".into()))?;
        let lifetime = body["expires_in"]
            .as_u64()
            .filter(|s| *s > 0)
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        Ok((token.to_owned(), lifetime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_authenticators_are_shared_only_by_equal_credentials() {
        let mut cache = AuthCache::default();
        let login = |password: &str| {
            Some(Credentials {
                username: Some("alice".into()),
                password: SecretString::from(password.to_owned()),
            })
        };
        let make = || (reqwest::Client::new(), RetryPolicy::default());
        let a = cache.get_or_insert("r.example", login("one"), make);
        let again = cache.get_or_insert("r.example", login("one"), make);
        assert!(Arc::ptr_eq(&a, &again));
        for other in [
            cache.get_or_insert("r.example", login("two"), make),
            cache.get_or_insert("r.example", None, make),
            cache.get_or_insert("s.example", login("one"), make),
        ] {
            assert!(!Arc::ptr_eq(&a, &other));
        }
    }

    #[test]
    fn scopes_combine_and_key_ignores_order() {
        let a: Repository = "team/app".parse().unwrap();
        let b: Repository = "base/os".parse().unwrap();
        let scope = Scope::push(&a).and_pull(&b);
        assert_eq!(
            scope.texts(),
            ["repository:team/app:pull,push", "repository:base/os:pull"]
        );
        let other = Scope {
            entries: vec![(b.clone(), false), (a.clone(), true)],
        };
        assert_eq!(scope.key(), other.key());
        assert_eq!(Scope::pull(&a).and_pull(&a), Scope::pull(&a));
    }
}
