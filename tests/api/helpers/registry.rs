//! A real CNCF distribution registry (`docker-registry` from Debian) on a free
//! loopback port, with its storage in a temp dir; killed when dropped.

use std::{net::TcpListener, process::Stdio, time::Duration};

use tokio::process::{Child, Command};

/// A running registry.
pub struct TestRegistry {
    pub host: String,
    _child: Child,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestRegistry {
    /// Starts a registry and waits until `/v2/` answers.
    pub async fn start() -> Self {
        let binary = std::env::var("FERRY_TEST_REGISTRY_BIN")
            .unwrap_or_else(|_| "/usr/bin/docker-registry".into());
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(&binary)
            .arg("serve")
            .arg(&config_path)
            .env("OTEL_TRACES_EXPORTER", "none")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary} (apt-get install docker-registry): {e}"));
        let url = format!("http://{host}/v2/");
        let http = reqwest::Client::new();
        for _ in 0..400 {
            if let Ok(response) = http.get(&url).send().await {
                if response.status().is_success() {
                    return Self {
                        host,
                        _child: child,
                        _dir: dir,
                    };
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("registry on {host} did not become ready");
    }
}
