//! Registry resources over ARM: CRUD, lists, case-insensitive lookups, write-only
//! credentials, and the subscription listing the CLI uses.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{API, spawn_app};

#[tokio::test]
async fn registry_lifecycle_follows_arm_semantics() {
    let app = spawn_app(0).await;
    let path = app.registry_path("MyRegistry1");
    let body = json!({
        "location": "westus", "tags": { "env": "test" }, "sku": { "name": "Premium" },
        "properties": { "loginServer": "127.0.0.1:5999", "credentials": { "username": "bob", "password": "s3cr3t-pw" } }
    });
    let response = app
        .request(
            Method::PUT,
            &format!("{path}?{API}"),
            None,
            Some(body.clone()),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert!(response.headers().contains_key("x-ms-request-id"));
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["id"], path);
    assert_eq!(created["type"], "Microsoft.ContainerRegistry/registries");
    assert_eq!(
        created["sku"],
        json!({ "name": "Premium", "tier": "Premium" })
    );
    assert_eq!(created["properties"]["loginServer"], "127.0.0.1:5999");
    assert_eq!(created["properties"]["provisioningState"], "Succeeded");
    assert_eq!(created["properties"]["hasCredentials"], true);
    assert!(!created.to_string().contains("s3cr3t-pw"));

    let again = app
        .request(Method::PUT, &format!("{path}?{API}"), None, Some(body))
        .await;
    assert_eq!(again.status(), 200);

    // Keyword segments and names match case-insensitively; stored casing is kept.
    let shouting = path
        .replace("resourceGroups", "RESOURCEGROUPS")
        .replace("MyRegistry1", "myregistry1")
        .replace("rg1", "RG1");
    let response = app
        .request(Method::GET, &format!("{shouting}?{API}"), None, None)
        .await;
    assert_eq!(response.status(), 200);
    let got: Value = response.json().await.unwrap();
    assert_eq!(got["name"], "MyRegistry1");
    assert!(!got.to_string().contains("s3cr3t-pw"));

    let patch =
        json!({ "tags": { "env": "prod" }, "properties": { "publicNetworkAccess": "Disabled" } });
    let response = app
        .request(Method::PATCH, &format!("{path}?{API}"), None, Some(patch))
        .await;
    assert_eq!(response.status(), 200);
    let patched: Value = response.json().await.unwrap();
    assert_eq!(patched["tags"]["env"], "prod");
    assert_eq!(patched["properties"]["publicNetworkAccess"], "Disabled");
    assert_eq!(patched["properties"]["loginServer"], "127.0.0.1:5999");

    let sub = app.subscription;
    for list in [
        format!(
            "/subscriptions/{sub}/resourceGroups/rg1/providers/Microsoft.ContainerRegistry/registries?{API}"
        ),
        format!("/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/registries?{API}"),
        format!(
            "/subscriptions/{sub}/resources?$filter=resourceType%20eq%20%27Microsoft.ContainerRegistry%2Fregistries%27&{API}"
        ),
    ] {
        let response = app.request(Method::GET, &list, None, None).await;
        assert_eq!(response.status(), 200, "{list}");
        let page: Value = response.json().await.unwrap();
        assert_eq!(page["value"].as_array().unwrap().len(), 1, "{list}");
        assert_eq!(page["value"][0]["id"], path);
        assert!(page["nextLink"].is_null());
    }
    let other = format!(
        "/subscriptions/{sub}/resources?$filter=resourceType%20eq%20%27Microsoft.Storage%2FstorageAccounts%27&{API}"
    );
    let page: Value = app
        .request(Method::GET, &other, None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["value"], json!([]));

    let subs: Value = app
        .request(
            Method::GET,
            "/subscriptions?api-version=2022-12-01",
            None,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(subs["value"][0]["subscriptionId"], sub.to_string());
    assert_eq!(subs["value"][0]["tenantId"], app.tenant.to_string());

    assert_eq!(
        app.request(Method::DELETE, &format!("{path}?{API}"), None, None)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.request(Method::DELETE, &format!("{path}?{API}"), None, None)
            .await
            .status(),
        204
    );
    let response = app
        .request(Method::GET, &format!("{path}?{API}"), None, None)
        .await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ResourceNotFound");
}

#[tokio::test]
async fn bad_registry_requests_get_arm_errors_and_store_nothing() {
    let app = spawn_app(0).await;
    let path = app.registry_path("goodname1");
    let cases = [
        (path.clone(), json!({}), 400, "MissingApiVersionParameter"),
        (
            format!("{path}?api-version=latest"),
            json!({}),
            400,
            "InvalidApiVersionParameter",
        ),
        (
            format!("{path}?{API}"),
            json!({ "sku": { "name": "Basic" }, "properties": { "loginServer": "r" } }),
            400,
            "InvalidParameters",
        ),
        (
            format!("{path}?{API}"),
            json!({ "location": "w", "sku": { "name": "Free" }, "properties": { "loginServer": "r" } }),
            400,
            "InvalidParameters",
        ),
        (
            format!("{path}?{API}"),
            json!({ "location": "w", "sku": { "name": "Basic" }, "properties": { "loginServer": "http://r/x" } }),
            400,
            "InvalidParameters",
        ),
        (
            format!("{path}?{API}"),
            json!({ "location": "w", "sku": { "name": "Basic" }, "properties": { "loginServer": "r", "publicNetworkAccess": "Sometimes" } }),
            400,
            "InvalidRequestContent",
        ),
        (
            app.registry_path("bad-name!").to_string() + "?" + API,
            json!({}),
            400,
            "InvalidResourceName",
        ),
        (
            format!(
                "/subscriptions/not-a-uuid/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/abcde?{API}"
            ),
            json!({}),
            400,
            "InvalidSubscriptionId",
        ),
    ];
    for (url, body, status, code) in cases {
        let response = app.request(Method::PUT, &url, None, Some(body)).await;
        assert_eq!(response.status(), status, "{url}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{url}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    let response = app
        .http
        .put(format!("{}{path}?{API}", app.base))
        .bearer_auth(&app.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "InvalidRequestContent"
    );
    let count: i64 = sqlx::query_scalar("select count(*) from registries")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);

    let response = app
        .request(
            Method::GET,
            &format!("/subscriptions/{}/nothing/here?{API}", app.subscription),
            None,
            None,
        )
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "NotFound"
    );
}

#[tokio::test]
async fn a_registry_name_is_unique_within_a_subscription() {
    let app = spawn_app(0).await;
    assert_eq!(
        app.put_registry("shared1", "127.0.0.1:5000").await.status(),
        201
    );
    let other_group = app.registry_path("SHARED1").replace("rg1", "rg2");
    let body = json!({ "location": "westus", "sku": { "name": "Basic" }, "properties": { "loginServer": "127.0.0.1:5000" } });
    let response = app
        .request(
            Method::PUT,
            &format!("{other_group}?{API}"),
            None,
            Some(body),
        )
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "RegistryNameInUse"
    );
}
