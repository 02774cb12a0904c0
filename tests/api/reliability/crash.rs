//! A replica killed with SIGKILL mid-copy, or after writing the tag but before
//! recording the outcome: once its lease expires, another replica re-runs the
//! import to the same digest, and the operation ends exactly once, succeeded.

use std::time::{Duration, Instant};

use super::Rig;
use crate::helpers::{
    cluster,
    gate::{GateProxy, Hold},
    ledger, skopeo,
};

/// Short, so that a dead replica's lease runs out quickly.
const LEASE: &str = "2s";
/// Lease, heartbeat slack, an idle worker's poll interval and a loaded machine.
const TAKEOVER_WITHIN: Duration = Duration::from_secs(15);

#[tokio::test]
async fn an_import_of_a_killed_replica_is_finished_by_another() {
    let rig = Rig::new(cluster::shared_database().await).await;
    let spec = rig.spec(&[]).workers(1).lease(LEASE);
    let mut takeovers = Vec::new();
    for round in 1..=3 {
        // A repository of its own, so that its blobs are fetched (not found present).
        let target = format!("round{round}/app:v1");
        // A alone claims the import, whose blob GET then waits at the gate.
        rig.gate.close();
        let mut a = spec.start(&format!("a{round}")).await;
        if round == 1 {
            rig.create_target(&a, &rig.target.host).await;
        }
        let arrived = rig.gate.arrived();
        let id = rig.submit(&a, &rig.import_body(&target)).await;
        rig.gate
            .wait_arrived(arrived + 1, Duration::from_secs(20))
            .await;
        let held = rig.row(id).await;
        assert_eq!((held.status.as_str(), held.attempts), ("running", 1));
        let owner_a = held.lease_owner.expect("a running operation has a lease");

        // B is up and idle when A dies mid-copy.
        let b = spec.start(&format!("b{round}")).await;
        let killed = Instant::now();
        a.kill9().await;
        rig.gate.open();
        rig.wait_row(
            id,
            "another replica claims the import",
            TAKEOVER_WITHIN,
            |row| row.attempts >= 2,
        )
        .await;
        takeovers.push(killed.elapsed());
        let done = rig
            .wait_row(id, "the import ends", Duration::from_secs(30), |row| {
                row.is_terminal()
            })
            .await;

        assert_eq!(done.status, "succeeded", "{done:?}");
        assert_eq!(done.attempts, 2, "{done:?}");
        assert_eq!(done.error_code, None, "{done:?}");
        assert!(done.finished && done.lease_owner.is_none(), "{done:?}");
        let (status, body) = rig.poll(&b, id).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("Succeeded")));
        rig.assert_copied(&target).await;

        let history = ledger::history(&rig.pool, id).await;
        let statuses: Vec<&str> = history.iter().map(|e| e.status.as_str()).collect();
        let terminal = statuses
            .iter()
            .filter(|s| ledger::TERMINAL.contains(s))
            .count();
        assert_eq!(terminal, 1, "{history:?}");
        assert_eq!(statuses.last(), Some(&"succeeded"), "{history:?}");
        assert_eq!(
            history.iter().filter(|e| e.finished).count(),
            1,
            "finished_at set more than once: {history:?}"
        );
        assert!(
            history
                .iter()
                .any(|e| e.status == "running" && e.lease_owner.is_some_and(|o| o != owner_a)),
            "no other worker ever held it: {history:?}"
        );
        drop(b);
    }
    eprintln!("kill -9 → claimed by the other replica after {takeovers:?} (FERRY_LEASE={LEASE})");
}

#[tokio::test]
async fn a_rerun_after_a_crash_accepts_the_tag_its_first_attempt_wrote() {
    let rig = Rig::new(cluster::shared_database().await).await;
    // The target behind a gate that holds the answer to the tag PUT.
    let target = GateProxy::holding(&rig.target.host, Hold::TagPutAnswers).await;
    let spec = rig.spec(&[&target.host]).workers(1).lease(LEASE);
    let mut a = spec.start("a").await;
    rig.create_target(&a, &target.host).await;
    target.close();
    // NoForce, as clients send by default.
    let id = rig.submit(&a, &rig.import_body("app:v1")).await;
    target.wait_arrived(1, Duration::from_secs(20)).await;
    skopeo::assert_manifest(&rig.target, "app:v1", &rig.image.manifest).await;

    let b = spec.start("b").await;
    a.kill9().await;
    target.open();
    let done = rig
        .wait_row(id, "the re-run ends", TAKEOVER_WITHIN * 2, |row| {
            row.is_terminal()
        })
        .await;
    assert_eq!(
        (done.status.as_str(), done.error_code.as_deref()),
        ("succeeded", None),
        "the re-run refused the tag its own first attempt wrote: {done:?}"
    );
    assert_eq!(done.attempts, 2, "{done:?}");
    let (status, body) = rig.poll(&b, id).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("Succeeded")));
    rig.assert_copied("app:v1").await;
}
