//! Secrets stay secret: source and registry passwords, the JWT secret, bearer
//! tokens and the secret key never show in an API response, a log line (real
//! `ferry serve` processes logging JSON at trace level) or any database column,
//! in plain text, hex or base64. Rotation tests are in `secrets/rotation.rs`.

mod caller;
mod rotation;

use caller::{Caller, from_resource, from_uri};

use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{
    API, TestRegistry, cluster, images,
    replica::{Replica, ReplicaSpec},
};

const SOURCE_LOGIN: (&str, &str) = ("importer", "src-pw-Zq81-must-stay-secret");
const WRONG_PASSWORD: &str = "wrong-pw-Kx47-must-stay-secret";
const WRITE_LOGIN: (&str, &str) = ("pusher", "tgt-pw-Vb29-must-stay-secret");
const JWT_SECRET: &str = "jwt-secret-Hn63-must-stay-secret-0123456789";
const SECRET_KEY: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e70001";
const ROLES: [&str; 3] = [
    "ContainerRegistryContributor",
    "ContainerRegistryDataImporter",
    "ContainerRegistryDataReader",
];

/// A token for `tenant` with every role, signed with `secret`.
fn token(secret: &str, tenant: Uuid) -> String {
    let roles: Vec<String> = ROLES.iter().map(|r| r.to_string()).collect();
    ferry::auth::mint_token(
        &SecretString::from(secret.to_owned()),
        tenant,
        &roles,
        Duration::from_secs(3600),
        "secrets-tester",
    )
    .unwrap()
}

/// Every spelling of `secret` a leak could take: plain, hex, base64.
fn spellings(secret: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    vec![
        secret.to_owned(),
        hex::encode(secret),
        STANDARD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
    ]
}

/// The secrets of a test, by name, in every spelling; HTTP Basic headers too.
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn new(named: &[(&str, &str)]) -> Self {
        let mut all = Vec::new();
        for (name, secret) in named {
            for spelling in spellings(secret) {
                all.push((name.to_string(), spelling));
            }
        }
        Self(all)
    }

    /// Adds the Basic `Authorization` value of a login.
    fn with_basic(mut self, name: &str, (user, password): (&str, &str)) -> Self {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.0.push((format!("{name} (Basic)"), basic));
        self
    }

    /// Panics, naming the secret, if `text` (from `place`) holds any of them.
    fn assert_absent(&self, place: &str, text: &str) {
        for (name, spelling) in &self.0 {
            if let Some(at) = text.find(spelling.as_str()) {
                let start = at.saturating_sub(200);
                let end = (at + spelling.len() + 200).min(text.len());
                let context = String::from_utf8_lossy(&text.as_bytes()[start..end]);
                panic!("{name} leaked into {place}: …{context}…");
            }
        }
    }
}

