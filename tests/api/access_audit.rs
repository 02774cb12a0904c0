//! The audit trail: writes and refusals of authenticated callers are recorded, the
//! subscription's Owners read them through the activity-log route, nobody else can,
//! and no tenant ever sees another's records.

use ferry::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::access::{assignment_body, mint_as},
    helpers::{API, TestApp, spawn_app},
};

const WRITE: &str = "Microsoft.ContainerRegistry/registries/write";
const IMPORT: &str = "Microsoft.ContainerRegistry/registries/importImage/action";

/// The records of a log answer.
fn records(log: &Value) -> Vec<Value> {
    log["value"]
        .as_array()
        .unwrap_or_else(|| panic!("not a log: {log}"))
        .clone()
}

/// The one record with this operation, resource, caller and HTTP status.
fn find<'a>(
    records: &'a [Value],
    operation: &str,
    resource: &str,
    caller: &str,
    status: u16,
) -> &'a Value {
    let found: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["operationName"]["value"] == operation
                && r["resourceId"] == resource
                && r["caller"] == caller
                && r["httpStatusCode"] == status
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{operation} {resource} by {caller} ({status}) in {records:#?}"
    );
    found[0]
}

fn registry_body(app: &TestApp) -> Value {
    json!({ "location": "westus", "sku": { "name": "Basic" }, "properties": { "loginServer": app.target.host } })
}

