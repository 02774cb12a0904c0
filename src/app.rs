//! Wiring: shared state, the HTTP server (plain or TLS) and the worker pool, started
//! together and shut down in order on SIGTERM/SIGINT.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::ServiceExt;
use axum_server::{
    Handle,
    tls_rustls::{RustlsAcceptor, RustlsConfig},
};
use sqlx::PgPool;

use crate::{
    api,
    auth::TokenVerifier,
    config::ServeConfig,
    crypto::Keyring,
    db::Database,
    egress::{Lookup, SystemLookup},
    operations::quota::TenantLimits,
    registry_client::{ClientSettings, RegistryClient},
    worker::{Worker, WorkerSettings, pool::WorkerPool},
};

/// What every request handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub verifier: Arc<TokenVerifier>,
    /// Seals credentials on the way in (the worker opens them).
    pub sealer: Arc<Keyring>,
    pub public_url: Option<url::Url>,
    pub tls: bool,
    pub listen: SocketAddr,
    /// What one tenant may queue and submit.
    pub tenant_limits: TenantLimits,
    /// How names resolve, for the closed-registry rule (see `api::imports`).
    pub lookup: Arc<dyn Lookup>,
}

/// A started ferry: server (unless `--no-api`) and workers running.
#[derive(Debug)]
pub struct RunningApp {
    /// The address the server is bound to (useful with port 0); the configured
    /// address when there is no API.
    pub addr: SocketAddr,
    /// A worker tests can drive one step at a time.
    pub worker: Worker,
    server: Option<Server>,
    workers: WorkerPool,
}

impl RunningApp {
    /// Binds the server and starts `config.workers` workers on `pool`.
    pub async fn start(config: &ServeConfig, pool: PgPool) -> anyhow::Result<Self> {
        let sealer = Arc::new(Keyring::load(&config.secrets, &config.database.data_dir)?);
        let lookup: Arc<dyn Lookup> = config
            .egress
            .lookup
            .clone()
            .unwrap_or_else(|| Arc::new(SystemLookup));
        let state = AppState {
            pool: pool.clone(),
            verifier: Arc::new(TokenVerifier::from_config(&config.auth)?),
            sealer: sealer.clone(),
            public_url: config.public_url.clone(),
            tls: config.tls_cert.is_some(),
            listen: config.listen,
            tenant_limits: config.limits.tenant(),
            lookup: lookup.clone(),
        };
        let client = RegistryClient::with_settings(ClientSettings {
            insecure: config.insecure_registries.clone(),
            host_concurrency: config.host_concurrency,
            egress: Arc::new(config.egress.policy()?),
            lookup,
            request_timeout: config.limits.registry_request_timeout,
            ..ClientSettings::default()
        })?;
        let settings = WorkerSettings {
            blob_concurrency: config.blob_concurrency,
            retention: config.operation_retention,
            cluster_host_concurrency: config.cluster_host_concurrency,
            import_limits: config.limits.import(),
            ..WorkerSettings::with_lease(config.lease)
        };
        let worker = Worker::new(pool.clone(), client, sealer, settings);
        let server = if config.no_api {
            None
        } else {
            Some(bind(config, state).await?)
        };
        let addr = server.as_ref().map_or(config.listen, |s| s.addr);
        let workers = WorkerPool::start(pool, &worker, config.workers);
        tracing::info!(
            api = server.is_some(),
            %addr,
            tls = config.tls_cert.is_some(),
            workers = config.workers,
            "ferry is running"
        );
        Ok(Self {
            addr,
            worker,
            server,
            workers,
        })
    }

    /// Stops accepting requests and claiming work at once; in-flight requests and
    /// imports get `grace` to finish, then unfinished imports go back to the queue.
    pub async fn shutdown(self, grace: Duration) {
        let server = async {
            if let Some(server) = self.server {
                server.handle.graceful_shutdown(Some(grace));
                if let Ok(Err(error)) = server.task.await {
                    tracing::warn!(error = %error, "server stopped with an error");
                }
            }
        };
        tokio::join!(server, self.workers.shutdown(grace));
    }
}

/// The HTTP server of a running app.
#[derive(Debug)]
struct Server {
    addr: SocketAddr,
    handle: Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds the API on `config.listen`, over TLS when a certificate is configured.
/// The request head (request line and headers) is bounded on both HTTP versions:
/// hyper refuses a larger one with 431 before any of ferry's code runs, and closes
/// an HTTP/1 connection whose head takes longer than [`api::HEADER_READ_TIMEOUT`].
async fn bind(config: &ServeConfig, state: AppState) -> anyhow::Result<Server> {
    let service = api::service(state).into_make_service();
    let handle = Handle::new();
    let mut server = axum_server::bind(config.listen).handle(handle.clone());
    let http = server.http_builder();
    http.http1()
        .max_buf_size(api::MAX_HEADER_BYTES)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(api::HEADER_READ_TIMEOUT);
    http.http2()
        .max_header_list_size(u32::try_from(api::MAX_HEADER_BYTES)?);
    let task = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = RustlsConfig::from_pem_file(cert, key)
                .await
                .context("loading FERRY_TLS_CERT / FERRY_TLS_KEY")?;
            tokio::spawn(server.acceptor(RustlsAcceptor::new(tls)).serve(service))
        }
        _ => tokio::spawn(server.serve(service)),
    };
    let Some(addr) = handle.listening().await else {
        let error = task.await.context("server task")?.err();
        anyhow::bail!("could not listen on {}: {error:?}", config.listen);
    };
    Ok(Server { addr, handle, task })
}

/// `ferry serve`: open the database, run until a signal, shut down cleanly.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let stop = shutdown_signal();
    let connections = u32::try_from(config.workers * 2 + 10).unwrap_or(50);
    // A bad key-source, egress or secret-key configuration fails before any database
    // is started.
    TokenVerifier::from_config(&config.auth)?;
    config.egress.policy()?;
    Keyring::load(&config.secrets, &config.database.data_dir)?;
    let database = Database::open(&config.database, connections).await?;
    let running = match RunningApp::start(&config, database.pool.clone()).await {
        Ok(running) => running,
        Err(error) => {
            database.close().await;
            return Err(error);
        }
    };
    stop.await;
    tracing::info!("shutting down");
    running.shutdown(config.shutdown_grace).await;
    database.close().await;
    Ok(())
}

/// Registers the SIGINT and SIGTERM handlers at once, so a signal that arrives
/// while ferry starts (even right after `/readyz` first answers) shuts it down
/// cleanly instead of killing it, and returns a future that resolves on either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            () = received(interrupt.as_mut()) => {}
            () = received(terminate.as_mut()) => {}
        }
    }
}

/// Resolves when `signal` is delivered; never when it could not be registered.
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}
