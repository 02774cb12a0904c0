//! ferry's own OCI distribution client: manifests moved as raw bytes, blobs streamed
//! with digest checks, Range resume and chunked or monolithic uploads, cross-repository
//! mounts, referrers, and the auth schemes registries use. Every request is retried
//! on throttling and server errors (see [`retry`]).

mod auth;
mod blobs;
mod download;
pub mod error;
pub mod manifest;
mod ratelimit;
pub mod referrers;
pub mod retry;
mod upload;
mod watchdog;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use reqwest::{Response, StatusCode, header};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use blobs::Placed;
pub use download::Meter;
pub use error::{RegistryError, Side};
pub use manifest::{BlobRef, ChildRef, Contents, Manifest};
pub use retry::RetryPolicy;

use crate::{
    egress::{self, EgressPolicy, GuardedResolver, Lookup, SystemLookup},
    operations::{reference::Repository, spec::Credentials},
};
use auth::{Authenticator, Scope};

/// Longest wait for a TCP (and TLS) connection to a registry.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Default [`ClientSettings::read_timeout`]: longest a response may stall (no
/// response head, or no body bytes, for this long ends the request). It is what
/// bounds blob downloads, whose total length has no sensible bound.
pub const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Default [`ClientSettings::upload_stall_timeout`]: longest a streamed upload may
/// go without sending a byte (the registry's answer after the last byte included).
/// Longer than [`READ_TIMEOUT`], so a stalled source read is resumed before the
/// upload it feeds gives up.
pub const UPLOAD_STALL_TIMEOUT: Duration = Duration::from_secs(180);
/// Default [`ClientSettings::request_timeout`]: a small request (manifest GET/PUT,
/// HEAD, upload session, token) that takes a minute from connect to last byte is a
/// registry dribbling bytes to hold a worker, not a slow network.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How the client behaves towards every registry.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// `host:port`s reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Blob transfers at once to one registry host, across all imports of this process.
    pub host_concurrency: usize,
    /// Bytes per PATCH when a registry needs chunked uploads (raised to its minimum).
    pub chunk_size: u64,
    /// Upload every blob in chunks, even where a monolithic PUT would do.
    pub always_chunk: bool,
    pub retry: RetryPolicy,
    /// Where requests may go (the SSRF guard).
    pub egress: Arc<EgressPolicy>,
    /// How names are resolved (the system resolver unless a test replaces it).
    pub lookup: Arc<dyn Lookup>,
    /// The whole-request bound on every request but blob streams (which have
    /// [`READ_TIMEOUT`] on stalls); a timed-out request is retried like a broken
    /// connection.
    pub request_timeout: Duration,
    /// How long a response may stall (see [`READ_TIMEOUT`]).
    pub read_timeout: Duration,
    /// How long a streamed upload may make no progress (see [`UPLOAD_STALL_TIMEOUT`]).
    pub upload_stall_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            host_concurrency: 16,
            chunk_size: 16 * 1024 * 1024,
            always_chunk: false,
            retry: RetryPolicy::default(),
            egress: Arc::default(),
            lookup: Arc::new(SystemLookup),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            read_timeout: READ_TIMEOUT,
            upload_stall_timeout: UPLOAD_STALL_TIMEOUT,
        }
    }
}

/// Shared HTTP machinery for every registry ferry talks to.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    uploads: reqwest::Client,
    tokens: reqwest::Client,
    insecure: Arc<HashSet<String>>,
    hosts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    /// Authentication state shared by imports that reach one host with the same
    /// credentials, so tokens and learnt challenges outlive a single import.
    auths: Arc<Mutex<auth::AuthCache>>,
    settings: Arc<ClientSettings>,
}

impl RegistryClient {
    /// A client with default settings; `insecure` lists `host:port`s reached over plain HTTP.
    pub fn new(insecure: &[String]) -> anyhow::Result<Self> {
        Self::with_settings(ClientSettings {
            insecure: insecure.to_vec(),
            ..ClientSettings::default()
        })
    }

