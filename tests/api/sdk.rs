//! The real Azure Python SDK (`azure-mgmt-containerregistry`) drives an import
//! against ferry: `begin_import_image(...).result()` returns on success and raises
//! on a failed import. .ci/run installs the SDK in a venv and sets FERRY_TEST_PYTHON.

use tokio::process::Command;

use crate::helpers::{images, output_text, spawn_app};

async fn run_sdk(
    app: &crate::helpers::TestApp,
    source_image: &str,
    target: &str,
    expect: &str,
) -> String {
    let python = std::env::var("FERRY_TEST_PYTHON")
        .expect("FERRY_TEST_PYTHON must name a python with azure-mgmt-containerregistry (bash .ci/run sets it up)");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/import_image.py");
    let output = Command::new(python)
        .arg(script)
        .args(["--endpoint", &app.base, "--token", &app.token])
        .args([
            "--subscription",
            &app.subscription.to_string(),
            "--resource-group",
            "rg1",
            "--registry",
            "target1",
        ])
        .args([
            "--source-registry-uri",
            &app.source.host,
            "--source-image",
            source_image,
            "--target-tag",
            target,
        ])
        .args(["--expect", expect])
        .output()
        .await
        .unwrap();
    let text = output_text(&output);
    assert!(
        output.status.success(),
        "SDK run (expect {expect}) failed:\n{text}"
    );
    text
}

#[tokio::test]
async fn azure_sdk_begin_import_image_succeeds_and_raises_on_failure() {
    let app = spawn_app(2).await;
    app.create_target().await;
    let image = images::image("amd64", 2, 30_000);
    images::push(&app.source_registry(), "sdk/app", &image, Some("1")).await;

    let ok = run_sdk(&app, "sdk/app:1", "sdk/copy:1", "success").await;
    assert!(ok.contains("SDK import succeeded"), "{ok}");
    let copied = app
        .target_registry()
        .get_manifest(&"sdk/copy".parse().unwrap(), "1")
        .await
        .unwrap();
    assert_eq!(copied.digest, image.manifest.digest);

    let failed = run_sdk(&app, "sdk/app:nope", "sdk/copy:2", "failure").await;
    assert!(failed.contains("ImageNotFound"), "{failed}");
}
