//! Upload sessions: opening one (or mounting the blob from another repository),
//! streaming a [`Download`] into it in one monolithic PUT, or in PATCH chunks when the
//! registry asks for them (`OCI-Chunk-Min-Length`) or refuses a large body (413).
//! A chunked upload that breaks off asks the session how much arrived (`Range`) and
//! carries on from there; a 416 does the same.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream;
use reqwest::{Response, StatusCode, Url, header};
use tokio::sync::Mutex;

use super::{Registry, RegistryError, Scope, Side, download::Download, expect, watchdog::Activity};
use crate::operations::reference::{Digest, Repository};

/// Status queries allowed while resuming one chunked upload.
const MAX_RESUMES: u32 = 8;

/// An open upload session.
#[derive(Debug)]
pub(super) struct Session {
    pub url: Url,
    /// The smallest chunk the registry accepts, when it insists on chunks.
    pub chunk_min: Option<u64>,
}

/// An open session that is deleted at the registry unless its upload completed:
/// after a failure, and also when the copy is dropped (a canceled import).
pub(super) struct SessionGuard {
    registry: Registry,
    repository: Repository,
    url: Option<Url>,
}

impl SessionGuard {
    pub(super) fn new(registry: &Registry, repository: &Repository, url: &Url) -> Self {
        Self {
            registry: registry.clone(),
            repository: repository.clone(),
            url: Some(url.clone()),
        }
    }

    /// The upload completed: the session is gone already.
    pub(super) fn completed(mut self) {
        self.url = None;
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let Some(url) = self.url.take() else {
            return;
        };
        let (registry, repository) = (self.registry.clone(), self.repository.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { registry.cancel_upload(&repository, &url).await });
        }
    }
}

/// What opening an upload gave.
pub(super) enum Started {
    /// The blob was mounted from another repository: nothing to upload.
    Mounted,
    Session(Session),
}

/// A request body of exactly `len` bytes pulled from a shared download; each chunk
/// handed out counts as progress on `activity`.
fn body_of(download: Arc<Mutex<Download>>, len: u64, activity: Activity) -> reqwest::Body {
    let chunks = stream::try_unfold((download, len), move |(download, left)| {
        let activity = activity.clone();
        async move {
            if left == 0 {
                return Ok(None);
            }
            let next = download.lock().await.next_up_to(left).await;
            activity.touch();
            match next.map_err(std::io::Error::other)? {
                Some(chunk) => {
                    let rest = left - chunk.len() as u64;
                    Ok::<_, std::io::Error>(Some((chunk, (download, rest))))
                }
                None => Err(std::io::Error::other("the blob ended early")),
            }
        }
    });
    reqwest::Body::wrap_stream(chunks)
}

