//! The audit trail: a middleware that records every write and every refusal of an
//! authenticated caller (time, tenant, principal, action, scope, outcome) in Postgres
//! and the log, and the ARM activity-log route through which a subscription's owners
//! read it.

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::Response,
    routing::get,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    AppState,
    error::ApiError,
    extract::{ArmPath, ArmQuery, subscription_id},
    middleware::RequestId,
};
use crate::{
    access::store::{self, AuditRecord},
    auth::{Action, Authorized, CanReadAuditLog, Principal},
    registries::store::owns_subscription,
};

/// Records returned by one activity-log read.
const MAX_RECORDS: i64 = 1000;

pub(super) fn router() -> Router<AppState> {
    Router::new().route(
        "/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values",
        get(activity_log),
    )
}

/// The ARM operation name of a request, from its method and the resource type its
/// (normalised) path ends in: keywords are read at their positions only, so a
/// registry named `importImage` is still a registry.
fn action_name(method: &Method, path: &str) -> String {
    let verb = match *method {
        Method::GET | Method::HEAD => "read",
        Method::DELETE => "delete",
        _ => "write",
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let at = |back: usize| segments.len().checked_sub(back).map_or("", |i| segments[i]);
    if at(1) == "importImage" && at(3) == "registries" {
        return "Microsoft.ContainerRegistry/registries/importImage/action".to_owned();
    }
    if at(1) == "cancel" && at(3) == "operationResults" {
        return "Microsoft.ContainerRegistry/locations/operationResults/cancel/action".to_owned();
    }
    let kind_of = |keyword: &str| match keyword {
        "registries" => Some("Microsoft.ContainerRegistry/registries"),
        "roleAssignments" => Some("Microsoft.Authorization/roleAssignments"),
        "roleDefinitions" => Some("Microsoft.Authorization/roleDefinitions"),
        "operationResults" => Some("Microsoft.ContainerRegistry/locations/operationResults"),
        "values" if at(3) == "eventtypes" => Some("Microsoft.Insights/eventtypes/values"),
        _ => None,
    };
    // An item (`…/registries/{name}`) or a collection (`…/registries`).
    let kind = kind_of(at(2))
        .or_else(|| kind_of(at(1)))
        .unwrap_or("Microsoft.Resources/subscriptions");
    format!("{kind}/{verb}")
}

/// Middleware (inside authentication): records writes and refusals.
pub(super) async fn record(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let principal = request.extensions().get::<Principal>().cloned();
    let request_id = request.extensions().get::<RequestId>().map(|r| r.0.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let write = !matches!(method, Method::GET | Method::HEAD);
    let denied = status == StatusCode::FORBIDDEN;
    let Some(principal) = principal.filter(|_| write || denied) else {
        return response;
    };
    let outcome = match (denied, status.is_success()) {
        (true, _) => "denied",
        (false, true) => "succeeded",
        (false, false) => "failed",
    };
    let record = AuditRecord {
        at: chrono::Utc::now(),
        tenant: principal.tenant.0,
        principal: principal.id.clone(),
        action: action_name(&method, &path),
        scope: path,
        outcome: outcome.to_owned(),
        status: status.as_u16() as i16,
        request_id,
    };
    tracing::info!(
        target: "ferry::audit",
        tenant = %record.tenant,
        principal = record.principal,
        action = record.action,
        scope = record.scope,
        outcome = record.outcome,
        status = record.status,
        "audit"
    );
    if let Err(error) = store::record(&state.pool, &record).await {
        tracing::error!(error = %error, "could not store an audit record");
    }
    response
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(rename = "$filter")]
    filter: Option<String>,
}

/// The `eventTimestamp ge '…'` bound of an activity-log filter, else a week ago.
fn since(filter: Option<&str>) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    let default = chrono::Utc::now() - chrono::Duration::days(7);
    let Some(filter) = filter else {
        return Ok(default);
    };
    let lowered = filter.to_ascii_lowercase();
    let Some(start) = lowered.find("eventtimestamp ge '") else {
        return Ok(default);
    };
    let rest = &filter[start + "eventtimestamp ge '".len()..];
    let value = rest.split('\'').next().unwrap_or_default();
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| ApiError::invalid("$filter", "eventTimestamp must be an RFC 3339 time."))
}

/// `GET …/providers/Microsoft.Insights/eventtypes/management/values`: the audit
/// records of a subscription, newest first (owners only).
async fn activity_log(
    State(state): State<AppState>,
    Authorized(caller, ..): Authorized<CanReadAuditLog>,
    ArmPath(sub): ArmPath<String>,
    ArmQuery(query): ArmQuery<LogQuery>,
) -> Result<Json<Value>, ApiError> {
    let sub = subscription_id(&sub)?;
    if !owns_subscription(&state.pool, caller.tenant, sub).await? {
        return Err(ApiError::SubscriptionNotFound(sub));
    }
    let scope = crate::access::ScopePath::subscription(sub);
    caller.require(Action::ReadAuditLog, &scope)?;
    let since = since(query.filter.as_deref())?;
    let records = store::audit_log(&state.pool, caller.tenant, sub, since, MAX_RECORDS).await?;
    let value: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "eventTimestamp": r.at,
                "caller": r.principal,
                "tenantId": r.tenant,
                "operationName": { "value": r.action },
                "resourceId": r.scope,
                "status": { "value": match r.outcome.as_str() {
                    "succeeded" => "Succeeded",
                    "denied" => "Denied",
                    _ => "Failed",
                } },
                "httpStatusCode": r.status,
                "correlationId": r.request_id,
            })
        })
        .collect();
    Ok(Json(json!({ "value": value, "nextLink": null })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_never_pass_for_keywords() {
        let group =
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries";
        for name in ["importImage", "roleAssignments", "registries", "values"] {
            assert_eq!(
                action_name(&Method::PUT, &format!("{group}/{name}")),
                "Microsoft.ContainerRegistry/registries/write",
                "{name}"
            );
        }
        assert_eq!(
            action_name(
                &Method::GET,
                "/subscriptions/s/providers/Microsoft.Insights/eventtypes/management/values"
            ),
            "Microsoft.Insights/eventtypes/values/read"
        );
    }

    #[test]
    fn actions_are_named_like_arm_operations() {
        let registry =
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/r";
        assert_eq!(
            action_name(&Method::PUT, registry),
            "Microsoft.ContainerRegistry/registries/write"
        );
        assert_eq!(
            action_name(&Method::POST, &format!("{registry}/importImage")),
            "Microsoft.ContainerRegistry/registries/importImage/action"
        );
        assert_eq!(
            action_name(
                &Method::DELETE,
                &format!("{registry}/providers/Microsoft.Authorization/roleAssignments/x")
            ),
            "Microsoft.Authorization/roleAssignments/delete"
        );
    }
}
