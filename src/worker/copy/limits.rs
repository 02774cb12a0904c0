//! Per-import caps on what one import may copy: distinct blobs and their total
//! declared size, charged from the manifest graph before any blob is copied (and
//! again, cumulatively, for each referrer's graph before it is placed). Declared
//! sizes bind: a blob read refuses bytes beyond its descriptor's size.

use std::collections::HashSet;

use super::{CopyError, graph::Graph};
use crate::operations::{FailureCode, reference::Digest};

/// Default [`ImportLimits::max_blobs`]: the largest legitimate graph is 50
/// manifests (the manifest cap) of at most 128 blobs each (Docker's 127-layer limit
/// plus a config), 6,400; only crafted manifests list more.
pub const DEFAULT_MAX_IMPORT_BLOBS: usize = 10_000;
/// Default [`ImportLimits::max_bytes`], 100 GiB: the biggest real images (CUDA and
/// model-bundling ones) reach 20–40 GiB per platform, a few platforms per index.
pub const DEFAULT_MAX_IMPORT_BYTES: u64 = 100 << 30;

/// The caps; 0 turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    pub max_blobs: usize,
    pub max_bytes: u64,
}

impl Default for ImportLimits {
    fn default() -> Self {
        Self {
            max_blobs: DEFAULT_MAX_IMPORT_BLOBS,
            max_bytes: DEFAULT_MAX_IMPORT_BYTES,
        }
    }
}

/// What an import has committed to copy so far.
#[derive(Debug)]
pub(super) struct Budget {
    limits: ImportLimits,
    blobs: HashSet<Digest>,
    bytes: u64,
}

impl Budget {
    pub(super) fn new(limits: ImportLimits) -> Self {
        Self {
            limits,
            blobs: HashSet::new(),
            bytes: 0,
        }
    }

    /// Adds the distinct blobs of `graph`; fails, naming the cap, when the import
    /// would then exceed one.
    pub(super) fn charge(&mut self, graph: &Graph) -> Result<(), CopyError> {
        for blob in graph.blobs.values().flatten() {
            if self.blobs.insert(blob.digest.clone()) {
                self.bytes = self.bytes.saturating_add(blob.size);
            }
        }
        let ImportLimits {
            max_blobs,
            max_bytes,
        } = self.limits;
        if max_blobs > 0 && self.blobs.len() > max_blobs {
            return Err(CopyError::permanent(
                FailureCode::ImportTooLarge,
                format!(
                    "The image has {} blobs; one import may copy at most {max_blobs}.",
                    self.blobs.len()
                ),
            ));
        }
        if max_bytes > 0 && self.bytes > max_bytes {
            return Err(CopyError::permanent(
                FailureCode::ImportTooLarge,
                format!(
                    "The image's blobs total {} bytes; one import may copy at most {max_bytes} bytes.",
                    self.bytes
                ),
            ));
        }
        Ok(())
    }
}