#[tokio::test]
async fn owners_read_every_write_and_refusal_and_nobody_else_does() {
    let app = spawn_app(0).await;
    let admin = app.owner_token();
    let reader = mint_as(app.tenant, "reader", &[Role::DataReader]);
    let importer = mint_as(app.tenant, "importer", &[Role::DataImporter]);
    let registry = app.registry_in("rg1", "audit1");
    let at = |path: &str| format!("{path}?{API}");

    let (status, _) = app
        .call(
            Method::PUT,
            &at(&registry),
            &admin,
            Some(registry_body(&app)),
        )
        .await;
    assert_eq!(status, 201);
    let patch = json!({ "tags": { "k": "v" } });
    let (status, _) = app
        .call(Method::PATCH, &at(&registry), &admin, Some(patch))
        .await;
    assert_eq!(status, 200);
    let assignment = app.assign(&registry, Role::DataReader, "rita").await;
    let refused = app.registry_in("rg1", "audit2");
    let (status, _) = app
        .call(
            Method::PUT,
            &at(&refused),
            &reader,
            Some(registry_body(&app)),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app.call(Method::GET, &at(&registry), &reader, None).await;
    assert_eq!(status, 200, "reads are not recorded");
    let import = json!({ "source": { "registryUri": app.source.host, "sourceImage": "a:b" } });
    let missing = app.registry_in("rg1", "nosuchreg");
    let response = app
        .import_as(&importer, "rg1", "nosuchreg", import.clone())
        .await;
    assert_eq!(response.status(), 404);
    let response = app.import_as(&admin, "rg1", "audit1", import).await;
    assert_eq!(response.status(), 202);
    let assignment_path =
        format!("{registry}/providers/Microsoft.Authorization/roleAssignments/{assignment}");
    let (status, _) = app
        .delete_assignment(&admin, &registry, &assignment.to_string())
        .await;
    assert_eq!(status, 200);

    // Only the subscription's Owners read the log; a refusal is itself recorded.
    for (token, principal) in [
        (&reader, "reader"),
        (&importer, "importer"),
        (
            &mint_as(app.tenant, "contributor", &[Role::Contributor]),
            "contributor",
        ),
    ] {
        let (status, body) = app.activity_log(token).await;
        assert_eq!(status, 403, "{principal}: {body}");
        assert_eq!(body["error"]["code"], "AuthorizationFailed");
    }
    let (status, log) = app.activity_log(&admin).await;
    assert_eq!(status, 200, "{log}");
    let records = records(&log);
    for record in &records {
        assert_eq!(record["tenantId"], app.tenant.to_string(), "{record}");
        assert!(
            chrono::DateTime::parse_from_rfc3339(record["eventTimestamp"].as_str().unwrap())
                .is_ok()
        );
    }
    let times: Vec<&str> = records
        .iter()
        .map(|r| r["eventTimestamp"].as_str().unwrap())
        .collect();
    let mut newest_first = times.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, newest_first);

    let expected = [
        (WRITE, &registry, "admin", 201, "Succeeded"),
        (WRITE, &registry, "admin", 200, "Succeeded"),
        (WRITE, &refused, "reader", 403, "Denied"),
        (
            IMPORT,
            &format!("{missing}/importImage"),
            "importer",
            404,
            "Failed",
        ),
        (
            IMPORT,
            &format!("{registry}/importImage"),
            "admin",
            202,
            "Succeeded",
        ),
        (
            "Microsoft.Authorization/roleAssignments/write",
            &assignment_path,
            "admin",
            201,
            "Succeeded",
        ),
        (
            "Microsoft.Authorization/roleAssignments/delete",
            &assignment_path,
            "admin",
            200,
            "Succeeded",
        ),
    ];
    for (operation, resource, caller, status, outcome) in expected {
        let record = find(&records, operation, resource, caller, status);
        assert_eq!(record["status"]["value"], outcome, "{record}");
    }
    let log_path = format!(
        "{}/providers/Microsoft.Insights/eventtypes/management/values",
        app.subscription_path()
    );
    find(
        &records,
        "Microsoft.Insights/eventtypes/values/read",
        &log_path,
        "reader",
        403,
    );
    assert!(
        !records.iter().any(|r| r["httpStatusCode"] == 200
            && r["operationName"]["value"]
                .as_str()
                .unwrap()
                .ends_with("/read")),
        "a successful read was recorded: {records:#?}"
    );
    assert_eq!(records.len(), expected.len() + 3, "{records:#?}");

    // An Owner of the subscription by assignment reads it too; of a group, not.
    app.assign(&app.subscription_path(), Role::Owner, "sub-owner")
        .await;
    app.assign(&app.group_path("rg1"), Role::Owner, "group-owner")
        .await;
    let (status, _) = app
        .activity_log(&mint_as(app.tenant, "sub-owner", &[]))
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .activity_log(&mint_as(app.tenant, "group-owner", &[]))
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn the_log_filters_by_time() {
    let app = spawn_app(0).await;
    let admin = app.owner_token();
    app.create_registry("rg1", "timed1", &app.target.host, json!({}))
        .await;
    let base = format!(
        "{}/providers/Microsoft.Insights/eventtypes/management/values?{API}",
        app.subscription_path()
    );
    let filter = |at: &str| {
        let text = format!("eventTimestamp ge '{at}'");
        let encoded: String = url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
        format!("{base}&$filter={encoded}")
    };
    let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let (status, log) = app
        .call(Method::GET, &filter(&hour_ago), &admin, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(records(&log).len(), 1, "{log}");
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, log) = app.call(Method::GET, &filter(&later), &admin, None).await;
    assert_eq!((status, records(&log).len()), (200, 0));
    let (status, body) = app
        .call(Method::GET, &filter("yesterday"), &admin, None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["target"], "$filter");
}

#[tokio::test]
async fn no_tenant_sees_another_tenants_records() {
    let app = spawn_app(0).await;
    let admin = app.owner_token();
    app.create_registry("rg1", "ours1", &app.target.host, json!({}))
        .await;
    let (other, other_sub) = (Uuid::new_v4(), Uuid::new_v4());
    let other_admin = mint_as(other, "other-admin", &[Role::Owner]);
    let other_reader = mint_as(other, "other-reader", &[Role::DataReader]);
    let theirs = format!(
        "/subscriptions/{other_sub}/resourceGroups/rg1/providers/Microsoft.ContainerRegistry/registries/theirs1"
    );
    let body = registry_body(&app);
    // The other tenant writes in its own subscription, and tries ours.
    let (status, _) = app
        .call(
            Method::PUT,
            &format!("{theirs}?{API}"),
            &other_admin,
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 201);
    let ours = format!("{}?{API}", app.registry_in("rg1", "ours1"));
    let (status, _) = app
        .call(Method::PUT, &ours, &other_admin, Some(body.clone()))
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .call(Method::PUT, &ours, &other_reader, Some(body))
        .await;
    assert_eq!(status, 403);
    let reader_definition = app.role_definition_id(Role::DataReader).await;
    let (status, _) = app
        .put_assignment(
            &other_admin,
            &app.subscription_path(),
            &Uuid::new_v4().to_string(),
            assignment_body(&reader_definition, "mole"),
        )
        .await;
    assert_eq!(status, 404);

    let (status, log) = app.activity_log(&admin).await;
    assert_eq!(status, 200);
    let ours_only = records(&log);
    assert!(!ours_only.is_empty());
    assert!(
        ours_only
            .iter()
            .all(|r| r["tenantId"] == app.tenant.to_string() && r["caller"] == "admin"),
        "{ours_only:#?}"
    );
    // The other tenant's Owner sees its own subscription's records; ours does not
    // exist for it.
    let other_log = format!(
        "/subscriptions/{other_sub}/providers/Microsoft.Insights/eventtypes/management/values?{API}"
    );
    let (status, log) = app.call(Method::GET, &other_log, &other_admin, None).await;
    assert_eq!(status, 200);
    let theirs_only = records(&log);
    assert_eq!(theirs_only.len(), 1, "{theirs_only:#?}");
    assert_eq!(theirs_only[0]["resourceId"], theirs);
    let (status, log) = app.activity_log(&other_admin).await;
    assert_eq!(status, 404, "{log}");
    assert_eq!(log["error"]["code"], "SubscriptionNotFound");
}

#[tokio::test]
async fn records_carry_the_correlation_id_of_their_request() {
    let app = spawn_app(0).await;
    let response = app
        .http
        .put(format!(
            "{}{}?{API}",
            app.base,
            app.registry_in("rg1", "corr1")
        ))
        .bearer_auth(app.owner_token())
        .header("x-ms-correlation-request-id", "corr-1234")
        .json(&registry_body(&app))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let ids = ["x-ms-request-id", "x-ms-correlation-request-id"]
        .map(|h| response.headers()[h].to_str().unwrap().to_owned());
    let (_, log) = app.activity_log(&app.owner_token()).await;
    let correlation = &records(&log)[0]["correlationId"];
    assert!(
        ids.iter().any(|id| correlation == id.as_str()),
        "correlationId {correlation}, response ids {ids:?}"
    );
}

#[tokio::test]
async fn registry_names_do_not_change_the_recorded_operation() {
    let app = spawn_app(0).await;
    let admin = app.owner_token();
    for name in ["importImage", "roleAssignments"] {
        app.create_registry("rg1", name, &app.target.host, json!({}))
            .await;
        let (_, log) = app.activity_log(&admin).await;
        let record = &records(&log)[0];
        assert_eq!(record["resourceId"], app.registry_in("rg1", name));
        assert_eq!(record["operationName"]["value"], WRITE, "{record}");
    }
}
