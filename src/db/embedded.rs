//! The embedded default: with no DATABASE_URL, ferry runs a private PostgreSQL
//! cluster from the binaries on the machine, under `$FERRY_DATA_DIR/postgres`,
//! reachable only through a Unix socket in that directory, reused across restarts
//! and stopped on shutdown. PostgreSQL refuses to run as root, so when ferry is
//! root the cluster runs as the `postgres` user.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use sqlx::{Connection, PgConnection, postgres::PgConnectOptions};
use tokio::process::Command;

const INSTALL_HINT: &str = "no PostgreSQL server binaries (initdb, pg_ctl) found on PATH or under /usr/lib/postgresql/*/bin: install them (Debian: apt-get install postgresql) or set DATABASE_URL";
const DATABASE: &str = "ferry";
const SUPERUSER: &str = "ferry";

/// A running embedded cluster.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    run_as: Option<String>,
}

/// The directory holding `initdb` and `pg_ctl`: PATH first, then the newest
/// Debian-style install.
pub fn find_binaries() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file());
    if let Some(dir) = on_path {
        return Ok(dir);
    }
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    installed.sort();
    installed.pop().map(|(_, bin)| bin).context(INSTALL_HINT)
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

impl Cluster {
    /// Initialises the cluster on first use, then starts it (or adopts one already
    /// running from an earlier process) and makes sure the `ferry` database exists.
    pub async fn start(data_dir: &Path) -> anyhow::Result<Self> {
        let bin = find_binaries()?;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let dir = data_dir.canonicalize()?.join("postgres");
        let socket = dir.join(".s.PGSQL.5432");
        if socket.as_os_str().len() > 100 {
            bail!(
                "FERRY_DATA_DIR {} is too deep for a Unix socket path; choose a shorter one",
                data_dir.display()
            );
        }
        std::fs::create_dir_all(&dir)?;
        let run_as = running_as_root().then(|| "postgres".to_owned());
        let cluster = Self { bin, dir, run_as };
        cluster.prepare_ownership().await?;
        if !cluster.dir.join("PG_VERSION").is_file() {
            tracing::info!(dir = %cluster.dir.display(), "initialising embedded PostgreSQL cluster");
            let dir = cluster.dir.display().to_string();
            cluster
                .run(
                    "initdb",
                    &[
                        "-D",
                        &dir,
                        "-U",
                        SUPERUSER,
                        "--auth=trust",
                        "--encoding=UTF8",
                        "--locale=C",
                    ],
                )
                .await?;
        }
        if cluster
            .run(
                "pg_ctl",
                &["status", "-D", &cluster.dir.display().to_string()],
            )
            .await
            .is_err()
        {
            cluster.start_server().await?;
        }
        cluster.ensure_database().await?;
        Ok(cluster)
    }

    /// When root, hands the cluster directory to `postgres` and checks that user can
    /// reach it (an unreachable parent such as /root is the usual trap).
    async fn prepare_ownership(&self) -> anyhow::Result<()> {
        let Some(user) = &self.run_as else {
            return Ok(());
        };
        let status = Command::new("chown")
            .args(["-R", &format!("{user}:{user}")])
            .arg(&self.dir)
            .status()
            .await;
        if !status.is_ok_and(|s| s.success()) {
            bail!(
                "running as root: could not give {} to the `{user}` user (does it exist? apt-get install postgresql creates it)",
                self.dir.display()
            );
        }
        if self
            .run("test", &["-w", &self.dir.display().to_string()])
            .await
            .is_err()
        {
            bail!(
                "running as root: the `{user}` user cannot reach {}; set FERRY_DATA_DIR to a directory it can reach, e.g. /var/lib/ferry",
                self.dir.display()
            );
        }
        Ok(())
    }

    async fn start_server(&self) -> anyhow::Result<()> {
        let dir = self.dir.display().to_string();
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{dir}' -c unix_socket_permissions=0700"
        );
        let log = self.dir.join("postgres.log").display().to_string();
        tracing::info!(dir, "starting embedded PostgreSQL");
        self.run(
            "pg_ctl",
            &[
                "start", "-D", &dir, "-l", &log, "-w", "-t", "120", "-o", &options,
            ],
        )
        .await
    }

    async fn ensure_database(&self) -> anyhow::Result<()> {
        let options = self.connect_options().database("postgres");
        let mut conn = PgConnection::connect_with(&options)
            .await
            .context("connecting to the embedded cluster")?;
        let exists: bool =
            sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
                .bind(DATABASE)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            sqlx::query(&format!("create database {DATABASE}"))
                .execute(&mut conn)
                .await?;
        }
        conn.close().await?;
        Ok(())
    }

    /// How to connect: the Unix socket in the cluster directory.
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.dir)
            .username(SUPERUSER)
            .database(DATABASE)
    }

    /// Stops the cluster (fast shutdown: open sessions are ended, data is safe).
    pub async fn stop(self) {
        let dir = self.dir.display().to_string();
        match self
            .run("pg_ctl", &["stop", "-D", &dir, "-m", "fast", "-w"])
            .await
        {
            Ok(()) => tracing::info!(dir, "embedded PostgreSQL stopped"),
            Err(error) => tracing::warn!(
                dir,
                error = format!("{error:#}"),
                "stopping embedded PostgreSQL failed"
            ),
        }
    }

    /// Runs a PostgreSQL tool (or `test`) as the cluster's user.
    async fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = if program == "test" {
            PathBuf::from("test")
        } else {
            self.bin.join(program)
        };
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&path);
                command
            }
            None => Command::new(&path),
        };
        command
            .args(args)
            .current_dir(&self.dir)
            .stdin(std::process::Stdio::null());
        let output = command
            .output()
            .await
            .with_context(|| format!("running {}", path.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            bail!("{program} failed ({}): {}", output.status, stderr.trim())
        }
    }
}
