//! The image shapes the copy engine must carry unchanged: a four-platform index, a
//! Docker manifest list, a Helm chart, an OCI artifact with `artifactType`, an image
//! with an SBOM referrer (plus the referrers fallback tag, since distribution 2.8
//! has no referrers API), and an index wider than ferry's manifest limit.

use ferry::{
    operations::reference::Digest,
    registry_client::{Manifest, Registry},
};
use serde_json::{Value, json};

use super::images::{
    self, DOCKER, Family, OCI, OCI_INDEX, TestImage, build, index_of, manifest_descriptor, push,
    push_manifest,
};

/// The platforms of [`multi_arch`], as `os/arch[/variant]`.
pub const PLATFORMS: [&str; 4] = ["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/s390x"];

/// The OCI empty descriptor's content (`application/vnd.oci.empty.v1+json`).
pub const EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";

/// An index (or manifest list) and its per-platform images, in [`PLATFORMS`] order.
pub struct MultiArch {
    pub index: Manifest,
    pub children: Vec<TestImage>,
}

impl MultiArch {
    /// The child built for `platform` (`os/arch[/variant]`).
    pub fn child(&self, platform: &str) -> &TestImage {
        let i = PLATFORMS.iter().position(|p| *p == platform).unwrap();
        &self.children[i]
    }
}

/// `os/arch[/variant]` as an OCI platform object.
pub fn platform(text: &str) -> Value {
    let mut parts = text.split('/');
    let mut value = json!({ "os": parts.next().unwrap(), "architecture": parts.next().unwrap() });
    if let Some(variant) = parts.next() {
        value["variant"] = json!(variant);
    }
    value
}

/// Four real platforms in one index of `family`'s types (OCI or Docker).
pub fn multi_arch(family: &Family) -> MultiArch {
    let children: Vec<TestImage> = PLATFORMS
        .iter()
        .map(|p| images::platform_image(family, &platform(p), 2, 20_000))
        .collect();
    let entries: Vec<_> = children
        .iter()
        .zip(PLATFORMS)
        .map(|(child, p)| (&child.manifest, Some(platform(p))))
        .collect();
    MultiArch {
        index: index_of(family.index, &entries),
        children,
    }
}

/// Pushes every child by digest, then the index under `tag`.
pub async fn push_multi_arch(registry: &Registry, repo: &str, multi: &MultiArch, tag: &str) {
    for child in &multi.children {
        push(registry, repo, child, None).await;
    }
    push_manifest(registry, repo, &multi.index, Some(tag)).await;
}

/// A Docker schema2 image for linux/amd64.
pub fn docker_image() -> TestImage {
    images::platform_image(&DOCKER, &platform("linux/amd64"), 2, 30_000)
}

/// A Helm 3 chart as `helm push` stores it.
pub fn helm_chart() -> TestImage {
    let config = json!({ "apiVersion": "v2", "name": "ferry-demo", "version": "0.1.0", "type": "application" });
    build(
        &OCI,
        (
            "application/vnd.cncf.helm.config.v1+json",
            serde_json::to_vec(&config).unwrap(),
        ),
        vec![(
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            images::random_bytes(8_000),
        )],
        json!({}),
    )
}

/// An OCI artifact: `artifactType`, the empty `{}` config, one payload layer;
/// `extra` fields (e.g. `subject`) are merged into the manifest.
pub fn artifact(artifact_type: &str, payload: Vec<u8>, extra: Value) -> TestImage {
    let mut fields = json!({ "artifactType": artifact_type, "annotations": { "org.opencontainers.image.created": "2026-01-01T00:00:00Z" } });
    if let Value::Object(more) = extra {
        fields.as_object_mut().unwrap().extend(more);
    }
    build(
        &OCI,
        (EMPTY_JSON, b"{}".to_vec()),
        vec![(artifact_type, payload)],
        fields,
    )
}

/// An SPDX SBOM whose `subject` is `image`.
pub fn sbom_for(image: &Manifest) -> TestImage {
    let sbom = json!({ "spdxVersion": "SPDX-2.3", "name": "ferry-test", "nonce": images::random_bytes(8) });
    artifact(
        "application/spdx+json",
        serde_json::to_vec(&sbom).unwrap(),
        json!({ "subject": manifest_descriptor(image) }),
    )
}

/// The referrers tag schema's tag for `subject`: `sha256-<hex>`.
pub fn fallback_tag(subject: &Digest) -> String {
    subject.as_str().replacen(':', "-", 1)
}

/// The fallback tag's content: an OCI index of referrer descriptors.
pub fn referrers_index(referrers: &[&TestImage]) -> Manifest {
    let manifests: Vec<Value> = referrers
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.manifest.bytes).unwrap();
            let mut entry = manifest_descriptor(&r.manifest);
            entry["artifactType"] = body["artifactType"].clone();
            entry
        })
        .collect();
    images::manifest_of(
        &json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests }),
    )
}

/// Pushes `image` under `tag`, an SBOM referrer for it by digest, and the
/// fallback tag listing the SBOM. Returns the SBOM.
pub async fn push_with_sbom(
    registry: &Registry,
    repo: &str,
    image: &TestImage,
    tag: &str,
) -> TestImage {
    push(registry, repo, image, Some(tag)).await;
    let sbom = sbom_for(&image.manifest);
    push(registry, repo, &sbom, None).await;
    let tag = fallback_tag(&image.manifest.digest);
    push_manifest(registry, repo, &referrers_index(&[&sbom]), Some(&tag)).await;
    sbom
}

/// An index of `children` tiny images that share their blobs (each manifest
/// differs by an annotation), with the children.
pub fn wide_index(children: usize) -> (Manifest, Vec<TestImage>) {
    let layer = images::random_bytes(1_000);
    let images: Vec<TestImage> = (0..children)
        .map(|i| {
            build(
                &OCI,
                (
                    OCI.config,
                    br#"{"architecture":"amd64","os":"linux"}"#.to_vec(),
                ),
                vec![(OCI.layer, layer.clone())],
                json!({ "annotations": { "ferry.test/child": i.to_string() } }),
            )
        })
        .collect();
    let entries: Vec<_> = images.iter().map(|c| (&c.manifest, None)).collect();
    (index_of(OCI_INDEX, &entries), images)
}

/// Pushes a [`wide_index`]: the shared blobs once, every child, the index under `tag`.
pub async fn push_wide(
    registry: &Registry,
    repo: &str,
    index: &Manifest,
    children: &[TestImage],
    tag: &str,
) {
    push(registry, repo, &children[0], None).await;
    for child in &children[1..] {
        push_manifest(registry, repo, &child.manifest, None).await;
    }
    push_manifest(registry, repo, index, Some(tag)).await;
}
