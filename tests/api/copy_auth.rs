//! Copies from and to registries that demand credentials: HTTP Basic (htpasswd)
//! with stored or per-import credentials, and Docker bearer tokens from a token
//! server, fetched once per scope, exchanged from a refresh token, or anonymous.

use serde_json::{Value, json};

use crate::helpers::{
    TestApp, TestRegistry,
    fault::FaultProxy,
    images, skopeo, spawn_app_with,
    token_server::{TokenConfig, TokenServer},
};

const ALICE: (&str, &str) = ("alice", "wonderland-7");
const REFRESH_TOKEN: &str = "ferry-test-refresh-token-1";

/// Asserts an anonymous manifest GET on `registry` is refused, so the test really
/// exercises authentication.
async fn assert_demands_auth(registry: &TestRegistry) {
    let url = format!("http://{}/v2/any/manifests/v1", registry.host);
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 401, "{} lets anyone in", registry.host);
}

/// `source` + `target1` on a plain target, workers running, an image pushed to
/// `team/app:v1` on the source.
async fn app_with_source(source: TestRegistry) -> (TestApp, images::TestImage) {
    assert_demands_auth(&source).await;
    let app = spawn_app_with(2, source, TestRegistry::start().await, &[]).await;
    app.create_target().await;
    let image = images::image("amd64", 2, 20_000);
    images::push(&app.source_registry(), "team/app", &image, Some("v1")).await;
    (app, image)
}

/// Asserts the import succeeded and the target holds `team/app:v1` intact.
async fn assert_imported(app: &TestApp, (status, body): (u16, &Value), image: &images::TestImage) {
    assert_eq!(status, 200, "{body}");
    skopeo::assert_manifest(&app.target, "team/app:v1", &image.manifest).await;
    skopeo::assert_image(app, "team/app", image).await;
}

fn from_uri(host: &str, credentials: Value) -> Value {
    json!({ "source": { "registryUri": host, "sourceImage": "team/app:v1", "credentials": credentials } })
}

fn login(user: &str, password: &str) -> Value {
    json!({ "username": user, "password": password })
}

#[tokio::test]
async fn copy_from_htpasswd_source_resource_uses_its_stored_credentials() {
    let (app, image) = app_with_source(TestRegistry::start_htpasswd(&[ALICE]).await).await;
    let response = app
        .put_registry_with_login("source1", &app.source.host, ALICE)
        .await;
    assert_eq!(response.status(), 201);

    let (status, body) = app
        .run_import(json!({ "source": { "resourceId": app.registry_path("source1"), "sourceImage": "team/app:v1" } }))
        .await;
    assert_imported(&app, (status, &body), &image).await;
}

#[tokio::test]
async fn copy_from_htpasswd_source_uri_uses_the_import_credentials() {
    let (app, image) = app_with_source(TestRegistry::start_htpasswd(&[ALICE]).await).await;

    let body = from_uri(&app.source.host, login(ALICE.0, ALICE.1));
    let (status, body) = app.run_import(body).await;
    assert_imported(&app, (status, &body), &image).await;
}

#[tokio::test]
async fn copy_with_a_wrong_password_fails_once_and_copies_nothing() {
    let (app, _image) = app_with_source(TestRegistry::start_htpasswd(&[ALICE]).await).await;

    let location = app
        .start_import(from_uri(&app.source.host, login(ALICE.0, "wrong")))
        .await;
    let (status, body) = app.wait(&location).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "SourceRegistryError");
    assert_eq!(
        app.attempts(&location).await,
        1,
        "refused credentials were retried"
    );
    skopeo::assert_no_manifest(&app.target, "team/app:v1").await;
}

/// A token server with alice, her refresh token, and optional anonymous pull.
async fn token_server(anonymous_pull: bool) -> TokenServer {
    let login = (ALICE.0.to_owned(), ALICE.1.to_owned());
    TokenServer::start(TokenConfig {
        users: vec![login],
        refresh_tokens: vec![(REFRESH_TOKEN.to_owned(), ALICE.0.to_owned())],
        anonymous_pull,
    })
    .await
}

/// A token server, and the app with a token-auth source (`source.test`).
async fn app_with_token_source(anonymous_pull: bool) -> (TokenServer, TestApp, images::TestImage) {
    let tokens = token_server(anonymous_pull).await;
    let source = TestRegistry::start_token(tokens.auth("source.test", ALICE.0)).await;
    let (app, image) = app_with_source(source).await;
    (tokens, app, image)
}

