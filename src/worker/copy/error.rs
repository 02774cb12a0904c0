//! Why an import stopped, as a stable failure code, a client-safe message, and
//! whether trying the whole import again later could help.

use crate::{
    operations::FailureCode,
    registry_client::{RegistryError, Side},
};

/// Why an import stopped, and whether trying again later could help.
#[derive(Debug)]
pub struct CopyError {
    pub code: FailureCode,
    pub message: String,
    pub transient: bool,
}

impl CopyError {
    /// A failure no retry will fix.
    pub fn permanent(code: FailureCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            transient: false,
        }
    }

    pub(super) fn source(error: RegistryError) -> Self {
        Self::from(Side::Source(error))
    }

    pub(super) fn target(error: RegistryError) -> Self {
        Self::from(Side::Target(error))
    }
}

impl From<Side> for CopyError {
    fn from(side: Side) -> Self {
        let (error, code, name) = match side {
            Side::Source(e) => (e, FailureCode::SourceRegistryError, "source"),
            Side::Target(e) => (e, FailureCode::TargetRegistryError, "target"),
        };
        let transient = error.is_transient();
        let code = match (&error, code) {
            (RegistryError::NotFound { .. }, FailureCode::SourceRegistryError) => {
                FailureCode::ImageNotFound
            }
            (RegistryError::UnsupportedMediaType(_) | RegistryError::TooLarge(_), _) => {
                FailureCode::UnsupportedMediaType
            }
            (RegistryError::DigestMismatch { .. }, _) => FailureCode::DigestMismatch,
            (RegistryError::NotAllowed(_), FailureCode::SourceRegistryError) => {
                FailureCode::SourceNotAllowed
            }
            (RegistryError::NotAllowed(_), _) => FailureCode::TargetNotAllowed,
            _ => code,
        };
        let message = match &error {
            RegistryError::NotFound { what } => format!("The {name} registry has no {what}."),
            RegistryError::NotAllowed(why) => {
                // The detail (which host, redirect or realm) is for the operator: the
                // caller learns nothing about how names resolve inside the network.
                tracing::warn!(side = name, reason = %why, "the egress guard refused a connection");
                format!(
                    "The {name} registry is not allowed: ferry reaches only public addresses \
                     and the internal hosts its operator allows."
                )
            }
            other => format!("The {name} registry failed: {other}."),
        };
        Self {
            code,
            message,
            transient,
        }
    }
}
