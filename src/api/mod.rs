//! The HTTP surface: one module per resource, each with a `router()`; this module
//! merges them, puts authentication and api-version checks on the ARM routes, and
//! wraps everything in the ARM error and header conventions.

mod access;
mod audit;
pub mod error;
pub mod extract;
mod health;
mod imports;
mod middleware;
mod operations;
mod registries;
mod subscriptions;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::Request,
    middleware::{from_fn, from_fn_with_state},
};
use tower::Layer;

pub use crate::app::AppState;
use crate::auth;
use error::ApiError;

/// The largest request body ferry reads: ARM bodies are small JSON documents.
pub const MAX_BODY: usize = 64 * 1024;

/// The largest request head (request line and headers) ferry reads; hyper answers
/// 431 beyond it. Entra access tokens, the largest header clients send, stay under
/// 16 KiB even with group claims.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// How long a client may take to send a JSON body once its head has arrived.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a client may take to send a request head over HTTP/1 before the
/// connection is closed (slow-header clients would otherwise hold connections).
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// All routes with their layers, before path normalisation.
pub fn router(state: AppState) -> Router {
    let arm = Router::new()
        .merge(subscriptions::router())
        .merge(registries::router())
        .merge(imports::router())
        .merge(operations::router())
        .merge(access::router())
        .merge(audit::router())
        .route_layer(from_fn(extract::require_api_version))
        .route_layer(from_fn_with_state(state.clone(), audit::record))
        .route_layer(from_fn_with_state(
            state.verifier.clone(),
            auth::authenticate,
        ));
    let routes = Router::new()
        .merge(arm)
        .merge(health::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY));
    middleware::traced(routes)
        .layer(from_fn(middleware::arm_headers))
        .with_state(state)
}

/// The router behind path normalisation.
pub type Normalized<B> = tower::util::MapRequest<Router, fn(Request<B>) -> Request<B>>;

/// The service to serve: the router behind case-insensitive ARM path matching.
pub fn service<B>(state: AppState) -> Normalized<B> {
    tower::util::MapRequestLayer::new(
        middleware::normalize_path::<B> as fn(Request<B>) -> Request<B>,
    )
    .layer(router(state))
}
