//! The worker: claims operations from the Postgres queue, runs each copy under a
//! heartbeated lease, and records exactly one outcome. [`Worker::run_once`] is the
//! deterministic step tests drive; [`pool`] runs several of them continuously.

pub mod copy;
pub mod lease;
pub mod pool;
mod secrets;
pub mod slots;

use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use futures_util::FutureExt;
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    crypto::Keyring,
    operations::{
        FailureCode, OperationId, Progress,
        spec::{SourceRegistry, docker_hub_api_host},
    },
    registry_client::RegistryClient,
};
use copy::{CopyError, CopyJob, ImportLimits};
use lease::{Beat, Claimed, Outcome};
use slots::HostSlots;

/// Tunables of the queue and the copy.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub lease: Duration,
    pub heartbeat: Duration,
    pub blob_concurrency: usize,
    /// How long finished operations are kept before pruning.
    pub retention: Duration,
    /// Blob transfers per registry host across all replicas (0: no cluster cap).
    pub cluster_host_concurrency: usize,
    /// The most blobs and bytes one import may copy.
    pub import_limits: ImportLimits,
}

impl WorkerSettings {
    /// Settings for a lease of `lease`, with a heartbeat every third of it.
    pub fn with_lease(lease: Duration) -> Self {
        Self {
            lease,
            heartbeat: (lease / 3).max(Duration::from_millis(100)),
            ..Self::default()
        }
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            blob_concurrency: 6,
            retention: Duration::from_secs(7 * 86_400),
            cluster_host_concurrency: 32,
            import_limits: ImportLimits::default(),
        }
    }
}

/// The operations this process holds right now (by id, with the holding worker),
/// so shutdown can hand them back to the queue.
pub type InFlight = Arc<Mutex<HashMap<OperationId, Uuid>>>;

/// One worker: a lease owner identity plus what it needs to copy.
#[derive(Debug, Clone)]
pub struct Worker {
    pool: PgPool,
    client: RegistryClient,
    sealer: Arc<Keyring>,
    settings: WorkerSettings,
    owner: Uuid,
    in_flight: InFlight,
    slots: HostSlots,
}

impl Worker {
    /// A worker with a fresh owner id.
    pub fn new(
        pool: PgPool,
        client: RegistryClient,
        sealer: Arc<Keyring>,
        settings: WorkerSettings,
    ) -> Self {
        let slots = HostSlots::new(pool.clone(), settings.cluster_host_concurrency);
        Self {
            pool,
            client,
            sealer,
            settings,
            owner: Uuid::new_v4(),
            in_flight: InFlight::default(),
            slots,
        }
    }

