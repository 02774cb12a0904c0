//! Registry resources: PUT/GET/PATCH/DELETE one, and list by resource group or
//! subscription. Credentials are write-only: sealed on the way in, never returned.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};

use super::{
    AppState,
    error::ApiError,
    extract::{ArmJson, ArmPath, RegistryPath, group_name, subscription_id},
};
use crate::{
    access::{Caller, ScopePath},
    auth::{Action, Authorized, CanDelete, CanRead, CanWrite},
    registries::{
        Registry, RegistryBody, RegistryKey,
        store::{self, PutError, WriteError},
    },
};

const ONE: &str = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{name}";

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(ONE, get(show).put(put).patch(patch).delete(delete))
        .route(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries",
            get(list_in_group),
        )
        .route("/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/registries", get(list_in_subscription))
}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::ForeignSubscription => Self::ResourceNotFound("subscription".to_owned()),
            WriteError::NameInUse => Self::RegistryNameInUse(String::new()),
            WriteError::Database(error) => error.into(),
        }
    }
}

fn invalid((field, message): (&'static str, String)) -> ApiError {
    ApiError::invalid(field, message)
}

/// Loads a registry of the caller's tenant or answers 404.
pub(super) async fn load(
    state: &AppState,
    caller: &crate::auth::Principal,
    key: &RegistryKey,
) -> Result<Registry, ApiError> {
    store::find(&state.pool, caller.tenant, key)
        .await?
        .ok_or_else(|| {
            ApiError::ResourceNotFound(format!(
                "Microsoft.ContainerRegistry/registries/{}",
                key.name
            ))
        })
}

async fn show(
    State(state): State<AppState>,
    Authorized(caller, ..): Authorized<CanRead>,
    RegistryPath(key): RegistryPath,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(load(&state, &caller, &key).await?.to_arm()))
}

async fn put(
    State(state): State<AppState>,
    Authorized(caller, ..): Authorized<CanWrite>,
    RegistryPath(key): RegistryPath,
    ArmJson(body): ArmJson<RegistryBody>,
) -> Result<Response, ApiError> {
    let mut change = body.into_put().map_err(invalid)?;
    let credentials = change.credentials.take();
    let sealer = state.sealer.clone();
    let seal = move |id: uuid::Uuid| {
        credentials
            .map(|c| sealer.seal(&c.to_plaintext(), id.as_bytes()))
            .transpose()
    };
    let (_, created) = store::put(&state.pool, caller.tenant, &key, change, &caller.id, seal)
        .await
        .map_err(|error| match error {
            PutError::Write(WriteError::ForeignSubscription) => {
                ApiError::SubscriptionNotFound(key.subscription)
            }
            PutError::Write(WriteError::NameInUse) => ApiError::RegistryNameInUse(key.name.clone()),
            PutError::Write(other) => other.into(),
            PutError::Seal(error) => error.into(),
        })?;
    let registry = load(&state, &caller, &key).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(registry.to_arm())).into_response())
}

async fn patch(
    State(state): State<AppState>,
    Authorized(caller, ..): Authorized<CanWrite>,
    RegistryPath(key): RegistryPath,
    ArmJson(body): ArmJson<RegistryBody>,
) -> Result<Json<Value>, ApiError> {
    let registry = load(&state, &caller, &key).await?;
    let mut change = body.into_patch(&registry.properties).map_err(invalid)?;
    let sealed = change
        .credentials
        .take()
        .map(|c| state.sealer.seal(&c.to_plaintext(), registry.id.as_bytes()))
        .transpose()?;
    store::patch(&state.pool, registry.id, change, &caller.id, sealed).await?;
    Ok(Json(load(&state, &caller, &key).await?.to_arm()))
}

async fn delete(
    State(state): State<AppState>,
    Authorized(caller, ..): Authorized<CanDelete>,
    RegistryPath(key): RegistryPath,
) -> Result<StatusCode, ApiError> {
    let Some(registry) = store::find(&state.pool, caller.tenant, &key).await? else {
        return Ok(StatusCode::NO_CONTENT);
    };
    let deleted = store::delete(&state.pool, registry.id).await?;
    Ok(if deleted {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    })
}

/// A list page of the registries the caller may read.
fn page(caller: &Caller, registries: &[Registry]) -> Json<Value> {
    let value: Vec<Value> = readable(caller, registries).map(Registry::to_arm).collect();
    Json(json!({ "value": value, "nextLink": null }))
}

/// The registries the caller may read (a list shows no others).
pub(super) fn readable<'a>(
    caller: &'a Caller,
    registries: &'a [Registry],
) -> impl Iterator<Item = &'a Registry> {
    registries.iter().filter(|r| {
        let key = RegistryKey {
            subscription: r.subscription_id,
            group: r.resource_group.clone(),
            name: r.name.clone(),
        };
        caller.may(Action::Read, &ScopePath::registry(&key))
    })
}

async fn list_in_group(
    State(state): State<AppState>,
    Authorized(caller, ..): Authorized<CanRead>,
    ArmPath((sub, group)): ArmPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (sub, group) = (subscription_id(&sub)?, group_name(&group)?);
    Ok(page(
        &caller,
        &store::list(&state.pool, caller.tenant, sub, Some(&group)).await?,
    ))
}

async fn list_in_subscription(
    State(state): State<AppState>,
    Authorized(caller, ..): Authorized<CanRead>,
    ArmPath(sub): ArmPath<String>,
) -> Result<Json<Value>, ApiError> {
    let sub = subscription_id(&sub)?;
    Ok(page(
        &caller,
        &store::list(&state.pool, caller.tenant, sub, None).await?,
    ))
}
