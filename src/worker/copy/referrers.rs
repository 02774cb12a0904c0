//! Referrers: after an image is in place, its signatures, SBOMs and attestations
//! (and theirs in turn) follow it, each copied like an image of its own. A target
//! without the referrers API gets the referrer listed under the fallback tag.

use std::collections::HashSet;

use super::{CopyError, CopyJob, MAX_MANIFESTS, graph, graph::Graph, limits::Budget};
use crate::{
    operations::{FailureCode, reference::Digest, reference::Repository},
    registry_client::referrers::Referrer,
};

/// The most referrers one import copies.
const MAX_REFERRERS: usize = 100;
/// How deep referrers of referrers are followed.
const MAX_DEPTH: usize = 4;

/// Copies the referrers of every manifest in `graph` into each repository.
pub(super) async fn copy(
    job: &CopyJob<'_>,
    repositories: &[&Repository],
    graph: &Graph,
    budget: &mut Budget,
) -> Result<(), CopyError> {
    let mut seen: HashSet<Digest> = graph.manifests().map(|m| m.digest.clone()).collect();
    let mut subjects: Vec<Digest> = seen.iter().cloned().collect();
    let mut copied = 0;
    for _ in 0..MAX_DEPTH {
        let lookups = subjects.into_iter().map(|subject| async move {
            let listed = job
                .source
                .referrers(&job.source_repository, &subject)
                .await?;
            Ok((subject, listed))
        });
        let found: Vec<(Digest, Vec<Referrer>)> =
            super::bounded(lookups.collect(), super::REQUEST_CONCURRENCY)
                .await
                .map_err(CopyError::source)?;
        subjects = Vec::new();
        for (subject, referrers) in found {
            for referrer in referrers {
                if !seen.insert(referrer.digest.clone()) {
                    continue;
                }
                copied += 1;
                if copied > MAX_REFERRERS {
                    return Err(CopyError::permanent(
                        FailureCode::TooManyManifests,
                        format!("The image has more than {MAX_REFERRERS} referrers."),
                    ));
                }
                copy_one(job, repositories, &subject, &referrer, budget).await?;
                subjects.push(referrer.digest);
            }
        }
        if subjects.is_empty() {
            break;
        }
    }
    Ok(())
}

async fn copy_one(
    job: &CopyJob<'_>,
    repositories: &[&Repository],
    subject: &Digest,
    referrer: &Referrer,
    budget: &mut Budget,
) -> Result<(), CopyError> {
    let manifest = job
        .source
        .get_manifest(&job.source_repository, referrer.digest.as_str())
        .await
        .map_err(CopyError::source)?;
    let graph =
        graph::resolve(&job.source, &job.source_repository, manifest, MAX_MANIFESTS).await?;
    budget.charge(&graph)?;
    for repository in repositories {
        job.place(repository, &graph).await?;
        let indexed = job
            .target
            .serves_referrers_api(repository, subject)
            .await
            .map_err(CopyError::target)?;
        if !indexed {
            job.target
                .add_fallback_referrer(repository, subject, referrer)
                .await
                .map_err(CopyError::target)?;
        }
    }
    job.update(|p| p.referrers_copied += 1);
    Ok(())
}
