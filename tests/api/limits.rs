//! Input and resource limits: per-tenant admission (429 TooManyRequests with
//! Retry-After, nothing stored, other tenants and idempotent repeats unaffected),
//! per-import blob and byte caps, the request-head bound, and the timeout that ends
//! a hung registry request.

use std::time::{Duration, Instant};

use ferry::config::ServeConfig;
use reqwest::{Method, Response};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use uuid::Uuid;

use crate::helpers::{
    API, TestApp, TestRegistry,
    fault::{Class, Fault, FaultProxy},
    images, mint_all_roles, operation_id, start_app,
};

/// ferry with `workers` and `configure` applied, and its `target1` registry.
async fn app_with(workers: usize, configure: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
    let app = start_app(workers, source, target, &[], configure, mint_all_roles).await;
    app.create_target().await;
    app
}

/// An import of `app:v1` from the source registry into `tag`.
fn body(app: &TestApp, tag: &str) -> Value {
    json!({
        "source": { "registryUri": app.source.host, "sourceImage": "app:v1" },
        "targetTags": [format!("app:{tag}")],
    })
}

/// Asserts a 429 TooManyRequests with an integer Retry-After; returns it.
async fn assert_limited(response: Response) -> u64 {
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("an integer Retry-After");
    assert!(retry_after >= 1);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "TooManyRequests", "{error}");
    retry_after
}

