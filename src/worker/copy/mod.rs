//! One import: check NoForce tags, fetch the source graph (filtered to the chosen
//! platforms), then per target repository place what is missing — blobs first
//! (skipped when present, mounted within one registry, otherwise streamed, several
//! at once), then manifests level by level up to the root — then the referrers, and
//! the tags last, so a failure never leaves a tag on an incomplete image.

mod error;
mod graph;
mod limits;
mod referrers;

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use futures_util::{StreamExt, TryStreamExt, stream};
use std::future::Future;

pub use error::CopyError;
pub use limits::{DEFAULT_MAX_IMPORT_BLOBS, DEFAULT_MAX_IMPORT_BYTES, ImportLimits};

use super::slots::{HostSlots, Slot};
use graph::Graph;
use limits::Budget;

use crate::{
    operations::{
        FailureCode, Progress,
        reference::{Digest, Repository},
        spec::{ImportMode, ImportSpec, TargetTag},
    },
    registry_client::{BlobRef, Manifest, Meter, Placed, Registry},
};

/// The most manifests (an index and its children) one import may copy, as in ACR.
pub const MAX_MANIFESTS: usize = 50;
/// Small requests (HEADs, manifest PUTs) in flight at once per import.
const REQUEST_CONCURRENCY: usize = 16;
/// Blobs below this size count as small.
const SMALL_BLOB: u64 = 1024 * 1024;
/// How many times the blob concurrency small blobs get (the host cap still holds).
const SMALL_BLOB_FACTOR: usize = 3;

/// Runs `tasks` with at most `limit` in flight, stopping at the first error.
/// (Collecting the futures first keeps the stream's type free of borrowing
/// closures, which the spawned worker future needs to be `Send`.)
async fn bounded<T, E>(
    tasks: Vec<impl Future<Output = Result<T, E>>>,
    limit: usize,
) -> Result<Vec<T>, E> {
    stream::iter(tasks)
        .buffer_unordered(limit.max(1))
        .try_collect()
        .await
}

/// Everything one import needs.
pub struct CopyJob<'a> {
    pub spec: &'a ImportSpec,
    pub source: Registry,
    pub source_repository: Repository,
    pub target: Registry,
    pub concurrency: usize,
    pub progress: Arc<Mutex<Progress>>,
    /// An earlier run of this operation was interrupted: a NoForce tag that already
    /// points at exactly this image is that run's work, not a conflict.
    pub rerun: bool,
    /// The cluster-wide cap on transfers per registry host.
    pub slots: &'a HostSlots,
    /// The most blobs and bytes this import may copy.
    pub limits: ImportLimits,
}

