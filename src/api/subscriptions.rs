//! `GET /subscriptions` (what `az login` lists) and the ARM resources filter the CLI
//! uses to find a registry's resource group.

use axum::{Json, Router, extract::State, routing::get};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    AppState,
    error::ApiError,
    extract::{ArmPath, ArmQuery, subscription_id},
};
use crate::{
    auth::{Authenticated, Authorized, CanRead, TenantId},
    registries::{self, RESOURCE_TYPE},
};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/subscriptions", get(list))
        .route("/subscriptions/{sub}", get(show))
        .route("/subscriptions/{sub}/resources", get(resources))
}

fn subscription_json(id: uuid::Uuid, tenant: TenantId) -> Value {
    json!({
        "id": format!("/subscriptions/{id}"),
        "subscriptionId": id,
        "tenantId": tenant.0,
        "displayName": format!("ferry {id}"),
        "state": "Enabled",
    })
}

async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<Value>, ApiError> {
    let subs = registries::store::list_subscriptions(&state.pool, caller.tenant).await?;
    let value: Vec<Value> = subs
        .iter()
        .map(|s| subscription_json(s.id, caller.tenant))
        .collect();
    Ok(Json(json!({ "value": value, "nextLink": null })))
}

async fn show(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ArmPath(sub): ArmPath<String>,
) -> Result<Json<Value>, ApiError> {
    let sub = subscription_id(&sub)?;
    if !registries::store::owns_subscription(&state.pool, caller.tenant, sub).await? {
        return Err(ApiError::SubscriptionNotFound(sub));
    }
    Ok(Json(subscription_json(sub, caller.tenant)))
}

#[derive(Deserialize)]
struct ResourcesQuery {
    #[serde(rename = "$filter")]
    filter: Option<String>,
}

/// Lists registries as generic resources. Only `resourceType eq '…/registries'` (or
/// no filter) matches anything: ferry holds no other resource type.
async fn resources(
    State(state): State<AppState>,
    Authorized(caller, ..): Authorized<CanRead>,
    ArmPath(sub): ArmPath<String>,
    ArmQuery(query): ArmQuery<ResourcesQuery>,
) -> Result<Json<Value>, ApiError> {
    let sub = subscription_id(&sub)?;
    let wanted = query.filter.as_deref().is_none_or(|filter| {
        let filter = filter.to_ascii_lowercase().replace('"', "'");
        filter.contains(&format!("'{}'", RESOURCE_TYPE.to_ascii_lowercase()))
    });
    let registries = if wanted {
        registries::store::list(&state.pool, caller.tenant, sub, None).await?
    } else {
        Vec::new()
    };
    let value: Vec<Value> = super::registries::readable(&caller, &registries)
        .map(|r| r.to_generic_resource())
        .collect();
    Ok(Json(json!({ "value": value, "nextLink": null })))
}
