//! Builds small but real OCI and Docker images (random layers, config, manifest,
//! index) and pushes them with ferry's own registry client. `images_kinds` builds
//! the special shapes (multi-arch, Helm, artifacts, referrers) from these parts.

use bytes::Bytes;
use ferry::{
    operations::reference::{Digest, Repository},
    registry_client::{Manifest, Registry},
};
use rand::RngCore;
use serde_json::{Value, json};

/// An image manifest with the blobs it needs.
pub struct TestImage {
    pub manifest: Manifest,
    pub blobs: Vec<(Digest, Bytes)>,
}

/// The media types of one manifest family.
pub struct Family {
    pub manifest: &'static str,
    pub config: &'static str,
    pub layer: &'static str,
    /// The index type that lists manifests of this family.
    pub index: &'static str,
}

pub const OCI: Family = Family {
    manifest: "application/vnd.oci.image.manifest.v1+json",
    config: "application/vnd.oci.image.config.v1+json",
    layer: "application/vnd.oci.image.layer.v1.tar",
    index: OCI_INDEX,
};

pub const DOCKER: Family = Family {
    manifest: "application/vnd.docker.distribution.manifest.v2+json",
    config: "application/vnd.docker.container.image.v1+json",
    layer: "application/vnd.docker.image.rootfs.diff.tar.gzip",
    index: DOCKER_LIST,
};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A blob and its digest.
pub fn blob(bytes: Vec<u8>) -> (Digest, Bytes) {
    (Digest::of(&bytes), Bytes::from(bytes))
}

/// `size` random bytes.
pub fn random_bytes(size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size];
    rand::thread_rng().fill_bytes(&mut data);
    data
}

/// A descriptor of `blob` with `media_type`.
pub fn descriptor(media_type: &str, (digest, bytes): &(Digest, Bytes)) -> Value {
    json!({ "mediaType": media_type, "digest": digest.to_string(), "size": bytes.len() })
}

/// A descriptor of a manifest (its own media type).
pub fn manifest_descriptor(manifest: &Manifest) -> Value {
    json!({ "mediaType": manifest.media_type, "digest": manifest.digest.to_string(), "size": manifest.bytes.len() })
}

/// Serializes a manifest body exactly once; its digest is over these bytes.
pub fn manifest_of(body: &Value) -> Manifest {
    Manifest::new(Bytes::from(serde_json::to_vec(body).unwrap()), None).unwrap()
}

/// An image manifest of `family` over a config blob (`config_type` overrides the
/// family's) and layers of `layer_type`; `extra` fields (artifactType, subject,
/// annotations) are merged into the manifest.
pub fn build(
    family: &Family,
    config: (&str, Vec<u8>),
    layers: Vec<(&str, Vec<u8>)>,
    extra: Value,
) -> TestImage {
    let config_type = config.0;
    let config = blob(config.1);
    let layers: Vec<(&str, (Digest, Bytes))> = layers
        .into_iter()
        .map(|(media, bytes)| (media, blob(bytes)))
        .collect();
    let mut body = json!({
        "schemaVersion": 2,
        "mediaType": family.manifest,
        "config": descriptor(config_type, &config),
        "layers": layers.iter().map(|(media, b)| descriptor(media, b)).collect::<Vec<_>>(),
    });
    if let Value::Object(fields) = extra {
        body.as_object_mut().unwrap().extend(fields);
    }
    let mut blobs: Vec<_> = layers.into_iter().map(|(_, b)| b).collect();
    blobs.push(config);
    TestImage {
        manifest: manifest_of(&body),
        blobs,
    }
}

/// A runnable-looking image of `family` for `platform` ({os, architecture,
/// variant?}) with `layers` random layers of `size` bytes.
pub fn platform_image(family: &Family, platform: &Value, layers: usize, size: usize) -> TestImage {
    let contents: Vec<Vec<u8>> = (0..layers).map(|_| random_bytes(size)).collect();
    let mut config = platform.clone();
    config["rootfs"] = json!({ "type": "layers", "diff_ids": contents.iter().map(|c| Digest::of(c).to_string()).collect::<Vec<_>>() });
    config["created"] = json!(format!("{}", rand::thread_rng().next_u64()));
    build(
        family,
        (family.config, serde_json::to_vec(&config).unwrap()),
        contents.into_iter().map(|c| (family.layer, c)).collect(),
        json!({}),
    )
}

/// A single-platform OCI image with `layers` random layers of `size` bytes.
pub fn image(arch: &str, layers: usize, size: usize) -> TestImage {
    platform_image(
        &OCI,
        &json!({ "architecture": arch, "os": "linux" }),
        layers,
        size,
    )
}

/// An index of `media_type` over manifests, each with an optional platform.
pub fn index_of(media_type: &str, entries: &[(&Manifest, Option<Value>)]) -> Manifest {
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(manifest, platform)| {
            let mut entry = manifest_descriptor(manifest);
            if let Some(platform) = platform {
                entry["platform"] = platform.clone();
            }
            entry
        })
        .collect();
    manifest_of(&json!({ "schemaVersion": 2, "mediaType": media_type, "manifests": manifests }))
}

/// An OCI index over the given images (one made-up platform each).
pub fn index(children: &[TestImage]) -> Manifest {
    let entries: Vec<_> = children
        .iter()
        .enumerate()
        .map(|(i, child)| {
            let platform = json!({ "os": "linux", "architecture": format!("arch{i}") });
            (&child.manifest, Some(platform))
        })
        .collect();
    index_of(OCI_INDEX, &entries)
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
