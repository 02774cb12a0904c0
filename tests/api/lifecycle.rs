//! An operation's life beyond the happy path, in one process: repeated submissions
//! return the original operation, cancellation (queued and running), and shutdown
//! handing running imports back to the queue.

use std::time::Duration;

use ferry::app::RunningApp;
use serde_json::{Value, json};

use crate::helpers::{
    API, TestApp, TestRegistry,
    fault::{Class, Fault, FaultProxy},
    images, spawn_app, spawn_app_with,
};

fn body(host: &str) -> Value {
    json!({ "source": { "registryUri": host, "sourceImage": "app:v1" }, "mode": "Force" })
}

async fn import_with_key(app: &TestApp, key: &str, host: &str) -> String {
    let response = app
        .http
        .post(format!(
            "{}{}/importImage?{API}",
            app.base,
            app.registry_path("target1")
        ))
        .bearer_auth(&app.token)
        .header("x-ms-client-request-id", key)
        .json(&body(host))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    response.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_repeated_submission_returns_the_original_operation() {
    let app = spawn_app(0).await;
    app.create_target().await;
    let host = app.source.host.clone();
    let first = import_with_key(&app, "retry-1", &host).await;
    let again = import_with_key(&app, "retry-1", &host).await;
    assert_eq!(first, again);
    assert_eq!(app.operation_count().await, 1);
    let other = import_with_key(&app, "retry-2", &host).await;
    assert_ne!(first, other);
    assert_eq!(app.operation_count().await, 2);
}

async fn cancel(app: &TestApp, location: &str) -> (u16, Value) {
    let (path, query) = location.split_once('?').unwrap();
    let response = app
        .http
        .post(format!("{path}/cancel?{query}"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_queued_import_is_canceled_at_once() {
    let app = spawn_app(0).await;
    app.create_target().await;
    let location = app.start_import(body(&app.source.host.clone())).await;
    let (status, _) = cancel(&app, &location).await;
    assert_eq!(status, 202);
    let (status, answer) = app.wait(&location).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "OperationCanceled");
    // Nothing is left to claim, and a finished operation cannot be canceled.
    assert!(!app.app.worker.run_once().await.unwrap());
    let (status, answer) = cancel(&app, &location).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "OperationAlreadyFinished");
}

/// An app whose source is behind a proxy that holds every blob GET for `delay`,
/// with `app:v1` (one layer) pushed.
async fn slow_source(delay: Duration) -> (TestApp, FaultProxy) {
    let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
    let proxy = FaultProxy::start(&source.host).await;
    proxy.inject(Class::BlobGet, Fault::Latency(delay));
    let app = spawn_app_with(0, source, target, &[&proxy.host]).await;
    app.create_target().await;
    let image = images::image("amd64", 1, 10_000);
    images::push(&app.source_registry(), "app", &image, Some("v1")).await;
    (app, proxy)
}

async fn status_of(app: &TestApp, location: &str) -> (String, i32) {
    sqlx::query_as::<_, (String, i32)>(
        "select status::text, attempts from operations where id = $1",
    )
    .bind(crate::helpers::operation_id(location))
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

async fn wait_until_running(app: &TestApp, location: &str) {
    for _ in 0..200 {
        if status_of(app, location).await.0 == "running" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the import never started");
}

#[tokio::test]
async fn a_running_import_stops_when_canceled_and_leaves_no_tag() {
    let (app, proxy) = slow_source(Duration::from_secs(30)).await;
    let location = app.start_import(body(&proxy.host)).await;
    let worker = app.app.worker.clone();
    let run = tokio::spawn(async move { worker.run_once().await.unwrap() });
    wait_until_running(&app, &location).await;
    let (status, _) = cancel(&app, &location).await;
    assert_eq!(status, 202);
    // The worker notices at its next heartbeat tick, well before the blob arrives.
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the canceled import kept running")
        .unwrap();
    let (status, answer) = app.wait(&location).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "OperationCanceled");
    let manifest = app
        .target_registry()
        .manifest_exists(&"app".parse().unwrap(), "v1")
        .await
        .unwrap();
    assert!(!manifest, "a canceled import left a tag");
}

#[tokio::test]
async fn shutdown_hands_running_imports_back_to_the_queue() {
    let (app, proxy) = slow_source(Duration::from_secs(30)).await;
    let location = app.start_import(body(&proxy.host)).await;
    // A second app on the same database runs the worker and is then shut down.
    let dir = tempfile::tempdir().unwrap();
    let config = crate::helpers::serve_config(
        dir.path(),
        vec![proxy.host.clone(), app.target.host.clone()],
        1,
    );
    let replica = RunningApp::start(&config, app.pool.clone()).await.unwrap();
    wait_until_running(&app, &location).await;
    let (_, attempts) = status_of(&app, &location).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        replica.shutdown(Duration::from_millis(200)),
    )
    .await
    .expect("shutdown did not finish");
    let (status, after) = status_of(&app, &location).await;
    assert_eq!(status, "queued", "released, not failed");
    assert_eq!(
        after,
        attempts - 1,
        "the interrupted attempt is not counted"
    );
}

#[tokio::test]
async fn the_per_host_transfer_cap_holds_across_replicas() {
    let delay = Duration::from_millis(300);
    let (app, proxy) = slow_source(delay).await;
    for (repo, arch) in [("one", "amd64"), ("two", "arm64")] {
        let image = images::image(arch, 3, 5_000);
        images::push(&app.source_registry(), repo, &image, Some("v1")).await;
    }
    // Two worker replicas on the same database, allowed one transfer per host in all.
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::helpers::serve_config(
            dir.path(),
            vec![proxy.host.clone(), app.target.host.clone()],
            2,
        );
        config.cluster_host_concurrency = 1;
        replicas.push((
            RunningApp::start(&config, app.pool.clone()).await.unwrap(),
            dir,
        ));
    }
    let imports: Vec<String> = futures_util::future::join_all(["one", "two"].map(|repo| {
        app.start_import(
            json!({ "source": { "registryUri": proxy.host, "sourceImage": format!("{repo}:v1") } }),
        )
    }))
    .await;
    for location in &imports {
        let (status, answer) = app.wait(location).await;
        assert_eq!(status, 200, "{answer}");
    }
    let mut arrivals: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|s| s.method == "GET" && s.path.contains("/blobs/sha256:"))
        .map(|s| s.at)
        .collect();
    arrivals.sort();
    assert_eq!(arrivals.len(), 8, "4 blobs per image");
    // One transfer at a time: each blob read starts after the previous one ended.
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter()
            .all(|gap| *gap >= delay - Duration::from_millis(50)),
        "overlapping transfers: {gaps:?}"
    );
    for (replica, _dir) in replicas {
        replica.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn a_canceled_import_deletes_its_open_upload_sessions() {
    let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
    let slow = FaultProxy::start(&source.host).await;
    slow.inject(Class::BlobGet, Fault::Latency(Duration::from_secs(30)));
    let watched = FaultProxy::start(&target.host).await;
    let app = spawn_app_with(0, source, target, &[&slow.host, &watched.host]).await;
    let response = app.put_registry("watched1", &watched.host).await;
    assert_eq!(response.status(), 201);
    let image = images::image("amd64", 1, 10_000);
    images::push(&app.source_registry(), "app", &image, Some("v1")).await;
    let response = app.import("watched1", body(&slow.host)).await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let worker = app.app.worker.clone();
    let run = tokio::spawn(async move { worker.run_once().await.unwrap() });
    wait_until_running(&app, &location).await;
    // Wait until the upload sessions are open (they open alongside the held reads).
    for _ in 0..200 {
        if watched.requests().iter().any(|s| s.method == "POST") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(cancel(&app, &location).await.0, 202);
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the canceled import kept running")
        .unwrap();
    let opened = watched
        .requests()
        .iter()
        .filter(|s| s.method == "POST" && s.path.contains("/blobs/uploads/"))
        .count();
    assert!(opened > 0, "no upload session was opened");
    for _ in 0..200 {
        let deleted = watched
            .requests()
            .iter()
            .filter(|s| s.method == "DELETE" && s.path.contains("/blobs/uploads/"))
            .count();
        if deleted == opened {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "open upload sessions were not deleted: {:#?}",
        watched.requests()
    );
}

#[tokio::test]
async fn host_slots_are_freed_as_soon_as_a_transfer_ends() {
    let slots = ferry::worker::slots::HostSlots::new(crate::helpers::fresh_database().await, 1);
    for _ in 0..5 {
        // A slot dropped at once (a tiny blob) must not wait out its expiry.
        let held = tokio::time::timeout(Duration::from_secs(5), slots.acquire("r.example"))
            .await
            .expect("the previous slot was not freed");
        assert!(held.is_some());
    }
}
