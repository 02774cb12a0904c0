//! Bearer tokens: the claims ferry reads, the verifier that checks signature,
//! expiry and claims and turns them into a [`Principal`], and `ferry token`'s minting.
//! Keys come from any mix of sources: the HS256 development secret, PEM public keys
//! ([`keys`]), a JWKS URL or OIDC discovery ([`jwks`]); [`policy`] holds the checks
//! every source shares (audience, issuer, time window, role mapping).

mod jwks;
mod keys;
mod policy;

use std::{sync::Arc, time::Duration};

use jsonwebtoken::{Algorithm, EncodingKey, Header, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use self::{
    jwks::{KeySet, Refresh, RemoteKeys},
    keys::VerificationKey,
    policy::ClaimPolicy,
};
use super::{Principal, TenantId};
use crate::{api::error::ApiError, config::AuthConfig};

/// The JWT claims ferry reads and `ferry token` writes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Entra v1 tokens name the calling application in `appid`…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// …v2 and other OIDC providers in `azp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// A string or a list; checked by the validation, carried here for minting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    #[serde(default)]
    pub roles: Vec<String>,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// Checks bearer tokens against the configured key sources; keys never show in Debug.
pub struct TokenVerifier {
    secret: Option<VerificationKey>,
    public_keys: Vec<VerificationKey>,
    remote: Vec<RemoteKeys>,
    policy: ClaimPolicy,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenVerifier { .. }")
    }
}

impl TokenVerifier {
    /// Builds the verifier without contacting any IdP (keys are fetched on first use).
    /// Fails without a key source, and without an audience when keys other than the
    /// development secret are configured.
    pub fn from_config(config: &AuthConfig) -> anyhow::Result<Self> {
        let secret = match &config.jwt_secret {
            Some(secret) if !secret.expose_secret().is_empty() => {
                Some(VerificationKey::secret(secret_bytes(secret)?))
            }
            _ => None,
        };
        let public_keys = config
            .jwt_public_keys
            .iter()
            .filter(|path| !path.as_os_str().is_empty())
            .map(|path| VerificationKey::from_pem_file(path))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let refresh = Refresh {
            max_age: config.jwks_refresh,
            min_interval: config.jwks_min_refresh,
        };
        let jwks_url = non_empty(config.jwks_url.as_deref());
        let oidc_issuer = non_empty(config.oidc_issuer.as_deref());
        let mut remote = Vec::new();
        if jwks_url.is_some() || oidc_issuer.is_some() {
            let http = jwks::http_client()?;
            if let Some(url) = jwks_url {
                remote.push(RemoteKeys::jwks(url, http.clone(), refresh)?);
            }
            if let Some(issuer) = oidc_issuer {
                remote.push(RemoteKeys::oidc(issuer, http, refresh)?);
            }
        }
        let policy = ClaimPolicy {
            audiences: non_empty_list(&config.jwt_audiences),
            issuers: non_empty_list(&config.jwt_issuers),
            role_claims: config.role_claims.clone(),
        };
        let asymmetric = !public_keys.is_empty() || !remote.is_empty();
        anyhow::ensure!(
            secret.is_some() || asymmetric,
            "no token key source: set FERRY_JWT_SECRET (development), FERRY_JWT_PUBLIC_KEYS, \
             FERRY_JWKS_URL or FERRY_OIDC_ISSUER"
        );
        anyhow::ensure!(
            !asymmetric || !policy.audiences.is_empty(),
            "FERRY_JWT_AUDIENCES is required with FERRY_JWT_PUBLIC_KEYS, FERRY_JWKS_URL or \
             FERRY_OIDC_ISSUER: without it, tokens the identity provider issued for other \
             applications would be accepted"
        );
        tracing::info!(
            hs256 = secret.is_some(),
            public_keys = public_keys.len(),
            remote = ?remote,
            audiences = ?policy.audiences,
            issuers = ?policy.issuers,
            "bearer token verification configured"
        );
        Ok(Self {
            secret,
            public_keys,
            remote,
            policy,
        })
    }

    /// A verifier for HS256 tokens signed with `secret` only.
    pub fn hs256(secret: &SecretString) -> anyhow::Result<Self> {
        secret_bytes(secret)?;
        Self::from_config(&AuthConfig {
            jwt_secret: Some(secret.clone()),
            ..AuthConfig::default()
        })
    }

