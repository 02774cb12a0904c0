//! Scoped rights on real imports (an importer of one registry, a `resourceId` source
//! that needs read rights, polls that need read rights on the target), and the
//! policy and tenant refusals: each refused import queues nothing and reaches no
//! registry.

use ferry::{auth::Role, operations::reference::Repository};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::access::mint_as,
    helpers::{TestApp, TestRegistry, fault::FaultProxy, images, spawn_app, spawn_app_with},
};

/// The 403 of `answer` names `action` over `scope`.
fn assert_refused(status: u16, answer: &Value, action: &str, scope: &str) {
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], "AuthorizationFailed");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("'{action}'")) && message.contains(&format!("'{scope}'")),
        "expected {action} over {scope}: {message}"
    );
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Imports as `token` into `name` in rg1, runs the worker, and returns the poll URL
/// after checking the import succeeded.
async fn import_and_run(app: &TestApp, token: &str, name: &str, body: Value) -> String {
    let response = app.import_as(token, "rg1", name, body).await;
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(app.app.worker.run_once().await.unwrap());
    let (status, body) = app.poll_as(&location, token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "Succeeded");
    location
}

#[tokio::test]
async fn scoped_rights_decide_imports_sources_and_polls() {
    let app = spawn_app(0).await;
    let (target, source) = (app.target.host.clone(), app.source.host.clone());
    app.create_registry("rg1", "rega1", &target, json!({}))
        .await;
    app.create_registry("rg1", "regb1", &target, json!({}))
        .await;
    app.create_registry("rg1", "source1", &source, json!({}))
        .await;
    let image = images::image("amd64", 2, 20_000);
    images::push(&app.source_registry(), "team/app", &image, Some("v1")).await;
    let (rega, regb, source_id) = (
        app.registry_in("rg1", "rega1"),
        app.registry_in("rg1", "regb1"),
        app.registry_in("rg1", "source1"),
    );
    app.assign(&rega, Role::DataImporter, "alice").await;
    let alice = mint_as(app.tenant, "alice", &[]);
    let import = "Microsoft.ContainerRegistry/registries/importImage/action";
    let read = "Microsoft.ContainerRegistry/registries/read";
    let by_uri = |tag: &str| json!({ "source": { "registryUri": source, "sourceImage": "team/app:v1" }, "targetTags": [format!("copied/app:{tag}")] });
    let by_id = |tag: &str| json!({ "source": { "resourceId": source_id, "sourceImage": "team/app:v1" }, "targetTags": [format!("copied/app:{tag}")] });

    // An importer of rega1 imports there, and the image arrives.
    let location = import_and_run(&app, &alice, "rega1", by_uri("uri")).await;
    let copied = app
        .target_registry()
        .get_manifest(&"copied/app".parse::<Repository>().unwrap(), "uri")
        .await
        .unwrap();
    assert_eq!(copied.digest, image.manifest.digest);

    // Not into regb1, and not from a source registry it may not read.
    let (status, body) = answer(app.import_as(&alice, "rg1", "regb1", by_uri("b")).await).await;
    assert_refused(status, &body, import, &regb);
    let (status, body) = answer(app.import_as(&alice, "rg1", "rega1", by_id("id")).await).await;
    assert_refused(status, &body, read, &source_id);
    assert_eq!(app.operation_count().await, 1);

    // Read rights on the source make the resourceId import work.
    let read_source = app.assign(&source_id, Role::DataReader, "alice").await;
    import_and_run(&app, &alice, "rega1", by_id("id")).await;
    assert!(
        app.target_registry()
            .manifest_exists(&"copied/app".parse::<Repository>().unwrap(), "id")
            .await
            .unwrap()
    );

    // Polling needs read rights on the operation's target registry.
    app.assign(&source_id, Role::DataReader, "bob").await;
    app.assign(&regb, Role::Owner, "bob").await;
    app.assign(&app.group_path("rg1"), Role::DataReader, "carol")
        .await;
    let (status, body) = app
        .poll_as(&location, &mint_as(app.tenant, "bob", &[]))
        .await;
    assert_refused(status, &body, read, &rega);
    let (status, body) = app
        .poll_as(&location, &mint_as(app.tenant, "carol", &[]))
        .await;
    assert_eq!((status, &body["status"]), (200, &json!("Succeeded")));

    // Without the importer assignment alice can neither poll nor import.
    let owner = app.owner_token();
    let (_, importer) = app
        .list_assignments(&owner, &rega, Some("principalId eq 'alice'"))
        .await;
    let importer_id = importer["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["properties"]["scope"] == rega.as_str())
        .and_then(|a| a["name"].as_str())
        .unwrap()
        .to_owned();
    let (status, _) = app.delete_assignment(&owner, &rega, &importer_id).await;
    assert_eq!(status, 200);
    let (status, body) = app.poll_as(&location, &alice).await;
    assert_refused(status, &body, read, &rega);
    let (status, body) = answer(app.import_as(&alice, "rg1", "rega1", by_uri("x")).await).await;
    assert_refused(status, &body, import, &rega);
    let (status, _) = app
        .delete_assignment(&owner, &source_id, &read_source.to_string())
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.operation_count().await, 2);
}

