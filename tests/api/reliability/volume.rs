//! Two thousand small imports across two replicas, one of them killed and started
//! again halfway: none lost, each ends once, and a tag is written twice only by an
//! operation that really ran twice.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use futures_util::{StreamExt, stream};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use super::{Rig, until};
use crate::helpers::{cluster, fault::FaultProxy, images, ledger};

const OPERATIONS: usize = 2_000;
const WORKERS: usize = 4;
/// Submissions in flight at once.
const CONCURRENCY: usize = 16;

#[tokio::test]
async fn two_thousand_imports_across_replicas_with_a_restart() {
    let rig = Rig::new(cluster::shared_database().await).await;
    // The target behind a proxy that records every manifest PUT.
    let target = FaultProxy::start(&rig.target.host).await;
    let spec = rig
        .spec(&[&target.host])
        .workers(WORKERS)
        .lease("2s")
        .env("RUST_LOG", "warn")
        // One tenant submits 2,000 imports in seconds: far over the per-tenant
        // defaults, which this test is not about.
        .env("FERRY_TENANT_MAX_ACTIVE", "0")
        .env("FERRY_TENANT_SUBMISSIONS_PER_MINUTE", "0");
    // The blobs are on the target already: the imports race on the queue, not on
    // concurrent uploads of one new blob (that race has its own test, `concurrency`).
    let seeded = rig.client.registry(&rig.target.host, None);
    images::push(&seeded, "app", &rig.image, None).await;
    let (a, b) = tokio::join!(spec.start("a"), spec.start("b"));
    rig.create_target(&b, &target.host).await;
    let finished = || async {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from operations where finished_at is not null",
        )
        .fetch_one(&rig.pool)
        .await
        .unwrap()
    };

    let started = Instant::now();
    // Everything is submitted to B; A (killed and restarted halfway) only works.
    // Default mode (NoForce): an import A had tagged when it died is re-run, and
    // must accept the tag its own first attempt wrote.
    let submit = stream::iter(0..OPERATIONS)
        .map(|i| {
            let body = json!({
                "source": { "registryUri": rig.gate.host, "sourceImage": "app:v1" },
                "targetTags": [format!("app:t{i:04}")],
                "copyReferrers": false,
            });
            let (rig, b) = (&rig, &b);
            async move { (rig.submit(b, &body).await, format!("t{i:04}")) }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<(Uuid, String)>>();
    let submit = async { (submit.await, started.elapsed()) };
    let restart = async {
        let mut a = a;
        until(
            "half the imports finish",
            Duration::from_secs(120),
            || async { (finished().await >= (OPERATIONS / 2) as i64).then_some(()) },
        )
        .await;
        let half = started.elapsed();
        a.kill9().await;
        (spec.start("a-again").await, half)
    };
    let ((submitted_ops, submitted), (_a, half)) = tokio::join!(submit, restart);
    until(
        "every import finishes",
        Duration::from_secs(120),
        || async { (finished().await == OPERATIONS as i64).then_some(()) },
    )
    .await;
    let elapsed = started.elapsed();

    // None lost, none doubled.
    let tag_of: HashMap<Uuid, String> = submitted_ops.into_iter().collect();
    let ids: HashSet<Uuid> = tag_of.keys().copied().collect();
    assert_eq!(ids.len(), OPERATIONS);
    let rows: Vec<(Uuid, String, i32, i32, Option<String>)> = sqlx::query_as(
        "select id, status::text, attempts, max_attempts, error_code || ': ' || error_message
         from operations where finished_at is not null",
    )
    .fetch_all(&rig.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), OPERATIONS);
    let all: i64 = sqlx::query_scalar("select count(*) from operations")
        .fetch_one(&rig.pool)
        .await
        .unwrap();
    assert_eq!(
        all, OPERATIONS as i64,
        "more operations stored than accepted"
    );
    let stored: HashSet<Uuid> = rows.iter().map(|r| r.0).collect();
    assert_eq!(stored, ids, "stored operations differ from those accepted");
    let bad: Vec<_> = rows
        .iter()
        .filter(|(_, status, attempts, max, _)| {
            status != "succeeded" || *attempts < 1 || attempts > max
        })
        .collect();
    if !bad.is_empty() {
        let mut histories = Vec::new();
        for row in &bad {
            histories.push((
                tag_of[&row.0].clone(),
                ledger::history(&rig.pool, row.0).await,
            ));
        }
        panic!(
            "{} not cleanly succeeded: {bad:?}\n{histories:#?}",
            bad.len()
        );
    }
    assert!(ledger::not_terminal_once(&rig.pool).await.is_empty());
    assert_eq!(ledger::terminal_entries(&rig.pool).await, OPERATIONS as i64);

    // Each tag was written; more than once only by an operation that ran again.
    let mut puts: HashMap<String, usize> = HashMap::new();
    for seen in target.requests() {
        if seen.method == Method::PUT && (200..300).contains(&seen.status) {
            if let Some(tag) = seen.path.strip_prefix("/v2/app/manifests/") {
                *puts.entry(tag.to_owned()).or_default() += 1;
            }
        }
    }
    for (id, _, attempts, _, _) in &rows {
        let tag = &tag_of[id];
        let written = puts.get(tag).copied().unwrap_or(0);
        assert!(
            written == 1 || (written > 1 && *attempts > 1),
            "{tag} written {written} times by an operation of {attempts} attempt(s)"
        );
    }
    // Leases ran out only for what the killed replica held; other re-runs are
    // retries of recorded transient failures.
    let rerun = rows.iter().filter(|r| r.2 > 1).count();
    let (rescued, retried) = ledger::requeues(&rig.pool).await;
    assert!(
        rescued <= WORKERS as i64,
        "{rescued} leases were lost, but the killed replica held at most {WORKERS}"
    );
    eprintln!(
        "{OPERATIONS} imports on 2 replicas × {WORKERS} workers: all accepted after {submitted:?}, half done after {half:?} ({:.0} ops/s), then one replica killed and restarted; all done after {elapsed:?} ({:.0} ops/s overall); {rerun} ran again ({rescued} rescued, {retried} retried)",
        (OPERATIONS / 2) as f64 / half.as_secs_f64(),
        OPERATIONS as f64 / elapsed.as_secs_f64()
    );
}
