//! Errors from talking to a registry, classified by what the caller should do about
//! them (give up, retry, report a missing image) rather than by HTTP detail.

use crate::egress::Refused;

/// What went wrong in one registry call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("the registry refused the credentials ({status})")]
    Unauthorized { status: u16 },
    #[error("unsupported manifest media type '{0}'")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("content does not match digest {expected}")]
    DigestMismatch { expected: String },
    #[error("the registry asked for fresh credentials during an upload")]
    AuthExpired,
    #[error("the registry answered {status}{code}")]
    Status { status: u16, code: String },
    #[error("could not reach the registry: {0}")]
    Transport(String),
    #[error("invalid registry response: {0}")]
    Protocol(String),
    /// The SSRF guard refused a host, an address, a redirect or a token realm.
    #[error("{0}")]
    NotAllowed(String),
}

impl RegistryError {
    /// Worth another attempt later: transport trouble, throttling, server errors.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport(_) | Self::AuthExpired => true,
            Self::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// Builds a status error, keeping the first OCI error code from the body.
    pub(crate) fn from_status(status: reqwest::StatusCode, body: &[u8]) -> Self {
        let code = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["errors"][0]["code"].as_str().map(|c| format!(" ({c})")))
            .unwrap_or_default();
        match status.as_u16() {
            401 | 403 => Self::Unauthorized {
                status: status.as_u16(),
            },
            status => Self::Status { status, code },
        }
    }
}

impl From<reqwest::Error> for RegistryError {
    /// A guard refusal anywhere in the chain wins; a request ferry could not build
    /// or a redirect it would not follow is not worth retrying; the rest is transport.
    fn from(error: reqwest::Error) -> Self {
        if let Some(refused) = Refused::found_in(&error) {
            return Self::NotAllowed(refused.to_string());
        }
        // Never echo URLs: pre-signed blob URLs carry secrets in their query.
        let error = error.without_url();
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text = format!("{text}: {cause}");
            source = cause.source();
        }
        if error.is_builder() || error.is_redirect() {
            Self::Protocol(text)
        } else {
            Self::Transport(text)
        }
    }
}

/// Which end of a registry-to-registry copy an error came from.
#[derive(Debug)]
pub enum Side {
    Source(RegistryError),
    Target(RegistryError),
}