/// POST importImage on `target1` with a Repeatability-Request-ID.
async fn import_repeatable(app: &TestApp, body: Value, key: &str) -> Response {
    app.http
        .post(format!(
            "{}{}/importImage?{API}",
            app.base,
            app.registry_path("target1")
        ))
        .bearer_auth(&app.token)
        .header("repeatability-request-id", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_tenant_over_its_active_limit_gets_429_and_nothing_is_stored() {
    let app = app_with(0, |c| {
        c.limits.tenant_max_active = 2;
        c.limits.tenant_submissions_per_minute = 0;
    })
    .await;
    let first = import_repeatable(&app, body(&app, "a"), "key-a").await;
    assert_eq!(first.status(), 202);
    let first_location = first.headers()["location"].to_str().unwrap().to_owned();
    app.start_import(body(&app, "b")).await;

    let retry_after = assert_limited(app.import("target1", body(&app, "c")).await).await;
    assert_eq!(retry_after, 10);
    assert_eq!(
        app.operation_count().await,
        2,
        "a refused import was stored"
    );

    // A repeat of an admitted request still gets its operation, not a 429.
    let repeat = import_repeatable(&app, body(&app, "a"), "key-a").await;
    assert_eq!(repeat.status(), 202);
    assert_eq!(repeat.headers()["location"], first_location.as_str());
    assert_eq!(app.operation_count().await, 2);

    // Another tenant has its own allowance.
    let other = OtherTenant::new(&app).await;
    let response = other.import(&app, body(&app, "d")).await;
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());

    // Once one of the tenant's imports ends, the next one is admitted.
    sqlx::query("update operations set status = 'failed', finished_at = now() where id = $1")
        .bind(operation_id(&first_location))
        .execute(&app.pool)
        .await
        .unwrap();
    app.start_import(body(&app, "e")).await;
}

#[tokio::test]
async fn concurrent_submissions_never_pass_the_active_limit() {
    let app = app_with(0, |c| {
        c.limits.tenant_max_active = 3;
        c.limits.tenant_submissions_per_minute = 0;
    })
    .await;
    let submissions = (0..10).map(|i| app.import("target1", body(&app, &format!("t{i}"))));
    let statuses: Vec<u16> = futures_util::future::join_all(submissions)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(app.operation_count().await, 3);
}

#[tokio::test]
async fn submissions_per_minute_are_counted_in_a_sliding_window() {
    let app = app_with(0, |c| {
        c.limits.tenant_max_active = 0;
        c.limits.tenant_submissions_per_minute = 3;
    })
    .await;
    for i in 0..3 {
        app.start_import(body(&app, &format!("t{i}"))).await;
    }
    let retry_after = assert_limited(app.import("target1", body(&app, "t3")).await).await;
    assert!(
        (59..=60).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert_eq!(app.operation_count().await, 3);

    // The oldest submission 50 s ago: it leaves the window in 10 s.
    sqlx::query("update operations set created_at = now() - interval '50 seconds'")
        .execute(&app.pool)
        .await
        .unwrap();
    let retry_after = assert_limited(app.import("target1", body(&app, "t3")).await).await;
    assert!((9..=10).contains(&retry_after), "Retry-After {retry_after}");

    // Out of the window (even though still queued): admitted again.
    sqlx::query("update operations set created_at = now() - interval '61 seconds'")
        .execute(&app.pool)
        .await
        .unwrap();
    app.start_import(body(&app, "t3")).await;
    assert_eq!(app.operation_count().await, 4);
}

/// A second tenant with its own subscription and `target1` on the same registry.
struct OtherTenant {
    token: String,
    subscription: Uuid,
}

impl OtherTenant {
    async fn new(app: &TestApp) -> Self {
        let other = Self {
            token: mint_all_roles(Uuid::new_v4()),
            subscription: Uuid::new_v4(),
        };
        let body = json!({ "location": "westus", "sku": { "name": "Standard" }, "properties": { "loginServer": app.target.host } });
        let response = app
            .request(
                Method::PUT,
                &format!("{}?{API}", other.registry_path()),
                Some(&other.token),
                Some(body),
            )
            .await;
        assert_eq!(response.status(), 201);
        other
    }

    fn registry_path(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/rg1/providers/Microsoft.ContainerRegistry/registries/target1",
            self.subscription
        )
    }

    async fn import(&self, app: &TestApp, body: Value) -> Response {
        let path = format!("{}/importImage?{API}", self.registry_path());
        app.request(Method::POST, &path, Some(&self.token), Some(body))
            .await
    }
}

/// Imports `app:<tag>` and returns the failure code, or "Succeeded".
async fn outcome(app: &TestApp, tag: &str) -> (String, String) {
    let body = json!({
        "source": { "registryUri": app.source.host, "sourceImage": format!("app:{tag}") },
    });
    let (status, body) = app.run_import(body).await;
    if status == 200 {
        return ("Succeeded".into(), String::new());
    }
    let error = &body["error"];
    (
        error["code"].as_str().unwrap().to_owned(),
        error["message"].as_str().unwrap().to_owned(),
    )
}

/// Whether the target registry has `app:<tag>`.
async fn target_has(app: &TestApp, tag: &str) -> bool {
    app.target_registry()
        .manifest_digest(&"app".parse().unwrap(), tag)
        .await
        .unwrap()
        .is_some()
}

/// Asserts none of the image's blobs reached the target.
async fn assert_no_blobs(app: &TestApp, image: &images::TestImage) {
    let target = app.target_registry();
    for (digest, _) in &image.blobs {
        assert!(
            !target
                .blob_exists(&"app".parse().unwrap(), digest)
                .await
                .unwrap(),
            "blob {digest} was copied"
        );
    }
}

#[tokio::test]
async fn an_image_with_more_blobs_than_the_cap_fails_untagged() {
    // A config and a layer (2 blobs) fit; a config and two layers do not.
    let app = app_with(2, |c| c.limits.max_import_blobs = 2).await;
    let (fits, too_many) = (
        images::image("amd64", 1, 1024),
        images::image("amd64", 2, 1024),
    );
    let source = app.source_registry();
    images::push(&source, "app", &fits, Some("fits")).await;
    images::push(&source, "app", &too_many, Some("big")).await;

    let (code, message) = outcome(&app, "big").await;
    assert_eq!(code, "ImportTooLarge");
    assert!(
        message.contains("3 blobs") && message.contains("at most 2"),
        "{message}"
    );
    assert!(!target_has(&app, "big").await);
    assert_no_blobs(&app, &too_many).await;

    assert_eq!(outcome(&app, "fits").await.0, "Succeeded");
    assert!(target_has(&app, "fits").await);
}

#[tokio::test]
async fn an_image_larger_than_the_byte_cap_fails_untagged() {
    let app = app_with(2, |c| c.limits.max_import_bytes = 100 * 1024).await;
    let (fits, too_big) = (
        images::image("amd64", 1, 50 * 1024),
        images::image("amd64", 1, 200 * 1024),
    );
    let source = app.source_registry();
    images::push(&source, "app", &fits, Some("fits")).await;
    images::push(&source, "app", &too_big, Some("big")).await;

    let (code, message) = outcome(&app, "big").await;
    assert_eq!(code, "ImportTooLarge");
    assert!(message.contains("at most 102400 bytes"), "{message}");
    assert!(!target_has(&app, "big").await);
    assert_no_blobs(&app, &too_big).await;

    assert_eq!(outcome(&app, "fits").await.0, "Succeeded");
    assert!(target_has(&app, "fits").await);
}

/// Sends a raw HTTP/1.1 GET /healthz with one `x-filler` header of `size` bytes and
/// returns what came back before the server closed (a reset after the answer is
/// fine: the server does not read the rest of a refused head).
async fn raw_get_with_header(addr: std::net::SocketAddr, size: usize) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nx-filler: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(size)
    );
    // The server may stop reading (and reset) before the whole head is written.
    let _ = stream.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn an_oversized_request_head_is_refused_and_the_server_carries_on() {
    let app = app_with(0, |_| {}).await;
    let answer = raw_get_with_header(app.app.addr, 64 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // A head well within the bound (a large Entra token is ~8 KiB) is served.
    let answer = raw_get_with_header(app.app.addr, 16 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let response = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

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
