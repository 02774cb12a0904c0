//! Per-tenant admission: 429 TooManyRequests with an integer Retry-After, nothing
//! stored, other tenants and idempotent repeats unaffected, race-safe under
//! concurrent submissions, and the per-minute window sliding.

use reqwest::{Method, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use super::app_with;
use crate::helpers::{API, TestApp, mint_all_roles, operation_id};

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
