//! Replicas with one job each: an API-only replica (`FERRY_WORKERS=0`) accepts
//! imports, a worker-only replica (`FERRY_NO_API=true`) runs them and listens on
//! nothing.

use std::time::Duration;

use super::Rig;
use crate::helpers::cluster;

#[tokio::test]
async fn an_api_replica_and_a_worker_replica_split_the_work() {
    let rig = Rig::new(cluster::shared_database().await).await;
    let api = rig.spec(&[]).workers(0).start("api").await;
    rig.create_target(&api, &rig.target.host).await;
    let id = rig.submit(&api, &rig.import_body("app:v1")).await;
    // Nothing runs it without a worker.
    let row = rig.row(id).await;
    assert_eq!((row.status.as_str(), row.attempts), ("queued", 0));

    let mut worker = rig
        .spec(&[])
        .workers(1)
        .env("FERRY_NO_API", "true")
        .spawn("worker");
    let done = rig
        .wait_row(
            id,
            "the worker-only replica runs it",
            Duration::from_secs(30),
            |row| row.is_terminal(),
        )
        .await;
    assert_eq!(done.status, "succeeded", "{done:?}");
    rig.assert_copied("app:v1").await;
    let (status, body) = rig.poll(&api, id).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("Succeeded")));

    assert!(worker.is_running(), "the worker-only replica exited");
    assert_eq!(
        worker.readyz().await,
        None,
        "the worker-only replica answers HTTP on its FERRY_LISTEN address"
    );
    worker.sigterm();
    let status = worker.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
}
