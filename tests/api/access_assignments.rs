//! The role-assignment API: idempotent PUT and its conflicts, validation, reading,
//! deleting and listing around a scope, who may manage access where, and that an
//! assignment counts from the moment it is made until it is deleted.

use ferry::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::access::{assignment_body, mint_as},
    helpers::{API, TestApp, spawn_app},
};

/// An app with registries rega1 and regb1 in rg1 and regc1 in rg2.
async fn app_with_registries() -> TestApp {
    let app = spawn_app(0).await;
    let host = app.target.host.clone();
    for (group, name) in [("rg1", "rega1"), ("rg1", "regb1"), ("rg2", "regc1")] {
        app.create_registry(group, name, &host, json!({})).await;
    }
    app
}

/// The principal ids of an assignment list, sorted.
fn principals(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list["value"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|a| a["properties"]["principalId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn assignment_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from role_assignments")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn identical_puts_are_200_and_conflicting_ones_409() {
    let app = app_with_registries().await;
    let owner = app.owner_token();
    let reader = app.role_definition_id(Role::DataReader).await;
    let importer = app.role_definition_id(Role::DataImporter).await;
    let (group, sub) = (app.group_path("rg1"), app.subscription_path());
    let id = Uuid::new_v4().to_string();

    let (status, created) = app
        .put_assignment(&owner, &group, &id, assignment_body(&reader, "alice"))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created,
        json!({
            "id": format!("{group}/providers/Microsoft.Authorization/roleAssignments/{id}"),
            "name": id,
            "type": "Microsoft.Authorization/roleAssignments",
            "properties": { "roleDefinitionId": reader, "principalId": "alice", "scope": group },
        })
    );
    let (status, again) = app
        .put_assignment(&owner, &group, &id, assignment_body(&reader, "alice"))
        .await;
    assert_eq!((status, &again), (200, &created));

    // The id holds another role, the same grant at another scope, or the grant
    // exists under another id: all 409, none stored.
    for (scope, id, definition) in [
        (&group, id.clone(), &importer),
        (&sub, id.clone(), &reader),
        (&group, Uuid::new_v4().to_string(), &reader),
    ] {
        let (status, body) = app
            .put_assignment(&owner, scope, &id, assignment_body(definition, "alice"))
            .await;
        assert_eq!(status, 409, "{scope} {id}: {body}");
        assert_eq!(body["error"]["code"], "RoleAssignmentExists");
    }
    assert_eq!(assignment_count(&app).await, 1);

    // A bare definition GUID names the role too.
    let bare = importer.rsplit('/').next().unwrap();
    let (status, body) = app
        .put_assignment(
            &owner,
            &group,
            &Uuid::new_v4().to_string(),
            assignment_body(bare, "alice"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["properties"]["roleDefinitionId"], importer);
}

#[tokio::test]
async fn invalid_assignments_are_refused_and_nothing_is_stored() {
    let app = app_with_registries().await;
    let owner = app.owner_token();
    let reader = app.role_definition_id(Role::DataReader).await;
    let group = app.group_path("rg1");
    let id = || Uuid::new_v4().to_string();
    let unknown = format!(
        "{}/providers/Microsoft.Authorization/roleDefinitions/{}",
        app.subscription_path(),
        Uuid::new_v4()
    );
    let cases = [
        (
            "not-a-guid".to_owned(),
            assignment_body(&reader, "alice"),
            "name",
        ),
        (
            id(),
            assignment_body(&unknown, "alice"),
            "properties.roleDefinitionId",
        ),
        (
            id(),
            assignment_body("reader", "alice"),
            "properties.roleDefinitionId",
        ),
        (
            id(),
            assignment_body(&reader, " "),
            "properties.principalId",
        ),
        (id(), json!({}), "properties"),
        (
            id(),
            json!({ "properties": { "roleDefinitionId": reader, "principalId": "alice", "scope": app.subscription_path() } }),
            "properties.scope",
        ),
        (
            id(),
            json!({ "properties": { "roleDefinitionId": reader, "principalId": "alice", "scope": app.group_path("rg2") } }),
            "properties.scope",
        ),
    ];
    for (id, body, target) in cases {
        let (status, answer) = app.put_assignment(&owner, &group, &id, body).await;
        assert_eq!(status, 400, "{target}: {answer}");
        assert_eq!(answer["error"]["code"], "InvalidParameters", "{answer}");
        assert_eq!(answer["error"]["target"], target, "{answer}");
    }
    // A registry scope must name a registry of the tenant.
    let missing = app.registry_in("rg1", "nosuchreg");
    let (status, answer) = app
        .put_assignment(&owner, &missing, &id(), assignment_body(&reader, "alice"))
        .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "ResourceNotFound");
    assert_eq!(assignment_count(&app).await, 0);

    // A body scope equal to the path's is fine.
    let body = json!({ "properties": { "roleDefinitionId": reader, "principalId": "alice", "scope": group } });
    let (status, answer) = app.put_assignment(&owner, &group, &id(), body).await;
    assert_eq!(status, 201, "{answer}");
}

#[tokio::test]
async fn a_body_scope_matches_the_path_case_insensitively() {
    let app = app_with_registries().await;
    let reader = app.role_definition_id(Role::DataReader).await;
    // What clients that lower-case ARM ids (the CLI does) send.
    let scope = app.registry_in("rg1", "rega1").to_ascii_lowercase();
    let body = json!({ "properties": { "roleDefinitionId": reader, "principalId": "alice", "scope": scope } });
    let (status, answer) = app
        .put_assignment(
            &app.owner_token(),
            &app.registry_in("rg1", "rega1"),
            &Uuid::new_v4().to_string(),
            body,
        )
        .await;
    assert_eq!(status, 201, "{answer}");
}

#[tokio::test]
async fn assignments_are_read_deleted_and_listed_around_a_scope() {
    let app = app_with_registries().await;
    let owner = app.owner_token();
    let (sub, rg1, rg2) = (
        app.subscription_path(),
        app.group_path("rg1"),
        app.group_path("rg2"),
    );
    let (rega, regb) = (
        app.registry_in("rg1", "rega1"),
        app.registry_in("rg1", "regb1"),
    );
    app.assign(&sub, Role::DataReader, "at-sub").await;
    let at_group = app.assign(&rg1, Role::DataImporter, "at-rg1").await;
    app.assign(&rega, Role::DataReader, "at-rega1").await;
    app.assign(&regb, Role::DataReader, "at-regb1").await;
    app.assign(&rg2, Role::DataReader, "at-rg2").await;
    let all = ["at-rega1", "at-regb1", "at-rg1", "at-rg2", "at-sub"];

    // Lists show what applies at the scope (above it) and what lies below it.
    for (scope, want) in [
        (&sub, all.to_vec()),
        (&rg1, vec!["at-rega1", "at-regb1", "at-rg1", "at-sub"]),
        (&rega, vec!["at-rega1", "at-rg1", "at-sub"]),
        (&rg2, vec!["at-rg2", "at-sub"]),
    ] {
        let (status, list) = app.list_assignments(&owner, scope, None).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(principals(&list), want, "at {scope}");
        assert_eq!(list["nextLink"], Value::Null);
    }
    let (status, list) = app
        .list_assignments(&owner, &sub, Some("principalId eq 'at-rega1'"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(principals(&list), ["at-rega1"]);
    assert_eq!(list["value"][0]["properties"]["scope"], rega);

    // One assignment is read and deleted at its own scope only.
    let id = at_group.to_string();
    let (status, got) = app.get_assignment(&owner, &rg1, &id).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["properties"]["principalId"], "at-rg1");
    let (status, got) = app.get_assignment(&owner, &sub, &id).await;
    assert_eq!(status, 404, "{got}");
    assert_eq!(got["error"]["code"], "RoleAssignmentNotFound");
    let (status, _) = app.delete_assignment(&owner, &sub, &id).await;
    assert_eq!(status, 204, "a delete at another scope finds nothing");
    let (status, deleted) = app.delete_assignment(&owner, &rg1, &id).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["properties"]["principalId"], "at-rg1");
    let (status, body) = app.delete_assignment(&owner, &rg1, &id).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, _) = app.get_assignment(&owner, &rg1, &id).await;
    assert_eq!(status, 404);
    assert_eq!(assignment_count(&app).await, 4);
}

