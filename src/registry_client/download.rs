//! A blob read from the source registry as a resumable, self-verifying stream. When
//! the body is cut mid-way (reset, EOF, timeout), the read reconnects with
//! `Range: bytes=N-` and carries on; a registry that ignores the range (200 with the
//! whole blob) has its first N bytes dropped. Every byte is hashed once, in order, so
//! a wrong digest or size is caught before the upload completes. A rewind (a chunked
//! upload resuming from an earlier offset) re-reads bytes without hashing them again.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use reqwest::{Response, StatusCode, header};
use sha2::{Digest as _, Sha256};

use super::{BlobRef, Registry, RegistryError, Scope, expect};
use crate::operations::reference::{Digest, Repository};

/// Reconnects allowed for one blob read.
const MAX_RECONNECTS: u32 = 8;

/// Where a failed download leaves its reason, for the upload that was fed by it.
pub(super) type FailureSlot = Arc<Mutex<Option<RegistryError>>>;

/// Told how many bytes of a blob have been read and hashed so far (it starts
/// again from 0 when a transfer is started over).
pub type Meter = Arc<dyn Fn(u64) + Send + Sync>;

pub(super) struct Download {
    source: Registry,
    repository: Repository,
    blob: BlobRef,
    response: Option<Response>,
    /// The next byte to hand out.
    offset: u64,
    /// Bytes of the current response still to drop (a registry that ignored Range).
    skip: u64,
    /// Bytes hashed so far; re-read bytes below this are not hashed again.
    hashed: u64,
    hasher: Sha256,
    /// Bytes read but not handed out yet (the tail of a split chunk).
    pending: Option<Bytes>,
    reconnects: u32,
    verified: bool,
    failure: FailureSlot,
    meter: Option<Meter>,
}

impl Download {
    /// Starts reading `blob` from `source`: fails here, before any upload is opened,
    /// when the source does not have it.
    pub(super) async fn open(
        source: &Registry,
        repository: &Repository,
        blob: &BlobRef,
        meter: Option<Meter>,
    ) -> Result<Self, RegistryError> {
        let mut download = Self {
            source: source.clone(),
            repository: repository.clone(),
            blob: blob.clone(),
            response: None,
            offset: 0,
            skip: 0,
            hashed: 0,
            hasher: Sha256::new(),
            pending: None,
            reconnects: 0,
            verified: false,
            failure: FailureSlot::default(),
            meter,
        };
        download.connect().await?;
        Ok(download)
    }

    pub(super) fn size(&self) -> u64 {
        self.blob.size
    }

    /// Where the reason for a failed read is left.
    pub(super) fn failure(&self) -> FailureSlot {
        self.failure.clone()
    }

    /// Goes back to an earlier byte (the target lost the tail of an upload); the
    /// read cannot jump ahead of bytes it has not handed out.
    pub(super) fn seek(&mut self, offset: u64) -> Result<(), RegistryError> {
        let handed_out = self.offset - self.pending.as_ref().map_or(0, |p| p.len() as u64);
        if offset > handed_out {
            return Err(RegistryError::Protocol(format!(
                "the upload session holds {offset} bytes, more than were sent"
            )));
        }
        if offset < handed_out {
            self.offset = offset;
            self.pending = None;
            self.response = None;
            self.skip = 0;
        }
        Ok(())
    }

    async fn connect(&mut self) -> Result<(), RegistryError> {
        let url = self
            .source
            .url(&self.repository, &format!("blobs/{}", self.blob.digest));
        let offset = self.offset;
        let response = self
            .source
            .send_stream(&Scope::pull(&self.repository), || {
                let request = self.source.http.get(&url);
                if offset > 0 {
                    request.header(header::RANGE, format!("bytes={offset}-"))
                } else {
                    request
                }
            })
            .await?;
        let digest = &self.blob.digest;
        let response = expect(
            response,
            &[StatusCode::OK, StatusCode::PARTIAL_CONTENT],
            || format!("blob {digest}"),
        )
        .await?;
        self.skip = 0;
        if response.status() == StatusCode::PARTIAL_CONTENT {
            let start = response
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if start != Some(offset) {
                return Err(RegistryError::Protocol(
                    "ranged read answered with another range".into(),
                ));
            }
        } else if offset > 0 {
            tracing::debug!(offset, "source ignored Range; skipping the sent prefix");
            self.skip = offset;
        }
        self.response = Some(response);
        Ok(())
    }

