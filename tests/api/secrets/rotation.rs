//! Key rotation end to end: values sealed with key A stay usable when B becomes
//! current with A kept as a previous key, `ferry rotate-keys` re-seals every row
//! with B (idempotently, and refusing to touch rows no key opens), and afterwards a
//! replica with B alone works. A value no configured key opens, or one moved to
//! another row, fails its import with `CredentialsUnavailable`.

use serde_json::json;
use uuid::Uuid;

use super::{
    Caller, JWT_SECRET, SOURCE_LOGIN, WRITE_LOGIN, from_resource, from_uri, key_ids, replicas,
    setup, stop, token,
};
use crate::helpers::{TestRegistry, replica::run_ferry, spawn_app, spawn_app_with};

const KEY_A: &str = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a1";
const KEY_B: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b2";

fn id_of(key: &str) -> String {
    ferry::crypto::key_id(&ferry::crypto::parse_key(key).unwrap())
}

/// Both tables' key ids.
async fn all_key_ids(pool: &sqlx::PgPool) -> Vec<String> {
    let mut ids = key_ids(pool, "registry_credentials").await;
    ids.extend(key_ids(pool, "operation_secrets").await);
    ids
}

/// Runs `ferry rotate-keys` with `key` current and `previous`; returns whether it
/// succeeded and its stdout.
async fn rotate_keys(url: &str, key: &str, previous: &str) -> (bool, String) {
    let mut env = vec![("FERRY_SECRET_KEY", key), ("FERRY_ROTATE_BATCH", "1")];
    if !previous.is_empty() {
        env.push(("FERRY_SECRET_KEYS_PREVIOUS", previous));
    }
    let output = run_ferry(url, &["rotate-keys"], &env).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    for secret in [key, previous].into_iter().filter(|k| !k.is_empty()) {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stderr}"
        );
    }
    (output.status.success(), format!("{stdout}\n{stderr}"))
}

#[tokio::test]
async fn keys_rotate_without_losing_a_credential() {
    let (source, target, url, pool) = setup().await;
    let tenant = Uuid::new_v4();
    let (a, b) = (id_of(KEY_A), id_of(KEY_B));
    let (a, b) = (a.as_str(), b.as_str());

    // Key A: two registry logins and a queued import's source login.
    let mut old = replicas(&url, &source, &target, KEY_A)
        .workers(0)
        .start("key-a")
        .await;
    let caller = Caller::new(&old.base, token(JWT_SECRET, tenant));
    caller
        .put_logged_in_pair((&target.host, WRITE_LOGIN), (&source.host, SOURCE_LOGIN))
        .await;
    let first = caller
        .queue(from_uri(&source.host, "team/first:v1", SOURCE_LOGIN))
        .await;
    stop(&mut old).await;
    assert_eq!(all_key_ids(&pool).await, [a, a, a]);

    // B current, A previous: everything sealed with A still opens; new values get B.
    let mut both = replicas(&url, &source, &target, KEY_B)
        .env("FERRY_SECRET_KEYS_PREVIOUS", KEY_A)
        .workers(2)
        .start("key-b-and-a")
        .await;
    let caller = Caller {
        base: both.base.clone(),
        ..caller
    };
    let first = first.replace(&old.base, &both.base);
    let (status, body) = caller.wait(&first).await;
    assert_eq!(status, 200, "{body}");
    let by_resource = caller
        .queue(from_resource(
            &caller,
            "source1",
            "team/app:v1",
            "team/app:v2",
        ))
        .await;
    let (status, body) = caller.wait(&by_resource).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        caller
            .put_registry("source2", &source.host, Some(SOURCE_LOGIN))
            .await,
        201
    );
    stop(&mut both).await;
    assert_eq!(key_ids(&pool, "registry_credentials").await, {
        let mut ids = vec![a, a, b];
        ids.sort();
        ids
    });

    // A replica not yet given B (a rolling deploy) seals one more login with A.
    let mut lagging = replicas(&url, &source, &target, KEY_A)
        .workers(0)
        .start("still-a")
        .await;
    let caller = Caller {
        base: lagging.base.clone(),
        ..caller
    };
    let last = caller
        .queue(from_uri(&source.host, "team/last:v1", SOURCE_LOGIN))
        .await;
    stop(&mut lagging).await;
    assert_eq!(key_ids(&pool, "operation_secrets").await, [a]);

    // Without A, rotation cannot open A's rows: it fails and changes nothing.
    let (ok, output) = rotate_keys(&url, KEY_B, "").await;
    assert!(!ok, "{output}");
    assert!(
        output.contains("registry_credentials: 0 re-sealed, 0 changed meanwhile, 2 unreadable"),
        "{output}"
    );
    assert!(
        output.contains("operation_secrets: 0 re-sealed, 0 changed meanwhile, 1 unreadable"),
        "{output}"
    );
    assert_eq!(
        all_key_ids(&pool)
            .await
            .iter()
            .filter(|id| *id == a)
            .count(),
        3
    );

    // With A as previous key, every row ends up sealed with B; a second run finds nothing.
    let (ok, output) = rotate_keys(&url, KEY_B, KEY_A).await;
    assert!(ok, "{output}");
    assert!(
        output.contains("registry_credentials: 2 re-sealed, 0 changed meanwhile, 0 unreadable"),
        "{output}"
    );
    assert!(
        output.contains("operation_secrets: 1 re-sealed, 0 changed meanwhile, 0 unreadable"),
        "{output}"
    );
    assert_eq!(all_key_ids(&pool).await, [b, b, b, b]);
    let (ok, output) = rotate_keys(&url, KEY_B, KEY_A).await;
    assert!(ok, "{output}");
    assert!(
        output.contains("registry_credentials: 0 re-sealed"),
        "{output}"
    );
    assert!(
        output.contains("operation_secrets: 0 re-sealed"),
        "{output}"
    );

    // B alone now opens everything: the queued import and both stored logins.
    let mut new = replicas(&url, &source, &target, KEY_B)
        .workers(2)
        .start("key-b")
        .await;
    let caller = Caller {
        base: new.base.clone(),
        ..caller
    };
    let last = last.replace(&lagging.base, &new.base);
    let (status, body) = caller.wait(&last).await;
    assert_eq!(status, 200, "{body}");
    for (registry, tag) in [("source1", "team/app:v3"), ("source2", "team/app:v4")] {
        let location = caller
            .queue(from_resource(&caller, registry, "team/app:v1", tag))
            .await;
        let (status, body) = caller.wait(&location).await;
        assert_eq!(status, 200, "{registry}: {body}");
    }
    stop(&mut new).await;
}

