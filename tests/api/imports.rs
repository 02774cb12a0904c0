//! importImage end to end: real copies between two real registries.

use ferry::operations::reference::{Digest, Repository};
use serde_json::json;

use crate::helpers::{images, spawn_app};

fn repo(name: &str) -> Repository {
    name.parse().unwrap()
}

/// Asserts the target holds `manifest` under `reference` and every blob of `image`.
async fn assert_copied(
    app: &crate::helpers::TestApp,
    repository: &str,
    reference: &str,
    image: &images::TestImage,
) {
    let target = app.target_registry();
    let got = target
        .get_manifest(&repo(repository), reference)
        .await
        .unwrap();
    assert_eq!(got.digest, image.manifest.digest);
    assert_eq!(got.bytes, image.manifest.bytes);
    for (digest, _) in &image.blobs {
        assert!(
            target.blob_exists(&repo(repository), digest).await.unwrap(),
            "blob {digest} missing"
        );
    }
}

#[tokio::test]
async fn import_by_tag_copies_manifest_and_every_blob() {
    let app = spawn_app(2).await;
    app.create_target().await;
    let image = images::image("amd64", 3, 200_000);
    images::push(&app.source_registry(), "team/app", &image, Some("v1")).await;

    let location = app
        .start_import(json!({ "source": { "registryUri": app.source.host, "sourceImage": "team/app:v1" }, "targetTags": ["copied/app:v1"] }))
        .await;
    let (status, body) = app.wait(&location).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "Succeeded");
    assert_eq!(body["properties"]["progress"]["blobsDone"], 4);
    assert_copied(&app, "copied/app", "v1", &image).await;
}

#[tokio::test]
async fn import_by_digest_with_default_target_takes_latest() {
    let app = spawn_app(0).await;
    app.create_target().await;
    let image = images::image("arm64", 1, 10_000);
    images::push(&app.source_registry(), "app", &image, None).await;

    let source = format!("app@{}", image.manifest.digest);
    let location = app
        .start_import(
            json!({ "source": { "registryUri": app.source.host, "sourceImage": source } }),
        )
        .await;
    assert!(app.app.worker.run_once().await.unwrap());
    assert_eq!(app.wait(&location).await.0, 200);
    assert_copied(&app, "app", "latest", &image).await;
}

#[tokio::test]
async fn import_index_copies_every_child_and_keeps_the_digest() {
    let app = spawn_app(2).await;
    app.create_target().await;
    let children: Vec<_> = ["amd64", "arm64", "s390x"]
        .iter()
        .map(|a| images::image(a, 2, 50_000))
        .collect();
    let index = images::index(&children);
    let source = app.source_registry();
    for child in &children {
        images::push(&source, "multi", child, None).await;
    }
    images::push_manifest(&source, "multi", &index, Some("1.0")).await;

    let location = app
        .start_import(
            json!({ "source": { "registryUri": app.source.host, "sourceImage": "multi:1.0" } }),
        )
        .await;
    let (status, body) = app.wait(&location).await;
    assert_eq!(status, 200, "{body}");
    let target = app.target_registry();
    let copied = target.get_manifest(&repo("multi"), "1.0").await.unwrap();
    assert_eq!(copied.digest, index.digest);
    for child in &children {
        assert_copied(&app, "multi", child.manifest.digest.as_str(), child).await;
    }
}

#[tokio::test]
async fn untagged_repositories_get_manifests_but_no_tag() {
    let app = spawn_app(0).await;
    app.create_target().await;
    let image = images::image("amd64", 1, 5_000);
    images::push(&app.source_registry(), "src", &image, Some("t")).await;

    let location = app
        .start_import(json!({ "source": { "registryUri": app.source.host, "sourceImage": "src:t" }, "untaggedTargetRepositories": ["plain"] }))
        .await;
    assert!(app.app.worker.run_once().await.unwrap());
    assert_eq!(app.wait(&location).await.0, 200);
    assert_copied(&app, "plain", image.manifest.digest.as_str(), &image).await;
    assert!(
        !app.target_registry()
            .manifest_exists(&repo("plain"), "t")
            .await
            .unwrap()
    );
    assert!(
        !app.target_registry()
            .manifest_exists(&repo("src"), "t")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn no_force_on_an_existing_tag_fails_and_copies_nothing() {
    let app = spawn_app(0).await;
    app.create_target().await;
    let old = images::image("amd64", 1, 1_000);
    images::push(&app.target_registry(), "app", &old, Some("v1")).await;
    let new = images::image("amd64", 2, 1_000);
    images::push(&app.source_registry(), "app", &new, Some("v1")).await;

    let location = app.start_import(json!({ "source": { "registryUri": app.source.host, "sourceImage": "app:v1" }, "mode": "NoForce" })).await;
    assert!(app.app.worker.run_once().await.unwrap());
    let (status, body) = app.wait(&location).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "TagAlreadyExists");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Operation ") && message.contains("failed."),
        "{message}"
    );
    let target = app.target_registry();
    assert_eq!(
        target
            .get_manifest(&repo("app"), "v1")
            .await
            .unwrap()
            .digest,
        old.manifest.digest
    );
    for (digest, _) in &new.blobs {
        assert!(
            !target.blob_exists(&repo("app"), digest).await.unwrap(),
            "{digest} was copied"
        );
    }
}

