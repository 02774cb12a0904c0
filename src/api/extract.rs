//! Extractors that turn raw request parts into validated types and turn every
//! rejection into an ARM error: JSON bodies, path segments, query strings, api-version,
//! and the base URL clients used (for absolute Location headers).

use std::sync::LazyLock;

use axum::{
    body::Bytes,
    extract::{
        FromRequest, FromRequestParts, Path, Query, Request,
        path::ErrorKind,
        rejection::{PathRejection, QueryRejection},
    },
    http::{StatusCode, request::Parts},
    middleware::Next,
    response::Response,
};
use regex::Regex;
use serde::de::DeserializeOwned;

use super::{AppState, error::ApiError};
use crate::registries::RegistryKey;

static API_VERSION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d{4}-\d{2}-\d{2}(-preview)?$").expect("api-version regex"));
static REGISTRY_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9]{5,50}$").expect("registry name regex"));
static GROUP_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[-\w._()]{1,90}$").expect("resource group regex"));

/// A JSON body parsed whatever its Content-Type (curl users forget it), with parse
/// errors reported as `InvalidRequestContent`.
pub struct ArmJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ArmJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = tokio::time::timeout(
            super::BODY_READ_TIMEOUT,
            Bytes::from_request(request, state),
        )
        .await
        .map_err(|_| {
            ApiError::InvalidRequestContent(format!(
                "the body did not arrive within {} s",
                super::BODY_READ_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::InvalidRequestContent("the body could not be read".to_owned())
            }
        })?;
        if has_nul_escape(&bytes) {
            return Err(ApiError::InvalidRequestContent(
                "strings must not contain the NUL character (\\u0000)".to_owned(),
            ));
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|error| ApiError::InvalidRequestContent(client_message(&error)))
    }
}

/// Whether a JSON text holds the escape `\u0000` (a NUL character) in some string.
/// PostgreSQL's `text` and `jsonb` cannot store NUL, so such a body would otherwise
/// fail deep inside a write as an internal error. Raw control characters are
/// already invalid JSON, so the escape is the only way a NUL can arrive.
fn has_nul_escape(json: &[u8]) -> bool {
    let mut rest = json;
    while let Some(at) = rest.iter().position(|&b| b == b'\\') {
        let escaped = &rest[at + 1..];
        if escaped.starts_with(b"u0000") {
            return true;
        }
        // Skip the escaped character so `\\u0000` (a backslash, then text) is not a NUL.
        rest = escaped.get(1..).unwrap_or_default();
    }
    false
}

static RUST_TYPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(struct|enum) \w+( with \d+ elements?)?").expect("type regex"));