    /// A client with explicit settings.
    pub fn with_settings(settings: ClientSettings) -> anyhow::Result<Self> {
        let resolver = Arc::new(GuardedResolver::new(
            settings.egress.clone(),
            settings.lookup.clone(),
        ));
        // Every connection goes through the guarded resolver, and environment
        // proxies are ignored: a proxy would connect wherever the guard refused.
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(CONNECT_TIMEOUT)
                .pool_idle_timeout(Duration::from_secs(60))
                .tcp_nodelay(true)
                .no_proxy()
                .dns_resolver(resolver.clone())
        };
        let http = builder()
            .read_timeout(settings.read_timeout)
            .redirect(egress::redirect_policy(settings.egress.clone()))
            .build()?;
        // Streamed uploads: reqwest's read timeout runs from a request's start to its
        // response head, so it would cut every upload that takes longer than itself;
        // a progress watchdog bounds them instead (`upload::send_streamed`).
        let uploads = builder()
            .redirect(egress::redirect_policy(settings.egress.clone()))
            .build()?;
        // Token requests carry credentials: never let a redirect take them elsewhere.
        // Their answers are small, so the whole request is bounded.
        let tokens = builder()
            .read_timeout(settings.read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.request_timeout)
            .build()?;
        let insecure = settings
            .insecure
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        Ok(Self {
            http,
            uploads,
            tokens,
            insecure: Arc::new(insecure),
            hosts: Arc::default(),
            auths: Arc::default(),
            settings: Arc::new(settings),
        })
    }

    /// The egress policy requests of this client obey.
    pub fn egress(&self) -> &EgressPolicy {
        &self.settings.egress
    }

    /// A handle on one registry (`host[:port]`), with optional credentials.
    pub fn registry(&self, host: &str, credentials: Option<Credentials>) -> Registry {
        let scheme = if self.insecure.contains(host) {
            "http"
        } else {
            "https"
        };
        let slots = self
            .hosts
            .lock()
            .expect("host slots lock")
            .entry(host.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.host_concurrency.max(1))))
            .clone();
        let base = format!("{scheme}://{host}");
        Registry {
            http: self.http.clone(),
            uploads: self.uploads.clone(),
            auth: self.auths.lock().expect("auth cache lock").get_or_insert(
                host,
                credentials,
                |credentials| {
                    Authenticator::new(
                        self.tokens.clone(),
                        credentials,
                        self.settings.retry.clone(),
                        auth::Origin {
                            base: base.clone(),
                            egress: self.settings.egress.clone(),
                        },
                    )
                },
            ),
            base: Arc::from(base),
            slots,
            settings: self.settings.clone(),
            limits: Arc::default(),
            referrers_api: Arc::default(),
            pushing: false,
        }
    }
}

/// One registry endpoint with its authentication state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Registry {
    http: reqwest::Client,
    /// For streamed upload bodies: no read timeout (see `with_settings`).
    uploads: reqwest::Client,
    base: Arc<str>,
    auth: Arc<Authenticator>,
    slots: Arc<Semaphore>,
    settings: Arc<ClientSettings>,
    limits: Arc<ratelimit::RateLimit>,
    /// Whether the registry serves the referrers API (learnt on first use).
    referrers_api: Arc<Mutex<Option<bool>>>,
    /// Ask for push wherever pull is asked, so one token per repository serves
    /// every request of an import's target.
    pushing: bool,
}

impl Registry {
    fn url(&self, repository: &Repository, tail: &str) -> String {
        format!("{}/v2/{repository}/{tail}", self.base)
    }

    /// This handle as an import's target: it will push, so it asks for push tokens
    /// up front instead of a pull token first and a push token later.
    pub fn for_pushing(mut self) -> Self {
        self.pushing = true;
        self
    }

    /// The scope to ask for: a target widens single-repository pulls to push.
    fn scope_for(&self, scope: &Scope) -> Scope {
        if self.pushing && scope.single_pull() {
            scope.widened()
        } else {
            scope.clone()
        }
    }

    /// The registry's `host[:port]`.
    pub fn host(&self) -> &str {
        self.base
            .split_once("://")
            .map_or(&self.base, |(_, host)| host)
    }