    /// The next bytes, at most `max` of them; `None` at the verified end.
    pub(super) async fn next_up_to(&mut self, max: u64) -> Result<Option<Bytes>, RegistryError> {
        let result = self.next_inner(max).await;
        if let Err(error) = &result {
            let mut slot = self.failure.lock().expect("failure slot");
            if slot.is_none() {
                *slot = Some(error.clone());
            }
        }
        result
    }

    async fn next_inner(&mut self, max: u64) -> Result<Option<Bytes>, RegistryError> {
        loop {
            if let Some(mut chunk) = self.pending.take() {
                if chunk.len() as u64 > max {
                    self.pending = Some(chunk.split_off(max as usize));
                }
                return Ok(Some(chunk));
            }
            if self.offset == self.blob.size && self.hashed == self.blob.size {
                self.verify()?;
                return Ok(None);
            }
            let Some(response) = self.response.as_mut() else {
                self.connect().await?;
                continue;
            };
            match response.chunk().await {
                Ok(Some(chunk)) => self.accept(chunk)?,
                Ok(None) if self.offset >= self.blob.size => self.response = None,
                Ok(None) => self.cut("the body ended early").await?,
                Err(error) => self.cut(&error.without_url().to_string()).await?,
            }
        }
    }

    /// Takes a chunk from the wire: drops a skipped prefix, hashes new bytes,
    /// refuses more bytes than the descriptor says.
    fn accept(&mut self, mut chunk: Bytes) -> Result<(), RegistryError> {
        if self.skip > 0 {
            let drop = self.skip.min(chunk.len() as u64);
            self.skip -= drop;
            chunk = chunk.slice(drop as usize..);
        }
        if chunk.is_empty() {
            return Ok(());
        }
        let end = self.offset + chunk.len() as u64;
        if end > self.blob.size {
            return Err(self.mismatch());
        }
        if end > self.hashed {
            let fresh = (self.hashed - self.offset.min(self.hashed)) as usize;
            self.hasher.update(&chunk[fresh.min(chunk.len())..]);
            self.hashed = end;
            if let Some(meter) = &self.meter {
                meter(end);
            }
            // Check before the last bytes go out: an upload with a Content-Length is
            // complete once they are sent, and its body is not polled again.
            if self.hashed == self.blob.size {
                self.verify()?;
            }
        }
        self.offset = end;
        self.pending = Some(chunk);
        Ok(())
    }

    async fn cut(&mut self, why: &str) -> Result<(), RegistryError> {
        self.response = None;
        self.reconnects += 1;
        tracing::debug!(offset = self.offset, why, "blob read cut; resuming");
        match self
            .source
            .settings
            .retry
            .delay(self.reconnects.min(4), None)
        {
            Some(delay) if self.reconnects <= MAX_RECONNECTS => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
            _ => Err(RegistryError::Transport(format!(
                "the blob read kept breaking off: {why}"
            ))),
        }
    }

    fn verify(&mut self) -> Result<(), RegistryError> {
        if self.verified {
            return Ok(());
        }
        let digest = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if digest != self.blob.digest {
            return Err(self.mismatch());
        }
        self.verified = true;
        Ok(())
    }

    fn mismatch(&self) -> RegistryError {
        RegistryError::DigestMismatch {
            expected: self.blob.digest.to_string(),
        }
    }
}
