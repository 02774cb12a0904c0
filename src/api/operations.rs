//! The poll URL of an import: 202 while queued or running, 200 when it succeeded,
//! an ARM error (400) saying why when it failed, 404 when unknown.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;

use super::{
    AppState,
    error::ApiError,
    extract::{ApiVersion, ArmPath, BaseUrl, subscription_id},
};
use crate::{
    access::{Caller, ScopePath},
    auth::{Action, Authorized, CanImport, CanRead},
    operations::{
        OperationId, OperationStatus, OperationView,
        store::{self, Cancel},
    },
    registries::RegistryKey,
    worker::lease::CANCELED_MESSAGE,
};

const ONE: &str = "/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/locations/{location}/operationResults/{id}";

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(ONE, get(poll))
        .route(&format!("{ONE}/cancel"), post(cancel))
}

fn operation_path(subscription: uuid::Uuid, location: &str, id: OperationId) -> String {
    format!(
        "/subscriptions/{subscription}/providers/Microsoft.ContainerRegistry/locations/{location}/operationResults/{id}"
    )
}

/// The absolute URL clients poll for an operation.
pub(super) fn poll_url(
    base: &str,
    subscription: uuid::Uuid,
    location: &str,
    id: OperationId,
    version: &str,
) -> String {
    let version: String = url::form_urlencoded::byte_serialize(version.as_bytes()).collect();
    format!(
        "{base}{}?api-version={version}",
        operation_path(subscription, location, id)
    )
}

/// Adds what tells a client to keep polling: `Location` and an integer `Retry-After`.
pub(super) fn accepted(mut response: Response, poll_url: &str) -> Result<Response, ApiError> {
    let location = HeaderValue::from_str(poll_url).map_err(anyhow::Error::from)?;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    Ok(response)
}

/// The scope an operation belongs to: its target registry while that exists.
fn target_scope(subscription: uuid::Uuid, op: &OperationView) -> ScopePath {
    match &op.target {
        Some((group, name)) => ScopePath::registry(&RegistryKey {
            subscription,
            group: group.clone(),
            name: name.clone(),
        }),
        None => ScopePath::subscription(subscription),
    }
}

/// The tenant's operation `id`, if the caller may do `action` on its target.
async fn load(
    state: &AppState,
    caller: &Caller,
    sub: &str,
    id: &str,
    action: Action,
) -> Result<(uuid::Uuid, OperationView), ApiError> {
    let subscription = subscription_id(sub)?;
    let not_found = || ApiError::OperationNotFound(id.to_owned());
    let op_id = uuid::Uuid::parse_str(id)
        .map(OperationId)
        .map_err(|_| not_found())?;
    let op = store::find(&state.pool, caller.tenant, subscription, op_id)
        .await?
        .ok_or_else(not_found)?;
    caller.require(action, &target_scope(subscription, &op))?;
    Ok((subscription, op))
}

/// `POST …/operationResults/{id}/cancel` (a ferry extension): a queued import is
/// canceled at once, a running one stops at its worker's next heartbeat tick; the
/// poll then answers `OperationCanceled`. 409 when the import already ended.
async fn cancel(
    State(state): State<AppState>,
    Authorized(caller, ..): Authorized<CanImport>,
    ArmPath((sub, location, id)): ArmPath<(String, String, String)>,
    ApiVersion(version): ApiVersion,
    BaseUrl(base): BaseUrl,
) -> Result<Response, ApiError> {
    let (subscription, op) = load(&state, &caller, &sub, &id, Action::Import).await?;
    let op_id = op.id;
    let outcome = store::cancel(
        &state.pool,
        caller.tenant,
        subscription,
        op_id,
        CANCELED_MESSAGE,
    )
    .await?
    .ok_or_else(|| ApiError::OperationNotFound(id.clone()))?;
    if outcome == Cancel::AlreadyFinished {
        return Err(ApiError::OperationAlreadyFinished(id));
    }
    tracing::info!(op.id = %op_id, principal = %caller.id, ?outcome, "cancel requested");
    let url = poll_url(&base, subscription, &location, op_id, &version);
    accepted(StatusCode::ACCEPTED.into_response(), &url)
}

async fn poll(
    State(state): State<AppState>,
    Authorized(caller, ..): Authorized<CanRead>,
    ArmPath((sub, location, id)): ArmPath<(String, String, String)>,
    ApiVersion(version): ApiVersion,
    BaseUrl(base): BaseUrl,
) -> Result<Response, ApiError> {
    let (subscription, op) = load(&state, &caller, &sub, &id, Action::Read).await?;
    let body = |status: &str| {
        let mut body = json!({
            "id": operation_path(subscription, &location, op.id),
            "name": op.id.to_string(),
            "status": status,
            "startTime": op.created_at,
            "properties": { "progress": op.progress },
        });
        // openapi.yaml: endTime is present once the operation ended, never null.
        if let Some(end) = op.finished_at {
            body["endTime"] = json!(end);
        }
        body
    };
    match op.status {
        OperationStatus::Queued | OperationStatus::Running => {
            let url = poll_url(&base, subscription, &location, op.id, &version);
            accepted(
                (StatusCode::ACCEPTED, Json(body("InProgress"))).into_response(),
                &url,
            )
        }
        OperationStatus::Succeeded => Ok((StatusCode::OK, Json(body("Succeeded"))).into_response()),
        OperationStatus::Failed | OperationStatus::Canceled => {
            let (code, message) = op
                .failure
                .unwrap_or((crate::operations::FailureCode::ImportFailed, String::new()));
            Err(ApiError::OperationFailed {
                id: op.id.0,
                code,
                message,
            })
        }
    }
}