#[tokio::test]
async fn a_login_no_key_opens_fails_the_import_for_good() {
    let source = TestRegistry::start_htpasswd(&[SOURCE_LOGIN]).await;
    let app = spawn_app_with(1, source, TestRegistry::start().await, &[]).await;
    app.create_target().await;
    let image = crate::helpers::images::image("amd64", 1, 2048);
    crate::helpers::images::push(&app.source_registry(), "team/app", &image, Some("v1")).await;
    for name in ["goodlogin", "unknownkey", "movedlogin"] {
        let response = app
            .put_registry_with_login(name, &app.source.host, SOURCE_LOGIN)
            .await;
        assert_eq!(response.status(), 201);
    }
    let id = |name: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, Uuid>("select id from registries where name = $1")
                .bind(name)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let (good, unknown, moved) = (
        id("goodlogin").await,
        id("unknownkey").await,
        id("movedlogin").await,
    );
    sqlx::query("update registry_credentials set key_id = '0badc0de' where registry_id = $1")
        .bind(unknown)
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "update registry_credentials m set nonce = g.nonce, ciphertext = g.ciphertext
         from registry_credentials g where m.registry_id = $1 and g.registry_id = $2",
    )
    .bind(moved)
    .bind(good)
    .execute(&app.pool)
    .await
    .unwrap();

    let import = |name: &str, tag: &str| {
        json!({ "source": { "resourceId": app.registry_path(name), "sourceImage": "team/app:v1" },
                "targetTags": [tag] })
    };
    for name in ["unknownkey", "movedlogin"] {
        let location = app
            .start_import(import(name, &format!("team/{name}:v1")))
            .await;
        let (status, body) = app.wait(&location).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(
            body["error"]["code"], "CredentialsUnavailable",
            "{name}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("0badc0de") && !message.contains(SOURCE_LOGIN.1),
            "{message}"
        );
        assert_eq!(
            app.attempts(&location).await,
            1,
            "{name}: retried a permanent failure"
        );
    }
    let (status, body) = app
        .run_import(import("goodlogin", "team/goodlogin:v1"))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_row_changed_after_it_was_read_is_left_to_its_writer() {
    use ferry::crypto::{
        Keyring,
        rotate::rotate,
        store::{self, SealedTable},
    };
    let app = spawn_app(0).await;
    let response = app
        .put_registry_with_login("rotated", &app.source.host, SOURCE_LOGIN)
        .await;
    assert_eq!(response.status(), 201);
    // The test app seals with 0x11…; B is the new current key.
    let keyring = Keyring::new(&[0x22; 32], &[[0x11; 32]]).unwrap();
    let table = SealedTable::RegistryCredentials;
    let read = store::not_sealed_with(&app.pool, table, keyring.current_key_id(), None, 10)
        .await
        .unwrap();
    assert_eq!(read.len(), 1);

    // A replica stores a new login between the read and the write: its value wins.
    let patch =
        json!({ "properties": { "credentials": { "username": "other", "password": "other-pw" } } });
    let path = format!("{}?{}", app.registry_path("rotated"), crate::helpers::API);
    let response = app
        .request(reqwest::Method::PATCH, &path, None, Some(patch))
        .await;
    assert_eq!(response.status(), 200);
    let resealed = keyring.seal(b"{}", read[0].owner.as_bytes()).unwrap();
    assert!(
        !store::reseal(&app.pool, table, &read[0], &resealed)
            .await
            .unwrap()
    );
    let stored = ferry::registries::store::credentials(&app.pool, read[0].owner)
        .await
        .unwrap()
        .unwrap();
    let opened = keyring.open(&stored, read[0].owner.as_bytes()).unwrap();
    let login: serde_json::Value =
        serde_json::from_slice(secrecy::ExposeSecret::expose_secret(&opened)).unwrap();
    assert_eq!(login["username"], "other");

    // The next pass re-seals the writer's value.
    let reports = rotate(&app.pool, &keyring, 10).await.unwrap();
    assert_eq!((reports[0].resealed, reports[0].changed), (1, 0));
    assert_eq!(
        key_ids(&app.pool, "registry_credentials").await,
        [keyring.current_key_id()]
    );
}