    /// Whether both handles reach the same registry (so blobs can be mounted).
    pub fn same_registry(&self, other: &Registry) -> bool {
        self.base == other.base
    }

    /// Takes a blob-transfer slot on both registries (one if they are the same),
    /// always in the same order so that two imports cannot deadlock.
    pub async fn transfer_slots(a: &Registry, b: &Registry) -> Vec<OwnedSemaphorePermit> {
        let mut pair = vec![a, b];
        pair.sort_by(|x, y| x.base.cmp(&y.base));
        pair.dedup_by(|x, y| Arc::ptr_eq(&x.slots, &y.slots));
        let mut permits = Vec::with_capacity(2);
        for registry in pair {
            permits.push(
                registry
                    .slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("slot semaphores are never closed"),
            );
        }
        permits
    }

    /// Sends one request, on the client it was built with, after the guard has
    /// checked its URL (an IP literal never reaches the resolver, and upload
    /// `Location`s are the registry's choice).
    async fn execute(&self, request: reqwest::RequestBuilder) -> Result<Response, RegistryError> {
        let (client, request) = request.build_split();
        let request = request?;
        self.settings
            .egress
            .check_url(request.url())
            .map_err(|refused| RegistryError::NotAllowed(refused.to_string()))?;
        client.execute(request).await.map_err(RegistryError::from)
    }

    /// Sends a small request that can be built again, answering auth challenges
    /// and retrying throttling, server errors, broken connections and timeouts;
    /// each try is bounded by [`ClientSettings::request_timeout`].
    async fn send(
        &self,
        scope: &Scope,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let timeout = self.settings.request_timeout;
        self.send_with(scope, || build().timeout(timeout)).await
    }

    /// [`Self::send`] for a request whose response streams a blob: only
    /// [`READ_TIMEOUT`] (on stalls) bounds it, since a large blob may take hours.
    async fn send_stream(
        &self,
        scope: &Scope,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Response, RegistryError> {
        self.send_with(scope, build).await
    }

    async fn send_with(
        &self,
        scope: &Scope,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let scope = &self.scope_for(scope);
        let mut attempt = 0;
        let mut challenges = 0;
        loop {
            attempt += 1;
            let (request, sent) = self.auth.apply(build(), scope).await?;
            let (retry_after, failure) = match self.execute(request).await {
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && challenges < 2 => {
                    challenges += 1;
                    if self
                        .auth
                        .answer(challenge_of(&response), scope, &sent)
                        .await?
                    {
                        attempt -= 1;
                        continue;
                    }
                    return Ok(response);
                }
                Ok(response) => {
                    self.limits.observe(&response);
                    if !retry::retryable_status(response.status()) {
                        return Ok(response);
                    }
                    let wait = retry::retry_after(&response);
                    match self.settings.retry.delay(attempt, wait) {
                        Some(delay) => {
                            tracing::debug!(status = %response.status(), ?delay, "registry busy; retrying");
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                        None => return Ok(response),
                    }
                }
                Err(error) if error.is_transient() => (None, error),
                Err(error) => return Err(error),
            };
            match self.settings.retry.delay(attempt, retry_after) {
                Some(delay) => {
                    tracing::debug!(error = %failure, ?delay, "registry unreachable; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(failure),
            }
        }
    }

    /// Sends a request whose body cannot be replayed (a streamed upload). A 401
    /// refreshes the credentials and comes back as [`RegistryError::AuthExpired`],
    /// so the caller starts the transfer again.
    async fn send_once(
        &self,
        scope: &Scope,
        request: reqwest::RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let scope = &self.scope_for(scope);
        let (request, sent) = self.auth.apply(request, scope).await?;
        let response = self.execute(request).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            self.limits.observe(&response);
            return Ok(response);
        }
        if self
            .auth
            .answer(challenge_of(&response), scope, &sent)
            .await?
        {
            return Err(RegistryError::AuthExpired);
        }
        Err(RegistryError::Unauthorized { status: 401 })
    }
}

/// The `WWW-Authenticate` challenge of a 401.
fn challenge_of(response: &Response) -> Option<&str> {
    response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
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