#[tokio::test]
async fn force_overwrites_an_existing_tag() {
    let app = spawn_app(0).await;
    app.create_target().await;
    let old = images::image("amd64", 1, 1_000);
    images::push(&app.target_registry(), "app", &old, Some("v1")).await;
    let new = images::image("amd64", 1, 1_000);
    images::push(&app.source_registry(), "app", &new, Some("v1")).await;

    let location = app.start_import(json!({ "source": { "registryUri": app.source.host, "sourceImage": "app:v1" }, "mode": "Force" })).await;
    assert!(app.app.worker.run_once().await.unwrap());
    assert_eq!(app.wait(&location).await.0, 200);
    assert_copied(&app, "app", "v1", &new).await;
}

#[tokio::test]
async fn poll_reports_progress_states_and_failures() {
    let app = spawn_app(0).await;
    app.create_target().await;
    let location = app
        .start_import(
            json!({ "source": { "registryUri": app.source.host, "sourceImage": "missing:v9" } }),
        )
        .await;

    // Queued: 202 with the same Location and an integer Retry-After.
    let response = app.poll(&location).await;
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["location"].to_str().unwrap(), location);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "InProgress");

    assert!(app.app.worker.run_once().await.unwrap());
    let (status, body) = app.wait(&location).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "ImageNotFound");
    let id = location
        .split('/')
        .next_back()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Operation {id} failed."))
    );
    // Nothing left to claim; the failure is final.
    assert!(!app.app.worker.run_once().await.unwrap());

    let unknown = location.replace(id, &uuid::Uuid::new_v4().to_string());
    let response = app.poll(&unknown).await;
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "OperationNotFound");
}

#[tokio::test]
async fn import_from_a_registry_resource_uses_its_login_server() {
    let app = spawn_app(0).await;
    app.create_target().await;
    assert_eq!(
        app.put_registry("source1", &app.source.host).await.status(),
        201
    );
    let image = images::image("amd64", 1, 2_000);
    images::push(&app.source_registry(), "lib/x", &image, Some("2")).await;
    let resource_id = app.registry_path("source1");

    let location = app
        .start_import(json!({ "source": { "resourceId": resource_id, "sourceImage": "lib/x:2" } }))
        .await;
    assert!(app.app.worker.run_once().await.unwrap());
    assert_eq!(app.wait(&location).await.0, 200);
    assert_copied(&app, "lib/x", "2", &image).await;
}

#[tokio::test]
async fn corrupted_source_content_fails_with_digest_mismatch_and_no_tag() {
    let app = spawn_app(0).await;
    app.create_target().await;
    // A manifest whose layer descriptor claims a digest the stored blob does not have.
    let mut image = images::image("amd64", 1, 4_000);
    let (real_digest, bytes) = image.blobs[0].clone();
    let source = app.source_registry();
    source
        .upload_blob(&repo("bad"), &real_digest, bytes.clone())
        .await
        .unwrap();
    let text = String::from_utf8(image.manifest.bytes.to_vec()).unwrap();
    // Same digest, wrong size: the copy must notice while streaming.
    let wrong = text.replace(
        &format!("\"size\":{}", bytes.len()),
        &format!("\"size\":{}", bytes.len() - 1),
    );
    assert_ne!(wrong, text);
    image.manifest = ferry::registry_client::Manifest::new(wrong.into(), None).unwrap();
    let (config_digest, config) = image.blobs[1].clone();
    source
        .upload_blob(&repo("bad"), &config_digest, config)
        .await
        .unwrap();
    images::push_manifest(&source, "bad", &image.manifest, Some("v1")).await;

    let location = app
        .start_import(
            json!({ "source": { "registryUri": app.source.host, "sourceImage": "bad:v1" } }),
        )
        .await;
    assert!(app.app.worker.run_once().await.unwrap());
    let (status, body) = app.wait(&location).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "DigestMismatch");
    assert!(
        !app.target_registry()
            .manifest_exists(&repo("bad"), "v1")
            .await
            .unwrap()
    );
    let _: Digest = real_digest;
}
