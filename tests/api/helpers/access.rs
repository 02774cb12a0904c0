//! Helpers for the access tests: tokens for named principals, ARM scope paths, one
//! method per `Microsoft.Authorization` and activity-log endpoint, and a snapshot of
//! the state a refused request must leave alone.

use std::time::Duration;

use ferry::auth::Role;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{API, SECRET, TestApp};

const ASSIGNMENTS: &str = "providers/Microsoft.Authorization/roleAssignments";

/// A token for principal `subject` of `tenant`, carrying `roles` tenant-wide.
pub fn mint_as(tenant: Uuid, subject: &str, roles: &[Role]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| r.claim_value().to_owned()).collect();
    ferry::auth::mint_token(
        &SecretString::from(SECRET),
        tenant,
        &roles,
        Duration::from_secs(3600),
        subject,
    )
    .unwrap()
}

/// The body of a role-assignment PUT.
pub fn assignment_body(role_definition_id: &str, principal: &str) -> Value {
    json!({ "properties": { "roleDefinitionId": role_definition_id, "principalId": principal } })
}

/// What refused requests must not change: registries, role assignments and
/// operations, as JSON rows (audit records are left out: refusals add one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub registries: String,
    pub assignments: String,
    pub operations: String,
}

impl TestApp {
    /// A token for the tenant's administrator: the Owner role, principal "admin".
    pub fn owner_token(&self) -> String {
        mint_as(self.tenant, "admin", &[Role::Owner])
    }

    /// `/subscriptions/{sub}`.
    pub fn subscription_path(&self) -> String {
        format!("/subscriptions/{}", self.subscription)
    }

    /// `/subscriptions/{sub}/resourceGroups/{group}`.
    pub fn group_path(&self, group: &str) -> String {
        format!("{}/resourceGroups/{group}", self.subscription_path())
    }

    /// The ARM id of registry `name` in `group`.
    pub fn registry_in(&self, group: &str, name: &str) -> String {
        format!(
            "{}/providers/Microsoft.ContainerRegistry/registries/{name}",
            self.group_path(group)
        )
    }

    /// Sends `method path` (path with its query) as `token`; the status and the JSON
    /// body (`Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let response = self.request(method, path, Some(token), body).await;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, body)
    }

    /// PUT registry `name` in `group` bound to `login_server`, with extra `properties`.
    pub async fn put_registry_as(
        &self,
        token: &str,
        group: &str,
        name: &str,
        login_server: &str,
        mut properties: Value,
    ) -> (u16, Value) {
        properties["loginServer"] = login_server.into();
        let body = json!({ "location": "westus", "sku": { "name": "Standard" }, "properties": properties });
        let path = format!("{}?{API}", self.registry_in(group, name));
        self.call(Method::PUT, &path, token, Some(body)).await
    }

    /// Creates registry `name` in `group` as the administrator (asserting 201).
    pub async fn create_registry(&self, group: &str, name: &str, login_server: &str, props: Value) {
        let (status, body) = self
            .put_registry_as(&self.owner_token(), group, name, login_server, props)
            .await;
        assert_eq!(status, 201, "creating {group}/{name}: {body}");
    }

    /// POST importImage on registry `name` in `group` as `token`.
    pub async fn import_as(
        &self,
        token: &str,
        group: &str,
        name: &str,
        body: Value,
    ) -> reqwest::Response {
        let path = format!("{}/importImage?{API}", self.registry_in(group, name));
        self.request(Method::POST, &path, Some(token), Some(body))
            .await
    }

    /// GETs an absolute poll URL as `token`.
    pub async fn poll_as(&self, location: &str, token: &str) -> (u16, Value) {
        let path = location.strip_prefix(&self.base).expect("a ferry URL");
        self.call(Method::GET, path, token, None).await
    }

    /// The ARM id of `role`'s definition, as `roleDefinitions` lists it.
    pub async fn role_definition_id(&self, role: Role) -> String {
        let path = format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions?{API}",
            self.subscription_path()
        );
        let (status, body) = self
            .call(Method::GET, &path, &self.owner_token(), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["properties"]["tokenRoleValue"] == role.claim_value())
            .and_then(|d| d["id"].as_str())
            .unwrap_or_else(|| panic!("no definition for {role:?}: {body}"))
            .to_owned()
    }

    /// The URL path (with query) of assignment `id` at `scope`.
    pub fn assignment_path(&self, scope: &str, id: &str) -> String {
        format!("{scope}/{ASSIGNMENTS}/{id}?{API}")
    }

    /// PUT assignment `id` at `scope` with `body` as `token`.
    pub async fn put_assignment(
        &self,
        token: &str,
        scope: &str,
        id: &str,
        body: Value,
    ) -> (u16, Value) {
        let path = self.assignment_path(scope, id);
        self.call(Method::PUT, &path, token, Some(body)).await
    }

    /// Grants `role` to `principal` at `scope` as the administrator; the new id.
    pub async fn assign(&self, scope: &str, role: Role, principal: &str) -> Uuid {
        let id = Uuid::new_v4();
        let body = assignment_body(&self.role_definition_id(role).await, principal);
        let (status, answer) = self
            .put_assignment(&self.owner_token(), scope, &id.to_string(), body)
            .await;
        assert_eq!(status, 201, "assigning {role:?} at {scope}: {answer}");
        id
    }

    /// GET assignment `id` at `scope` as `token`.
    pub async fn get_assignment(&self, token: &str, scope: &str, id: &str) -> (u16, Value) {
        let path = self.assignment_path(scope, id);
        self.call(Method::GET, &path, token, None).await
    }

    /// DELETE assignment `id` at `scope` as `token`.
    pub async fn delete_assignment(&self, token: &str, scope: &str, id: &str) -> (u16, Value) {
        let path = self.assignment_path(scope, id);
        self.call(Method::DELETE, &path, token, None).await
    }

    /// Lists the assignments at `scope` as `token`, optionally with a `$filter`.
    pub async fn list_assignments(
        &self,
        token: &str,
        scope: &str,
        filter: Option<&str>,
    ) -> (u16, Value) {
        let mut path = format!("{scope}/{ASSIGNMENTS}?{API}");
        if let Some(filter) = filter {
            let encoded: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
            path = format!("{path}&$filter={encoded}");
        }
        self.call(Method::GET, &path, token, None).await
    }

    /// The subscription's activity log as `token`.
    pub async fn activity_log(&self, token: &str) -> (u16, Value) {
        let path = format!(
            "{}/providers/Microsoft.Insights/eventtypes/management/values?{API}",
            self.subscription_path()
        );
        self.call(Method::GET, &path, token, None).await
    }

    /// The registries, role assignments and operations stored right now.
    pub async fn snapshot(&self) -> Snapshot {
        let rows = |table: &str, columns: &str| {
            format!(
                "select coalesce(json_agg(t order by t.id)::text, '[]') from (select {columns} from {table}) t"
            )
        };
        let query = |sql: String| async move {
            sqlx::query_scalar::<_, String>(&sql)
                .fetch_one(&self.pool)
                .await
                .unwrap()
        };
        Snapshot {
            registries: query(rows(
                "registries",
                "id, subscription_id, resource_group, name, location, sku, tags, login_server, properties, updated_by, updated_at",
            ))
            .await,
            assignments: query(rows(
                "role_assignments",
                "id, tenant_id, subscription_id, resource_group, registry, role, principal_id",
            ))
            .await,
            operations: query(rows("operations", "id, status, registry_id")).await,
        }
    }
}