    /// What this worker and its clones hold right now.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.clone()
    }

    /// Rescues expired leases, then claims and runs at most one operation.
    /// Returns whether it ran one.
    pub async fn run_once(&self) -> anyhow::Result<bool> {
        let rescued = lease::rescue(&self.pool)
            .await
            .context("rescuing expired leases")?;
        if rescued > 0 {
            tracing::warn!(rescued, "re-queued operations whose lease expired");
        }
        let Some(job) = lease::claim(&self.pool, self.owner, self.settings.lease)
            .await
            .context("claiming")?
        else {
            return Ok(false);
        };
        let span = tracing::info_span!("import", op.id = %job.id, attempt = job.attempts);
        self.run(job).instrument(span).await?;
        Ok(true)
    }

    async fn run(&self, job: Claimed) -> anyhow::Result<()> {
        tracing::info!("import started");
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .insert(job.id, self.owner);
        let result = self.hold(&job).await;
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .remove(&job.id);
        result
    }

    /// Runs a claimed import under its lease and records how it ended.
    async fn hold(&self, job: &Claimed) -> anyhow::Result<()> {
        let progress = Arc::new(Mutex::new(Progress::default()));
        let work = AssertUnwindSafe(self.execute(job, progress.clone())).catch_unwind();
        let result = tokio::select! {
            result = work => Some(result),
            beat = self.keep_lease(job, &progress) => match beat {
                Beat::Lost => {
                    tracing::warn!("lease lost; abandoning the copy to its new owner");
                    return Ok(());
                }
                // Dropping the copy stops its transfers; open upload sessions are
                // left for the registry to expire.
                _ => None,
            },
        };
        let outcome = match result {
            None => Outcome::Canceled,
            Some(Ok(Ok(()))) => Outcome::Succeeded,
            Some(Ok(Err(error))) if error.transient && job.attempts < job.max_attempts => {
                tracing::warn!(
                    code = error.code.as_str(),
                    error = error.message,
                    "import failed; will retry"
                );
                Outcome::Retry(error.code, error.message)
            }
            Some(Ok(Err(error))) => Outcome::Failed(error.code, error.message),
            Some(Err(_panic)) => {
                tracing::error!("import panicked");
                let message = "The import stopped on an internal error.".to_owned();
                if job.attempts < job.max_attempts {
                    Outcome::Retry(FailureCode::ImportFailed, message)
                } else {
                    Outcome::Failed(FailureCode::ImportFailed, message)
                }
            }
        };
        let snapshot = progress.lock().expect("progress lock").clone();
        if !lease::finish(&self.pool, job.id, self.owner, &outcome, &snapshot).await? {
            tracing::warn!("lease lost before the outcome was recorded");
            return Ok(());
        }
        match &outcome {
            Outcome::Failed(code, message) => {
                tracing::warn!(code = code.as_str(), message, "import failed")
            }
            outcome => tracing::info!(?outcome, "import finished"),
        }
        Ok(())
    }

    /// Writes progress about once a second and extends the lease; returns only when
    /// the lease is lost or a client asked to cancel the import.
    async fn keep_lease(&self, job: &Claimed, progress: &Mutex<Progress>) -> Beat {
        let mut written = Progress::default();
        let mut since_beat = Duration::ZERO;
        let tick = Duration::from_secs(1).min(self.settings.heartbeat);
        loop {
            tokio::time::sleep(tick).await;
            since_beat += tick;
            let current = progress.lock().expect("progress lock").clone();
            if current == written && since_beat < self.settings.heartbeat {
                continue;
            }
            match lease::heartbeat(
                &self.pool,
                job.id,
                self.owner,
                self.settings.lease,
                &current,
            )
            .await
            {
                Ok(Beat::Held) => {
                    written = current;
                    since_beat = Duration::ZERO;
                }
                Ok(beat) => return beat,
                Err(error) => tracing::warn!(error = %error, "heartbeat failed; retrying"),
            }
        }
    }

    async fn execute(
        &self,
        job: &Claimed,
        progress: Arc<Mutex<Progress>>,
    ) -> Result<(), CopyError> {
        let registry_gone = || {
            CopyError::permanent(
                FailureCode::RegistryNotFound,
                "The target registry no longer exists.",
            )
        };
        let target_id = job.registry.ok_or_else(registry_gone)?;
        let target_host = lease::login_server(&self.pool, target_id)
            .await
            .map_err(|e| internal(e.into()))?
            .ok_or_else(registry_gone)?;
        let target_credentials = self.registry_credentials(target_id).await?;
        let target = self
            .client
            .registry(&target_host, target_credentials)
            .for_pushing();

        let spec = &job.spec;
        let (source, source_repository) = match &spec.source_registry {
            SourceRegistry::Uri { host } => {
                if !self.client.egress().source_listed(host) {
                    return Err(CopyError::permanent(
                        FailureCode::SourceNotAllowed,
                        format!(
                            "The source registry {host} is not on this service's source allow-list."
                        ),
                    ));
                }
                let credentials = self.source_credentials(job.id).await?;
                match docker_hub_api_host(host) {
                    Some(hub) => (
                        self.client.registry(hub, credentials),
                        spec.source_image.repository.clone().for_docker_hub(),
                    ),
                    None => (
                        self.client.registry(host, credentials),
                        spec.source_image.repository.clone(),
                    ),
                }
            }
            SourceRegistry::Resource { registry_id, .. } => {
                let gone = || {
                    CopyError::permanent(
                        FailureCode::ImageNotFound,
                        "The source registry no longer exists.",
                    )
                };
                let host = lease::login_server(&self.pool, *registry_id)
                    .await
                    .map_err(|e| internal(e.into()))?
                    .ok_or_else(gone)?;
                let credentials = self.registry_credentials(*registry_id).await?;
                (
                    self.client.registry(&host, credentials),
                    spec.source_image.repository.clone(),
                )
            }
        };
        let job = CopyJob {
            spec,
            source,
            source_repository,
            target,
            concurrency: self.settings.blob_concurrency,
            progress,
            rerun: job.ran_before,
            slots: &self.slots,
            limits: self.settings.import_limits,
        };
        job.run().await
    }
}

/// A failure preparing an import (the database, mostly): logged, and retried later.
fn internal(error: anyhow::Error) -> CopyError {
    tracing::error!(error = format!("{error:#}"), "preparing the import failed");
    CopyError {
        code: FailureCode::ImportFailed,
        message: "The import could not be prepared.".into(),
        transient: true,
    }
}
