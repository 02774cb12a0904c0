//! Repeated importImage POSTs: the same client key from the same principal within
//! 24 hours gets the original operation's Location and queues nothing; another
//! principal's same key is its own operation.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{API, SECRET, TestApp, spawn_app};

const ROLES: &[&str] = &[
    "ContainerRegistryContributor",
    "ContainerRegistryDataImporter",
    "ContainerRegistryDataReader",
];

/// POSTs importImage on `target1` with `headers`; asserts 202 and returns Location.
async fn post(app: &TestApp, token: &str, headers: &[(&str, &str)], body: &Value) -> String {
    let mut request = app
        .http
        .post(format!(
            "{}{}/importImage?{API}",
            app.base,
            app.registry_path("target1")
        ))
        .bearer_auth(token)
        .json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    response.headers()["location"].to_str().unwrap().to_owned()
}

fn body(tag: &str) -> Value {
    json!({
        "source": { "registryUri": "127.0.0.1:9", "sourceImage": "app:v1" },
        "targetTags": [format!("app:{tag}")],
    })
}

fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn a_repeated_post_with_the_same_key_returns_the_original_operation() {
    // No workers: the operations stay queued, so nothing but the key matters.
    let app = spawn_app(0).await;
    app.create_target().await;
    let token = app.token.clone();
    for (round, header) in [
        "Repeatability-Request-ID",
        "Idempotency-Key",
        "x-ms-client-request-id",
    ]
    .into_iter()
    .enumerate()
    {
        let key = key();
        let before = app.operation_count().await;
        let first = post(&app, &token, &[(header, &key)], &body("v1")).await;
        let again = post(&app, &token, &[(header, &key)], &body("v1")).await;
        assert_eq!(again, first, "{header}");
        assert_eq!(app.operation_count().await, before + 1, "{header}");
        // A different key is a different request.
        let other = post(&app, &token, &[(header, &self::key())], &body("v1")).await;
        assert_ne!(other, first, "{header}");
        assert_eq!(app.operation_count().await, before + 2, "round {round}");
    }
    // Without a key, every POST is new.
    let before = app.operation_count().await;
    let one = post(&app, &token, &[], &body("v1")).await;
    let two = post(&app, &token, &[], &body("v1")).await;
    assert_ne!(one, two);
    assert_eq!(app.operation_count().await, before + 2);
}

#[tokio::test]
async fn the_first_key_header_present_is_the_key() {
    let app = spawn_app(0).await;
    app.create_target().await;
    let token = app.token.clone();
    let (repeatability, idempotency) = (key(), key());
    let first = post(
        &app,
        &token,
        &[
            ("x-ms-client-request-id", &key()),
            ("Idempotency-Key", &idempotency),
            ("Repeatability-Request-ID", &repeatability),
        ],
        &body("v1"),
    )
    .await;
    // Same Repeatability-Request-ID, other lower-ranked keys: the same request.
    let again = post(
        &app,
        &token,
        &[
            ("Repeatability-Request-ID", &repeatability),
            ("Idempotency-Key", &key()),
        ],
        &body("v1"),
    )
    .await;
    assert_eq!(again, first);
    // The Idempotency-Key of the first POST was not its key.
    let other = post(
        &app,
        &token,
        &[("Idempotency-Key", &idempotency)],
        &body("v1"),
    )
    .await;
    assert_ne!(other, first);
    assert_eq!(app.operation_count().await, 2);
}

#[tokio::test]
async fn the_same_key_from_another_principal_or_a_day_later_is_a_new_operation() {
    let app = spawn_app(0).await;
    app.create_target().await;
    let roles: Vec<String> = ROLES.iter().map(|r| r.to_string()).collect();
    let someone_else = ferry::auth::mint_token(
        &SecretString::from(SECRET),
        app.tenant,
        &roles,
        Duration::from_secs(3600),
        "someone-else",
    )
    .unwrap();
    let key = key();
    let mine = post(&app, &app.token, &[("Idempotency-Key", &key)], &body("v1")).await;
    let theirs = post(
        &app,
        &someone_else,
        &[("Idempotency-Key", &key)],
        &body("v1"),
    )
    .await;
    assert_ne!(mine, theirs);
    assert_eq!(app.operation_count().await, 2);
    // Each principal's repeat still finds its own.
    let mine_again = post(&app, &app.token, &[("Idempotency-Key", &key)], &body("v1")).await;
    let theirs_again = post(
        &app,
        &someone_else,
        &[("Idempotency-Key", &key)],
        &body("v1"),
    )
    .await;
    assert_eq!((mine_again, theirs_again), (mine.clone(), theirs));
    assert_eq!(app.operation_count().await, 2);

    // Past the 24-hour window the key is free again.
    sqlx::query("update operations set created_at = created_at - interval '25 hours'")
        .execute(&app.pool)
        .await
        .unwrap();
    let later = post(&app, &app.token, &[("Idempotency-Key", &key)], &body("v1")).await;
    assert_ne!(later, mine);
    assert_eq!(app.operation_count().await, 3);
}