#[tokio::test]
async fn owners_manage_access_only_within_their_scope() {
    let app = app_with_registries().await;
    let reader = app.role_definition_id(Role::DataReader).await;
    let (sub, rg1, rg2) = (
        app.subscription_path(),
        app.group_path("rg1"),
        app.group_path("rg2"),
    );
    let (rega, regb) = (
        app.registry_in("rg1", "rega1"),
        app.registry_in("rg1", "regb1"),
    );
    let existing = app.assign(&sub, Role::DataReader, "someone").await;
    app.assign(&rg1, Role::Owner, "group-owner").await;
    app.assign(&rega, Role::Owner, "registry-owner").await;
    let group_owner = mint_as(app.tenant, "group-owner", &[]);
    let registry_owner = mint_as(app.tenant, "registry-owner", &[]);
    let contributor = mint_as(app.tenant, "contributor", &[Role::Contributor]);
    let manage = "Microsoft.Authorization/roleAssignments/write";

    for (token, scope, want) in [
        (&group_owner, &sub, 403),
        (&group_owner, &rg2, 403),
        (&group_owner, &rg1, 201),
        (&group_owner, &rega, 201),
        (&registry_owner, &rg1, 403),
        (&registry_owner, &regb, 403),
        (&registry_owner, &rega, 201),
        (&contributor, &rega, 403),
    ] {
        let count = assignment_count(&app).await;
        let (status, body) = app
            .put_assignment(
                token,
                scope,
                &Uuid::new_v4().to_string(),
                assignment_body(&reader, &format!("grantee-{}", Uuid::new_v4())),
            )
            .await;
        assert_eq!(status, want, "{scope}: {body}");
        if want == 403 {
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(manage) && message.contains(&format!("'{scope}'")),
                "{message}"
            );
            assert_eq!(assignment_count(&app).await, count);
        }
    }
    // Nor may a group Owner remove an assignment made above its scope, or read
    // the subscription's activity log.
    let (status, _) = app
        .delete_assignment(&group_owner, &sub, &existing.to_string())
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .get_assignment(&app.owner_token(), &sub, &existing.to_string())
        .await;
    assert_eq!(status, 200, "the assignment is still there");
    let (status, body) = app.activity_log(&group_owner).await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn assignments_count_at_once_and_stop_when_deleted() {
    let app = app_with_registries().await;
    let frank = mint_as(app.tenant, "frank", &[]);
    let rega = app.registry_in("rg1", "rega1");
    let list = format!(
        "{}/providers/Microsoft.ContainerRegistry/registries?{API}",
        app.subscription_path()
    );
    let get = format!("{rega}?{API}");
    let patch = json!({ "tags": { "by": "frank" } });
    assert_eq!(app.call(Method::GET, &get, &frank, None).await.0, 403);
    assert_eq!(app.call(Method::GET, &list, &frank, None).await.0, 403);

    let read = app.assign(&rega, Role::DataReader, "frank").await;
    assert_eq!(app.call(Method::GET, &get, &frank, None).await.0, 200);
    let (status, listed) = app.call(Method::GET, &list, &frank, None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = listed["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["rega1"], "only the registry frank may read");
    let (status, _) = app
        .call(Method::PATCH, &get, &frank, Some(patch.clone()))
        .await;
    assert_eq!(status, 403);

    let write = app
        .assign(&app.group_path("rg1"), Role::Contributor, "frank")
        .await;
    let (status, body) = app
        .call(Method::PATCH, &get, &frank, Some(patch.clone()))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tags"]["by"], "frank");

    let owner = app.owner_token();
    let (status, _) = app
        .delete_assignment(&owner, &app.group_path("rg1"), &write.to_string())
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        app.call(Method::PATCH, &get, &frank, Some(patch)).await.0,
        403
    );
    let (status, _) = app
        .delete_assignment(&owner, &rega, &read.to_string())
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.call(Method::GET, &get, &frank, None).await.0, 403);
}