impl Registry {
    fn session_url(&self, response: &Response) -> Result<Url, RegistryError> {
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol("upload session without Location".into()))?;
        Url::parse(&self.base)
            .and_then(|base| base.join(location))
            .map_err(|e| RegistryError::Protocol(format!("upload Location: {e}")))
    }

    /// Opens an upload session; with `mount`, first asks the registry to link the
    /// blob from another of its repositories (202 means it could not: upload then).
    pub(super) async fn start_upload(
        &self,
        repository: &Repository,
        mount: Option<(&Digest, &Repository)>,
    ) -> Result<Started, RegistryError> {
        let mut url = Url::parse(&self.url(repository, "blobs/uploads/"))
            .map_err(|e| RegistryError::Protocol(format!("upload URL: {e}")))?;
        let mut scope = Scope::push(repository);
        if let Some((digest, from)) = mount {
            url.query_pairs_mut()
                .append_pair("mount", digest.as_str())
                .append_pair("from", from.as_str());
            scope = scope.and_pull(from);
        }
        let response = self
            .send(&scope, || {
                self.http
                    .post(url.clone())
                    .header(header::CONTENT_LENGTH, 0)
            })
            .await?;
        if mount.is_some() && response.status() == StatusCode::CREATED {
            return Ok(Started::Mounted);
        }
        let response = expect(response, &[StatusCode::ACCEPTED], || {
            format!("upload session in {repository}")
        })
        .await?;
        let chunk_min = response
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        Ok(Started::Session(Session {
            url: self.session_url(&response)?,
            chunk_min,
        }))
    }

    /// Abandons a session (best effort: registries expire them anyway).
    pub(super) async fn cancel_upload(&self, repository: &Repository, session: &Url) {
        let request = self
            .http
            .delete(session.clone())
            .timeout(self.settings.request_timeout);
        if let Err(error) = self.send_once(&Scope::push(repository), request).await {
            tracing::debug!(%error, "could not cancel an upload session");
        }
    }

    /// Closes a session with the blob's digest; the registry checks it.
    async fn commit(
        &self,
        repository: &Repository,
        mut url: Url,
        digest: &Digest,
        body: reqwest::Body,
        len: u64,
        activity: &Activity,
    ) -> Result<Response, RegistryError> {
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let request = self
            .uploads
            .put(url)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, len)
            .body(body);
        self.send_streamed(repository, request, activity).await
    }

    /// Streams the whole blob in one PUT.
    pub(super) async fn upload_monolithic(
        &self,
        repository: &Repository,
        session: Session,
        digest: &Digest,
        download: Download,
    ) -> Result<(), Side> {
        let failure = download.failure();
        let size = download.size();
        let activity = Activity::new();
        let body = body_of(Arc::new(Mutex::new(download)), size, activity.clone());
        let result = self
            .commit(
                repository,
                session.url.clone(),
                digest,
                body,
                size,
                &activity,
            )
            .await;
        if let Some(error) = failure.lock().expect("failure slot").take() {
            return Err(Side::Source(error));
        }
        let response = result.map_err(Side::Target)?;
        if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Err(Side::Target(RegistryError::TooLarge(
                "the registry refused a monolithic upload".into(),
            )));
        }
        expect(response, &[StatusCode::CREATED], || {
            format!("upload of {digest}")
        })
        .await
        .map(drop)
        .map_err(Side::Target)
    }

    /// Streams the blob in PATCH chunks of `chunk` bytes (at least the registry's
    /// minimum), resuming from the session's own count after a failure.
    pub(super) async fn upload_chunked(
        &self,
        repository: &Repository,
        session: Session,
        digest: &Digest,
        download: Download,
        chunk: u64,
    ) -> Result<(), Side> {
        let chunk = chunk.max(session.chunk_min.unwrap_or(0)).max(1);
        let failure = download.failure();
        let size = download.size();
        let download = Arc::new(Mutex::new(download));
        let mut url = session.url;
        let mut offset = 0;
        let mut resumes = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            download.lock().await.seek(offset).map_err(Side::Target)?;
            let activity = Activity::new();
            let request = self
                .uploads
                .patch(url.clone())
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(
                    header::CONTENT_RANGE,
                    format!("{offset}-{}", offset + len - 1),
                )
                .header(header::CONTENT_LENGTH, len)
                .body(body_of(download.clone(), len, activity.clone()));
            let result = self.send_streamed(repository, request, &activity).await;
            if let Some(error) = failure.lock().expect("failure slot").take() {
                return Err(Side::Source(error));
            }
            match result {
                Ok(response) if response.status() == StatusCode::ACCEPTED => {
                    url = self.session_url(&response).map_err(Side::Target)?;
                    offset += len;
                    continue;
                }
                Ok(response) if response.status() == StatusCode::RANGE_NOT_SATISFIABLE => {}
                Ok(response) if !super::retry::retryable_status(response.status()) => {
                    let what = || format!("upload of {digest}");
                    return Err(Side::Target(
                        expect(response, &[], what).await.err().unwrap_or_else(|| {
                            RegistryError::Protocol("unexpected upload answer".into())
                        }),
                    ));
                }
                Err(error) if !error.is_transient() => return Err(Side::Target(error)),
                Ok(_) | Err(_) => {}
            }
            resumes += 1;
            if resumes > MAX_RESUMES {
                return Err(Side::Target(RegistryError::Transport(
                    "the chunked upload kept failing".into(),
                )));
            }
            if let Some(delay) = self.settings.retry.delay(resumes.min(4), None) {
                tokio::time::sleep(delay).await;
            }
            (url, offset) = self
                .upload_status(repository, &url)
                .await
                .map_err(|error| {
                    // A lost session is not the end: the blob is uploaded again.
                    Side::Target(RegistryError::Transport(format!(
                        "the upload session was lost: {error}"
                    )))
                })?;
            tracing::debug!(offset, "resuming a chunked upload");
        }
        let response = self
            .commit(
                repository,
                url,
                digest,
                reqwest::Body::from(Bytes::new()),
                0,
                &Activity::new(),
            )
            .await
            .map_err(Side::Target)?;
        expect(response, &[StatusCode::CREATED], || {
            format!("upload of {digest}")
        })
        .await
        .map(drop)
        .map_err(Side::Target)
    }

    /// How many bytes a session holds, and its current URL.
    async fn upload_status(
        &self,
        repository: &Repository,
        url: &Url,
    ) -> Result<(Url, u64), RegistryError> {
        let response = self
            .send(&Scope::push(repository), || self.http.get(url.clone()))
            .await?;
        let response = expect(
            response,
            &[StatusCode::NO_CONTENT, StatusCode::ACCEPTED],
            || "the upload session".to_owned(),
        )
        .await?;
        let end = response
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('-').next())
            .and_then(|v| v.trim().parse::<u64>().ok());
        // `0-0` is how distribution reports an empty session.
        let held = match end {
            Some(0) | None => 0,
            Some(end) => end + 1,
        };
        let url = self.session_url(&response).unwrap_or_else(|_| url.clone());
        Ok((url, held))
    }
}
