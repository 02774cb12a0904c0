//! importImage request validation: each bad field is a 400 ARM error naming it, an
//! unknown target registry is a 404, and nothing is ever queued.

use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test]
async fn each_bad_import_field_is_a_400_and_nothing_is_queued() {
    let app = spawn_app(0).await;
    app.create_target().await;
    let host = app.source.host.clone();
    let cases = [
        (json!({}), "source"),
        (
            json!({ "source": { "registryUri": host } }),
            "source.sourceImage",
        ),
        (
            json!({ "source": { "registryUri": host, "sourceImage": "UPPER:case" } }),
            "source.sourceImage",
        ),
        (
            json!({ "source": { "registryUri": host, "sourceImage": "a@sha256:123" } }),
            "source.sourceImage",
        ),
        (json!({ "source": { "sourceImage": "a:b" } }), "source"),
        (
            json!({ "source": { "registryUri": host, "resourceId": "/x", "sourceImage": "a:b" } }),
            "source",
        ),
        (
            json!({ "source": { "registryUri": "https://example/x", "sourceImage": "a:b" } }),
            "source.registryUri",
        ),
        (
            json!({ "source": { "registryUri": host, "sourceImage": "a:b", "credentials": { "username": "u" } } }),
            "source.credentials.password",
        ),
        (
            json!({ "source": { "registryUri": host, "sourceImage": "a:b" }, "targetTags": ["x@sha256:0000"] }),
            "targetTags",
        ),
        (
            json!({ "source": { "registryUri": host, "sourceImage": "a:b" }, "targetTags": ["Bad Tag"] }),
            "targetTags",
        ),
        (
            json!({ "source": { "registryUri": host, "sourceImage": "a:b" }, "untaggedTargetRepositories": ["UP"] }),
            "untaggedTargetRepositories",
        ),
        (
            json!({ "source": { "registryUri": host, "sourceImage": "a:b" }, "mode": "Maybe" }),
            "mode",
        ),
        (
            json!({ "source": { "resourceId": "/subscriptions/x/bad", "sourceImage": "a:b" } }),
            "source.resourceId",
        ),
    ];
    for (body, target) in cases {
        let response = app.import("target1", body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(
            error["error"]["code"], "InvalidParameters",
            "{body}: {error}"
        );
        assert_eq!(error["error"]["target"], target, "{body}: {error}");
    }
    let wrong_type = app.import("target1", json!({ "source": "nope" })).await;
    assert_eq!(wrong_type.status(), 400);
    let error: Value = wrong_type.json().await.unwrap();
    assert_eq!(error["error"]["code"], "InvalidRequestContent");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        !message.contains("SourceBody") && !message.contains("struct"),
        "{message}"
    );
    assert_eq!(app.operation_count().await, 0);
}

#[tokio::test]
async fn unknown_registries_are_404() {
    let app = spawn_app(0).await;
    app.create_target().await;
    let response = app
        .import(
            "nosuchregistry",
            json!({ "source": { "registryUri": app.source.host, "sourceImage": "a:b" } }),
        )
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "ResourceNotFound"
    );
    let missing_source = app.registry_path("ghost1");
    let response = app
        .import(
            "target1",
            json!({ "source": { "resourceId": missing_source, "sourceImage": "a:b" } }),
        )
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(app.operation_count().await, 0);
}

#[tokio::test]
async fn acr_import_policies_are_enforced_at_submission() {
    let app = spawn_app(0).await;
    app.create_target().await;
    assert_eq!(
        app.put_registry("source1", &app.source.host).await.status(),
        201
    );
    let source_path = app.registry_path("source1");
    let app = &app;
    let patch = |path: String, body: Value| async move {
        let url = format!("{path}?{}", crate::helpers::API);
        app.request(reqwest::Method::PATCH, &url, None, Some(body))
            .await
    };

    let closed =
        json!({ "properties": { "policies": { "exportPolicy": { "status": "disabled" } } } });
    assert_eq!(patch(source_path.clone(), closed).await.status(), 200);
    let response = app
        .import(
            "target1",
            json!({ "source": { "resourceId": source_path, "sourceImage": "a:b" } }),
        )
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "InvalidParameters");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("export policy"),
        "{error}"
    );

    let sealed = json!({ "properties": { "publicNetworkAccess": "Disabled", "networkRuleBypassOptions": "None" } });
    assert_eq!(
        patch(app.registry_path("target1"), sealed).await.status(),
        200
    );
    let response = app
        .import(
            "target1",
            json!({ "source": { "registryUri": app.source.host, "sourceImage": "a:b" } }),
        )
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("networkRuleBypassOptions"),
        "{error}"
    );
    assert_eq!(app.operation_count().await, 0);
}

#[tokio::test]
async fn unknown_fields_and_oversized_bodies_are_refused_and_nothing_is_queued() {
    let app = spawn_app(0).await;
    app.create_target().await;
    let host = app.source.host.clone();
    let cases = [
        json!({ "source": { "registryUri": host, "sourceImage": "a:b" }, "targetTag": ["typo"] }),
        json!({ "source": { "registryUri": host, "sourceImage": "a:b", "registry": "x" } }),
        json!({ "source": { "registryUri": host, "sourceImage": "a:b",
                            "credentials": { "username": "u", "password": "p", "token": "t" } } }),
    ];
    for body in cases {
        let response = app.import("target1", body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], "InvalidRequestContent", "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("unknown field"),
            "{answer}"
        );
    }
    // Just over the limit: 413, before any JSON is parsed.
    let padding = "x".repeat(ferry::api::MAX_BODY);
    let body = json!({ "source": { "registryUri": host, "sourceImage": "a:b" }, "mode": padding });
    let response = app.import("target1", body).await;
    assert_eq!(response.status(), 413);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "PayloadTooLarge");
    assert_eq!(app.operation_count().await, 0);
}
