//! Opening the credentials an import needs: the sealed login of a registry resource
//! or the source credentials given with the import. A value no configured key opens
//! fails the import for good with `CredentialsUnavailable`; the log names the key
//! id and the owning row, never anything of the secret.

use secrecy::ExposeSecret;
use uuid::Uuid;

use super::{Worker, copy::CopyError, internal, lease};
use crate::{
    crypto::Sealed,
    operations::{FailureCode, OperationId, spec::Credentials},
    registries,
};

/// What a client reads when stored credentials cannot be opened.
const UNAVAILABLE: &str = "The stored credentials for this import cannot be read with the keys this service has; an operator must configure the key they were sealed with.";

impl Worker {
    /// The stored login of registry resource `registry`, if it has one.
    pub(super) async fn registry_credentials(
        &self,
        registry: Uuid,
    ) -> Result<Option<Credentials>, CopyError> {
        let sealed = registries::store::credentials(&self.pool, registry)
            .await
            .map_err(|e| internal(e.into()))?;
        sealed
            .map(|sealed| self.open(&sealed, registry, "registry_credentials"))
            .transpose()
    }

    /// The source credentials given with operation `id`, if any.
    pub(super) async fn source_credentials(
        &self,
        id: OperationId,
    ) -> Result<Option<Credentials>, CopyError> {
        let sealed = lease::operation_secret(&self.pool, id)
            .await
            .map_err(|e| internal(e.into()))?;
        sealed
            .map(|sealed| self.open(&sealed, id.0, "operation_secrets"))
            .transpose()
    }

    fn open(&self, sealed: &Sealed, owner: Uuid, table: &str) -> Result<Credentials, CopyError> {
        let unavailable = |error: &dyn std::fmt::Display| {
            tracing::error!(table, owner = %owner, %error, "stored credentials cannot be opened");
            CopyError::permanent(FailureCode::CredentialsUnavailable, UNAVAILABLE)
        };
        let plaintext = self
            .sealer
            .open(sealed, owner.as_bytes())
            .map_err(|e| unavailable(&e))?;
        // Not serde's message: it may quote the (decrypted) input.
        serde_json::from_slice(plaintext.expose_secret())
            .map_err(|_| unavailable(&"the opened value is not a credentials document"))
    }
}
