//! The test harness: the real ferry app on port 0 against a fresh Postgres database
//! and two real distribution registries, a token minter, and one helper method per
//! endpoint.

pub mod access;
pub mod cluster;
pub mod fault;
pub mod gate;
pub mod idp;
pub mod images;
pub mod images_kinds;
pub mod ledger;
pub mod registry;
pub mod replica;
pub mod skopeo;
pub mod token_server;

use std::time::Duration;

use ferry::{
    app::RunningApp,
    config::{
        AuthConfig, DatabaseConfig, EgressConfig, LimitsConfig, LogFormat, SecretsConfig,
        ServeConfig,
    },
    registry_client::{ClientSettings, Registry, RegistryClient},
};
use reqwest::{Method, Response};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

pub use registry::TestRegistry;

pub const API: &str = "api-version=2025-11-01";
pub const SECRET: &str = "test-secret-for-ferry-integration-tests";
const ALL_ROLES: &[&str] = &[
    "ContainerRegistryContributor",
    "ContainerRegistryDataImporter",
    "ContainerRegistryDataReader",
];

/// A running ferry with its own database and two registries.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub pool: PgPool,
    pub tenant: Uuid,
    pub subscription: Uuid,
    pub token: String,
    pub source: TestRegistry,
    pub target: TestRegistry,
    pub app: RunningApp,
    pub client: RegistryClient,
    _dir: tempfile::TempDir,
}