impl CopyJob<'_> {
    fn update(&self, change: impl FnOnce(&mut Progress)) {
        change(&mut self.progress.lock().expect("progress lock"));
    }

    /// The target repositories, each once.
    fn repositories(&self) -> Vec<&Repository> {
        let mut seen = HashSet::new();
        self.spec
            .target_tags
            .iter()
            .map(|t| &t.repository)
            .chain(&self.spec.untagged_repositories)
            .filter(|r| seen.insert(*r))
            .collect()
    }

    /// Runs the import to completion.
    pub async fn run(&self) -> Result<(), CopyError> {
        // The tag check and the first source read go together: neither writes.
        let reference = self.spec.source_image.reference();
        let (existing, root) = tokio::join!(
            self.existing_tags(),
            self.source
                .get_manifest(&self.source_repository, &reference)
        );
        let existing = existing?;
        let root = root.map_err(CopyError::source)?;
        let root = self.filter_platforms(root)?;
        self.refuse_existing_tags(existing, &root.digest)?;
        let graph =
            graph::resolve(&self.source, &self.source_repository, root, MAX_MANIFESTS).await?;
        let mut budget = Budget::new(self.limits);
        budget.charge(&graph)?;
        let repositories = self.repositories();
        for repository in &repositories {
            self.place(repository, &graph).await?;
        }
        if self.spec.copy_referrers {
            referrers::copy(self, &repositories, &graph, &mut budget).await?;
        }
        let root = graph.root();
        let tags = self.spec.target_tags.iter().map(|tag| {
            self.target
                .put_manifest(&tag.repository, tag.tag.as_str(), root)
        });
        bounded(tags.collect(), REQUEST_CONCURRENCY)
            .await
            .map(drop)
            .map_err(CopyError::target)
    }

    /// NoForce: the target tags that exist already, with the digest they point at.
    async fn existing_tags(&self) -> Result<Vec<(&TargetTag, Digest)>, CopyError> {
        if self.spec.mode != ImportMode::NoForce {
            return Ok(Vec::new());
        }
        let checks = self.spec.target_tags.iter().map(|tag| async move {
            let found = self
                .target
                .manifest_digest(&tag.repository, tag.tag.as_str())
                .await;
            found.map(|digest| digest.map(|digest| (tag, digest)))
        });
        let found = bounded(checks.collect(), REQUEST_CONCURRENCY)
            .await
            .map_err(CopyError::target)?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Fails on an existing tag, unless an interrupted earlier run of this very
    /// operation set it to the image being imported.
    fn refuse_existing_tags(
        &self,
        existing: Vec<(&TargetTag, Digest)>,
        root: &Digest,
    ) -> Result<(), CopyError> {
        let conflict = existing
            .into_iter()
            .find(|(_, digest)| !(self.rerun && digest == root));
        match conflict {
            Some((tag, _)) => Err(CopyError::permanent(
                FailureCode::TagAlreadyExists,
                format!(
                    "The target tag '{}:{}' already exists; use mode Force to overwrite it.",
                    tag.repository, tag.tag
                ),
            )),
            None => Ok(()),
        }
    }

    /// Applies the `platforms` filter to an index root (other roots pass as they are).
    fn filter_platforms(&self, root: Manifest) -> Result<Manifest, CopyError> {
        if self.spec.platforms.is_empty() || !root.is_index() {
            return Ok(root);
        }
        root.filter_platforms(&self.spec.platforms)
            .map_err(CopyError::source)?
            .ok_or_else(|| {
                let wanted: Vec<String> = self
                    .spec
                    .platforms
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                CopyError::permanent(
                    FailureCode::PlatformNotFound,
                    format!(
                        "The source index has no manifest for {}.",
                        wanted.join(", ")
                    ),
                )
            })
    }

    /// Puts a graph into one target repository: what the target already has is
    /// skipped (a manifest present by digest brings its blobs with it).
    async fn place(&self, repository: &Repository, graph: &Graph) -> Result<(), CopyError> {
        let present = self.present_manifests(repository, graph).await?;
        let (needed, covered) = graph.blobs_split(&present);
        self.update(|p| {
            p.manifests_total += graph.len() as u64;
            p.manifests_done += present.len() as u64;
            p.manifests_skipped += present.len() as u64;
            p.blobs_total += (needed.len() + covered.len()) as u64;
            p.blobs_done += covered.len() as u64;
            p.blobs_skipped += covered.len() as u64;
            let bytes = |blobs: &[BlobRef]| blobs.iter().map(|b| b.size).sum::<u64>();
            p.bytes_total += bytes(&needed) + bytes(&covered);
            p.bytes_done += bytes(&covered);
        });
        // Small blobs cost round trips, not bandwidth: more of them run at once.
        let (small, large): (Vec<_>, Vec<_>) = needed.iter().partition(|b| b.size < SMALL_BLOB);
        let large: Vec<_> = large
            .into_iter()
            .map(|blob| self.copy_blob(repository, blob))
            .collect();
        let small: Vec<_> = small
            .into_iter()
            .map(|blob| self.copy_blob(repository, blob))
            .collect();
        tokio::try_join!(
            bounded(large, self.concurrency),
            bounded(small, self.concurrency * SMALL_BLOB_FACTOR),
        )?;
        for level in &graph.levels {
            let pushes =
                level
                    .iter()
                    .filter(|m| !present.contains(&m.digest))
                    .map(|manifest| async move {
                        self.target
                            .put_manifest(repository, manifest.digest.as_str(), manifest)
                            .await?;
                        self.update(|p| p.manifests_done += 1);
                        Ok(())
                    });
            bounded(pushes.collect(), REQUEST_CONCURRENCY)
                .await
                .map_err(CopyError::target)?;
        }
        Ok(())
    }

    /// The graph's manifests the target repository holds already. A present root
    /// implies its children (registries refuse an index whose children are missing).
    async fn present_manifests(
        &self,
        repository: &Repository,
        graph: &Graph,
    ) -> Result<HashSet<Digest>, CopyError> {
        let checks = graph.manifests().map(|manifest| async move {
            let digest = manifest.digest.as_str();
            let found = self.target.manifest_exists(repository, digest).await?;
            Ok(found.then_some(manifest.digest.clone()))
        });
        let found = bounded(checks.collect(), REQUEST_CONCURRENCY)
            .await
            .map_err(CopyError::target)?;
        let found: HashSet<Digest> = found.into_iter().flatten().collect();
        if found.contains(&graph.root().digest) {
            return Ok(graph.manifests().map(|m| m.digest.clone()).collect());
        }
        Ok(found)
    }

    /// Slots of the cluster-wide cap for both ends of a transfer, taken in one order
    /// (by host) so that two transfers cannot each hold what the other waits for.
    async fn cluster_slots(&self) -> Vec<Slot> {
        let mut hosts = vec![self.source.host(), self.target.host()];
        hosts.sort_unstable();
        hosts.dedup();
        let mut held = Vec::with_capacity(hosts.len());
        for host in hosts {
            held.extend(self.slots.acquire(host).await);
        }
        held
    }

    async fn copy_blob(&self, repository: &Repository, blob: &BlobRef) -> Result<(), CopyError> {
        let present = self
            .target
            .blob_exists(repository, &blob.digest)
            .await
            .map_err(CopyError::target)?;
        // Bytes of this blob already counted, so a transfer started over is not
        // counted twice.
        let counted = Arc::new(AtomicU64::new(0));
        let placed = if present {
            None
        } else {
            let _slots = Registry::transfer_slots(&self.source, &self.target).await;
            let _cluster_slots = self.cluster_slots().await;
            let meter: Meter = {
                let (counted, progress) = (counted.clone(), self.progress.clone());
                Arc::new(move |read| {
                    let before = counted.fetch_max(read, Ordering::Relaxed);
                    if read > before {
                        progress.lock().expect("progress lock").bytes_done += read - before;
                    }
                })
            };
            let source = (&self.source, &self.source_repository);
            Some(
                self.target
                    .copy_blob_from(source.0, source.1, repository, blob, Some(meter))
                    .await?,
            )
        };
        let rest = blob.size.saturating_sub(counted.load(Ordering::Relaxed));
        self.update(|p| {
            p.blobs_done += 1;
            p.bytes_done += rest;
            match placed {
                None => p.blobs_skipped += 1,
                Some(Placed::Mounted) => p.blobs_mounted += 1,
                Some(Placed::Copied) => {}
            }
        });
        Ok(())
    }
}
