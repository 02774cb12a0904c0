//! Authentication and authorization: 401 with a Bearer challenge for missing or bad
//! tokens, 403 for missing roles, 404 across tenants — and nothing persisted.

use std::time::Duration;

use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{API, SECRET, mint, spawn_app};

#[tokio::test]
async fn missing_and_bad_tokens_are_401_with_a_challenge() {
    let app = spawn_app(0).await;
    app.create_target().await;
    let body = json!({ "source": { "registryUri": app.source.host, "sourceImage": "a:b" } });
    let url = format!("{}/importImage?{API}", app.registry_path("target1"));
    let expired = {
        // Expired well beyond the leeway.
        let claims = json!({ "tid": app.tenant, "sub": "x", "roles": ["ContainerRegistryDataImporter"], "exp": chrono::Utc::now().timestamp() - 3600 });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let foreign = ferry::auth::mint_token(
        &SecretString::from("some-other-secret-that-is-long-enough"),
        app.tenant,
        &["ContainerRegistryDataImporter".into()],
        Duration::from_secs(60),
        "x",
    )
    .unwrap();
    let no_tid = {
        let claims = json!({ "sub": "x", "roles": ["ContainerRegistryDataImporter"], "exp": chrono::Utc::now().timestamp() + 3600 });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    for (token, code) in [
        ("", "AuthenticationFailed"),
        ("garbage", "InvalidAuthenticationToken"),
        (foreign.as_str(), "InvalidAuthenticationToken"),
        (no_tid.as_str(), "InvalidAuthenticationToken"),
        (expired.as_str(), "ExpiredAuthenticationToken"),
    ] {
        let mut request = app.http.post(format!("{}{url}", app.base)).json(&body);
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{code}");
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"]["code"],
            code
        );
    }
    assert_eq!(app.operation_count().await, 0);
}

#[tokio::test]
async fn roles_gate_each_action_before_anything_is_stored() {
    let app = spawn_app(0).await;
    app.create_target().await;
    let reader = mint(app.tenant, &["ContainerRegistryDataReader".into()]);
    let importer = mint(app.tenant, &["ContainerRegistryDataImporter".into()]);
    let contributor = mint(app.tenant, &["ContainerRegistryContributor".into()]);
    let import_url = format!("{}/importImage?{API}", app.registry_path("target1"));
    let body = json!({ "source": { "registryUri": app.source.host, "sourceImage": "a:b" } });

    // Reader and Contributor cannot import, even with an invalid body (403 before 400).
    for token in [&reader, &contributor] {
        let response = app
            .request(Method::POST, &import_url, Some(token), Some(json!({})))
            .await;
        assert_eq!(response.status(), 403);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "AuthorizationFailed");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("importImage/action")
        );
    }
    assert_eq!(app.operation_count().await, 0);
    // Importer and Reader cannot create registries.
    let put = format!("{}?{API}", app.registry_path("another1"));
    let registry = json!({ "location": "w", "sku": { "name": "Basic" }, "properties": { "loginServer": "r" } });
    for token in [&reader, &importer] {
        let response = app
            .request(Method::PUT, &put, Some(token), Some(registry.clone()))
            .await;
        assert_eq!(response.status(), 403);
    }
    // Reader can read; Importer can import.
    let get = format!("{}?{API}", app.registry_path("target1"));
    assert_eq!(
        app.request(Method::GET, &get, Some(&reader), None)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.request(Method::POST, &import_url, Some(&importer), Some(body))
            .await
            .status(),
        202
    );
    assert_eq!(app.operation_count().await, 1);
}

#[tokio::test]
async fn other_tenants_see_nothing() {
    let app = spawn_app(0).await;
    app.create_target().await;
    let location = app
        .start_import(json!({ "source": { "registryUri": app.source.host, "sourceImage": "a:b" } }))
        .await;
    let stranger = crate::helpers::mint_all_roles(uuid::Uuid::new_v4());

    let get = format!("{}?{API}", app.registry_path("target1"));
    let response = app.request(Method::GET, &get, Some(&stranger), None).await;
    assert_eq!(response.status(), 404);
    let import_url = format!("{}/importImage?{API}", app.registry_path("target1"));
    let body = json!({ "source": { "registryUri": app.source.host, "sourceImage": "a:b" } });
    assert_eq!(
        app.request(Method::POST, &import_url, Some(&stranger), Some(body))
            .await
            .status(),
        404
    );
    let response = app
        .http
        .get(&location)
        .bearer_auth(&stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let registry = json!({ "location": "w", "sku": { "name": "Basic" }, "properties": { "loginServer": "r" } });
    let response = app
        .request(
            Method::PUT,
            &format!("{}?{API}", app.registry_path("mine12")),
            Some(&stranger),
            Some(registry),
        )
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "SubscriptionNotFound"
    );
    let subs: Value = app
        .request(
            Method::GET,
            "/subscriptions?api-version=2022-12-01",
            Some(&stranger),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(subs["value"], json!([]));
    assert_eq!(app.operation_count().await, 1);
}

#[tokio::test]
async fn health_endpoints_need_no_token() {
    let app = spawn_app(0).await;
    assert_eq!(
        app.http
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.http
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
