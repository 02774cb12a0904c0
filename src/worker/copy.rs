//! One import: check NoForce tags, resolve the source, walk the manifest graph, copy
//! blobs (skipping those present, several at once), then child manifests, then the
//! root, and the tags last — so a failure never leaves a tag on an incomplete image.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use futures_util::{StreamExt, TryStreamExt, stream};

use crate::{
    operations::{
        FailureCode, Progress,
        reference::Repository,
        spec::{ImportMode, ImportSpec},
    },
    registry_client::{BlobRef, Contents, Manifest, Registry, RegistryError, Side},
};

/// The most manifests (an index and its children) one import may copy, as in ACR.
pub const MAX_MANIFESTS: usize = 50;

/// Why an import stopped, and whether trying again later could help.
#[derive(Debug)]
pub struct CopyError {
    pub code: FailureCode,
    pub message: String,
    pub transient: bool,
}

impl CopyError {
    /// A failure no retry will fix.
    pub fn permanent(code: FailureCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            transient: false,
        }
    }

    fn from_side(side: Side) -> Self {
        let (error, code, name) = match side {
            Side::Source(e) => (e, FailureCode::SourceRegistryError, "source"),
            Side::Target(e) => (e, FailureCode::TargetRegistryError, "target"),
        };
        let transient = error.is_transient();
        let code = match (&error, code) {
            (RegistryError::NotFound { .. }, FailureCode::SourceRegistryError) => {
                FailureCode::ImageNotFound
            }
            (RegistryError::UnsupportedMediaType(_) | RegistryError::TooLarge(_), _) => {
                FailureCode::UnsupportedMediaType
            }
            (RegistryError::DigestMismatch { .. }, _) => FailureCode::DigestMismatch,
            _ => code,
        };
        let message = match &error {
            RegistryError::NotFound { what } => format!("The {name} registry has no {what}."),
            other => format!("The {name} registry failed: {other}."),
        };
        Self {
            code,
            message,
            transient,
        }
    }
}

/// Everything one import needs.
pub struct CopyJob<'a> {
    pub spec: &'a ImportSpec,
    pub source: Registry,
    pub source_repository: Repository,
    pub target: Registry,
    pub concurrency: usize,
    pub progress: Arc<Mutex<Progress>>,
}

impl CopyJob<'_> {
    fn update(&self, change: impl FnOnce(&mut Progress)) {
        change(&mut self.progress.lock().expect("progress lock"));
    }

    /// Runs the import to completion.
    pub async fn run(&self) -> Result<(), CopyError> {
        let spec = self.spec;
        let mut repositories: Vec<&Repository> =
            spec.target_tags.iter().map(|t| &t.repository).collect();
        repositories.extend(&spec.untagged_repositories);
        let mut seen = HashSet::new();
        repositories.retain(|r| seen.insert(*r));

        if spec.mode == ImportMode::NoForce {
            for tag in &spec.target_tags {
                let exists = self
                    .target
                    .manifest_exists(&tag.repository, tag.tag.as_str())
                    .await
                    .map_err(|e| CopyError::from_side(Side::Target(e)))?;
                if exists {
                    return Err(CopyError::permanent(
                        FailureCode::TagAlreadyExists,
                        format!(
                            "The target tag '{}:{}' already exists; use mode Force to overwrite it.",
                            tag.repository, tag.tag
                        ),
                    ));
                }
            }
        }

        let (manifests, blobs) = self.resolve().await?;
        let root = manifests
            .last()
            .expect("the root manifest is always present")
            .clone();
        self.update(|p| {
            p.manifests_total = (manifests.len() * repositories.len()) as u64;
            p.blobs_total = (blobs.len() * repositories.len()) as u64;
            p.bytes_total = blobs.iter().map(|b| b.size).sum::<u64>() * repositories.len() as u64;
        });

        let work: Vec<(Repository, BlobRef)> = repositories
            .iter()
            .flat_map(|repo| blobs.iter().map(|blob| ((*repo).clone(), blob.clone())))
            .collect();
        stream::iter(work)
            .map(|(repo, blob)| async move { self.copy_blob(&repo, &blob).await })
            .buffer_unordered(self.concurrency.max(1))
            .try_collect::<()>()
            .await?;

        for repo in &repositories {
            for manifest in &manifests {
                self.target
                    .put_manifest(repo, manifest.digest.as_str(), manifest)
                    .await
                    .map_err(|e| CopyError::from_side(Side::Target(e)))?;
                self.update(|p| p.manifests_done += 1);
            }
        }
        for tag in &spec.target_tags {
            self.target
                .put_manifest(&tag.repository, tag.tag.as_str(), &root)
                .await
                .map_err(|e| CopyError::from_side(Side::Target(e)))?;
        }
        Ok(())
    }

    /// Fetches the source manifest graph. Returns manifests in push order (children
    /// before the indexes that list them, root last) and the distinct blobs.
    async fn resolve(&self) -> Result<(Vec<Manifest>, Vec<BlobRef>), CopyError> {
        let source_err = |e| CopyError::from_side(Side::Source(e));
        let reference = self.spec.source_image.reference();
        let root = self
            .source
            .get_manifest(&self.source_repository, &reference)
            .await
            .map_err(source_err)?;
        let mut found = vec![root];
        let mut seen: HashSet<_> = found.iter().map(|m| m.digest.clone()).collect();
        let mut blobs = Vec::new();
        let mut blob_seen = HashSet::new();
        let mut next = 0;
        while next < found.len() {
            match found[next].contents().map_err(source_err)? {
                Contents::Index(children) => {
                    for child in children {
                        if !seen.insert(child.clone()) {
                            continue;
                        }
                        if found.len() >= MAX_MANIFESTS {
                            return Err(CopyError::permanent(
                                FailureCode::TooManyManifests,
                                format!("The image has more than {MAX_MANIFESTS} manifests."),
                            ));
                        }
                        let manifest = self
                            .source
                            .get_manifest(&self.source_repository, child.as_str())
                            .await
                            .map_err(source_err)?;
                        found.push(manifest);
                    }
                }
                Contents::Image(refs) => {
                    blobs.extend(
                        refs.into_iter()
                            .filter(|b| blob_seen.insert(b.digest.clone())),
                    );
                }
            }
            next += 1;
        }
        found.reverse();
        Ok((found, blobs))
    }

    async fn copy_blob(&self, repository: &Repository, blob: &BlobRef) -> Result<(), CopyError> {
        let present = self
            .target
            .blob_exists(repository, &blob.digest)
            .await
            .map_err(|e| CopyError::from_side(Side::Target(e)))?;
        if present {
            self.update(|p| {
                p.blobs_skipped += 1;
                p.blobs_done += 1;
                p.bytes_done += blob.size;
            });
            return Ok(());
        }
        self.target
            .copy_blob_from(&self.source, &self.source_repository, repository, blob)
            .await
            .map_err(CopyError::from_side)?;
        self.update(|p| {
            p.blobs_done += 1;
            p.bytes_done += blob.size;
        });
        Ok(())
    }
}
