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
            _ => code,
        };
        let message = match &error {
            RegistryError::NotFound { what } => format!("The {name} registry has no {what}."),
            other => format!("The {name} registry failed: {other}."),
        };
        Self {
            code,
            message,
            transient,
        }
    }
}