    /// Verifies `token` and turns its claims into a principal. May fetch the IdP's
    /// keys (see [`jwks`]); a fetch failure refuses the token like a bad signature.
    pub async fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|error| refused(&error))?;
        let kid = header.kid.as_deref();
        let (claims, discovered) = match header.alg {
            Algorithm::HS256 => {
                let key = self.secret.as_ref().ok_or(ApiError::InvalidToken)?;
                (self.decode(token, key, header.alg)?, None)
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::ES256
            | Algorithm::ES384 => self.verify_public(token, header.alg, kid).await?,
            _ => return Err(ApiError::InvalidToken),
        };
        self.principal(claims, discovered.as_deref())
    }

    /// Tries every key that accepts the token's `alg` and `kid`, refreshing remote
    /// keys first when no source knows the `kid`.
    async fn verify_public(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<(Claims, Option<String>), ApiError> {
        let mut sets: Vec<Option<Arc<KeySet>>> = Vec::with_capacity(self.remote.len());
        for source in &self.remote {
            sets.push(source.keys().await);
        }
        if let Some(kid) = kid {
            if !sets.iter().flatten().any(|set| set.has_kid(kid)) {
                for (source, set) in self.remote.iter().zip(&mut sets) {
                    if set.is_some() {
                        *set = source.refresh_for(kid).await;
                    }
                }
            }
        }
        let candidates = self.public_keys.iter().map(|key| (key, None)).chain(
            sets.iter()
                .flatten()
                .flat_map(|set| set.keys.iter().map(|key| (key, set.issuer.as_deref()))),
        );
        for (key, discovered) in candidates.filter(|(key, _)| key.accepts(alg, kid)) {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &self.policy.validation(alg)) {
                Ok(data) => return Ok((data.claims, discovered.map(str::to_owned))),
                Err(error) if wrong_key(error.kind()) => continue,
                Err(error) => return Err(refused(&error)),
            }
        }
        tracing::debug!(?alg, kid, "no configured key verifies the bearer token");
        Err(ApiError::InvalidToken)
    }

    fn decode(
        &self,
        token: &str,
        key: &VerificationKey,
        alg: Algorithm,
    ) -> Result<Claims, ApiError> {
        if !key.accepts(alg, None) {
            return Err(ApiError::InvalidToken);
        }
        jsonwebtoken::decode::<Claims>(token, &key.key, &self.policy.validation(alg))
            .map(|data| data.claims)
            .map_err(|error| refused(&error))
    }

    /// Checks what the signature cannot: issuer and tenant, then reads the identity.
    fn principal(&self, claims: Claims, discovered: Option<&str>) -> Result<Principal, ApiError> {
        if !self
            .policy
            .issuer_allowed(claims.iss.as_deref(), claims.tid.as_deref(), discovered)
        {
            tracing::debug!(iss = ?claims.iss, "bearer token from an issuer ferry does not accept");
            return Err(ApiError::InvalidToken);
        }
        let tenant = claims
            .tid
            .as_deref()
            .and_then(|tid| uuid::Uuid::parse_str(tid).ok())
            .map(TenantId)
            .ok_or(ApiError::InvalidToken)?;
        let id = claims
            .oid
            .or(claims.sub)
            .filter(|id| !id.is_empty())
            .ok_or(ApiError::InvalidToken)?;
        let application = claims.appid.or(claims.azp).filter(|app| !app.is_empty());
        let roles = self.policy.roles(&claims.roles);
        Ok(Principal {
            tenant,
            id,
            application,
            roles,
        })
    }
}

/// Errors meaning "not this key": the next candidate may still verify the token.
fn wrong_key(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::Provider(_)
    )
}

fn refused(error: &jsonwebtoken::errors::Error) -> ApiError {
    tracing::debug!(reason = ?error.kind(), "bearer token refused");
    match error.kind() {
        ErrorKind::ExpiredSignature => ApiError::ExpiredToken,
        _ => ApiError::InvalidToken,
    }
}

/// The HS256 secret, refused below 32 bytes both for signing and for verifying.
fn secret_bytes(secret: &SecretString) -> anyhow::Result<&[u8]> {
    let bytes = secret.expose_secret().as_bytes();
    anyhow::ensure!(
        bytes.len() >= 32,
        "FERRY_JWT_SECRET must be at least 32 bytes long"
    );
    Ok(bytes)
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

fn non_empty_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
        .collect()
}

/// Signs a development token (`ferry token`, tests).
pub fn mint_token(
    secret: &SecretString,
    tenant: uuid::Uuid,
    roles: &[String],
    ttl: Duration,
    subject: &str,
) -> anyhow::Result<String> {
    mint_token_for(secret, tenant, roles, ttl, subject, None, None)
}

/// [`mint_token`] with an `aud` and an `iss`, for servers configured with
/// `FERRY_JWT_AUDIENCES` / `FERRY_JWT_ISSUERS`.
pub fn mint_token_for(
    secret: &SecretString,
    tenant: uuid::Uuid,
    roles: &[String],
    ttl: Duration,
    subject: &str,
    audience: Option<&str>,
    issuer: Option<&str>,
) -> anyhow::Result<String> {
    let key = EncodingKey::from_secret(secret_bytes(secret)?);
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        tid: Some(tenant.to_string()),
        oid: Some(subject.to_owned()),
        sub: Some(subject.to_owned()),
        appid: None,
        azp: None,
        iss: issuer.map(str::to_owned),
        aud: audience.map(|a| serde_json::Value::String(a.to_owned())),
        roles: roles.to_vec(),
        exp: now + i64::try_from(ttl.as_secs())?,
        iat: Some(now),
        nbf: Some(now),
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &key,
    )?)
}

#[cfg(test)]
mod tests;
