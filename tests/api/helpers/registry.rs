//! A real CNCF distribution registry (`docker-registry` from Debian) on a free
//! loopback port, with its storage in a temp dir; killed when dropped. It can
//! demand no authentication, HTTP Basic against an htpasswd file, or bearer tokens
//! from a token server (see `token_server`).

use std::{fmt::Write as _, net::TcpListener, path::PathBuf, process::Stdio, time::Duration};

use ferry::operations::spec::Credentials;
use secrecy::SecretString;
use tokio::process::{Child, Command};

/// What distribution's `auth: token:` section needs, plus the login pushers use.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub root_cert: PathBuf,
    pub login: (String, String),
}

/// A running registry.
pub struct TestRegistry {
    pub host: String,
    /// The login test code pushes and inspects with (None: anonymous).
    pub login: Option<(String, String)>,
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
    /// Starts an anonymous registry and waits until `/v2/` answers.
    pub async fn start() -> Self {
        Self::spawn(None, |_| String::new()).await
    }

    /// Starts a registry that demands HTTP Basic for `users` (bcrypt htpasswd);
    /// pushes use the first user.
    pub async fn start_htpasswd(users: &[(&str, &str)]) -> Self {
        let login = users.first().map(|(u, p)| (u.to_string(), p.to_string()));
        let mut htpasswd = String::new();
        for (user, password) in users {
            // Cost 4 (the minimum): hashing speed is not what these tests are about.
            let hash = bcrypt::hash(password, 4).unwrap();
            writeln!(htpasswd, "{user}:{hash}").unwrap();
        }
        Self::spawn(login, |dir| {
            let path = dir.join("htpasswd");
            std::fs::write(&path, htpasswd).unwrap();
            format!(
                "auth:\n  htpasswd:\n    realm: ferry-test\n    path: {}\n",
                path.display()
            )
        })
        .await
    }

    /// Starts a registry that accepts only bearer tokens signed by the token
    /// server's certificate, issued for `auth.service`.
    pub async fn start_token(auth: TokenAuth) -> Self {
        let section = format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            auth.realm,
            auth.service,
            auth.issuer,
            auth.root_cert.display()
        );
        Self::spawn(Some(auth.login), |_| section).await
    }

    /// The login as ferry's client takes it.
    pub fn credentials(&self) -> Option<Credentials> {
        self.login.as_ref().map(|(user, password)| Credentials {
            username: Some(user.clone()),
            password: SecretString::from(password.clone()),
        })
    }

    /// Writes the config (`auth` gets the registry's temp dir and returns the
    /// `auth:` section), starts the binary and polls `/v2/` until it answers 200
    /// or 401.
    async fn spawn(
        login: Option<(String, String)>,
        auth: impl FnOnce(&std::path::Path) -> String,
    ) -> Self {
        let binary = std::env::var("FERRY_TEST_REGISTRY_BIN")
            .unwrap_or_else(|_| "/usr/bin/docker-registry".into());
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path());
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{}",
            dir.path().join("data").display(),
            auth,
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
                if response.status().is_success() || response.status() == 401 {
                    return Self {
                        host,
                        login,
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
