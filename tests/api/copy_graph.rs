//! Which parts of a manifest graph an import carries: referrers (an SBOM attached
//! with `subject`) come along unless `copyReferrers` is false, and `platforms`
//! narrows an index to the named platforms in a rewritten index.

use std::collections::BTreeMap;

use ferry::operations::reference::Digest;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, images,
    images_kinds::{self, MultiArch},
    skopeo, spawn_app,
};

/// The manifest on the target at `reference`, parsed, with its digest.
async fn target_json(app: &TestApp, reference: &str) -> Option<(Value, Digest)> {
    let bytes = skopeo::raw_manifest(&app.target, reference).await?;
    let digest = Digest::of(&bytes);
    Some((serde_json::from_slice(&bytes).unwrap(), digest))
}

/// An app with an image and its SBOM referrer in `app:v1` on the source.
async fn app_with_sbom() -> (TestApp, images::TestImage, images::TestImage) {
    let app = spawn_app(2).await;
    app.create_target().await;
    let image = images::image("amd64", 2, 10_000);
    let sbom = images_kinds::push_with_sbom(&app.source_registry(), "app", &image, "v1").await;
    (app, image, sbom)
}

#[tokio::test]
async fn copy_carries_referrers_and_maintains_the_fallback_tag() {
    let (app, image, sbom) = app_with_sbom().await;

    let (status, body) = app
        .run_import(json!({ "source": { "registryUri": app.source.host, "sourceImage": "app:v1" }, "targetTags": ["mirror/app:v1"] }))
        .await;
    assert_eq!(status, 200, "{body}");
    skopeo::assert_manifest(&app.target, "mirror/app:v1", &image.manifest).await;
    skopeo::assert_image(&app, "mirror/app", &image).await;
    skopeo::assert_image(&app, "mirror/app", &sbom).await;
    let tag = images_kinds::fallback_tag(&image.manifest.digest);
    let (fallback, _) = target_json(&app, &format!("mirror/app:{tag}"))
        .await
        .unwrap_or_else(|| panic!("no fallback tag {tag} on the target"));
    assert_eq!(fallback["mediaType"], images::OCI_INDEX);
    let entries = fallback["manifests"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|d| d["digest"] == sbom.manifest.digest.as_str()
                && d["artifactType"] == "application/spdx+json"),
        "{fallback}"
    );
}

#[tokio::test]
async fn copy_referrers_false_leaves_referrers_behind() {
    let (app, image, sbom) = app_with_sbom().await;

    let (status, body) = app
        .run_import(json!({ "source": { "registryUri": app.source.host, "sourceImage": "app:v1" }, "targetTags": ["mirror/app:v1"], "copyReferrers": false }))
        .await;
    assert_eq!(status, 200, "{body}");
    skopeo::assert_image(&app, "mirror/app", &image).await;
    skopeo::assert_no_manifest(&app.target, &format!("mirror/app@{}", sbom.manifest.digest)).await;
    let tag = images_kinds::fallback_tag(&image.manifest.digest);
    skopeo::assert_no_manifest(&app.target, &format!("mirror/app:{tag}")).await;
}

/// An app with the four-platform index in `multi:1.0` on the source.
async fn app_with_multi_arch() -> (TestApp, MultiArch) {
    let app = spawn_app(2).await;
    app.create_target().await;
    let multi = images_kinds::multi_arch(&images::OCI);
    images_kinds::push_multi_arch(&app.source_registry(), "multi", &multi, "1.0").await;
    (app, multi)
}

#[tokio::test]
async fn copy_platform_filter_rewrites_the_index_to_the_chosen_children() {
    let (app, multi) = app_with_multi_arch().await;
    let chosen = ["linux/amd64", "linux/arm64"];

    let (status, body) = app
        .run_import(json!({ "source": { "registryUri": app.source.host, "sourceImage": "multi:1.0" }, "platforms": chosen }))
        .await;
    assert_eq!(status, 200, "{body}");
    let (index, digest) = target_json(&app, "multi:1.0").await.expect("target tag");
    assert_ne!(digest, multi.index.digest, "the index was not rewritten");
    assert_eq!(index["mediaType"], images::OCI_INDEX);
    let listed: BTreeMap<String, Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["digest"].as_str().unwrap().to_owned(),
                d["platform"].clone(),
            )
        })
        .collect();
    let expected: BTreeMap<String, Value> = chosen
        .iter()
        .map(|p| {
            let digest = multi.child(p).manifest.digest.to_string();
            (digest, images_kinds::platform(p))
        })
        .collect();
    assert_eq!(listed, expected, "{index}");
    for platform in chosen {
        skopeo::assert_image(&app, "multi", multi.child(platform)).await;
    }
    for platform in ["linux/arm/v7", "linux/s390x"] {
        let child = &multi.child(platform).manifest;
        skopeo::assert_no_manifest(&app.target, &format!("multi@{}", child.digest)).await;
    }
}

#[tokio::test]
async fn copy_platform_filter_matching_nothing_fails_with_platform_not_found() {
    let (app, _multi) = app_with_multi_arch().await;

    let (status, body) = app
        .run_import(json!({ "source": { "registryUri": app.source.host, "sourceImage": "multi:1.0" }, "platforms": ["windows/amd64"] }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "PlatformNotFound");
    skopeo::assert_no_manifest(&app.target, "multi:1.0").await;
}