/// Every row of every table, as JSON text (bytea as `\x` hex), one per line.
async fn dump(pool: &PgPool) -> String {
    let tables: Vec<String> = sqlx::query_scalar(
        "select table_name::text from information_schema.tables
         where table_schema = 'public' and table_type = 'BASE TABLE' order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(
        tables.iter().any(|t| t == "registry_credentials")
            && tables.iter().any(|t| t == "operation_secrets"),
        "{tables:?}"
    );
    let mut text = String::new();
    for table in tables {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!(r#"select row_to_json(t)::text from "{table}" t"#))
                .fetch_all(pool)
                .await
                .unwrap();
        for row in rows {
            text.push_str(&format!("{table}: {row}\n"));
        }
    }
    text
}

/// The key ids in `table`'s `key_id` column, one per row.
async fn key_ids(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(&format!("select key_id from {table} order by 1"))
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Two registries demanding HTTP Basic (a source holding `team/app:v1` and a
/// target), a fresh database, and the replica settings for them.
async fn setup() -> (TestRegistry, TestRegistry, String, PgPool) {
    let (source, target) = tokio::join!(
        TestRegistry::start_htpasswd(&[SOURCE_LOGIN]),
        TestRegistry::start_htpasswd(&[WRITE_LOGIN])
    );
    let client = crate::helpers::test_client(&[source.host.clone(), target.host.clone()]);
    let image = images::image("amd64", 1, 4096);
    let registry = client.registry(&source.host, source.credentials());
    images::push(&registry, "team/app", &image, Some("v1")).await;
    let (url, pool) = cluster::shared_database().await;
    (source, target, url, pool)
}

/// Replicas of `url` reaching both registries, with this module's JWT secret and
/// `key`, logging JSON at trace level.
fn replicas(url: &str, source: &TestRegistry, target: &TestRegistry, key: &str) -> ReplicaSpec {
    ReplicaSpec::new(url, &[&source.host, &target.host])
        .env("FERRY_JWT_SECRET", JWT_SECRET)
        .env("FERRY_SECRET_KEY", key)
        .env("FERRY_LOG_FORMAT", "json")
        .env("RUST_LOG", "trace")
}

/// Stops a replica with SIGTERM and waits for a clean exit.
async fn stop(replica: &mut Replica) {
    replica.sigterm();
    let status = replica.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{} exited with {status}", replica.name);
}

#[tokio::test]
async fn no_secret_reaches_a_response_a_log_line_or_a_database_column() {
    let (source, target, url, pool) = setup().await;
    let spec = replicas(&url, &source, &target, SECRET_KEY);
    let mut api = spec.clone().workers(0).start("api").await;
    let tenant = Uuid::new_v4();
    let caller = Caller::new(&api.base, token(JWT_SECRET, tenant));
    let secrets = Secrets::new(&[
        ("the source password", SOURCE_LOGIN.1),
        ("the wrong source password", WRONG_PASSWORD),
        ("the registry write password", WRITE_LOGIN.1),
        ("the JWT secret", JWT_SECRET),
        ("the bearer token", &caller.token),
        (
            "the bearer token's signature",
            caller.token.rsplit('.').next().unwrap(),
        ),
        ("the secret key", SECRET_KEY),
    ])
    .with_basic("the source login", SOURCE_LOGIN)
    .with_basic("the write login", WRITE_LOGIN);

    // Registries with write-only logins, read back every way the API offers.
    caller
        .put_logged_in_pair((&target.host, WRITE_LOGIN), (&source.host, SOURCE_LOGIN))
        .await;
    let patch = json!({ "properties": { "credentials": { "username": WRITE_LOGIN.0, "password": WRITE_LOGIN.1 } } });
    let target1 = format!("{}?{API}", caller.registry_path("target1"));
    assert_eq!(
        caller.send(Method::PATCH, &target1, Some(patch)).await.0,
        200
    );
    let (status, _, registry) = caller.send(Method::GET, &target1, None).await;
    assert_eq!(status, 200, "{registry}");
    assert_eq!(registry["properties"]["loginServer"], target.host.as_str());
    let sub = caller.subscription;
    for list in [
        format!(
            "/subscriptions/{sub}/resourceGroups/rg1/providers/Microsoft.ContainerRegistry/registries?{API}"
        ),
        format!("/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/registries?{API}"),
    ] {
        let (status, _, body) = caller.send(Method::GET, &list, None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["value"].as_array().unwrap().len(), 2, "{body}");
    }

    // Requests ferry refuses, each carrying a secret where it does not belong.
    let mut bad = from_uri(&source.host, "team/app:v1", SOURCE_LOGIN);
    bad["source"]["credentials"]["passwd"] = json!(SOURCE_LOGIN.1);
    assert_eq!(caller.import(bad).await.0, 400);
    let mut bad = from_uri(&source.host, "team/app:v1", SOURCE_LOGIN);
    bad["source"]["credentials"] = json!(SOURCE_LOGIN.1);
    assert_eq!(caller.import(bad).await.0, 400);
    let mut bad = from_uri(&source.host, "team/app:v1", SOURCE_LOGIN);
    bad["source"]["credentials"]["username"] = json!([SOURCE_LOGIN.1]);
    assert_eq!(caller.import(bad).await.0, 400);
    let forged = token("a-different-secret-that-is-long-enough-42", tenant);
    let (status, _, body) = caller.send_as(&forged, Method::GET, &target1, None).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = caller
        .send_as(JWT_SECRET, Method::GET, &target1, None)
        .await;
    assert_eq!(status, 401, "{body}");

    // Imports queued while no worker runs: their source logins sit sealed.
    let refused = caller
        .queue(from_uri(
            &source.host,
            "team/refused:v1",
            (SOURCE_LOGIN.0, WRONG_PASSWORD),
        ))
        .await;
    let by_uri = caller
        .queue(from_uri(&source.host, "team/app:v1", SOURCE_LOGIN))
        .await;
    let by_resource = caller
        .queue(from_resource(
            &caller,
            "source1",
            "team/app:v1",
            "team/app:v2",
        ))
        .await;
    assert_eq!(key_ids(&pool, "operation_secrets").await.len(), 2);
    let queued = dump(&pool).await;
    assert!(queued.contains(&target.host), "the dump is empty: {queued}");
    secrets.assert_absent("the database while imports were queued", &queued);

    // A worker replica runs them.
    let mut worker = spec
        .clone()
        .workers(2)
        .env("FERRY_NO_API", "true")
        .spawn("worker");
    let (status, body) = caller.wait(&refused).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "SourceRegistryError", "{body}");
    for location in [&by_uri, &by_resource] {
        let (status, body) = caller.wait(location).await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(
        key_ids(&pool, "operation_secrets").await.is_empty(),
        "source logins outlived their imports"
    );

    stop(&mut worker).await;
    stop(&mut api).await;
    secrets.assert_absent("API responses", &caller.transcript());
    secrets.assert_absent("the database after the imports", &dump(&pool).await);
    for replica in [&api, &worker] {
        let log = replica.full_log();
        assert!(
            log.lines().all(|line| line.starts_with('{')),
            "not JSON lines: {}",
            &log[..log.len().min(2000)]
        );
        assert!(log.lines().count() > 20, "{log}");
        secrets.assert_absent(&format!("the log of {}", replica.name), &log);
    }
    assert!(worker.full_log().contains("import finished"));
}
