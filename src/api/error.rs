//! The one error type every HTTP response is built from, rendered as ARM's
//! `{"error":{"code","message","target"?}}` envelope. Each variant has a stable code
//! (listed in openapi.yaml) and a client-safe message; internal details ride along in
//! a response extension so the trace layer logs them once and clients never see them.

use std::sync::Arc;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::operations::FailureCode;

/// A failed request, as the client will see it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("The api-version query parameter is required.")]
    MissingApiVersion,
    #[error(
        "The api-version '{0}' is invalid. Use a date such as 2025-11-01 or 2025-11-01-preview."
    )]
    InvalidApiVersion(String),
    #[error("The request content is not valid: {0}")]
    InvalidRequestContent(String),
    #[error("{message}")]
    InvalidParameters { target: String, message: String },
    #[error("The resource name '{0}' is invalid.")]
    InvalidResourceName(String),
    #[error("The subscription id '{0}' is not a valid UUID.")]
    InvalidSubscriptionId(String),
    #[error(
        "Authentication failed. The 'Authorization' header is missing or is not a Bearer token."
    )]
    AuthenticationFailed,
    #[error("The access token is invalid.")]
    InvalidToken,
    #[error("The access token has expired.")]
    ExpiredToken,
    #[error(
        "The client '{principal}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid."
    )]
    AuthorizationFailed {
        principal: String,
        action: &'static str,
        scope: String,
    },
    #[error("The subscription '{0}' could not be found.")]
    SubscriptionNotFound(uuid::Uuid),
    #[error("The Resource '{0}' was not found.")]
    ResourceNotFound(String),
    #[error("The operation '{0}' was not found.")]
    OperationNotFound(String),
    #[error("No route matches the request path.")]
    NotFound,
    #[error("The HTTP method is not supported for this resource.")]
    MethodNotAllowed,
    #[error("The registry name '{0}' is already in use in this subscription.")]
    RegistryNameInUse(String),
    #[error("The request body is too large.")]
    PayloadTooLarge,
    #[error("The role assignment already exists.")]
    RoleAssignmentExists,
    #[error("The operation '{0}' has already finished and cannot be canceled.")]
    OperationAlreadyFinished(String),
    #[error("The role assignment '{0}' is not found.")]
    RoleAssignmentNotFound(String),
    #[error("The role definition '{0}' is not found.")]
    RoleDefinitionNotFound(String),
    #[error("Operation {id} failed. {message}")]
    OperationFailed {
        id: uuid::Uuid,
        code: FailureCode,
        message: String,
    },
    #[error("The database is unavailable.")]
    DatabaseUnavailable,
    /// The tenant is over an admission limit; the only 429 ferry sends.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    #[error("An internal error occurred. Use the x-ms-request-id header to find it in the logs.")]
    Internal(#[source] Arc<anyhow::Error>),
}

impl ApiError {
    /// The stable machine-readable code; the same set is enumerated in openapi.yaml.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingApiVersion => "MissingApiVersionParameter",
            Self::InvalidApiVersion(_) => "InvalidApiVersionParameter",
            Self::InvalidRequestContent(_) => "InvalidRequestContent",
            Self::InvalidParameters { .. } => "InvalidParameters",
            Self::InvalidResourceName(_) => "InvalidResourceName",
            Self::InvalidSubscriptionId(_) => "InvalidSubscriptionId",
            Self::AuthenticationFailed => "AuthenticationFailed",
            Self::InvalidToken => "InvalidAuthenticationToken",
            Self::ExpiredToken => "ExpiredAuthenticationToken",
            Self::AuthorizationFailed { .. } => "AuthorizationFailed",
            Self::SubscriptionNotFound(_) => "SubscriptionNotFound",
            Self::ResourceNotFound(_) => "ResourceNotFound",
            Self::OperationNotFound(_) => "OperationNotFound",
            Self::NotFound => "NotFound",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::RegistryNameInUse(_) => "RegistryNameInUse",
            Self::PayloadTooLarge => "PayloadTooLarge",
            Self::RoleAssignmentExists => "RoleAssignmentExists",
            Self::OperationAlreadyFinished(_) => "OperationAlreadyFinished",
            Self::RoleAssignmentNotFound(_) => "RoleAssignmentNotFound",
            Self::RoleDefinitionNotFound(_) => "RoleDefinitionNotFound",
            Self::OperationFailed { code, .. } => code.as_str(),
            Self::DatabaseUnavailable => "DatabaseUnavailable",
            Self::TooManyRequests { .. } => "TooManyRequests",
            Self::Internal(_) => "InternalServerError",
        }
    }

    /// The HTTP status, chosen so the Azure SDK raises the matching exception.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::AuthenticationFailed | Self::InvalidToken | Self::ExpiredToken => {
                StatusCode::UNAUTHORIZED
            }
            Self::AuthorizationFailed { .. } => StatusCode::FORBIDDEN,
            Self::SubscriptionNotFound(_)
            | Self::ResourceNotFound(_)
            | Self::OperationNotFound(_)
            | Self::NotFound
            | Self::RoleAssignmentNotFound(_)
            | Self::RoleDefinitionNotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RegistryNameInUse(_)
            | Self::RoleAssignmentExists
            | Self::OperationAlreadyFinished(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::DatabaseUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// Shorthand for a field that failed validation.
    pub fn invalid(target: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidParameters {
            target: target.into(),
            message: message.into(),
        }
    }

    fn target(&self) -> Option<&str> {
        match self {
            Self::InvalidParameters { target, .. } => Some(target),
            Self::MissingApiVersion | Self::InvalidApiVersion(_) => Some("api-version"),
            _ => None,
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        Self::Internal(Arc::new(error))
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::Internal(Arc::new(anyhow::Error::new(error).context("database")))
    }
}

/// Carries the internal cause of a 5xx to the trace layer, which logs it.
#[derive(Clone, Debug)]
pub struct InternalCause(pub Arc<anyhow::Error>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let Some(target) = self.target() {
            error["target"] = target.into();
        }
        let mut response = (self.status(), Json(json!({ "error": error }))).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if matches!(
            self,
            Self::AuthenticationFailed | Self::InvalidToken | Self::ExpiredToken
        ) {
            let challenge = match self {
                Self::AuthenticationFailed => "Bearer",
                Self::ExpiredToken => {
                    r#"Bearer error="invalid_token", error_description="The access token has expired""#
                }
                _ => {
                    r#"Bearer error="invalid_token", error_description="The access token is invalid""#
                }
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Self::TooManyRequests { retry_after, .. } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        if let Self::Internal(cause) = self {
            response.extensions_mut().insert(InternalCause(cause));
        }
        response
    }
}

/// Every code ApiError can produce, for the openapi.yaml consistency test.
pub const ALL_CODES: &[&str] = &[
    "MissingApiVersionParameter",
    "InvalidApiVersionParameter",
    "InvalidRequestContent",
    "InvalidParameters",
    "InvalidResourceName",
    "InvalidSubscriptionId",
    "AuthenticationFailed",
    "InvalidAuthenticationToken",
    "ExpiredAuthenticationToken",
    "AuthorizationFailed",
    "SubscriptionNotFound",
    "ResourceNotFound",
    "OperationNotFound",
    "NotFound",
    "MethodNotAllowed",
    "RegistryNameInUse",
    "PayloadTooLarge",
    "RoleAssignmentExists",
    "OperationAlreadyFinished",
    "RoleAssignmentNotFound",
    "RoleDefinitionNotFound",
    "DatabaseUnavailable",
    "TooManyRequests",
    "InternalServerError",
];