#[tokio::test]
async fn an_encoded_scope_is_checked_as_the_resource_it_decodes_to() {
    let app = app_with_registries().await;
    let contributor = app.role_definition_id(Role::Contributor).await;
    // `rg%32` decodes to rg2: the assignment is made, listed and enforced there.
    let (status, _) = app
        .put_assignment(
            &app.owner_token(),
            &app.group_path("rg%32"),
            &Uuid::new_v4().to_string(),
            assignment_body(&contributor, "mallory"),
        )
        .await;
    assert_eq!(status, 201);
    let (status, listed) = app
        .list_assignments(
            &app.owner_token(),
            &app.group_path("rg2"),
            Some("principalId eq 'mallory'"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["value"].as_array().unwrap().len(), 1, "{listed}");
    // So a DELETE spelled `rg%31` is about rg1, where mallory has no rights.
    let mallory = mint_as(app.tenant, "mallory", &[]);
    let path = format!("{}?{API}", app.registry_in("rg%31", "rega1"));
    let (deleted, body) = app.call(Method::DELETE, &path, &mallory, None).await;
    assert_eq!(deleted, 403, "{body}");
    let (still, _) = app
        .call(
            Method::GET,
            &format!("{}?{API}", app.registry_in("rg1", "rega1")),
            &app.owner_token(),
            None,
        )
        .await;
    assert_eq!(still, 200);
}
