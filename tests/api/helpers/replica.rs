//! A real `ferry serve` child process on a free loopback port: what an operator
//! runs, so tests can kill it with SIGKILL, stop it with SIGTERM and watch its
//! exit status. Its log goes to a file, printed when a test fails.

use std::{
    io::{Read, Seek, SeekFrom},
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};

use tokio::process::{Child, Command};

use super::SECRET;

/// The encryption key every replica of a test shares (replicas of one database
/// must open each other's sealed credentials).
pub const ENCRYPTION_KEY: &str = "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a";

/// How to start replicas: the database, the registries reached over plain HTTP
/// and any further `FERRY_*` settings. Start it as often as needed (a restart is
/// one more `start`).
#[derive(Debug, Clone)]
pub struct ReplicaSpec {
    database_url: String,
    env: Vec<(String, String)>,
}

impl ReplicaSpec {
    /// Replicas of `database_url` that reach `insecure` (`host:port`s) over HTTP.
    pub fn new(database_url: &str, insecure: &[&str]) -> Self {
        Self {
            database_url: database_url.to_owned(),
            env: vec![
                ("FERRY_INSECURE_REGISTRIES".into(), insecure.join(",")),
                (
                    "FERRY_ALLOWED_PRIVATE_HOSTS".into(),
                    super::ALLOWED_PRIVATE.into(),
                ),
            ],
        }
    }

    /// Sets an environment variable of the process (a later value wins).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// `FERRY_WORKERS`.
    pub fn workers(self, count: usize) -> Self {
        self.env("FERRY_WORKERS", &count.to_string())
    }

    /// `FERRY_LEASE` (e.g. `2s`).
    pub fn lease(self, lease: &str) -> Self {
        self.env("FERRY_LEASE", lease)
    }

    /// Starts a replica named `name` (for its log) and waits until `/readyz` is 200.
    pub async fn start(&self, name: &str) -> Replica {
        let mut replica = self.spawn(name);
        replica.wait_ready(Duration::from_secs(30)).await;
        replica
    }

    /// Starts a replica without waiting for it (one without an API has no
    /// `/readyz` to wait for).
    pub fn spawn(&self, name: &str) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log_path = dir.path().join("ferry.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = ferry_command(&self.database_url, &dir.path().join("data"));
        command
            .arg("serve")
            .env("FERRY_LISTEN", format!("127.0.0.1:{port}"));
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Replica {
            name: name.to_owned(),
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            child,
            log_path,
            _dir: dir,
        }
    }
}

/// The `ferry` binary with the environment every test child gets: none of the
/// test runner's own `FERRY_*` variables, the database, a data directory, the
/// test JWT secret and secret key, and a quiet log. Callers add the subcommand.
pub fn ferry_command(database_url: &str, data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    for (name, _) in std::env::vars() {
        if name.starts_with("FERRY_") {
            command.env_remove(name);
        }
    }
    command
        .env("DATABASE_URL", database_url)
        .env("FERRY_DATA_DIR", data_dir)
        .env("FERRY_JWT_SECRET", SECRET)
        .env("FERRY_SECRET_KEY", ENCRYPTION_KEY)
        .env("RUST_LOG", "info,sqlx=warn");
    command
}

/// Runs a one-shot `ferry` command (e.g. `rotate-keys`) on `database_url` with
/// `env` on top of [`ferry_command`]'s, and returns its exit status and output.
pub async fn run_ferry(
    database_url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = ferry_command(database_url, &dir.path().join("data"));
    command.args(args).stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("ferry did not exit within 60s")
        .unwrap()
}

/// A running `ferry serve`; SIGKILLed when dropped.
pub struct Replica {
    pub name: String,
    /// `http://127.0.0.1:port`
    pub base: String,
    http: reqwest::Client,
    child: Child,
    log_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Replica {
    /// Polls `/readyz` until it answers 200; panics if the process exits first or
    /// `within` passes.
    pub async fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.readyz().await == Some(200) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "replica {} exited before it was ready ({status}):\n{}",
                    self.name,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "replica {} not ready within {within:?}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The status `/readyz` answers, None when nothing answers.
    pub async fn readyz(&self) -> Option<u16> {
        let response = self
            .http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .ok()?;
        Some(response.status().as_u16())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child
            .id()
            .expect("the replica has already been reaped")
    }

    /// SIGKILL: the process dies at once, mid-whatever.
    pub async fn kill9(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// SIGTERM: asks for a graceful shutdown (returns at once).
    pub fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {}", self.pid());
    }

    /// Waits for the process to exit; panics if it is still running after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "replica {} still running {within:?} after it was told to stop:\n{}",
                self.name,
                self.log()
            ),
        }
    }

    /// The replica's whole log so far.
    pub fn full_log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap()).into_owned()
    }

    /// The last 64 KiB of the replica's log.
    pub fn log(&self) -> String {
        let mut file = std::fs::File::open(&self.log_path).unwrap();
        let length = file.metadata().unwrap().len();
        file.seek(SeekFrom::Start(length.saturating_sub(64 * 1024)))
            .unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of replica {} ---", self.name);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
