//! The import operation: its identity, lifecycle, progress and failure codes, the
//! request spec it carries, and the only SQL the API path runs on it (`store`).

pub mod platform;
pub mod quota;
pub mod reference;
pub mod spec;
pub mod store;

use serde::{Deserialize, Serialize};

/// An operation's id; also its name in poll URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(transparent)]
pub struct OperationId(pub uuid::Uuid);

impl OperationId {
    /// A fresh random id.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl Default for OperationId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for OperationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where an operation is in its life; `queued` and `running` are the only
/// non-terminal states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type, Serialize)]
#[sqlx(type_name = "operation_status", rename_all = "lowercase")]
pub enum OperationStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

/// Why an import failed; stored with the operation and shown in the poll response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureCode {
    ImageNotFound,
    TagAlreadyExists,
    UnsupportedMediaType,
    TooManyManifests,
    PlatformNotFound,
    DigestMismatch,
    SourceRegistryError,
    TargetRegistryError,
    RegistryNotFound,
    /// The SSRF guard or the source allow-list refused the source registry.
    SourceNotAllowed,
    /// The SSRF guard refused the target registry's address.
    TargetNotAllowed,
    OperationCanceled,
    /// Stored credentials no configured key opens (see `crypto::Keyring`).
    CredentialsUnavailable,
    ImportFailed,
    /// The image has more blobs or bytes than one import may copy.
    ImportTooLarge,
}

impl FailureCode {
    /// Every failure code, for the openapi.yaml consistency test.
    pub const ALL: [FailureCode; 15] = [
        Self::ImageNotFound,
        Self::TagAlreadyExists,
        Self::UnsupportedMediaType,
        Self::TooManyManifests,
        Self::PlatformNotFound,
        Self::DigestMismatch,
        Self::SourceRegistryError,
        Self::TargetRegistryError,
        Self::RegistryNotFound,
        Self::SourceNotAllowed,
        Self::TargetNotAllowed,
        Self::OperationCanceled,
        Self::CredentialsUnavailable,
        Self::ImportFailed,
        Self::ImportTooLarge,
    ];

    /// The stable code string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImageNotFound => "ImageNotFound",
            Self::TagAlreadyExists => "TagAlreadyExists",
            Self::UnsupportedMediaType => "UnsupportedMediaType",
            Self::TooManyManifests => "TooManyManifests",
            Self::PlatformNotFound => "PlatformNotFound",
            Self::DigestMismatch => "DigestMismatch",
            Self::SourceRegistryError => "SourceRegistryError",
            Self::TargetRegistryError => "TargetRegistryError",
            Self::RegistryNotFound => "RegistryNotFound",
            Self::SourceNotAllowed => "SourceNotAllowed",
            Self::TargetNotAllowed => "TargetNotAllowed",
            Self::OperationCanceled => "OperationCanceled",
            Self::CredentialsUnavailable => "CredentialsUnavailable",
            Self::ImportFailed => "ImportFailed",
            Self::ImportTooLarge => "ImportTooLarge",
        }
    }

    /// Reads a stored code; anything unknown degrades to the generic code.
    pub fn parse(text: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == text)
            .unwrap_or(Self::ImportFailed)
    }
}

/// Counters shown while an import runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Progress {
    /// Manifests to place in the target (each repository counts separately).
    pub manifests_total: u64,
    /// Manifests in place, including those already present.
    pub manifests_done: u64,
    /// Manifests the target already had.
    pub manifests_skipped: u64,
    /// Blobs to place in the target (each repository counts separately).
    pub blobs_total: u64,
    /// Blobs in place: copied, mounted or already present.
    pub blobs_done: u64,
    /// Blobs the target already had.
    pub blobs_skipped: u64,
    /// Blobs mounted from another repository of the same registry.
    pub blobs_mounted: u64,
    /// Referrer manifests (signatures, SBOMs, attestations) copied.
    pub referrers_copied: u64,
    pub bytes_total: u64,
    /// Bytes in place, including those already present.
    pub bytes_done: u64,
}

/// An operation as the poll endpoint sees it.
#[derive(Debug, Clone)]
pub struct OperationView {
    pub id: OperationId,
    /// The target registry's resource group and name, while it exists.
    pub target: Option<(String, String)>,
    pub status: OperationStatus,
    pub progress: Progress,
    pub failure: Option<(FailureCode, String)>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}
