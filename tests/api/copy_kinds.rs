//! The copy engine carries every kind of manifest byte-for-byte: multi-platform OCI
//! indexes, Docker schema2 images and manifest lists, Helm charts, OCI artifacts,
//! and large multi-layer images; an index over ferry's manifest limit is refused.

use serde_json::{Value, json};

use crate::helpers::{
    TestApp, images,
    images::TestImage,
    images_kinds::{self, MultiArch},
    skopeo, spawn_app,
};

/// An import of `source_image` from the app's source registry into `target_tag`.
fn body(app: &TestApp, source_image: &str, target_tag: &str) -> Value {
    json!({ "source": { "registryUri": app.source.host, "sourceImage": source_image }, "targetTags": [target_tag] })
}

/// Pushes `image` as `repo:tag`, imports it as `copied/<repo>:tag`, and checks the
/// target tag and the image by digest.
async fn copies_single(image: &TestImage, repo: &str) {
    let app = spawn_app(2).await;
    app.create_target().await;
    images::push(&app.source_registry(), repo, image, Some("v1")).await;

    let copied = format!("copied/{repo}");
    let (status, body) = app
        .run_import(body(&app, &format!("{repo}:v1"), &format!("{copied}:v1")))
        .await;
    assert_eq!(status, 200, "{body}");
    skopeo::assert_manifest(&app.target, &format!("{copied}:v1"), &image.manifest).await;
    skopeo::assert_image(&app, &copied, image).await;
}

/// Pushes a multi-platform index, imports it, and checks the index and every child.
async fn copies_multi_arch(multi: &MultiArch) {
    let app = spawn_app(2).await;
    app.create_target().await;
    images_kinds::push_multi_arch(&app.source_registry(), "multi", multi, "1.0").await;

    let (status, body) = app
        .run_import(body(&app, "multi:1.0", "mirror/multi:1.0"))
        .await;
    assert_eq!(status, 200, "{body}");
    skopeo::assert_manifest(&app.target, "mirror/multi:1.0", &multi.index).await;
    for child in &multi.children {
        skopeo::assert_image(&app, "mirror/multi", child).await;
    }
}

#[tokio::test]
async fn copy_four_platform_oci_index_keeps_every_digest() {
    let multi = images_kinds::multi_arch(&images::OCI);
    let index: Value = serde_json::from_slice(&multi.index.bytes).unwrap();
    assert_eq!(index["manifests"][2]["platform"]["variant"], "v7");
    copies_multi_arch(&multi).await;
}

#[tokio::test]
async fn copy_docker_manifest_list_keeps_every_digest() {
    let multi = images_kinds::multi_arch(&images::DOCKER);
    assert_eq!(multi.index.media_type, images::DOCKER_LIST);
    copies_multi_arch(&multi).await;
}

#[tokio::test]
async fn copy_docker_schema2_image_keeps_its_digest() {
    let image = images_kinds::docker_image();
    assert_eq!(image.manifest.media_type, images::DOCKER.manifest);
    copies_single(&image, "docker").await;
}

#[tokio::test]
async fn copy_helm_chart_keeps_its_digest() {
    copies_single(&images_kinds::helm_chart(), "charts/demo").await;
}

#[tokio::test]
async fn copy_artifact_with_artifact_type_and_empty_config_keeps_its_digest() {
    let artifact = images_kinds::artifact(
        "application/vnd.ferry.test.v1",
        images::random_bytes(4_000),
        json!({}),
    );
    copies_single(&artifact, "artifacts/thing").await;
}

#[tokio::test]
async fn copy_index_over_the_manifest_limit_fails_with_too_many_manifests() {
    let app = spawn_app(2).await;
    app.create_target().await;
    let (index, children) = images_kinds::wide_index(60);
    images_kinds::push_wide(&app.source_registry(), "wide", &index, &children, "v1").await;

    let (status, body) = app.run_import(body(&app, "wide:v1", "wide:v1")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "TooManyManifests");
    skopeo::assert_no_manifest(&app.target, "wide:v1").await;
    skopeo::assert_no_manifest(&app.target, &format!("wide@{}", index.digest)).await;
}

#[tokio::test]
async fn copy_200_mib_image_keeps_its_digest() {
    let image = images::image("amd64", 4, 50 << 20);
    copies_single(&image, "big").await;
}
