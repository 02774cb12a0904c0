//! Builds small but real OCI images (random layers, config, manifest, index) and
//! pushes them with ferry's own registry client.

use bytes::Bytes;
use ferry::{
    operations::reference::{Digest, Repository},
    registry_client::{Manifest, Registry},
};
use rand::RngCore;
use serde_json::json;

/// An image manifest with the blobs it needs.
pub struct TestImage {
    pub manifest: Manifest,
    pub blobs: Vec<(Digest, Bytes)>,
}

fn blob(bytes: Vec<u8>) -> (Digest, Bytes) {
    (Digest::of(&bytes), Bytes::from(bytes))
}

/// A single-platform OCI image with `layers` random layers of `size` bytes.
pub fn image(arch: &str, layers: usize, size: usize) -> TestImage {
    let mut rng = rand::thread_rng();
    let layer_blobs: Vec<(Digest, Bytes)> = (0..layers)
        .map(|_| {
            let mut data = vec![0u8; size];
            rng.fill_bytes(&mut data);
            blob(data)
        })
        .collect();
    let config = blob(
        serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": layer_blobs.iter().map(|(d, _)| d.to_string()).collect::<Vec<_>>() },
            "created": format!("{}", rng.next_u64()),
        }))
        .unwrap(),
    );
    let descriptor = |media: &str, (digest, bytes): &(Digest, Bytes)| json!({ "mediaType": media, "digest": digest.to_string(), "size": bytes.len() });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": layer_blobs.iter().map(|b| descriptor("application/vnd.oci.image.layer.v1.tar", b)).collect::<Vec<_>>(),
    });
    let manifest =
        Manifest::new(Bytes::from(serde_json::to_vec(&manifest).unwrap()), None).unwrap();
    let mut blobs = layer_blobs;
    blobs.push(config);
    TestImage { manifest, blobs }
}

/// An OCI index over the given images (one per platform).
pub fn index(children: &[TestImage]) -> Manifest {
    let manifests: Vec<_> = children
        .iter()
        .enumerate()
        .map(|(i, child)| {
            json!({
                "mediaType": child.manifest.media_type,
                "digest": child.manifest.digest.to_string(),
                "size": child.manifest.bytes.len(),
                "platform": { "os": "linux", "architecture": format!("arch{i}") },
            })
        })
        .collect();
    let body = json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests });
    Manifest::new(Bytes::from(serde_json::to_vec(&body).unwrap()), None).unwrap()
}

/// Pushes an image's blobs and manifest (by digest, plus `tag` if given).
pub async fn push(registry: &Registry, repo: &str, image: &TestImage, tag: Option<&str>) {
    let repo: Repository = repo.parse().unwrap();
    for (digest, bytes) in &image.blobs {
        registry
            .upload_blob(&repo, digest, bytes.clone())
            .await
            .unwrap();
    }
    push_manifest(registry, repo.as_str(), &image.manifest, tag).await;
}

/// Pushes a manifest by digest, and under `tag` if given.
pub async fn push_manifest(
    registry: &Registry,
    repo: &str,
    manifest: &Manifest,
    tag: Option<&str>,
) {
    let repo: Repository = repo.parse().unwrap();
    registry
        .put_manifest(&repo, manifest.digest.as_str(), manifest)
        .await
        .unwrap();
    if let Some(tag) = tag {
        registry.put_manifest(&repo, tag, manifest).await.unwrap();
    }
}
