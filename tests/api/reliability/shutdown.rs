//! SIGTERM during a copy: the replica gives the copy its grace period, then hands
//! the operation back to the queue (not failed, the attempt not counted) and exits
//! 0; another replica finishes it long before the lease could have run out.

use std::time::{Duration, Instant};

use super::Rig;
use crate::helpers::{cluster, ledger};

/// Long: if the other replica gets the import soon, the lease was released, not
/// left to expire.
const LEASE: &str = "60s";
const GRACE: &str = "1s";

#[tokio::test]
async fn sigterm_releases_a_running_import_to_another_replica() {
    let rig = Rig::new(cluster::shared_database().await).await;
    let spec = rig
        .spec(&[])
        .workers(1)
        .lease(LEASE)
        .env("FERRY_SHUTDOWN_GRACE", GRACE);
    let mut a = spec.start("a").await;
    rig.create_target(&a, &rig.target.host).await;
    rig.gate.close();
    let id = rig.submit(&a, &rig.import_body("app:v1")).await;
    rig.gate.wait_arrived(1, Duration::from_secs(20)).await;
    let held = rig.row(id).await;
    assert_eq!((held.status.as_str(), held.attempts), ("running", 1));
    let owner_a = held.lease_owner.expect("a running operation has a lease");
    let b = spec.start("b").await;

    // The copy cannot finish (the gate stays closed): the grace period runs out.
    a.sigterm();
    let asked = Instant::now();
    let status = a.wait_exit(Duration::from_secs(10)).await;
    let exited = asked.elapsed();
    assert!(status.success(), "ferry exited with {status}");
    let row = rig.row(id).await;
    assert_ne!(row.status, "failed", "{row:?}");
    assert!(
        row.lease_owner != Some(owner_a),
        "the lease is still held by the stopped replica: {row:?}"
    );

    let released = Instant::now();
    rig.gate.open();
    let done = rig
        .wait_row(
            id,
            "the other replica finishes it",
            Duration::from_secs(20),
            |row| row.is_terminal(),
        )
        .await;
    assert_eq!(done.status, "succeeded", "{done:?}");
    assert_eq!(done.error_code, None, "{done:?}");
    assert_eq!(
        done.attempts, 1,
        "the attempt cut short by the shutdown was counted"
    );
    let (status, body) = rig.poll(&b, id).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("Succeeded")));
    rig.assert_copied("app:v1").await;

    let history = ledger::history(&rig.pool, id).await;
    let statuses: Vec<&str> = history.iter().map(|e| e.status.as_str()).collect();
    assert_eq!(
        statuses,
        ["queued", "running", "queued", "running", "succeeded"],
        "{history:?}"
    );
    assert_eq!(history[1].lease_owner, Some(owner_a), "{history:?}");
    assert_eq!(
        history[2].lease_owner, None,
        "released with a lease: {history:?}"
    );
    assert!(
        history[3].lease_owner.is_some_and(|o| o != owner_a),
        "{history:?}"
    );
    eprintln!(
        "SIGTERM with FERRY_SHUTDOWN_GRACE={GRACE}: exited 0 after {exited:?}; the other replica finished {:?} later",
        released.elapsed()
    );
}
