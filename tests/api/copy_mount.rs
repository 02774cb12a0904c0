//! Imports within one registry (another repository of the target itself): they
//! succeed, and blobs are mounted from the source repository, not streamed; on a
//! token registry one token covers both repositories.

use ferry::operations::reference::Digest;
use serde_json::json;

use crate::helpers::{
    TestRegistry,
    fault::{FaultProxy, Seen},
    images, skopeo, spawn_app, spawn_app_with,
    token_server::{TokenConfig, TokenServer},
};

#[tokio::test]
async fn copy_within_the_target_registry_by_uri_succeeds() {
    let app = spawn_app(2).await;
    app.create_target().await;
    let image = images::image("amd64", 2, 50_000);
    images::push(&app.target_registry(), "lib/base", &image, Some("1")).await;

    let (status, body) = app
        .run_import(json!({ "source": { "registryUri": app.target.host, "sourceImage": "lib/base:1" }, "targetTags": ["apps/base:1"] }))
        .await;
    assert_eq!(status, 200, "{body}");
    skopeo::assert_manifest(&app.target, "apps/base:1", &image.manifest).await;
    skopeo::assert_image(&app, "apps/base", &image).await;
}

/// Imports `lib/base:1` to `apps/base:1` within `target`, which ferry reaches
/// through a recording proxy as `target1` (logged in as the registry's login).
/// Checks the copy and returns the proxy's view.
async fn import_within(target: TestRegistry) -> (Vec<Seen>, images::TestImage) {
    let proxy = FaultProxy::start(&target.host).await;
    let app = spawn_app_with(2, TestRegistry::start().await, target, &[&proxy.host]).await;
    let response = match &app.target.login {
        Some((user, password)) => {
            app.put_registry_with_login("target1", &proxy.host, (user, password))
                .await
        }
        None => app.put_registry("target1", &proxy.host).await,
    };
    assert_eq!(response.status(), 201);
    let image = images::image("amd64", 2, 50_000);
    images::push(&app.target_registry(), "lib/base", &image, Some("1")).await;

    let (status, body) = app
        .run_import(json!({ "source": { "resourceId": app.registry_path("target1"), "sourceImage": "lib/base:1" }, "targetTags": ["apps/base:1"] }))
        .await;
    assert_eq!(status, 200, "{body}");
    skopeo::assert_manifest(&app.target, "apps/base:1", &image.manifest).await;
    skopeo::assert_image(&app, "apps/base", &image).await;
    (proxy.requests(), image)
}

/// Asserts every blob of `image` was mounted into `apps/base`, none streamed.
fn assert_mounted(seen: &[Seen], image: &images::TestImage) {
    for (digest, _) in &image.blobs {
        assert!(
            seen.iter()
                .any(|s| is_mount(s, "apps/base", digest, "lib/base")),
            "{digest} was not mounted: {seen:#?}"
        );
        assert!(
            !seen
                .iter()
                .any(|s| s.method == "GET" && s.path.ends_with(digest.as_str())),
            "{digest} was streamed although it could be mounted"
        );
    }
}

#[tokio::test]
async fn copy_within_the_target_registry_mounts_every_blob() {
    let (seen, image) = import_within(TestRegistry::start().await).await;
    assert_mounted(&seen, &image);
}

#[tokio::test]
async fn copy_within_a_token_registry_asks_one_token_for_both_repositories() {
    let tokens = TokenServer::start(TokenConfig {
        users: vec![("alice".into(), "wonderland-7".into())],
        ..TokenConfig::default()
    })
    .await;
    let target = TestRegistry::start_token(tokens.auth("target.test", "alice")).await;
    let (seen, image) = import_within(target).await;
    // distribution refuses a mount without pull rights on `from` (401
    // insufficient_scope naming both scopes), so 201 mounts prove the second scope.
    assert_mounted(&seen, &image);
    let both = tokens.requests().into_iter().any(|r| {
        r.status == 200
            && r.scopes
                .iter()
                .any(|s| s.starts_with("repository:apps/base:") && s.contains("push"))
            && r.scopes
                .iter()
                .any(|s| s.starts_with("repository:lib/base:") && s.contains("pull"))
    });
    assert!(both, "{:#?}", tokens.requests());
}

/// Whether `seen` is a successful `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<from>`.
fn is_mount(seen: &Seen, repo: &str, digest: &Digest, from: &str) -> bool {
    let Some((path, query)) = seen.path.split_once('?') else {
        return false;
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let has = |k: &str, v: &str| params.iter().any(|(pk, pv)| pk == k && pv == v);
    seen.method == "POST"
        && seen.status == 201
        && path.trim_end_matches('/') == format!("/v2/{repo}/blobs/uploads")
        && has("mount", digest.as_str())
        && has("from", from)
}
