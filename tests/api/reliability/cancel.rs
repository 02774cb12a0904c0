//! Cancelling an import: a queued one at once, a running one at its worker's next
//! heartbeat tick; the poll then answers 400 OperationCanceled, no tag appears, and
//! the worker takes the next import. A finished import cannot be cancelled.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, TestRegistry, gate::GateProxy, images, ledger, skopeo, spawn_app, spawn_app_with,
};

/// POSTs the cancel action of the operation behind the poll URL `location`.
async fn cancel(app: &TestApp, location: &str) -> reqwest::Response {
    let relative = location.strip_prefix(&app.base).unwrap();
    let (path, query) = relative.split_once('?').unwrap();
    app.request(Method::POST, &format!("{path}/cancel?{query}"), None, None)
        .await
}

/// Asserts a 202 whose Location is the operation's poll URL.
async fn assert_accepted(response: reqwest::Response, location: &str) {
    let status = response.status();
    let headers = response.headers().clone();
    assert_eq!(status, 202, "{}", response.text().await.unwrap());
    assert_eq!(headers["location"].to_str().unwrap(), location);
}

async fn assert_error(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
}

fn import(source: &str, tag: &str) -> Value {
    json!({
        "source": { "registryUri": source, "sourceImage": "app:v1" },
        "targetTags": [format!("app:{tag}")],
    })
}

async fn status_of(app: &TestApp, location: &str) -> (String, i32) {
    let id = location
        .split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    sqlx::query_as("select status::text, attempts from operations where id = $1::uuid")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn cancel_of_a_queued_import_is_immediate() {
    let app = spawn_app(0).await;
    ledger::install(&app.pool).await;
    app.create_target().await;
    let image = images::image("amd64", 1, 10_000);
    images::push(&app.source_registry(), "app", &image, Some("v1")).await;
    let location = app.start_import(import(&app.source.host, "v1")).await;

    assert_accepted(cancel(&app, &location).await, &location).await;
    // No worker ran: the cancel itself ended it.
    assert_error(app.poll(&location).await, 400, "OperationCanceled").await;
    assert_eq!(status_of(&app, &location).await, ("canceled".into(), 0));
    assert!(
        !app.app.worker.run_once().await.unwrap(),
        "a worker claimed a canceled import"
    );
    assert_error(app.poll(&location).await, 400, "OperationCanceled").await;
    skopeo::assert_no_manifest(&app.target, "app:v1").await;
    assert_error(
        cancel(&app, &location).await,
        409,
        "OperationAlreadyFinished",
    )
    .await;
    assert!(ledger::not_terminal_once(&app.pool).await.is_empty());
}

#[tokio::test]
async fn cancel_of_a_running_import_stops_its_worker() {
    let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
    let gate = GateProxy::start(&source.host).await;
    // One worker: the second import runs only if the cancelled one let go of it.
    let app = spawn_app_with(1, source, target, &[&gate.host]).await;
    ledger::install(&app.pool).await;
    app.create_target().await;
    let image = images::image("amd64", 1, 10_000);
    images::push(&app.source_registry(), "app", &image, Some("v1")).await;

    gate.close();
    let location = app.start_import(import(&gate.host, "v1")).await;
    gate.wait_arrived(1, Duration::from_secs(20)).await;
    assert_eq!(status_of(&app, &location).await, ("running".into(), 1));

    assert_accepted(cancel(&app, &location).await, &location).await;
    let asked = Instant::now();
    let (status, body) = app.wait(&location).await;
    let stopped = asked.elapsed();
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "OperationCanceled", "{body}");
    assert!(
        stopped < Duration::from_secs(5),
        "cancel took {stopped:?} to stop the copy"
    );
    assert_eq!(status_of(&app, &location).await.0, "canceled");

    // The held blob GET may go on now: the cancelled copy must not resume.
    gate.open();
    let next = app.start_import(import(&gate.host, "v2")).await;
    let (status, body) = app.wait(&next).await;
    assert_eq!(status, 200, "{body}");
    skopeo::assert_manifest(&app.target, "app:v2", &image.manifest).await;
    skopeo::assert_no_manifest(&app.target, "app:v1").await;
    assert_error(app.poll(&location).await, 400, "OperationCanceled").await;

    assert_error(cancel(&app, &next).await, 409, "OperationAlreadyFinished").await;
    assert!(ledger::not_terminal_once(&app.pool).await.is_empty());
    eprintln!("cancel of a running import: canceled after {stopped:?}");
}
