//! The token endpoint of a Bearer realm: the distribution token flow
//! (`GET realm?service=…&scope=…`, with Basic credentials when there are some) and
//! the OAuth2 refresh-token exchange for identity tokens, with transient failures
//! retried and the token's lifetime read from the answer.

use std::time::Duration;

use reqwest::RequestBuilder;
use secrecy::ExposeSecret;

use super::{Authenticator, Realm, Scope, State};
use crate::{
    operations::spec::Credentials,
    registry_client::{RegistryError, retry},
};

/// The username ACR and the Docker CLI pair with an identity (refresh) token.
const IDENTITY_TOKEN_USER: &str = "00000000-0000-0000-0000-000000000000";
/// Token lifetime when the token endpoint does not say (the distribution spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

impl Authenticator {
    /// A new token for `scope`, by whichever flow the credentials call for.
    pub(super) async fn fetch(
        &self,
        state: &mut State,
        realm: &Realm,
        scope: &Scope,
    ) -> Result<(String, Duration), RegistryError> {
        let Some(credentials) = self.credentials.as_ref().filter(|_| realm.trusted) else {
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
                Ok(r) if retry::retryable_status(r.status()) => (
                    retry::retry_after(&r),
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
            .map_err(|e| RegistryError::Protocol(format!("token response: {}", e.without_url())))?;
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
