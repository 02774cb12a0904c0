//! Blobs: existence checks, small in-memory uploads, and the registry-to-registry
//! copy: a cross-repository mount when both ends are one registry, otherwise a
//! verified streaming read from the source into an upload on the target, started
//! again (new session, fresh read) when the target fails in a way that may pass.

use bytes::Bytes;
use reqwest::{StatusCode, header};

use super::{
    BlobRef, Registry, RegistryError, Scope, Side,
    download::{Download, Meter},
    exists, expect,
    upload::{SessionGuard, Started},
};
use crate::operations::reference::{Digest, Repository};

/// How a blob got into the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    Copied,
    Mounted,
}

impl Registry {
    /// Whether the registry holds a blob in a repository.
    pub async fn blob_exists(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let url = self.url(repository, &format!("blobs/{digest}"));
        let response = self
            .send(&Scope::push(repository), || self.http.head(&url))
            .await?;
        exists(response, || format!("blob {digest}")).await
    }

    /// Uploads a blob held in memory (small blobs: configs, test content).
    pub async fn upload_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
        content: Bytes,
    ) -> Result<(), RegistryError> {
        let Started::Session(session) = self.start_upload(repository, None).await? else {
            unreachable!("no mount was asked for");
        };
        let mut url = session.url;
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let response = self
            .send(&Scope::push(repository), || {
                self.http
                    .put(url.clone())
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(content.clone())
            })
            .await?;
        expect(response, &[StatusCode::CREATED], || {
            format!("upload of {digest}")
        })
        .await
        .map(drop)
    }

    /// Copies a blob from `source` into this registry; `meter` follows the bytes.
    pub async fn copy_blob_from(
        &self,
        source: &Registry,
        source_repository: &Repository,
        repository: &Repository,
        blob: &BlobRef,
        meter: Option<Meter>,
    ) -> Result<Placed, Side> {
        let digest = &blob.digest;
        let mut chunked = self.settings.always_chunk;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mount = (self.same_registry(source) && source_repository != repository)
                .then_some((digest, source_repository));
            // The guard exists as soon as the session does, so a copy dropped while
            // the source read is still opening (a canceled import) deletes it too.
            let open = async {
                let guarded = match self.start_upload(repository, mount).await? {
                    Started::Mounted => None,
                    Started::Session(session) => {
                        let guard = SessionGuard::new(self, repository, &session.url);
                        Some((session, guard))
                    }
                };
                Ok::<_, RegistryError>(guarded)
            };
            let (opened, download) = if mount.is_some() {
                // Only read the source if the registry cannot mount the blob.
                let opened = open.await;
                if matches!(opened, Ok(None)) {
                    return Ok(Placed::Mounted);
                }
                (
                    opened,
                    Download::open(source, source_repository, blob, meter.clone()).await,
                )
            } else {
                // Opening the session and the read at once saves a round trip per blob.
                tokio::join!(
                    open,
                    Download::open(source, source_repository, blob, meter.clone())
                )
            };
            let Some((session, guard)) = opened.map_err(Side::Target)? else {
                return Ok(Placed::Mounted);
            };
            let download = match download {
                Ok(download) => download,
                Err(error) => return Err(Side::Source(error)),
            };
            let result = if chunked || session.chunk_min.is_some() {
                let chunk = self.settings.chunk_size;
                self.upload_chunked(repository, session, digest, download, chunk)
                    .await
            } else {
                self.upload_monolithic(repository, session, digest, download)
                    .await
            };
            let error = match result {
                Ok(()) => {
                    guard.completed();
                    return Ok(Placed::Copied);
                }
                Err(Side::Target(RegistryError::TooLarge(_))) if !chunked => {
                    tracing::debug!(%digest, "monolithic upload refused; uploading in chunks");
                    chunked = true;
                    continue;
                }
                Err(Side::Target(error)) if error.is_transient() => error,
                Err(other) => return Err(other),
            };
            drop(guard);
            match self.settings.retry.delay(attempt, None) {
                Some(delay) => {
                    tracing::debug!(%digest, %error, "blob upload failed; starting it again");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(Side::Target(error)),
            }
        }
    }
}