#[tokio::test]
async fn copy_between_token_registries_reuses_cached_tokens() {
    let tokens = token_server(false).await;
    let (source, target) = tokio::join!(
        TestRegistry::start_token(tokens.auth("source.test", ALICE.0)),
        TestRegistry::start_token(tokens.auth("target.test", ALICE.0)),
    );
    assert_demands_auth(&target).await;
    let proxy = FaultProxy::start(&source.host).await;
    let app = spawn_app_with(2, source, target, &[&proxy.host]).await;
    let response = app
        .put_registry_with_login("target1", &app.target.host, ALICE)
        .await;
    assert_eq!(response.status(), 201);
    let image = images::image("amd64", 8, 4_000);
    images::push(&app.source_registry(), "team/app", &image, Some("v1")).await;
    let before = tokens.requests().len();

    let body = from_uri(&proxy.host, login(ALICE.0, ALICE.1));
    let (status, body) = app.run_import(body).await;
    // Only ferry's requests count: the checks below fetch tokens of their own.
    let during = tokens.requests().split_off(before);
    let source_requests = proxy.requests().len();
    assert_imported(&app, (status, &body), &image).await;

    let source_tokens = during
        .iter()
        .filter(|r| r.service.as_deref() == Some("source.test"))
        .count();
    let target_tokens: Vec<_> = during
        .iter()
        .filter(|r| r.service.as_deref() == Some("target.test"))
        .collect();
    assert!(
        (1..=2).contains(&source_tokens) && source_requests >= 5 * source_tokens,
        "{source_tokens} source tokens for {source_requests} source requests"
    );
    assert!((1..=2).contains(&target_tokens.len()), "{target_tokens:?}");
    assert!(
        target_tokens.iter().all(|r| r.status == 200
            && r.scopes
                .iter()
                .any(|s| s.starts_with("repository:team/app:") && s.contains("push"))),
        "{target_tokens:?}"
    );

    // A second import with the same credentials reuses the cached tokens.
    let before = tokens.requests().len();
    let mut again = from_uri(&proxy.host, login(ALICE.0, ALICE.1));
    again["targetTags"] = json!(["team/app:v2"]);
    let (status, body) = app.run_import(again).await;
    assert_eq!(status, 200, "{body}");
    let fetched = tokens.requests().split_off(before);
    assert!(fetched.is_empty(), "tokens fetched again: {fetched:?}");
}

#[tokio::test]
async fn copy_with_password_only_credentials_exchanges_a_refresh_token() {
    let (tokens, app, image) = app_with_token_source(false).await;

    let body = from_uri(&app.source.host, json!({ "password": REFRESH_TOKEN }));
    let (status, body) = app.run_import(body).await;
    assert_eq!(status, 200, "{body}");
    skopeo::assert_manifest(&app.target, "team/app:v1", &image.manifest).await;
    let exchanges: Vec<_> = tokens
        .requests_for("source.test")
        .into_iter()
        .filter(|r| r.method == "POST" && r.grant_type.as_deref() == Some("refresh_token"))
        .collect();
    assert!(!exchanges.is_empty(), "{:?}", tokens.requests());
    assert!(exchanges.iter().all(|r| r.status == 200), "{exchanges:?}");
}

#[tokio::test]
async fn copy_from_token_registry_with_anonymous_pull_needs_no_credentials() {
    let (tokens, app, image) = app_with_token_source(true).await;
    let before = tokens.requests().len();

    let (status, body) = app
        .run_import(
            json!({ "source": { "registryUri": app.source.host, "sourceImage": "team/app:v1" } }),
        )
        .await;
    let during = tokens.requests().split_off(before);
    assert_eq!(status, 200, "{body}");
    skopeo::assert_image(&app, "team/app", &image).await;
    assert!(
        !during.is_empty() && during.iter().all(|r| r.user.is_none()),
        "{during:?}"
    );
}

#[tokio::test]
async fn copy_from_token_registry_with_a_wrong_password_fails() {
    let (tokens, app, _image) = app_with_token_source(false).await;

    let location = app
        .start_import(from_uri(&app.source.host, login(ALICE.0, "wrong")))
        .await;
    let (status, body) = app.wait(&location).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "SourceRegistryError");
    assert!(
        tokens
            .requests_for("source.test")
            .iter()
            .any(|r| r.status == 401),
        "the token server never refused"
    );
    skopeo::assert_no_manifest(&app.target, "team/app:v1").await;
}
