//! Imports within one registry (another repository of the target itself): they
//! succeed, and blobs are mounted from the source repository, not streamed.

use ferry::operations::reference::Digest;
use serde_json::json;

use crate::helpers::{
    TestRegistry,
    fault::{FaultProxy, Seen},
    images, skopeo, spawn_app, spawn_app_with,
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

#[tokio::test]
async fn copy_within_the_target_registry_mounts_every_blob() {
    let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
    let proxy = FaultProxy::start(&target.host).await;
    let app = spawn_app_with(2, source, target, &[&proxy.host]).await;
    assert_eq!(app.put_registry("target1", &proxy.host).await.status(), 201);
    let image = images::image("amd64", 2, 50_000);
    images::push(&app.target_registry(), "lib/base", &image, Some("1")).await;

    let (status, body) = app
        .run_import(json!({ "source": { "resourceId": app.registry_path("target1"), "sourceImage": "lib/base:1" }, "targetTags": ["apps/base:1"] }))
        .await;
    assert_eq!(status, 200, "{body}");
    skopeo::assert_manifest(&app.target, "apps/base:1", &image.manifest).await;
    skopeo::assert_image(&app, "apps/base", &image).await;

    let seen = proxy.requests();
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
