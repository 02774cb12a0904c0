//! Referrers (signatures, SBOMs, attestations): listed with the referrers API, or
//! through the fallback tag `sha256-<hex>` (an index of referrer descriptors) on
//! registries without it; on such targets ferry keeps that fallback tag up to date.

use bytes::Bytes;
use reqwest::{StatusCode, header};

use super::{Manifest, Registry, RegistryError, Scope, expect, manifest, read_limited};
use crate::operations::reference::{Digest, Repository};

/// A referrer as its subject's listing describes it.
#[derive(Debug, Clone)]
pub struct Referrer {
    pub digest: Digest,
    /// The descriptor exactly as listed (media type, size, artifactType, annotations).
    pub descriptor: serde_json::Value,
}

fn fallback_tag(subject: &Digest) -> String {
    subject.as_str().replacen(':', "-", 1)
}

fn descriptors(index: &[u8]) -> Result<Vec<Referrer>, RegistryError> {
    let json: serde_json::Value = serde_json::from_slice(index)
        .map_err(|e| RegistryError::Protocol(format!("referrers index: {e}")))?;
    let Some(entries) = json["manifests"].as_array() else {
        return Ok(Vec::new());
    };
    entries
        .iter()
        .map(|d| {
            let digest = d["digest"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| RegistryError::Protocol("referrer without a digest".into()))?;
            Ok(Referrer {
                digest,
                descriptor: d.clone(),
            })
        })
        .collect()
}

impl Registry {
    /// Whether the registry serves the referrers API (asked once per handle).
    pub async fn serves_referrers_api(
        &self,
        repository: &Repository,
        subject: &Digest,
    ) -> Result<bool, RegistryError> {
        if let Some(known) = *self.referrers_api.lock().expect("referrers flag") {
            return Ok(known);
        }
        self.list_referrers(repository, subject)
            .await
            .map(|listed| listed.is_some())
    }

    /// The referrers API's answer; `None` when the registry lacks the API.
    async fn list_referrers(
        &self,
        repository: &Repository,
        subject: &Digest,
    ) -> Result<Option<Vec<Referrer>>, RegistryError> {
        let url = self.url(repository, &format!("referrers/{subject}"));
        let response = self
            .send(&Scope::pull(repository), || {
                self.http
                    .get(&url)
                    .header(header::ACCEPT, manifest::OCI_INDEX)
            })
            .await?;
        // Any refusal (404, 405, 400) means the registry lacks the API.
        let supported = !response.status().is_client_error();
        *self.referrers_api.lock().expect("referrers flag") = Some(supported);
        if !supported {
            return Ok(None);
        }
        let response = expect(response, &[StatusCode::OK], || {
            format!("referrers of {subject}")
        })
        .await?;
        let body = read_limited(response, manifest::MAX_MANIFEST_BYTES).await?;
        descriptors(&body).map(Some)
    }

    /// The referrers of `subject` in `repository`: from the API when the registry
    /// has it, else from the fallback tag.
    pub async fn referrers(
        &self,
        repository: &Repository,
        subject: &Digest,
    ) -> Result<Vec<Referrer>, RegistryError> {
        let known = *self.referrers_api.lock().expect("referrers flag");
        if known != Some(false) {
            if let Some(listed) = self.list_referrers(repository, subject).await? {
                return Ok(listed);
            }
        }
        // HEAD first: Docker Hub counts manifest GETs against its pull limit.
        let tag = fallback_tag(subject);
        if !self.manifest_exists(repository, &tag).await? {
            return Ok(Vec::new());
        }
        match self.get_manifest(repository, &tag).await {
            Ok(index) if index.is_index() => descriptors(&index.bytes),
            Ok(_) | Err(RegistryError::NotFound { .. }) => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }

    /// Lists `referrer` under its subject's fallback tag (for registries that did
    /// not index the subject themselves).
    pub async fn add_fallback_referrer(
        &self,
        repository: &Repository,
        subject: &Digest,
        referrer: &Referrer,
    ) -> Result<(), RegistryError> {
        let tag = fallback_tag(subject);
        let mut index = match self.get_manifest(repository, &tag).await {
            Ok(existing) if existing.is_index() => serde_json::from_slice(&existing.bytes)
                .map_err(|e| RegistryError::Protocol(format!("referrers index: {e}")))?,
            Ok(_) | Err(RegistryError::NotFound { .. }) => serde_json::json!({
                "schemaVersion": 2,
                "mediaType": manifest::OCI_INDEX,
                "manifests": [],
            }),
            Err(error) => return Err(error),
        };
        let entries = index["manifests"]
            .as_array_mut()
            .ok_or_else(|| RegistryError::Protocol("referrers index without manifests".into()))?;
        if entries
            .iter()
            .any(|d| d["digest"].as_str() == Some(referrer.digest.as_str()))
        {
            return Ok(());
        }
        entries.push(referrer.descriptor.clone());
        let bytes = serde_json::to_vec(&index)
            .map_err(|e| RegistryError::Protocol(format!("referrers index: {e}")))?;
        let manifest = Manifest::new(Bytes::from(bytes), Some(manifest::OCI_INDEX))?;
        self.put_manifest(repository, &tag, &manifest)
            .await
            .map(drop)
    }
}
