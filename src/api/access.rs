//! `Microsoft.Authorization` at a subscription, resource group or registry scope:
//! role assignments (PUT/GET/DELETE one, list) and ferry's role definitions.

use std::collections::HashMap;

use axum::{
    Json, Router,
    extract::{FromRequestParts, State},
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    AppState,
    error::ApiError,
    extract::{ArmJson, ArmPath, ArmQuery, group_name, registry_name},
    registries::load,
};
use crate::{
    access::{
        Caller, ROLE_DEFINITIONS, RoleDefinition, ScopePath, definition_arm_id,
        role_of_definition_id,
        store::{self, AssignError, Assignment},
    },
    auth::{Authenticated, Authorized, CanManageAccess, CanRead},
    registries::{RegistryKey, store::WriteError},
};

const ASSIGNMENTS: &str = "providers/Microsoft.Authorization/roleAssignments";
const DEFINITIONS: &str = "providers/Microsoft.Authorization/roleDefinitions";
const SUBSCRIPTION: &str = "/subscriptions/{sub}";
const GROUP: &str = "/subscriptions/{sub}/resourceGroups/{rg}";
const REGISTRY: &str = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{name}";

pub(super) fn router() -> Router<AppState> {
    let mut router = Router::new();
    for scope in [SUBSCRIPTION, GROUP, REGISTRY] {
        router = router
            .route(&format!("{scope}/{ASSIGNMENTS}"), get(list_assignments))
            .route(
                &format!("{scope}/{ASSIGNMENTS}/{{id}}"),
                get(show_assignment)
                    .put(put_assignment)
                    .delete(delete_assignment),
            )
            .route(&format!("{scope}/{DEFINITIONS}"), get(list_definitions))
            .route(
                &format!("{scope}/{DEFINITIONS}/{{id}}"),
                get(show_definition),
            );
    }
    router
}

/// The scope a `Microsoft.Authorization` route sits on, from its path.
struct Scope(ScopePath);

impl<S: Send + Sync> FromRequestParts<S> for Scope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let path = parts.uri.path();
        let scope = ScopePath::from_path(path).ok_or_else(|| {
            let sub = path.split('/').nth(2).unwrap_or_default();
            ApiError::InvalidSubscriptionId(sub.to_owned())
        })?;
        if let Some(group) = &scope.group {
            group_name(group)?;
        }
        if let Some(registry) = &scope.registry {
            registry_name(registry)?;
        }
        Ok(Self(scope))
    }
}

/// The `{id}` path segment as an assignment id.
fn assignment_id(params: &HashMap<String, String>) -> Result<Uuid, ApiError> {
    let id = params.get("id").map(String::as_str).unwrap_or_default();
    Uuid::parse_str(id).map_err(|_| {
        ApiError::invalid(
            "name",
            format!("The role assignment id '{id}' is not a valid GUID."),
        )
    })
}

/// A registry scope must name an existing registry of the caller's tenant.
async fn check_scope_exists(
    state: &AppState,
    caller: &Caller,
    scope: &ScopePath,
    params: &HashMap<String, String>,
) -> Result<(), ApiError> {
    if scope.registry.is_none() {
        return Ok(());
    }
    let key = RegistryKey {
        subscription: scope.subscription,
        group: params.get("rg").cloned().unwrap_or_default(),
        name: params.get("name").cloned().unwrap_or_default(),
    };
    load(state, caller, &key).await.map(drop)
}

fn assignment_json(assignment: &Assignment) -> Value {
    let scope = assignment.scope.to_string();
    json!({
        "id": format!("{scope}/{ASSIGNMENTS}/{}", assignment.id),
        "name": assignment.id,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": definition_arm_id(assignment.scope.subscription, assignment.role),
            "principalId": assignment.principal_id,
            "scope": scope,
        },
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignmentBody {
    properties: Option<AssignmentProperties>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignmentProperties {
    role_definition_id: Option<String>,
    principal_id: Option<String>,
    scope: Option<String>,
}

impl AssignmentBody {
    fn into_assignment(self, id: Uuid, scope: ScopePath) -> Result<Assignment, ApiError> {
        let props = self.properties.ok_or_else(|| {
            ApiError::invalid("properties", "The role assignment properties are required.")
        })?;
        let role = props
            .role_definition_id
            .as_deref()
            .and_then(role_of_definition_id)
            .ok_or_else(|| {
                ApiError::invalid(
                    "properties.roleDefinitionId",
                    "The role definition does not exist; list roleDefinitions for ferry's roles.",
                )
            })?;
        let principal_id = props
            .principal_id
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty() && p.len() <= 256)
            .ok_or_else(|| {
                ApiError::invalid("properties.principalId", "The principal id is required.")
            })?;
        if let Some(named) = props.scope {
            if ScopePath::from_path(&named).as_ref() != Some(&scope) {
                return Err(ApiError::invalid(
                    "properties.scope",
                    "The scope in the body differs from the scope in the path.",
                ));
            }
        }
        Ok(Assignment {
            id,
            scope,
            role,
            principal_id,
        })
    }
}

async fn put_assignment(
    State(state): State<AppState>,
    Authorized(caller, ..): Authorized<CanManageAccess>,
    Scope(scope): Scope,
    ArmPath(params): ArmPath<HashMap<String, String>>,
    ArmJson(body): ArmJson<AssignmentBody>,
) -> Result<Response, ApiError> {
    let id = assignment_id(&params)?;
    // The extractor let through owners of anything within the scope; managing
    // access at the scope itself needs ownership of all of it.
    caller.require(crate::auth::Action::ManageAccess, &scope)?;
    let assignment = body.into_assignment(id, scope)?;
    check_scope_exists(&state, &caller, &assignment.scope, &params).await?;
    let created = store::create(&state.pool, caller.tenant, &assignment, &caller.id)
        .await
        .map_err(|error| match error {
            AssignError::IdTaken | AssignError::Exists => ApiError::RoleAssignmentExists,
            AssignError::Write(WriteError::ForeignSubscription) => {
                ApiError::SubscriptionNotFound(assignment.scope.subscription)
            }
            AssignError::Write(error) => error.into(),
        })?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(assignment_json(&assignment))).into_response())
}

