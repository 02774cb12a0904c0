//! ferry's registry client on its own against real distribution registries: the
//! upload paths an import rarely takes with distribution (chunked PATCH uploads) and
//! the cross-repository mount, checked by reading the blobs back.

use bytes::Bytes;
use ferry::{
    operations::reference::Repository,
    registry_client::{BlobRef, ClientSettings, Placed, RegistryClient},
};

use crate::helpers::{TestRegistry, images};

fn client(insecure: &[&TestRegistry], always_chunk: bool) -> RegistryClient {
    RegistryClient::with_settings(ClientSettings {
        insecure: insecure.iter().map(|r| r.host.clone()).collect(),
        chunk_size: 1024 * 1024,
        always_chunk,
        ..ClientSettings::default()
    })
    .unwrap()
}

async fn read_blob(host: &str, repo: &str, digest: &str) -> Bytes {
    let url = format!("http://{host}/v2/{repo}/blobs/{digest}");
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "blob {digest} in {repo}");
    response.bytes().await.unwrap()
}

#[tokio::test]
async fn chunked_uploads_stream_every_byte_in_order() {
    let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
    let client = client(&[&source, &target], true);
    let (src, dst) = (
        client.registry(&source.host, None),
        client.registry(&target.host, None),
    );
    // 3.5 chunks, so the last PATCH is a short one.
    let image = images::image("amd64", 1, 3 * 1024 * 1024 + 512 * 1024);
    images::push(&src, "app", &image, Some("v1")).await;
    let repo: Repository = "app".parse().unwrap();
    let copy: Repository = "copy".parse().unwrap();
    for (digest, bytes) in &image.blobs {
        let blob = BlobRef {
            digest: digest.clone(),
            size: bytes.len() as u64,
        };
        let placed = dst.copy_blob_from(&src, &repo, &copy, &blob).await.unwrap();
        assert_eq!(placed, Placed::Copied);
        assert_eq!(
            &read_blob(&target.host, "copy", digest.as_str()).await,
            bytes
        );
    }
}

#[tokio::test]
async fn blobs_within_one_registry_are_mounted_not_copied() {
    let registry = TestRegistry::start().await;
    let client = client(&[&registry], false);
    let handle = client.registry(&registry.host, None);
    let image = images::image("amd64", 2, 4096);
    images::push(&handle, "base", &image, None).await;
    let (from, to): (Repository, Repository) =
        ("base".parse().unwrap(), "team/app".parse().unwrap());
    for (digest, bytes) in &image.blobs {
        let blob = BlobRef {
            digest: digest.clone(),
            size: bytes.len() as u64,
        };
        assert!(!handle.blob_exists(&to, digest).await.unwrap());
        let placed = handle
            .copy_blob_from(&handle, &from, &to, &blob)
            .await
            .unwrap();
        assert_eq!(placed, Placed::Mounted);
        assert_eq!(
            &read_blob(&registry.host, "team/app", digest.as_str()).await,
            bytes
        );
    }
}
