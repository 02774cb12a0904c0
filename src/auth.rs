//! Who is calling and what they may do: bearer-token claims, ferry's roles and
//! actions, the authentication layer that turns a JWT into a [`Principal`], and the
//! [`Authorized`] extractor that checks an action before a handler reads its body.

use std::{collections::BTreeSet, marker::PhantomData, sync::Arc, time::Duration};

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{header, request::Parts},
    middleware::Next,
    response::Response,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;

/// A tenant (the token's `tid`): every resource belongs to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TenantId(pub uuid::Uuid);

/// The roles a token can carry in its `roles` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    DataImporter,
    DataReader,
    Contributor,
}

impl Role {
    /// The claim value Azure-style issuers put in `roles`.
    pub fn claim_value(self) -> &'static str {
        match self {
            Self::DataImporter => "ContainerRegistryDataImporter",
            Self::DataReader => "ContainerRegistryDataReader",
            Self::Contributor => "ContainerRegistryContributor",
        }
    }

    /// The role a claim value names, if ferry knows it.
    pub fn from_claim(value: &str) -> Option<Self> {
        [Self::DataImporter, Self::DataReader, Self::Contributor]
            .into_iter()
            .find(|role| role.claim_value().eq_ignore_ascii_case(value))
    }

    fn allows(self, action: Action) -> bool {
        match self {
            Self::DataImporter => matches!(action, Action::Import | Action::Read),
            Self::DataReader => action == Action::Read,
            Self::Contributor => matches!(action, Action::Write | Action::Read),
        }
    }
}

/// What a request wants to do, named like ARM's actions in 403 messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
    Import,
}

impl Action {
    fn arm_name(self) -> &'static str {
        match self {
            Self::Read => "Microsoft.ContainerRegistry/registries/read",
            Self::Write => "Microsoft.ContainerRegistry/registries/write",
            Self::Import => "Microsoft.ContainerRegistry/registries/importImage/action",
        }
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: TenantId,
    /// `oid` when present (stable across applications), else `sub`.
    pub id: String,
    pub roles: BTreeSet<Role>,
}

impl Principal {
    /// Succeeds when one of the caller's roles allows `action`.
    pub fn authorize(&self, action: Action) -> Result<(), ApiError> {
        if self.roles.iter().any(|role| role.allows(action)) {
            Ok(())
        } else {
            Err(ApiError::AuthorizationFailed {
                principal: self.id.clone(),
                action: action.arm_name(),
            })
        }
    }
}

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

/// Middleware: requires a valid bearer token and stores the [`Principal`] in the
/// request extensions; everything behind it can rely on one being there.
pub async fn authenticate(
    State(verifier): State<Arc<TokenVerifier>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty())
        .ok_or(ApiError::AuthenticationFailed)?;
    let principal = verifier.verify(token)?;
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

/// A permission a handler demands through [`Authorized`].
pub trait Permission {
    const ACTION: Action;
}

/// May read registries and operations.
pub struct CanRead;
/// May create, change and delete registries.
pub struct CanWrite;
/// May start imports.
pub struct CanImport;

impl Permission for CanRead {
    const ACTION: Action = Action::Read;
}
impl Permission for CanWrite {
    const ACTION: Action = Action::Write;
}
impl Permission for CanImport {
    const ACTION: Action = Action::Import;
}

/// The caller, already checked for permission `P`. Placed before the body
/// extractor, it makes a 403 win over a 400 and keeps refused requests inert.
pub struct Authorized<P>(pub Principal, pub PhantomData<P>);

impl<S: Send + Sync, P: Permission> FromRequestParts<S> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(ApiError::AuthenticationFailed)?;
        principal.authorize(P::ACTION)?;
        Ok(Self(principal, PhantomData))
    }
}

/// The caller with no particular permission (listing subscriptions).
pub struct Authenticated(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Self)
            .ok_or(ApiError::AuthenticationFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