/// The tenant's assignment `id`, if it sits exactly at `scope`.
async fn find_at(
    state: &AppState,
    caller: &Caller,
    scope: &ScopePath,
    id: Uuid,
) -> Result<Option<Assignment>, ApiError> {
    let all = store::list(&state.pool, caller.tenant, scope.subscription).await?;
    Ok(all.into_iter().find(|a| a.id == id && &a.scope == scope))
}

async fn show_assignment(
    State(state): State<AppState>,
    Authorized(caller, ..): Authorized<CanRead>,
    Scope(scope): Scope,
    ArmPath(params): ArmPath<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let id = assignment_id(&params)?;
    caller.require(crate::auth::Action::Read, &scope)?;
    find_at(&state, &caller, &scope, id)
        .await?
        .map(|a| Json(assignment_json(&a)))
        .ok_or(ApiError::RoleAssignmentNotFound(id.to_string()))
}

async fn delete_assignment(
    State(state): State<AppState>,
    Authorized(caller, ..): Authorized<CanManageAccess>,
    Scope(scope): Scope,
    ArmPath(params): ArmPath<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let id = assignment_id(&params)?;
    caller.require(crate::auth::Action::ManageAccess, &scope)?;
    if find_at(&state, &caller, &scope, id).await?.is_none() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    match store::delete(&state.pool, caller.tenant, id).await? {
        Some(deleted) => Ok(Json(assignment_json(&deleted)).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "$filter")]
    filter: Option<String>,
}

/// `principalId eq '…'` from a list filter.
fn principal_filter(filter: Option<&str>) -> Option<String> {
    let filter = filter?;
    let start = filter.to_ascii_lowercase().find("principalid eq '")?;
    let rest = &filter[start + "principalid eq '".len()..];
    rest.split('\'').next().map(str::to_owned)
}

/// Assignments that apply at the scope (at or above it) or below it, as far as the
/// caller may read them.
async fn list_assignments(
    State(state): State<AppState>,
    Authorized(caller, ..): Authorized<CanRead>,
    Scope(scope): Scope,
    ArmQuery(query): ArmQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let principal = principal_filter(query.filter.as_deref());
    let all = store::list(&state.pool, caller.tenant, scope.subscription).await?;
    let value: Vec<Value> = all
        .iter()
        .filter(|a| a.scope.covers(&scope) || scope.covers(&a.scope))
        .filter(|a| caller.may(crate::auth::Action::Read, &a.scope) || a.scope.covers(&scope))
        .filter(|a| principal.as_ref().is_none_or(|p| &a.principal_id == p))
        .map(assignment_json)
        .collect();
    Ok(Json(json!({ "value": value, "nextLink": null })))
}

fn definition_json(subscription: Uuid, definition: &RoleDefinition) -> Value {
    json!({
        "id": definition_arm_id(subscription, definition.role),
        "name": definition.id,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": definition.name,
            "description": definition.description,
            "type": "BuiltInRole",
            "tokenRoleValue": definition.role.claim_value(),
            "permissions": [{ "actions": definition.actions, "notActions": [] }],
            "assignableScopes": ["/"],
        },
    })
}

async fn list_definitions(
    Authenticated(_caller): Authenticated,
    Scope(scope): Scope,
) -> Json<Value> {
    let value: Vec<Value> = ROLE_DEFINITIONS
        .iter()
        .map(|d| definition_json(scope.subscription, d))
        .collect();
    Json(json!({ "value": value, "nextLink": null }))
}

async fn show_definition(
    Authenticated(_caller): Authenticated,
    Scope(scope): Scope,
    ArmPath(params): ArmPath<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let id = params.get("id").cloned().unwrap_or_default();
    ROLE_DEFINITIONS
        .iter()
        .find(|d| Uuid::parse_str(&id).is_ok_and(|u| u == d.id))
        .map(|d| Json(definition_json(scope.subscription, d)))
        .ok_or(ApiError::RoleDefinitionNotFound(id))
}
