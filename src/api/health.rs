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
    // Probes time out quickly; answer 503 before they do.
    let ping = tokio::time::timeout(READY_TIMEOUT, crate::db::ping(&state.pool)).await;
    match ping {
        Ok(Ok(())) => Ok(Json(json!({ "status": "ready" }))),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness check failed");
            Err(ApiError::DatabaseUnavailable)
        }
        Err(_) => {
            tracing::warn!("readiness check timed out");
            Err(ApiError::DatabaseUnavailable)
        }
    }
}

/// How long the readiness probe waits for the database.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
