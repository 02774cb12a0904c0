//! The embedded default: `ferry serve` without DATABASE_URL runs its own Postgres
//! cluster under FERRY_DATA_DIR, serves, and stops the cluster on SIGTERM.

use std::{os::unix::fs::PermissionsExt, process::Stdio, time::Duration};

use tokio::process::Command;

#[tokio::test]
async fn serve_runs_and_stops_its_own_postgres() {
    let dir = tempfile::tempdir().unwrap();
    // When tests run as root the cluster runs as `postgres`, which must reach the dir.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("FERRY_DATA_DIR", dir.path().join("data"))
        .env("FERRY_LISTEN", format!("127.0.0.1:{port}"))
        .env("FERRY_JWT_SECRET", crate::helpers::SECRET)
        .env("FERRY_WORKERS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    let mut ready = false;
    for _ in 0..1200 {
        if let Ok(response) = http.get(&url).send().await {
            ready = response.status() == 200;
            if ready {
                break;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("ferry exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "embedded ferry never became ready");
    let pid_file = dir.path().join("data/postgres/postmaster.pid");
    assert!(pid_file.exists(), "the embedded cluster is not running");
    assert!(dir.path().join("data/encryption.key").exists());

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(!pid_file.exists(), "the embedded cluster was left running");
}
