//! Copies through a misbehaving source: a fault proxy in front of a real registry
//! cuts blob bodies, throttles, fails with 503, corrupts bytes or ignores `Range`.
//! ferry must resume, retry within the attempt, or fail with the right code.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    TestApp, TestRegistry,
    fault::{Class, Fault, FaultProxy, Seen},
    images, skopeo, spawn_app_with,
};

/// ferry with workers, `target1`, and a proxy in front of the source registry
/// holding `app:v1` (one layer of `layer_size` bytes).
async fn app_behind_proxy(layer_size: usize) -> (TestApp, FaultProxy, images::TestImage) {
    let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
    let proxy = FaultProxy::start(&source.host).await;
    let app = spawn_app_with(2, source, target, &[&proxy.host]).await;
    app.create_target().await;
    let image = images::image("amd64", 1, layer_size);
    images::push(&app.source_registry(), "app", &image, Some("v1")).await;
    (app, proxy, image)
}

fn through(proxy: &FaultProxy) -> Value {
    json!({ "source": { "registryUri": proxy.host, "sourceImage": "app:v1" } })
}

/// Asserts the import succeeded and the target holds the image at `app:v1`.
async fn assert_copied(app: &TestApp, (status, body): (u16, Value), image: &images::TestImage) {
    assert_eq!(status, 200, "{body}");
    skopeo::assert_manifest(&app.target, "app:v1", &image.manifest).await;
    skopeo::assert_image(app, "app", image).await;
}

/// The start offset of a `Range: bytes=N-` header.
fn range_start(seen: &Seen) -> Option<u64> {
    seen.range
        .as_deref()?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

const CUT: u64 = 1 << 20;

#[tokio::test]
async fn copy_resumes_a_cut_blob_body_with_a_range_request() {
    let (app, proxy, image) = app_behind_proxy(3 << 20).await;
    proxy.inject(Class::BlobGet, Fault::CutAfter(CUT));

    assert_copied(&app, app.run_import(through(&proxy)).await, &image).await;
    let seen = proxy.requests();
    let cut = seen
        .iter()
        .position(|s| s.fault == Some("cut"))
        .expect("no body was cut");
    let resumed = seen[cut + 1..]
        .iter()
        .find(|s| s.path == seen[cut].path && range_start(s).is_some())
        .unwrap_or_else(|| panic!("no Range request after the cut: {seen:#?}"));
    let start = range_start(resumed).unwrap();
    assert!(start > 0 && start <= CUT, "resumed at {start}");
    assert_eq!(resumed.status, 206);
}

#[tokio::test]
async fn copy_restarts_or_skips_when_the_source_ignores_range() {
    let (app, proxy, image) = app_behind_proxy(3 << 20).await;
    proxy.inject(Class::BlobGet, Fault::CutAfter(CUT));
    proxy.inject(Class::BlobGet, Fault::IgnoreRange);

    assert_copied(&app, app.run_import(through(&proxy)).await, &image).await;
    assert!(proxy.requests().iter().any(|s| s.fault == Some("cut")));
}

/// Asserts each request answered with an injected status was tried again within
/// the same attempt, no sooner than `at_least` later.
async fn assert_retried_in_attempt(
    app: &TestApp,
    location: &str,
    proxy: &FaultProxy,
    at_least: Duration,
) {
    assert_eq!(
        app.attempts(location).await,
        1,
        "the whole import was retried"
    );
    let seen = proxy.requests();
    let refused: Vec<_> = seen.iter().filter(|s| s.fault == Some("status")).collect();
    assert!(!refused.is_empty(), "no fault was injected");
    for first in refused {
        let again = seen
            .iter()
            .find(|s| s.path == first.path && s.at > first.at && s.fault.is_none())
            .unwrap_or_else(|| panic!("{} never retried", first.path));
        let waited = again.at - first.at;
        assert!(
            waited >= at_least,
            "retried {} after {waited:?}",
            first.path
        );
    }
}

#[tokio::test]
async fn copy_waits_out_429_with_retry_after() {
    let (app, proxy, image) = app_behind_proxy(100_000).await;
    proxy.inject(Class::BlobGet, Fault::throttle(2));

    let location = app.start_import(through(&proxy)).await;
    assert_copied(&app, app.wait(&location).await, &image).await;
    // Retry-After: 1, allowing for clock granularity.
    assert_retried_in_attempt(&app, &location, &proxy, Duration::from_millis(900)).await;
}

#[tokio::test]
async fn copy_retries_503_answers() {
    let (app, proxy, image) = app_behind_proxy(100_000).await;
    proxy.inject(Class::ManifestGet, Fault::unavailable(2));

    let location = app.start_import(through(&proxy)).await;
    assert_copied(&app, app.wait(&location).await, &image).await;
    assert_retried_in_attempt(&app, &location, &proxy, Duration::ZERO).await;
}

#[tokio::test]
async fn copy_of_a_corrupted_blob_fails_with_digest_mismatch_and_no_tag() {
    let (app, proxy, _image) = app_behind_proxy(100_000).await;
    proxy.inject(Class::BlobGet, Fault::Corrupt);

    let (status, body) = app.run_import(through(&proxy)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "DigestMismatch", "{body}");
    assert!(proxy.requests().iter().any(|s| s.fault == Some("corrupt")));
    skopeo::assert_no_manifest(&app.target, "app:v1").await;
}

#[tokio::test]
async fn copy_fetches_blobs_of_a_slow_source_concurrently() {
    let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
    let proxy = FaultProxy::start(&source.host).await;
    let app = spawn_app_with(2, source, target, &[&proxy.host]).await;
    app.create_target().await;
    let image = images::image("amd64", 5, 10_000);
    images::push(&app.source_registry(), "app", &image, Some("v1")).await;
    let latency = Duration::from_millis(400);
    proxy.inject(Class::BlobGet, Fault::Latency(latency));

    assert_copied(&app, app.run_import(through(&proxy)).await, &image).await;
    let mut arrivals: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|s| s.method == "GET" && s.path.contains("/blobs/"))
        .map(|s| s.at)
        .collect();
    assert_eq!(arrivals.len(), image.blobs.len());
    arrivals.sort();
    // One at a time, each GET would start at least `latency` after the previous one.
    let closest = arrivals.windows(2).map(|w| w[1] - w[0]).min().unwrap();
    assert!(
        closest < latency / 2,
        "blob GETs were {closest:?} apart at best"
    );
}
