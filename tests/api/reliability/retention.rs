//! Retention: a replica's workers delete finished operations older than
//! `FERRY_OPERATION_RETENTION` (at startup, then every few minutes), and keep
//! recent and unfinished ones.

use std::time::Duration;

use uuid::Uuid;

use super::{Rig, until};
use crate::helpers::cluster;

async fn exists(rig: &Rig, id: Uuid) -> bool {
    sqlx::query_scalar("select exists(select 1 from operations where id = $1)")
        .bind(id)
        .fetch_one(&rig.pool)
        .await
        .unwrap()
}

async fn age(rig: &Rig, id: Uuid, set: &str) {
    sqlx::query(&format!("update operations set {set} where id = $1"))
        .bind(id)
        .execute(&rig.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn finished_operations_past_retention_are_deleted_at_startup() {
    let rig = Rig::new(cluster::shared_database().await).await;
    let api = rig.spec(&[]).workers(0).start("api").await;
    rig.create_target(&api, &rig.target.host).await;
    let old = rig.submit(&api, &rig.import_body("app:old")).await;
    let recent = rig.submit(&api, &rig.import_body("app:recent")).await;
    let unfinished = rig.submit(&api, &rig.import_body("app:unfinished")).await;
    let two_hours_ago = "now() - interval '2 hours'";
    age(&rig, old, &format!("status = 'succeeded', created_at = {two_hours_ago}, started_at = {two_hours_ago}, finished_at = {two_hours_ago}")).await;
    age(&rig, recent, &format!("status = 'failed', error_code = 'ImportFailed', error_message = 'Operation failed.', created_at = {two_hours_ago}, finished_at = now() - interval '10 minutes'")).await;
    age(&rig, unfinished, &format!("created_at = {two_hours_ago}")).await;

    // The worker holds `unfinished` mid-copy while it prunes.
    rig.gate.close();
    let _worker = rig
        .spec(&[])
        .workers(1)
        .env("FERRY_OPERATION_RETENTION", "1h")
        .start("worker")
        .await;
    until(
        "the operation finished 2 hours ago is deleted",
        Duration::from_secs(20),
        || async { (!exists(&rig, old).await).then_some(()) },
    )
    .await;
    assert!(exists(&rig, recent).await, "a recent failure was deleted");
    assert!(
        exists(&rig, unfinished).await,
        "an old unfinished operation was deleted"
    );
    let (status, body) = rig.poll(&api, old).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("OperationNotFound"))
    );
    let (status, body) = rig.poll(&api, recent).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("ImportFailed"))
    );

    rig.gate.open();
    let done = rig
        .wait_row(
            unfinished,
            "the unfinished import ends",
            Duration::from_secs(20),
            |row| row.is_terminal(),
        )
        .await;
    assert_eq!(done.status, "succeeded", "{done:?}");
}
