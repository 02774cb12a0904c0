//! Outbound timeouts: a registry that never answers a manifest GET, and one that
//! stops taking an upload, end the request within their bounds instead of holding
//! a worker; an upload merely slower than the read timeout still completes.

use std::time::{Duration, Instant};

use ferry::{
    operations::reference::Repository,
    registry_client::{
        BlobRef, ClientSettings, Placed, RegistryClient, RegistryError, RetryPolicy, Side,
    },
};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{
    TestRegistry,
    fault::{Class, Fault, FaultProxy},
    images, mint_all_roles, operation_id, start_app, test_client, test_client_settings,
};

#[tokio::test]
async fn a_hung_manifest_request_times_out_instead_of_holding_the_worker() {
    let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
    let proxy = FaultProxy::start(&source.host).await;
    let app = start_app(
        0,
        source,
        target,
        &[&proxy.host],
        |c| c.limits.registry_request_timeout = Duration::from_secs(1),
        mint_all_roles,
    )
    .await;
    app.create_target().await;
    images::push(
        &app.source_registry(),
        "app",
        &images::image("amd64", 1, 1024),
        Some("v1"),
    )
    .await;
    // Without a timeout every manifest GET would wait an hour for its answer.
    proxy.inject(
        Class::ManifestGet,
        Fault::Latency(Duration::from_secs(3600)),
    );
    let location = app
        .start_import(json!({ "source": { "registryUri": proxy.host, "sourceImage": "app:v1" } }))
        .await;

    let started = Instant::now();
    let ran = tokio::time::timeout(Duration::from_secs(60), app.app.worker.run_once())
        .await
        .expect("the worker still waits on the hung registry")
        .unwrap();
    assert!(ran);
    // The tries (each waiting out its timeout) took at least one timeout.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let (status, code, message): (String, Option<String>, Option<String>) = sqlx::query_as(
        "select status::text, error_code, error_message from operations where id = $1",
    )
    .bind(operation_id(&location))
    .fetch_one(&app.pool)
    .await
    .unwrap();
    // A timeout is transient: the operation goes back to the queue for another try.
    assert_eq!(status, "queued");
    assert_eq!(code.as_deref(), Some("SourceRegistryError"));
    let message = message.unwrap();
    assert!(message.contains("timed out"), "{message}");
}

/// ferry's client with a 1 s read timeout, chunked uploads of 1 MiB and
/// `stall` as the upload stall bound; one try per request.
fn impatient_client(insecure: &[&str], stall: Duration) -> RegistryClient {
    let insecure: Vec<String> = insecure.iter().map(|h| (*h).to_owned()).collect();
    RegistryClient::with_settings(ClientSettings {
        chunk_size: 1024 * 1024,
        always_chunk: true,
        read_timeout: Duration::from_secs(1),
        upload_stall_timeout: stall,
        retry: RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        },
        ..test_client_settings(&insecure)
    })
    .unwrap()
}

/// A source holding one 1.5 MiB layer, and a proxy in front of a target.
async fn upload_rig() -> (TestRegistry, TestRegistry, FaultProxy, BlobRef) {
    let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
    let proxy = FaultProxy::start(&target.host).await;
    let image = images::image("amd64", 1, 1536 * 1024);
    let client = test_client(std::slice::from_ref(&source.host));
    images::push(&client.registry(&source.host, None), "app", &image, None).await;
    let (digest, bytes) = &image.blobs[0];
    let blob = BlobRef {
        digest: digest.clone(),
        size: bytes.len() as u64,
    };
    (source, target, proxy, blob)
}

#[tokio::test]
async fn an_upload_slower_than_the_read_timeout_still_completes() {
    let (source, _target, proxy, blob) = upload_rig().await;
    // Each chunk's answer comes 2 s after it was sent: twice the read timeout,
    // within the stall bound.
    proxy.inject(Class::Chunk, Fault::Latency(Duration::from_secs(2)));
    let client = impatient_client(&[&source.host, &proxy.host], Duration::from_secs(5));
    let app: Repository = "app".parse().unwrap();
    let placed = client
        .registry(&proxy.host, None)
        .copy_blob_from(
            &client.registry(&source.host, None),
            &app,
            &app,
            &blob,
            None,
        )
        .await
        .unwrap_or_else(|error| panic!("{error:?}"));
    assert_eq!(placed, Placed::Copied);
    let chunks = proxy
        .requests()
        .iter()
        .filter(|s| s.method == Method::PATCH && s.status == 202)
        .count();
    assert_eq!(chunks, 2);
}

#[tokio::test]
async fn a_stalled_upload_fails_within_its_bound() {
    let (source, _target, proxy, blob) = upload_rig().await;
    proxy.inject(Class::Chunk, Fault::Latency(Duration::from_secs(3600)));
    let client = impatient_client(&[&source.host, &proxy.host], Duration::from_millis(500));
    let app: Repository = "app".parse().unwrap();
    let started = Instant::now();
    let (from, to) = (
        client.registry(&source.host, None),
        client.registry(&proxy.host, None),
    );
    let copy = to.copy_blob_from(&from, &app, &app, &blob, None);
    let result = tokio::time::timeout(Duration::from_secs(60), copy)
        .await
        .expect("the upload still waits on the stalled registry");
    assert!(
        matches!(result, Err(Side::Target(RegistryError::Transport(_)))),
        "{result:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
}
