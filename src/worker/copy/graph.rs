//! The source side of an import: the manifest graph under one root (an index, its
//! children, their blobs), fetched level by level with the children of a level in
//! parallel, refused before anything is copied when it holds too many manifests.

use std::collections::{HashMap, HashSet};

use futures_util::{StreamExt, TryStreamExt, stream};

use super::CopyError;
use crate::{
    operations::{FailureCode, reference::Digest, reference::Repository},
    registry_client::{BlobRef, Contents, Manifest, Registry},
};

/// Manifests fetched at once while walking an index.
const FETCH_CONCURRENCY: usize = 8;

/// One root manifest and everything under it.
pub(super) struct Graph {
    /// Manifests by depth, deepest first: each level may be pushed in parallel once
    /// the levels before it are in; the root is alone in the last level.
    pub(super) levels: Vec<Vec<Manifest>>,
    /// The blobs of each image manifest.
    pub(super) blobs: HashMap<Digest, Vec<BlobRef>>,
}

impl Graph {
    pub(super) fn root(&self) -> &Manifest {
        &self.levels.last().expect("a graph has a root")[0]
    }

    pub(super) fn manifests(&self) -> impl Iterator<Item = &Manifest> {
        self.levels.iter().flatten()
    }

    pub(super) fn len(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    /// Distinct blobs of the manifests not in `present`, and distinct blobs only
    /// `present` manifests use.
    pub(super) fn blobs_split(&self, present: &HashSet<Digest>) -> (Vec<BlobRef>, Vec<BlobRef>) {
        let mut needed = Vec::new();
        let mut seen = HashSet::new();
        for (manifest, blobs) in &self.blobs {
            if !present.contains(manifest) {
                needed.extend(
                    blobs
                        .iter()
                        .filter(|b| seen.insert(b.digest.clone()))
                        .cloned(),
                );
            }
        }
        let covered = self
            .blobs
            .values()
            .flatten()
            .filter(|b| seen.insert(b.digest.clone()))
            .cloned()
            .collect();
        (needed, covered)
    }
}

/// Walks the graph under `root`, allowing at most `limit` manifests.
pub(super) async fn resolve(
    source: &Registry,
    repository: &Repository,
    root: Manifest,
    limit: usize,
) -> Result<Graph, CopyError> {
    let mut seen: HashSet<Digest> = HashSet::from([root.digest.clone()]);
    let mut levels = vec![vec![root]];
    let mut blobs = HashMap::new();
    let mut count = 1;
    loop {
        let mut children = Vec::new();
        for manifest in levels.last().expect("at least the root") {
            match manifest.contents().map_err(CopyError::source)? {
                Contents::Index(list) => children.extend(
                    list.into_iter()
                        .map(|c| c.digest)
                        .filter(|d| seen.insert(d.clone())),
                ),
                Contents::Image(list) => {
                    blobs.insert(manifest.digest.clone(), list);
                }
            }
        }
        if children.is_empty() {
            break;
        }
        count += children.len();
        if count > limit {
            return Err(CopyError::permanent(
                FailureCode::TooManyManifests,
                format!("The image has more than {limit} manifests."),
            ));
        }
        let fetches: Vec<_> = children
            .iter()
            .map(|digest| source.get_manifest(repository, digest.as_str()))
            .collect();
        let level = stream::iter(fetches)
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await
            .map_err(CopyError::source)?;
        levels.push(level);
    }
    levels.reverse();
    Ok(Graph { levels, blobs })
}
