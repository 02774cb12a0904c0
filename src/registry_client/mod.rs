//! ferry's own OCI distribution client: manifests moved as raw bytes, blobs streamed
//! and digest-checked, anonymous, Basic and Bearer-challenge authentication.

mod auth;
mod blobs;
pub mod error;
pub mod manifest;

use std::{collections::HashSet, sync::Arc, time::Duration};

use bytes::Bytes;
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};

pub use blobs::BlobStream;
pub use error::{RegistryError, Side};
pub use manifest::{BlobRef, Contents, Manifest};

use crate::operations::{reference::Repository, spec::Credentials};

/// Shared HTTP machinery for every registry ferry talks to.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    insecure: Arc<HashSet<String>>,
}

impl RegistryClient {
    /// A client; `insecure` lists `host:port`s reached over plain HTTP.
    pub fn new(insecure: &[String]) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::limited(5))
            .no_proxy()
            .build()?;
        let insecure = insecure
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        Ok(Self {
            http,
            insecure: Arc::new(insecure),
        })
    }

    /// A handle on one registry (`host[:port]`), with optional credentials.
    pub fn registry(&self, host: &str, credentials: Option<Credentials>) -> Registry {
        let scheme = if self.insecure.contains(host) {
            "http"
        } else {
            "https"
        };
        Registry {
            http: self.http.clone(),
            base: format!("{scheme}://{host}"),
            auth: auth::Authenticator::new(self.http.clone(), credentials),
        }
    }
}

/// One registry endpoint with its authentication state.
#[derive(Debug)]
pub struct Registry {
    http: reqwest::Client,
    base: String,
    auth: auth::Authenticator,
}

impl Registry {
    fn url(&self, repository: &Repository, tail: &str) -> String {
        format!("{}/v2/{repository}/{tail}", self.base)
    }

    /// Sends a request with credentials for `repository`, answering one auth
    /// challenge if the registry poses it. `build` makes the request afresh each time.
    async fn send(
        &self,
        repository: &Repository,
        push: bool,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let scope = auth::Scope {
            repository: repository.clone(),
            push,
        };
        let response = self.auth.apply(build(), &scope).await.send().await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if !self.auth.answer(challenge.as_deref(), &scope).await? {
            return Ok(response);
        }
        Ok(self.auth.apply(build(), &scope).await.send().await?)
    }

    /// Fetches a manifest by tag or digest; a digest reference is verified.
    pub async fn get_manifest(
        &self,
        repository: &Repository,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        let url = self.url(repository, &format!("manifests/{reference}"));
        let accept = manifest::ACCEPTED.join(", ");
        let response = self
            .send(repository, false, || {
                self.http.get(&url).header(header::ACCEPT, &accept)
            })
            .await?;
        let response = expect(response, &[StatusCode::OK], || {
            format!("manifest {repository}:{reference}")
        })
        .await?;
        if response
            .content_length()
            .is_some_and(|n| n > manifest::MAX_MANIFEST_BYTES as u64)
        {
            return Err(RegistryError::TooLarge("manifest exceeds 4 MiB".to_owned()));
        }
        let media_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_limited(response, manifest::MAX_MANIFEST_BYTES).await?;
        let manifest = Manifest::new(bytes, media_type.as_deref())?;
        if reference.starts_with("sha256:") && manifest.digest.as_str() != reference {
            return Err(RegistryError::DigestMismatch {
                expected: reference.to_owned(),
            });
        }
        Ok(manifest)
    }

    /// Whether a manifest exists under a tag or digest.
    pub async fn manifest_exists(
        &self,
        repository: &Repository,
        reference: &str,
    ) -> Result<bool, RegistryError> {
        let url = self.url(repository, &format!("manifests/{reference}"));
        let accept = manifest::ACCEPTED.join(", ");
        let response = self
            .send(repository, true, || {
                self.http.head(&url).header(header::ACCEPT, &accept)
            })
            .await?;
        exists(response, || format!("manifest {repository}:{reference}")).await
    }

    /// Stores a manifest under a tag or its digest.
    pub async fn put_manifest(
        &self,
        repository: &Repository,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<(), RegistryError> {
        let url = self.url(repository, &format!("manifests/{reference}"));
        let response = self
            .send(repository, true, || {
                self.http
                    .request(Method::PUT, &url)
                    .header(header::CONTENT_TYPE, &manifest.media_type)
                    .body(manifest.bytes.clone())
            })
            .await?;
        expect(
            response,
            &[StatusCode::CREATED, StatusCode::OK, StatusCode::ACCEPTED],
            || format!("manifest {repository}:{reference}"),
        )
        .await
        .map(drop)
    }
}

/// Maps a HEAD/GET answer to found / not found / error.
async fn exists(response: Response, what: impl Fn() -> String) -> Result<bool, RegistryError> {
    match response.status() {
        StatusCode::OK => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => expect(response, &[], what).await.map(|_| false),
    }
}

/// Passes responses with an expected status; turns others into errors.
async fn expect(
    response: Response,
    ok: &[StatusCode],
    what: impl Fn() -> String,
) -> Result<Response, RegistryError> {
    let status = response.status();
    if ok.contains(&status) {
        return Ok(response);
    }
    if status == StatusCode::NOT_FOUND {
        return Err(RegistryError::NotFound { what: what() });
    }
    let body = read_limited(response, 64 * 1024).await.unwrap_or_default();
    Err(RegistryError::from_status(status, &body))
}

/// Reads a whole body, refusing more than `limit` bytes.
async fn read_limited(mut response: Response, limit: usize) -> Result<Bytes, RegistryError> {
    let mut buffer = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if buffer.len() + chunk.len() > limit {
            return Err(RegistryError::TooLarge(format!(
                "response body exceeds {limit} bytes"
            )));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buffer))
}