/// A fresh database on the test cluster (TEST_DATABASE_URL, started by .ci/run).
pub async fn fresh_database() -> PgPool {
    let url = std::env::var("TEST_DATABASE_URL")
        .expect("TEST_DATABASE_URL must point at a Postgres server (bash .ci/run starts one)");
    let name = format!("ferry_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(10)
        .connect(&format!("{base}/{name}"))
        .await
        .unwrap();
    ferry::db::MIGRATOR.run(&pool).await.unwrap();
    pool
}

/// A finished process's standard output followed by its standard error.
pub fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The internal address tests let ferry reach: every test registry listens on
/// 127.0.0.1, while 127.0.0.2 and 127.0.0.3 (also loopback) stand for refused
/// internal hosts.
pub const ALLOWED_PRIVATE: &str = "127.0.0.1";

/// A registry client for test set-up that may reach the test registries.
pub fn test_client(insecure: &[String]) -> RegistryClient {
    RegistryClient::with_settings(test_client_settings(insecure)).expect("test registry client")
}

/// Client settings allowing [`ALLOWED_PRIVATE`], with `insecure` over plain HTTP.
pub fn test_client_settings(insecure: &[String]) -> ClientSettings {
    ClientSettings {
        insecure: insecure.to_vec(),
        egress: std::sync::Arc::new(
            ferry::egress::EgressPolicy::default()
                .allowing(&[ALLOWED_PRIVATE])
                .expect("loopback exception"),
        ),
        ..ClientSettings::default()
    }
}

/// The configuration tests run ferry with: port 0, a fixed key, no TLS.
pub fn serve_config(
    data_dir: &std::path::Path,
    insecure: Vec<String>,
    workers: usize,
) -> ServeConfig {
    ServeConfig {
        database: DatabaseConfig {
            database_url: None,
            data_dir: data_dir.to_owned(),
        },
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: None,
        tls_key: None,
        public_url: None,
        auth: AuthConfig {
            jwt_secret: Some(SecretString::from(SECRET)),
            ..AuthConfig::default()
        },
        egress: EgressConfig {
            allowed_private_hosts: vec![ALLOWED_PRIVATE.into()],
            ..EgressConfig::default()
        },
        secrets: SecretsConfig {
            secret_key: Some(SecretString::from("11".repeat(32))),
            ..SecretsConfig::default()
        },
        workers,
        insecure_registries: insecure,
        blob_concurrency: 6,
        host_concurrency: 16,
        cluster_host_concurrency: 32,
        lease: Duration::from_secs(30),
        shutdown_grace: Duration::from_secs(5),
        operation_retention: Duration::from_secs(7 * 86_400),
        no_api: false,
        log_format: LogFormat::Text,
        limits: LimitsConfig::default(),
    }
}

/// Starts ferry with `workers` background workers (0: drive `app.worker` by hand).
pub async fn spawn_app(workers: usize) -> TestApp {
    let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
    spawn_app_with(workers, source, target, &[]).await
}

/// Starts ferry in front of the given registries; `extra_insecure` names more
/// `host:port`s ferry reaches over plain HTTP (fault proxies).
pub async fn spawn_app_with(
    workers: usize,
    source: TestRegistry,
    target: TestRegistry,
    extra_insecure: &[&str],
) -> TestApp {
    start_app(
        workers,
        source,
        target,
        extra_insecure,
        |_| {},
        mint_all_roles,
    )
    .await
}

/// Starts ferry in front of the registries with `configure` applied to the test
/// config; `token` makes the app's default token for its tenant.
pub async fn start_app(
    workers: usize,
    source: TestRegistry,
    target: TestRegistry,
    extra_insecure: &[&str],
    configure: impl FnOnce(&mut ServeConfig),
    token: impl FnOnce(Uuid) -> String,
) -> TestApp {
    let pool = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut insecure = vec![source.host.clone(), target.host.clone()];
    insecure.extend(extra_insecure.iter().map(|h| h.to_string()));
    let mut config = serve_config(dir.path(), insecure, workers);
    configure(&mut config);
    let app = RunningApp::start(&config, pool.clone()).await.unwrap();
    let tenant = Uuid::new_v4();
    let client = test_client(&config.insecure_registries);
    TestApp {
        base: format!("http://{}", app.addr),
        http: reqwest::Client::new(),
        pool,
        tenant,
        subscription: Uuid::new_v4(),
        token: token(tenant),
        source,
        target,
        app,
        client,
        _dir: dir,
    }
}

/// The operation id at the end of a poll URL.
pub fn operation_id(location: &str) -> Uuid {
    let tail = location.rsplit('/').next().unwrap();
    Uuid::parse_str(tail.split('?').next().unwrap()).unwrap()
}

/// A token for `tenant` with `roles`, valid for an hour.
pub fn mint(tenant: Uuid, roles: &[String]) -> String {
    ferry::auth::mint_token(
        &SecretString::from(SECRET),
        tenant,
        roles,
        Duration::from_secs(3600),
        "tester",
    )
    .unwrap()
}

/// A token for `tenant` carrying every role ferry knows.
pub fn mint_all_roles(tenant: Uuid) -> String {
    let roles: Vec<String> = ALL_ROLES.iter().map(|r| r.to_string()).collect();
    mint(tenant, &roles)
}

impl TestApp {
    pub fn registry_path(&self, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/rg1/providers/Microsoft.ContainerRegistry/registries/{name}",
            self.subscription
        )
    }

    /// Sends a request with the default token (or `token`) and an optional JSON body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, url);
        if let Some(token) = token.or(Some(&self.token)).filter(|t| !t.is_empty()) {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// PUT a registry bound to `login_server`.
    pub async fn put_registry(&self, name: &str, login_server: &str) -> Response {
        self.put_registry_properties(name, json!({ "loginServer": login_server }))
            .await
    }

    /// PUT a registry bound to `login_server` with write-only credentials for it.
    pub async fn put_registry_with_login(
        &self,
        name: &str,
        login_server: &str,
        (username, password): (&str, &str),
    ) -> Response {
        let credentials = json!({ "username": username, "password": password });
        self.put_registry_properties(
            name,
            json!({ "loginServer": login_server, "credentials": credentials }),
        )
        .await
    }

    /// PUT a registry with the given `properties` (westus, Standard).
    pub async fn put_registry_properties(&self, name: &str, properties: Value) -> Response {
        let body = json!({ "location": "westus", "sku": { "name": "Standard" }, "properties": properties });
        self.request(
            Method::PUT,
            &format!("{}?{API}", self.registry_path(name)),
            None,
            Some(body),
        )
        .await
    }

    /// Creates the usual target registry `target1` bound to the target registry.
    pub async fn create_target(&self) {
        let response = self
            .put_registry("target1", &self.target.host.clone())
            .await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }

    /// POST importImage on `registry` with `body`.
    pub async fn import(&self, registry: &str, body: Value) -> Response {
        self.request(
            Method::POST,
            &format!("{}/importImage?{API}", self.registry_path(registry)),
            None,
            Some(body),
        )
        .await
    }

    /// Imports and returns the absolute poll URL (asserting the 202 contract).
    pub async fn start_import(&self, body: Value) -> String {
        let response = self.import("target1", body).await;
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
        assert_eq!(response.headers()["retry-after"], "1");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with(&self.base), "{location}");
        assert!(response.bytes().await.unwrap().is_empty());
        location
    }

    /// GETs an absolute poll URL.
    pub async fn poll(&self, location: &str) -> Response {
        self.http
            .get(location)
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    /// Imports into `target1` and waits for the outcome (needs running workers).
    pub async fn run_import(&self, body: Value) -> (u16, Value) {
        let location = self.start_import(body).await;
        self.wait(&location).await
    }

    /// How many times workers claimed the operation behind a poll URL.
    pub async fn attempts(&self, location: &str) -> i32 {
        sqlx::query_scalar("select attempts from operations where id = $1")
            .bind(operation_id(location))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Polls until the operation leaves 202; returns the final response.
    pub async fn wait(&self, location: &str) -> (u16, Value) {
        for _ in 0..600 {
            let response = self.poll(location).await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            if status != 202 {
                return (status, body);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("operation did not finish: {location}");
    }

    /// ferry's client on the source registry, logged in if it needs a login.
    pub fn source_registry(&self) -> Registry {
        self.client
            .registry(&self.source.host, self.source.credentials())
    }

    /// ferry's client on the target registry, logged in if it needs a login.
    pub fn target_registry(&self) -> Registry {
        self.client
            .registry(&self.target.host, self.target.credentials())
    }

    /// Number of operations stored.
    pub async fn operation_count(&self) -> i64 {
        sqlx::query_scalar("select count(*) from operations")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}
