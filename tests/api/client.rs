//! ferry's registry client on its own against real distribution registries: the
//! upload paths an import rarely takes with distribution (chunked PATCH uploads) and
//! the cross-repository mount, checked by reading the blobs back.

use bytes::Bytes;
use ferry::{
    operations::reference::Repository,
    registry_client::{BlobRef, ClientSettings, Placed, RegistryClient},
};

use crate::helpers::{
    TestRegistry,
    fault::{Class, Fault, FaultProxy},
    images, test_client_settings,
};

fn client(insecure: &[&str], always_chunk: bool) -> RegistryClient {
    let insecure: Vec<String> = insecure.iter().map(|h| (*h).to_owned()).collect();
    RegistryClient::with_settings(ClientSettings {
        chunk_size: 1024 * 1024,
        always_chunk,
        ..test_client_settings(&insecure)
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
    let client = client(&[&source.host, &target.host], true);
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
        let placed = dst
            .copy_blob_from(&src, &repo, &copy, &blob, None)
            .await
            .unwrap();
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
    let client = client(&[&registry.host], false);
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
            .copy_blob_from(&handle, &from, &to, &blob, None)
            .await
            .unwrap();
        assert_eq!(placed, Placed::Mounted);
        assert_eq!(
            &read_blob(&registry.host, "team/app", digest.as_str()).await,
            bytes
        );
    }
}

#[tokio::test]
async fn chunked_uploads_resume_from_the_session_offset_after_failures() {
    let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
    let proxy = FaultProxy::start(&target.host).await;
    let client = client(&[&source.host, &proxy.host], true);
    let (src, dst) = (
        client.registry(&source.host, None),
        client.registry(&proxy.host, None),
    );
    let image = images::image("amd64", 1, 3 * 1024 * 1024);
    images::push(&src, "app", &image, None).await;
    // The first chunk is refused twice as unavailable, the next one as out of range.
    proxy.inject(Class::Chunk, Fault::unavailable(2));
    proxy.inject(
        Class::Chunk,
        Fault::Status {
            status: 416,
            times: 1,
            retry_after: None,
        },
    );
    let (digest, bytes) = &image.blobs[0];
    let blob = BlobRef {
        digest: digest.clone(),
        size: bytes.len() as u64,
    };
    let repo: Repository = "app".parse().unwrap();
    let placed = dst
        .copy_blob_from(&src, &repo, &repo, &blob, None)
        .await
        .unwrap();
    assert_eq!(placed, Placed::Copied);
    assert_eq!(
        &read_blob(&target.host, "app", digest.as_str()).await,
        bytes
    );

    let seen = proxy.requests();
    let refused = seen.iter().filter(|s| s.fault == Some("status")).count();
    assert_eq!(refused, 3, "{seen:#?}");
    // Each refusal is followed by a status query of the session, not a new session.
    let queries = seen
        .iter()
        .filter(|s| s.method == "GET" && s.path.contains("/blobs/uploads/"))
        .count();
    assert_eq!(queries, 3, "{seen:#?}");
    let sessions = seen.iter().filter(|s| s.method == "POST").count();
    assert_eq!(sessions, 1, "{seen:#?}");
    let chunks = seen
        .iter()
        .filter(|s| s.method == "PATCH" && s.status == 202)
        .count();
    assert_eq!(chunks, 3, "{seen:#?}");
}
