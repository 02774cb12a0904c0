//! Per-import caps: an image with more blobs or bytes than allowed fails with
//! ImportTooLarge before any blob is copied, leaving no tag; one at the cap passes.

use serde_json::json;

use super::app_with;
use crate::helpers::{TestApp, images};

/// Imports `app:<tag>` and returns the failure code, or "Succeeded".
async fn outcome(app: &TestApp, tag: &str) -> (String, String) {
    let body = json!({
        "source": { "registryUri": app.source.host, "sourceImage": format!("app:{tag}") },
    });
    let (status, body) = app.run_import(body).await;
    if status == 200 {
        return ("Succeeded".into(), String::new());
    }
    let error = &body["error"];
    (
        error["code"].as_str().unwrap().to_owned(),
        error["message"].as_str().unwrap().to_owned(),
    )
}

/// Whether the target registry has `app:<tag>`.
async fn target_has(app: &TestApp, tag: &str) -> bool {
    app.target_registry()
        .manifest_digest(&"app".parse().unwrap(), tag)
        .await
        .unwrap()
        .is_some()
}

/// Asserts none of the image's blobs reached the target.
async fn assert_no_blobs(app: &TestApp, image: &images::TestImage) {
    let target = app.target_registry();
    for (digest, _) in &image.blobs {
        assert!(
            !target
                .blob_exists(&"app".parse().unwrap(), digest)
                .await
                .unwrap(),
            "blob {digest} was copied"
        );
    }
}

#[tokio::test]
async fn an_image_with_more_blobs_than_the_cap_fails_untagged() {
    // A config and a layer (2 blobs) fit; a config and two layers do not.
    let app = app_with(2, |c| c.limits.max_import_blobs = 2).await;
    let (fits, too_many) = (
        images::image("amd64", 1, 1024),
        images::image("amd64", 2, 1024),
    );
    let source = app.source_registry();
    images::push(&source, "app", &fits, Some("fits")).await;
    images::push(&source, "app", &too_many, Some("big")).await;

    let (code, message) = outcome(&app, "big").await;
    assert_eq!(code, "ImportTooLarge");
    assert!(
        message.contains("3 blobs") && message.contains("at most 2"),
        "{message}"
    );
    assert!(!target_has(&app, "big").await);
    assert_no_blobs(&app, &too_many).await;

    assert_eq!(outcome(&app, "fits").await.0, "Succeeded");
    assert!(target_has(&app, "fits").await);
}

#[tokio::test]
async fn an_image_larger_than_the_byte_cap_fails_untagged() {
    let app = app_with(2, |c| c.limits.max_import_bytes = 100 * 1024).await;
    let (fits, too_big) = (
        images::image("amd64", 1, 50 * 1024),
        images::image("amd64", 1, 200 * 1024),
    );
    let source = app.source_registry();
    images::push(&source, "app", &fits, Some("fits")).await;
    images::push(&source, "app", &too_big, Some("big")).await;

    let (code, message) = outcome(&app, "big").await;
    assert_eq!(code, "ImportTooLarge");
    assert!(message.contains("at most 102400 bytes"), "{message}");
    assert!(!target_has(&app, "big").await);
    assert_no_blobs(&app, &too_big).await;

    assert_eq!(outcome(&app, "fits").await.0, "Succeeded");
    assert!(target_has(&app, "fits").await);
}