/// A string or character value serde quotes in its message.
static QUOTED_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"string "(?:[^"\\]|\\.)*"|character `[^`]*`"#).expect("quoted value regex")
});

/// serde's message, with ferry's Rust type names replaced by what the client sent
/// and the client's own string values left out: a password sent where an object
/// belongs must not come back in the error (nor reach a log).
fn client_message(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let message = RUST_TYPE.replace_all(&message, "a JSON object");
    QUOTED_VALUE.replace_all(&message, "a string").into_owned()
}

/// `Path` with ARM errors: a segment that is not UTF-8 text once percent-decoded
/// (`%FF`) is a 400 `InvalidParameters`, not axum's plain-text rejection.
pub struct ArmPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ArmPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => {
                let message = match error.kind() {
                    ErrorKind::InvalidUtf8InPathParam { .. } => {
                        "A segment of the request path is not UTF-8 text."
                    }
                    _ => "The request path is not valid.",
                };
                Err(ApiError::invalid("path", message))
            }
            Err(other) => Err(anyhow::anyhow!("path parameters: {}", other.body_text()).into()),
        }
    }
}

/// `Query` with ARM errors: a query string the handler's type cannot take (e.g. a
/// repeated `$filter`) is a 400 `InvalidParameters`, not axum's plain-text rejection.
pub struct ArmQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ArmQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| {
                let text = rejection.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                let detail = RUST_TYPE.replace_all(detail, "a value");
                ApiError::invalid("query", format!("The query string is not valid: {detail}"))
            })
    }
}

/// The `api-version` of the request, already checked by [`require_api_version`].
#[derive(Debug, Clone)]
pub struct ApiVersion(pub String);

fn api_version_of(query: Option<&str>) -> Result<String, ApiError> {
    let value = query
        .into_iter()
        .flat_map(|q| url::form_urlencoded::parse(q.as_bytes()))
        .find(|(key, _)| key.eq_ignore_ascii_case("api-version"))
        .map(|(_, value)| value.into_owned())
        .ok_or(ApiError::MissingApiVersion)?;
    if API_VERSION.is_match(&value) {
        Ok(value)
    } else {
        Err(ApiError::InvalidApiVersion(value))
    }
}

/// Middleware for ARM routes: a well-formed `api-version` query parameter is required.
pub async fn require_api_version(mut request: Request, next: Next) -> Result<Response, ApiError> {
    let version = api_version_of(request.uri().query())?;
    request.extensions_mut().insert(ApiVersion(version));
    Ok(next.run(request).await)
}

impl<S: Send + Sync> FromRequestParts<S> for ApiVersion {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<ApiVersion>() {
            Some(version) => Ok(version.clone()),
            None => api_version_of(parts.uri.query()).map(ApiVersion),
        }
    }
}

/// Parses a subscription id segment.
pub fn subscription_id(text: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(text).map_err(|_| ApiError::InvalidSubscriptionId(text.to_owned()))
}

/// Checks a resource group name segment.
/// Checks a registry name (5–50 letters and digits).
pub fn registry_name(text: &str) -> Result<String, ApiError> {
    if REGISTRY_NAME.is_match(text) {
        Ok(text.to_owned())
    } else {
        Err(ApiError::InvalidResourceName(text.to_owned()))
    }
}

pub fn group_name(text: &str) -> Result<String, ApiError> {
    if GROUP_NAME.is_match(text) && !text.ends_with('.') {
        Ok(text.to_owned())
    } else {
        Err(ApiError::InvalidResourceName(text.to_owned()))
    }
}

/// `/subscriptions/{sub}/resourceGroups/{rg}/…/registries/{name}`, validated.
pub struct RegistryPath(pub RegistryKey);

impl<S: Send + Sync> FromRequestParts<S> for RegistryPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((subscription, group, name)) =
            Path::<(String, String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound)?;
        let name = registry_name(&name)?;
        Ok(Self(RegistryKey {
            subscription: subscription_id(&subscription)?,
            group: group_name(&group)?,
            name,
        }))
    }
}

/// The scheme and authority clients reach ferry at, for absolute Location URLs:
/// FERRY_PUBLIC_URL when configured, else X-Forwarded-Proto/Host, else Host.
pub struct BaseUrl(pub String);

impl FromRequestParts<AppState> for BaseUrl {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(url) = &state.public_url {
            return Ok(Self(url.as_str().trim_end_matches('/').to_owned()));
        }
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(',').next().unwrap_or_default().trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let scheme = match header("x-forwarded-proto").as_deref() {
            Some("https") => "https",
            Some("http") => "http",
            _ if state.tls => "https",
            _ => "http",
        };
        let host = header("x-forwarded-host")
            .or_else(|| header("host"))
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .filter(|h| {
                crate::operations::spec::parse_login_server(h).is_ok() || h.starts_with('[')
            })
            .unwrap_or_else(|| state.listen.to_string());
        Ok(Self(format!("{scheme}://{host}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_leave_out_the_values_sent() {
        #[derive(Debug, serde::Deserialize)]
        #[expect(dead_code, reason = "only its parse errors matter")]
        struct Body {
            credentials: std::collections::BTreeMap<String, String>,
            letter: Option<char>,
        }
        for (body, expected) in [
            (
                r#"{"credentials": "hunter\"2"}"#,
                "invalid type: a string, expected a map",
            ),
            (
                r#"{"credentials": {}, "letter": 7}"#,
                "invalid type: integer `7`",
            ),
            (
                r#"{"credentials": {}, "letter": "hunter2"}"#,
                "invalid value: a string",
            ),
        ] {
            let error = serde_json::from_str::<Body>(body).unwrap_err();
            let message = client_message(&error);
            assert!(message.starts_with(expected), "{message}");
            assert!(!message.contains("hunter"), "{message}");
        }
    }

    #[test]
    fn nul_escapes_are_found_and_escaped_backslashes_are_not() {
        assert!(has_nul_escape(br#"{"a":"x\u0000y"}"#));
        assert!(has_nul_escape(br#"{"\u0000":1}"#));
        assert!(!has_nul_escape(br#"{"a":"x\\u0000y"}"#));
        assert!(has_nul_escape(br#"{"a":"x\\\u0000y"}"#));
        assert!(!has_nul_escape(br#"{"a":"\u0001"}"#));
        assert!(!has_nul_escape(br#"{"a":"trailing\"#));
    }

    #[test]
    fn api_versions_are_dates() {
        assert_eq!(
            api_version_of(Some("api-version=2025-11-01")).unwrap(),
            "2025-11-01"
        );
        assert_eq!(
            api_version_of(Some("a=1&API-VERSION=2026-09-01-preview")).unwrap(),
            "2026-09-01-preview"
        );
        assert!(matches!(
            api_version_of(None),
            Err(ApiError::MissingApiVersion)
        ));
        assert!(matches!(
            api_version_of(Some("api-version=latest")),
            Err(ApiError::InvalidApiVersion(_))
        ));
    }
}
