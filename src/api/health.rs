//! Liveness and readiness probes for orchestrators; no authentication.

use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};

use super::{AppState, error::ApiError};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is up and serving.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers; 503 otherwise, so load balancers route around us.
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    crate::db::ping(&state.pool).await.map_err(|error| {
        tracing::warn!(error = %error, "readiness check failed");
        ApiError::DatabaseUnavailable
    })?;
    Ok(Json(json!({ "status": "ready" })))
}
