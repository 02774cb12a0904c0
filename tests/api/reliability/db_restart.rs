//! Postgres stopped and started again under running imports (a private cluster:
//! the shared one serves other tests): readiness follows the database, and every
//! import still ends, succeeded, once.

use std::time::{Duration, Instant};

use super::{Rig, until};
use crate::helpers::{cluster, ledger};

const LEASE: &str = "3s";
/// Longer than the lease, so leases run out while the database is away.
const OUTAGE: Duration = Duration::from_secs(4);
const IMPORTS: usize = 3;

#[tokio::test]
async fn imports_survive_a_postgres_restart() {
    let pg = cluster::PgCluster::start().await;
    let rig = Rig::new(cluster::create_database(&pg.admin_url()).await).await;
    let replica = rig.spec(&[]).workers(4).lease(LEASE).start("a").await;
    rig.create_target(&replica, &rig.target.host).await;

    rig.gate.close();
    let mut ids = Vec::new();
    for i in 0..IMPORTS {
        ids.push(
            rig.submit(&replica, &rig.import_body(&format!("app:v{i}")))
                .await,
        );
    }
    for &id in &ids {
        rig.wait_row(
            id,
            "the import is claimed",
            Duration::from_secs(20),
            |row| row.status == "running",
        )
        .await;
    }
    rig.gate.wait_arrived(1, Duration::from_secs(20)).await;

    pg.stop().await;
    let down = Instant::now();
    let noticed = until("/readyz turns 503", Duration::from_secs(30), || async {
        (replica.readyz().await == Some(503)).then(|| down.elapsed())
    })
    .await;
    tokio::time::sleep_until((down + OUTAGE).into()).await;
    pg.start_again().await;
    let up = Instant::now();
    let ready = until("/readyz turns 200", Duration::from_secs(30), || async {
        (replica.readyz().await == Some(200)).then(|| up.elapsed())
    })
    .await;
    rig.gate.open();

    for &id in &ids {
        let row = rig
            .wait_row(id, "the import ends", Duration::from_secs(60), |row| {
                row.is_terminal()
            })
            .await;
        assert_eq!(row.status, "succeeded", "{row:?}");
        assert!(row.attempts <= row.max_attempts, "{row:?}");
    }
    let recovered = up.elapsed();
    for i in 0..IMPORTS {
        rig.assert_copied(&format!("app:v{i}")).await;
    }
    assert!(
        ledger::not_terminal_once(&rig.pool).await.is_empty(),
        "an operation ended twice or not at all"
    );
    assert_eq!(ledger::terminal_entries(&rig.pool).await, IMPORTS as i64);
    eprintln!(
        "postgres restart: /readyz 503 after {noticed:?} down, 200 {ready:?} after the restart, all {IMPORTS} imports done {recovered:?} after it"
    );
}
