//! An independent look at what a registry serves: `skopeo inspect --raw`, so copy
//! tests do not judge ferry only with ferry's own client.

use bytes::Bytes;
use ferry::{operations::reference::Digest, registry_client::Manifest};
use tokio::process::Command;

use super::TestRegistry;

/// The raw manifest at `reference` (`repo:tag` or `repo@digest`), or None when the
/// registry has no such manifest.
pub async fn raw_manifest(registry: &TestRegistry, reference: &str) -> Option<Bytes> {
    let mut command = Command::new("skopeo");
    command.args(["inspect", "--raw", "--tls-verify=false", "--retry-times=0"]);
    if let Some((user, password)) = &registry.login {
        command.arg(format!("--creds={user}:{password}"));
    }
    let output = command
        .arg(format!("docker://{}/{reference}", registry.host))
        .output()
        .await
        .expect("skopeo (apt-get install skopeo)");
    if output.status.success() {
        return Some(Bytes::from(output.stdout));
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("manifest unknown") || stderr.contains("not found"),
        "skopeo inspect {reference} failed: {stderr}"
    );
    None
}

/// Asserts `registry` serves exactly `expected`'s bytes (so its digest) at `reference`.
pub async fn assert_manifest(registry: &TestRegistry, reference: &str, expected: &Manifest) {
    let bytes = raw_manifest(registry, reference)
        .await
        .unwrap_or_else(|| panic!("{reference} missing on {}", registry.host));
    assert_eq!(
        Digest::of(&bytes),
        expected.digest,
        "{reference} on {} has another digest",
        registry.host
    );
}

/// Asserts `registry` has no manifest at `reference`.
pub async fn assert_no_manifest(registry: &TestRegistry, reference: &str) {
    assert!(
        raw_manifest(registry, reference).await.is_none(),
        "{reference} exists on {}",
        registry.host
    );
}

/// Asserts the app's target holds `image` in `repo`: the manifest by digest with
/// the same bytes (seen by skopeo), and every blob (seen by ferry's client).
pub async fn assert_image(app: &super::TestApp, repo: &str, image: &super::images::TestImage) {
    let reference = format!("{repo}@{}", image.manifest.digest);
    assert_manifest(&app.target, &reference, &image.manifest).await;
    let repository = repo.parse().unwrap();
    let target = app.target_registry();
    for (digest, _) in &image.blobs {
        assert!(
            target.blob_exists(&repository, digest).await.unwrap(),
            "blob {digest} missing from {repo}"
        );
    }
}
