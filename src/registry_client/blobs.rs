//! Blobs: existence checks, and a streamed copy from one registry to another that
//! never holds a whole blob in memory and checks digest and size on the way through.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::Stream;
use reqwest::{StatusCode, header};
use sha2::{Digest as _, Sha256};

use super::{BlobRef, Registry, RegistryError, Side, exists, expect};
use crate::operations::reference::{Digest, Repository};

/// A blob body in flight: hashes and counts what passes, and fails the stream (so
/// the upload aborts) when the content turns out not to match its descriptor.
pub struct BlobStream {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    hasher: Sha256,
    seen: u64,
    expected: BlobRef,
    mismatch: Arc<Mutex<bool>>,
}

impl Stream for BlobStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.seen += chunk.len() as u64;
                if this.seen > this.expected.size {
                    return Poll::Ready(Some(Err(this.fail())));
                }
                this.hasher.update(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(std::io::Error::other(error)))),
            Poll::Ready(None) => {
                let digest = Digest::from_hasher(std::mem::take(&mut this.hasher));
                if this.seen != this.expected.size || digest != this.expected.digest {
                    return Poll::Ready(Some(Err(this.fail())));
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl BlobStream {
    fn fail(&self) -> std::io::Error {
        *self.mismatch.lock().expect("mismatch flag") = true;
        std::io::Error::other("blob content does not match its digest")
    }
}

impl Registry {
    /// Whether the registry holds a blob in a repository.
    pub async fn blob_exists(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let url = self.url(repository, &format!("blobs/{digest}"));
        let response = self.send(repository, true, || self.http.head(&url)).await?;
        exists(response, || format!("blob {digest}")).await
    }

    /// Uploads a blob held in memory (small blobs: configs, test content).
    pub async fn upload_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
        content: Bytes,
    ) -> Result<(), RegistryError> {
        let mut put_url = self.start_upload(repository).await?;
        put_url
            .query_pairs_mut()
            .append_pair("digest", digest.as_str());
        let response = self
            .send(repository, true, || {
                self.http
                    .put(put_url.clone())
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

    /// Opens an upload session and returns its absolute URL.
    async fn start_upload(&self, repository: &Repository) -> Result<reqwest::Url, RegistryError> {
        let start_url = self.url(repository, "blobs/uploads/");
        let response = self
            .send(repository, true, || {
                self.http.post(&start_url).header(header::CONTENT_LENGTH, 0)
            })
            .await?;
        let response = expect(response, &[StatusCode::ACCEPTED], || {
            format!("upload session in {repository}")
        })
        .await?;
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol("upload session without Location".into()))?;
        reqwest::Url::parse(&self.base)
            .and_then(|base| base.join(location))
            .map_err(|e| RegistryError::Protocol(format!("upload Location: {e}")))
    }

    /// Streams a blob from `source` into this registry (monolithic upload). The
    /// content is verified against `blob` while it flows.
    pub async fn copy_blob_from(
        &self,
        source: &Registry,
        source_repo: &Repository,
        repository: &Repository,
        blob: &BlobRef,
    ) -> Result<(), Side> {
        let digest = &blob.digest;
        let get_url = source.url(source_repo, &format!("blobs/{digest}"));
        let response = source
            .send(source_repo, false, || source.http.get(&get_url))
            .await
            .map_err(Side::Source)?;
        let response = expect(response, &[StatusCode::OK], || format!("blob {digest}"))
            .await
            .map_err(Side::Source)?;
        let mismatch = Arc::new(Mutex::new(false));
        let body = BlobStream {
            inner: Box::pin(response.bytes_stream()),
            hasher: Sha256::new(),
            seen: 0,
            expected: blob.clone(),
            mismatch: mismatch.clone(),
        };
        let mut put_url = self.start_upload(repository).await.map_err(Side::Target)?;
        put_url
            .query_pairs_mut()
            .append_pair("digest", digest.as_str());
        let body = std::sync::Mutex::new(Some(reqwest::Body::wrap_stream(body)));
        let result = self
            .send(repository, true, || {
                let body = body
                    .lock()
                    .expect("body slot")
                    .take()
                    .unwrap_or_else(|| reqwest::Body::from(Vec::new()));
                self.http
                    .put(put_url.clone())
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, blob.size)
                    .body(body)
            })
            .await;
        if *mismatch.lock().expect("mismatch flag") {
            return Err(Side::Source(RegistryError::DigestMismatch {
                expected: digest.to_string(),
            }));
        }
        expect(
            result.map_err(Side::Target)?,
            &[StatusCode::CREATED],
            || format!("upload of {digest}"),
        )
        .await
        .map(drop)
        .map_err(Side::Target)
    }
}
