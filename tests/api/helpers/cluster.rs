//! Databases for tests that run ferry as child processes: a fresh database (with
//! its URL, which a `ferry serve` child needs) on the shared test cluster, and a
//! private PostgreSQL cluster on a fixed loopback port that a test may stop and
//! start again. Never restart the shared cluster: other tests use it at once.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::PathBuf,
    process::Stdio,
};

use sqlx::{Connection, PgConnection, PgPool};
use tokio::process::Command;
use uuid::Uuid;

/// Creates a database on the server `admin_url` points at, applies ferry's
/// migrations, and returns its URL and a pool on it.
pub async fn create_database(admin_url: &str) -> (String, PgPool) {
    let name = format!("ferry_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(admin_url).await.unwrap();
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(10)
        .connect(&url)
        .await
        .unwrap();
    ferry::db::MIGRATOR.run(&pool).await.unwrap();
    (url, pool)
}

/// A fresh database on the shared test cluster (TEST_DATABASE_URL), with its URL.
pub async fn shared_database() -> (String, PgPool) {
    let url = std::env::var("TEST_DATABASE_URL")
        .expect("TEST_DATABASE_URL must point at a Postgres server (bash .ci/run starts one)");
    create_database(&url).await
}

/// A PostgreSQL cluster of this test alone, on 127.0.0.1:`port`; stopped (and
/// its files removed) when dropped.
pub struct PgCluster {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

impl PgCluster {
    /// Initialises and starts a cluster on a free port.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // When tests run as root the cluster runs as `postgres`, which must reach it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if running_as_root() {
            let chown = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&data)
                .status()
                .await
                .unwrap();
            assert!(chown.success(), "chown postgres {}", data.display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Self {
            port,
            bin: ferry::db::embedded::find_binaries()
                .expect("PostgreSQL server binaries (apt-get install postgresql)"),
            data,
            _dir: dir,
        };
        let data = cluster.data.display().to_string();
        cluster
            .pg(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
            )
            .await;
        cluster.start_again().await;
        cluster
    }

    /// The URL of the cluster's `postgres` database.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast: sessions are ended) and waits until it is down.
    pub async fn stop(&self) {
        let data = self.data.display().to_string();
        self.pg("pg_ctl", &["stop", "-D", &data, "-m", "fast", "-w"])
            .await;
    }

    /// Starts the (stopped) server again on the same port and waits until it
    /// accepts connections.
    pub async fn start_again(&self) {
        let data = self.data.display().to_string();
        let log = self.data.join("server.log").display().to_string();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={data} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            self.port
        );
        self.pg(
            "pg_ctl",
            &[
                "start", "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &options,
            ],
        )
        .await;
    }

    /// Runs a PostgreSQL program, as `postgres` when the tests run as root.
    async fn pg(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        let output = command
            .args(args)
            .current_dir(&self.data)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let path = self.bin.join("pg_ctl");
        let data = self.data.display().to_string();
        let args = ["stop", "-D", &data, "-m", "immediate", "-w"];
        let mut command = if running_as_root() {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            std::process::Command::new(&path)
        };
        // Already stopped is fine; the temp dir goes right after.
        let _ = command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