#[tokio::test]
async fn policy_and_tenant_refusals_queue_nothing_and_reach_no_registry() {
    let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
    // One proxy per source address: open, closed in this tenant, closed in another.
    let open = FaultProxy::start(&source.host).await;
    let closed = FaultProxy::start(&source.host).await;
    let foreign_closed = FaultProxy::start(&source.host).await;
    let hosts = [
        open.host.as_str(),
        closed.host.as_str(),
        foreign_closed.host.as_str(),
    ];
    let app = spawn_app_with(0, source, target, &hosts).await;
    let importer = mint_as(
        app.tenant,
        "importer",
        &[Role::DataImporter, Role::DataReader],
    );
    let target = app.target.host.clone();
    let closed_props = json!({ "publicNetworkAccess": "Disabled" });
    app.create_registry("rg1", "target1", &target, json!({}))
        .await;
    app.create_registry(
        "rg1",
        "sealed1",
        &target,
        json!({ "publicNetworkAccess": "Disabled", "networkRuleBypassOptions": "None" }),
    )
    .await;
    app.create_registry(
        "rg1",
        "trusted1",
        &target,
        json!({ "publicNetworkAccess": "Disabled", "networkRuleBypassOptions": "AzureServices" }),
    )
    .await;
    app.create_registry("rg1", "closed1", &closed.host, closed_props.clone())
        .await;
    app.create_registry(
        "rg1",
        "noexport1",
        &open.host,
        json!({ "policies": { "exportPolicy": { "status": "disabled" } } }),
    )
    .await;
    // The other tenant's registries: one open, one closed.
    let stranger = mint_as(Uuid::new_v4(), "admin", &[Role::Owner]);
    let theirs = format!(
        "/subscriptions/{}/resourceGroups/rg1/providers/Microsoft.ContainerRegistry/registries/theirs1",
        Uuid::new_v4()
    );
    let body = |host: &str, props: &Value| {
        let mut props = props.clone();
        props["loginServer"] = host.into();
        json!({ "location": "westus", "sku": { "name": "Basic" }, "properties": props })
    };
    let put = format!("{theirs}?{}", crate::helpers::API);
    let (status, _) = app
        .call(
            reqwest::Method::PUT,
            &put,
            &stranger,
            Some(body(&open.host, &json!({}))),
        )
        .await;
    assert_eq!(status, 201);
    let put_closed = put.replace("theirs1", "theirs2");
    let (status, _) = app
        .call(
            reqwest::Method::PUT,
            &put_closed,
            &stranger,
            Some(body(&foreign_closed.host, &closed_props)),
        )
        .await;
    assert_eq!(status, 201);

    let uri = |host: &str| json!({ "source": { "registryUri": host, "sourceImage": "app:v1" } });
    let id = |id: &str| json!({ "source": { "resourceId": id, "sourceImage": "app:v1" } });
    let nowhere = app.registry_in("rg1", "nosuchreg");
    let refusals = [
        ("target1", id(&theirs), 404, "ResourceNotFound", None),
        ("target1", id(&nowhere), 404, "ResourceNotFound", None),
        (
            "target1",
            uri(&closed.host),
            400,
            "InvalidParameters",
            Some("source.registryUri"),
        ),
        (
            "target1",
            uri(&foreign_closed.host),
            400,
            "InvalidParameters",
            Some("source.registryUri"),
        ),
        (
            "target1",
            id(&app.registry_in("rg1", "noexport1")),
            400,
            "InvalidParameters",
            Some("source.resourceId"),
        ),
        (
            "sealed1",
            uri(&open.host),
            400,
            "InvalidParameters",
            Some("networkRuleBypassOptions"),
        ),
    ];
    for (registry, request, status, code, target) in refusals {
        let (got, answer) = answer(
            app.import_as(&importer, "rg1", registry, request.clone())
                .await,
        )
        .await;
        assert_eq!(got, status, "{request}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        if let Some(target) = target {
            assert_eq!(answer["error"]["target"], target, "{answer}");
        }
        assert_eq!(app.operation_count().await, 0, "{request} queued");
    }
    // A foreign registry is as absent as one that never existed.
    let (_, foreign) = answer(
        app.import_as(&importer, "rg1", "target1", id(&theirs))
            .await,
    )
    .await;
    let (_, missing) = answer(
        app.import_as(&importer, "rg1", "target1", id(&nowhere))
            .await,
    )
    .await;
    assert_eq!(
        foreign["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&theirs, "X"),
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&nowhere, "X")
    );

    // What the rules allow: the tenant's own closed registry by resourceId, an
    // open one by address, and a closed target that lets trusted services in.
    let allowed = [
        ("target1", id(&app.registry_in("rg1", "closed1"))),
        ("target1", uri(&open.host)),
        ("trusted1", uri(&open.host)),
    ];
    for (registry, request) in allowed {
        let (status, answer) = answer(
            app.import_as(&importer, "rg1", registry, request.clone())
                .await,
        )
        .await;
        assert_eq!(status, 202, "{request}: {answer}");
    }
    assert_eq!(app.operation_count().await, 3);
    for proxy in [&open, &closed, &foreign_closed] {
        assert!(proxy.requests().is_empty(), "{} was contacted", proxy.host);
    }
}

#[tokio::test]
async fn a_closed_registry_is_refused_under_any_spelling_of_its_address() {
    let app = spawn_app(0).await;
    app.create_target().await;
    // Nothing is contacted: no worker runs.
    app.create_registry(
        "rg1",
        "closed1",
        "127.0.0.1",
        json!({ "publicNetworkAccess": "Disabled" }),
    )
    .await;
    let body = json!({ "source": { "registryUri": "127.0.0.1:443", "sourceImage": "app:v1" } });
    let (status, answer) = answer(app.import("target1", body).await).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["target"], "source.registryUri");
    assert_eq!(app.operation_count().await, 0);
}
