//! Registry authentication: anonymous first, then whatever the registry's 401
//! challenge asks for: HTTP Basic with the configured credentials, or a Bearer token
//! from the challenge's realm (cached per repository scope).

use std::{collections::HashMap, sync::LazyLock};

use regex::Regex;
use reqwest::RequestBuilder;
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use super::RegistryError;
use crate::operations::{reference::Repository, spec::Credentials};

static PARAM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(\w+)=(?:"([^"]*)"|([^,\s]*))"#).expect("challenge regex"));

/// The access a request needs.
pub(super) struct Scope {
    pub repository: Repository,
    pub push: bool,
}

impl Scope {
    fn text(&self) -> String {
        let actions = if self.push { "pull,push" } else { "pull" };
        format!("repository:{}:{actions}", self.repository)
    }
}

#[derive(Debug, Default)]
struct State {
    basic: bool,
    tokens: HashMap<String, String>,
}

/// Per-registry authentication state.
#[derive(Debug)]
pub(super) struct Authenticator {
    http: reqwest::Client,
    credentials: Option<Credentials>,
    state: Mutex<State>,
}

impl Authenticator {
    pub(super) fn new(http: reqwest::Client, credentials: Option<Credentials>) -> Self {
        Self {
            http,
            credentials,
            state: Mutex::new(State::default()),
        }
    }

    /// Adds whatever credentials earlier challenges showed are needed.
    pub(super) async fn apply(&self, request: RequestBuilder, scope: &Scope) -> RequestBuilder {
        let state = self.state.lock().await;
        if let Some(token) = state.tokens.get(&scope.text()) {
            return request.bearer_auth(token);
        }
        match (&self.credentials, state.basic) {
            (
                Some(Credentials {
                    username: Some(user),
                    password,
                }),
                true,
            ) => request.basic_auth(user, Some(password.expose_secret())),
            _ => request,
        }
    }

    /// Answers a 401 challenge; returns whether a retry can succeed.
    pub(super) async fn answer(
        &self,
        challenge: Option<&str>,
        scope: &Scope,
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
        if scheme.eq_ignore_ascii_case("basic") {
            let usable = self
                .credentials
                .as_ref()
                .is_some_and(|c| c.username.is_some());
            let mut state = self.state.lock().await;
            let retry = usable && !state.basic;
            state.basic |= usable;
            return Ok(retry);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(false);
        }
        let token = match &self.credentials {
            // A password without a username is itself a bearer token.
            Some(Credentials {
                username: None,
                password,
            }) => password.expose_secret().to_owned(),
            credentials => {
                let realm = params.get("realm").ok_or_else(|| {
                    RegistryError::Protocol("Bearer challenge without realm".into())
                })?;
                self.fetch_token(
                    realm,
                    params.get("service"),
                    &scope.text(),
                    credentials.as_ref(),
                )
                .await?
            }
        };
        let mut state = self.state.lock().await;
        let retry = state.tokens.get(&scope.text()) != Some(&token);
        state.tokens.insert(scope.text(), token);
        Ok(retry)
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&String>,
        scope: &str,
        credentials: Option<&Credentials>,
    ) -> Result<String, RegistryError> {
        let mut query = vec![("scope", scope)];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let mut request = self.http.get(realm).query(&query);
        if let Some(Credentials {
            username: Some(user),
            password,
        }) = credentials
        {
            request = request.basic_auth(user, Some(password.expose_secret()));
        }
        let response = request.send().await?;
        if !response.status().is_success() {
            return Err(RegistryError::Unauthorized {
                status: response.status().as_u16(),
            });
        }
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| RegistryError::Protocol(format!("token response: {e}")))?;
        body["token"]
            .as_str()
            .or(body["access_token"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| RegistryError::Protocol("token response without a token".into()))
    }
}
