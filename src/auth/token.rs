//! Bearer tokens: the claims ferry reads, the verifier that checks signature,
//! expiry and claims and turns them into a [`Principal`], and `ferry token`'s minting.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{Principal, Role, TenantId};
use crate::api::error::ApiError;

/// The JWT claims ferry reads and `ferry token` writes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// Checks bearer tokens; holds the key, never exposed through Debug.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenVerifier { .. }")
    }
}

impl TokenVerifier {
    /// A verifier for HS256 tokens signed with `secret`.
    pub fn hs256(secret: &SecretString) -> anyhow::Result<Self> {
        anyhow::ensure!(
            secret.expose_secret().len() >= 32,
            "FERRY_JWT_SECRET must be at least 32 bytes long"
        );
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Ok(Self {
            key: DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            validation,
        })
    }

    /// Verifies `token` and turns its claims into a principal.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |error| match error.kind() {
                ErrorKind::ExpiredSignature => ApiError::ExpiredToken,
                _ => ApiError::InvalidToken,
            },
        )?;
        let claims = data.claims;
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
        let roles = claims
            .roles
            .iter()
            .filter_map(|value| Role::from_claim(value))
            .collect();
        Ok(Principal { tenant, id, roles })
    }
}

/// Signs a development token (`ferry token`, tests).
pub fn mint_token(
    secret: &SecretString,
    tenant: uuid::Uuid,
    roles: &[String],
    ttl: Duration,
    subject: &str,
) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        tid: Some(tenant.to_string()),
        oid: Some(subject.to_owned()),
        sub: Some(subject.to_owned()),
        roles: roles.to_vec(),
        exp: now + i64::try_from(ttl.as_secs())?,
        iat: Some(now),
        nbf: Some(now),
    };
    let key = EncodingKey::from_secret(secret.expose_secret().as_bytes());
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &key,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Action;

    fn secret() -> SecretString {
        SecretString::from("a-test-secret-that-is-long-enough-1234")
    }

    #[test]
    fn minted_tokens_verify_and_carry_roles() {
        let tenant = uuid::Uuid::new_v4();
        let roles = vec![
            "ContainerRegistryDataReader".to_owned(),
            "Unknown".to_owned(),
        ];
        let token =
            mint_token(&secret(), tenant, &roles, Duration::from_secs(60), "alice").unwrap();
        let principal = TokenVerifier::hs256(&secret())
            .unwrap()
            .verify(&token)
            .unwrap();
        assert_eq!(principal.tenant.0, tenant);
        assert_eq!(principal.id, "alice");
        assert!(principal.authorize(Action::Read).is_ok());
        assert!(principal.authorize(Action::Import).is_err());
    }

    #[test]
    fn other_secrets_and_garbage_are_refused() {
        let token = mint_token(
            &secret(),
            uuid::Uuid::new_v4(),
            &[],
            Duration::from_secs(60),
            "a",
        )
        .unwrap();
        let other =
            TokenVerifier::hs256(&SecretString::from("another-secret-that-is-long-enough-99"))
                .unwrap();
        assert!(matches!(other.verify(&token), Err(ApiError::InvalidToken)));
        assert!(matches!(
            other.verify("not.a.token"),
            Err(ApiError::InvalidToken)
        ));
        assert!(TokenVerifier::hs256(&SecretString::from("short")).is_err());
    }
}
