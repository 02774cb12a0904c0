//! Who is calling and what they may do: ferry's roles and actions, the
//! authentication layer that turns a bearer token into a [`Principal`] (token checks
//! live in [`token`]), and the [`Authorized`] extractor that checks an action before a
//! handler reads its body.

mod token;

pub use token::{Claims, TokenVerifier, mint_token, mint_token_for};

use std::{collections::BTreeSet, marker::PhantomData, sync::Arc};

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{header, request::Parts},
    middleware::Next,
    response::Response,
};
use serde::{Deserialize, Serialize};

use crate::{
    access::{self, Caller, ScopePath},
    api::{AppState, error::ApiError},
};

/// A tenant (the token's `tid`): every resource belongs to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TenantId(pub uuid::Uuid);

/// The roles a token can carry in its `roles` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    DataImporter,
    DataReader,
    Contributor,
    Owner,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 4] = [
        Self::DataImporter,
        Self::DataReader,
        Self::Contributor,
        Self::Owner,
    ];

    /// The claim value Azure-style issuers put in `roles`.
    pub fn claim_value(self) -> &'static str {
        match self {
            Self::DataImporter => "ContainerRegistryDataImporter",
            Self::DataReader => "ContainerRegistryDataReader",
            Self::Contributor => "ContainerRegistryContributor",
            Self::Owner => "ContainerRegistryOwner",
        }
    }

    /// The role a claim value names, if ferry knows it.
    pub fn from_claim(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|role| role.claim_value().eq_ignore_ascii_case(value))
    }

    /// Whether this role permits `action`.
    pub fn allows(self, action: Action) -> bool {
        match self {
            Self::DataImporter => matches!(action, Action::Import | Action::Read),
            Self::DataReader => action == Action::Read,
            Self::Contributor => matches!(action, Action::Write | Action::Delete | Action::Read),
            Self::Owner => true,
        }
    }
}

/// What a request wants to do, named like ARM's actions in 403 messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
    Import,
    Delete,
    /// Create and delete role assignments.
    ManageAccess,
    /// Read a subscription's audit records.
    ReadAuditLog,
}

impl Action {
    /// The ARM operation name, as 403 messages and the audit log show it.
    pub fn arm_name(self) -> &'static str {
        match self {
            Self::Read => "Microsoft.ContainerRegistry/registries/read",
            Self::Write => "Microsoft.ContainerRegistry/registries/write",
            Self::Import => "Microsoft.ContainerRegistry/registries/importImage/action",
            Self::Delete => "Microsoft.ContainerRegistry/registries/delete",
            Self::ManageAccess => "Microsoft.Authorization/roleAssignments/write",
            Self::ReadAuditLog => "Microsoft.Insights/eventtypes/values/read",
        }
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: TenantId,
    /// `oid` when present (stable across applications), else `sub`.
    pub id: String,
    /// The calling application (`appid`, else `azp`), when the token names one.
    pub application: Option<String>,
    pub roles: BTreeSet<Role>,
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
    let principal = verifier.verify(token).await?;
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
/// May delete registries.
pub struct CanDelete;
/// May create and delete role assignments.
pub struct CanManageAccess;
/// May read the audit log.
pub struct CanReadAuditLog;

impl Permission for CanRead {
    const ACTION: Action = Action::Read;
}
impl Permission for CanWrite {
    const ACTION: Action = Action::Write;
}
impl Permission for CanImport {
    const ACTION: Action = Action::Import;
}
impl Permission for CanDelete {
    const ACTION: Action = Action::Delete;
}
impl Permission for CanManageAccess {
    const ACTION: Action = Action::ManageAccess;
}
impl Permission for CanReadAuditLog {
    const ACTION: Action = Action::ReadAuditLog;
}

/// The caller, already checked for permission `P` at the request's scope (or, for
/// lists and polls, somewhere within it: the handler narrows). Placed before the
/// body extractor, it makes a 403 win over a 400 and keeps refused requests inert.
pub struct Authorized<P>(pub Caller, pub PhantomData<P>);

impl<P: Permission> FromRequestParts<AppState> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(ApiError::AuthenticationFailed)?;
        let grants = access::store::grants(&state.pool, principal.tenant, &principal.id).await?;
        let caller = Caller { principal, grants };
        let scope = ScopePath::from_path(parts.uri.path());
        let allowed = match &scope {
            Some(scope) => caller.may_within(P::ACTION, scope),
            None => caller.principal.roles.iter().any(|r| r.allows(P::ACTION)),
        };
        if allowed {
            return Ok(Self(caller, PhantomData));
        }
        Err(match scope {
            Some(scope) => caller.refusal(P::ACTION, &scope),
            None => ApiError::AuthorizationFailed {
                principal: caller.principal.id.clone(),
                action: P::ACTION.arm_name(),
                scope: "/".to_owned(),
            },
        })
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
