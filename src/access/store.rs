//! SQL for role assignments and the audit log. Every read is scoped by tenant.

use sqlx::PgPool;
use uuid::Uuid;

use super::{Grant, ScopePath};
use crate::{
    auth::{Role, TenantId},
    registries::store::{WriteError, claim_subscription},
};

/// A stored role assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub id: Uuid,
    pub scope: ScopePath,
    pub role: Role,
    pub principal_id: String,
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::DataImporter => "DataImporter",
        Role::DataReader => "DataReader",
        Role::Contributor => "Contributor",
        Role::Owner => "Owner",
    }
}

fn role_from_name(name: &str) -> Option<Role> {
    Role::ALL.into_iter().find(|r| role_name(*r) == name)
}

struct Row {
    id: Uuid,
    subscription_id: Uuid,
    resource_group: Option<String>,
    registry: Option<String>,
    role: String,
    principal_id: String,
}

impl Row {
    fn into_assignment(self) -> Option<Assignment> {
        Some(Assignment {
            id: self.id,
            scope: ScopePath {
                subscription: self.subscription_id,
                group: self.resource_group,
                registry: self.registry,
            },
            role: role_from_name(&self.role)?,
            principal_id: self.principal_id,
        })
    }
}

/// The roles `principal` holds at scopes of `tenant`.
pub async fn grants(pool: &PgPool, tenant: TenantId, principal: &str) -> sqlx::Result<Vec<Grant>> {
    let rows = sqlx::query_as!(
        Row,
        r#"select id, subscription_id, resource_group, registry, role, principal_id
           from role_assignments where tenant_id = $1 and principal_id = $2"#,
        tenant.0,
        principal
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(Row::into_assignment)
        .map(|a| Grant {
            scope: a.scope,
            role: a.role,
        })
        .collect())
}

/// The tenant's assignments in `subscription`.
pub async fn list(
    pool: &PgPool,
    tenant: TenantId,
    subscription: Uuid,
) -> sqlx::Result<Vec<Assignment>> {
    let rows = sqlx::query_as!(
        Row,
        r#"select id, subscription_id, resource_group, registry, role, principal_id
           from role_assignments where tenant_id = $1 and subscription_id = $2
           order by created_at, id"#,
        tenant.0,
        subscription
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(Row::into_assignment).collect())
}

/// Why an assignment could not be created.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    /// The id is taken by an assignment with other contents.
    #[error("the assignment id is taken")]
    IdTaken,
    /// The same role is already assigned to the principal at the scope.
    #[error("the role is already assigned")]
    Exists,
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl From<sqlx::Error> for AssignError {
    fn from(error: sqlx::Error) -> Self {
        Self::Write(WriteError::Database(error))
    }
}

/// Creates an assignment; `Ok(false)` when the identical one exists already.
pub async fn create(
    pool: &PgPool,
    tenant: TenantId,
    assignment: &Assignment,
    created_by: &str,
) -> Result<bool, AssignError> {
    let mut tx = pool.begin().await?;
    claim_subscription(&mut tx, tenant, assignment.scope.subscription).await?;
    let existing = sqlx::query_as!(
        Row,
        r#"select id, subscription_id, resource_group, registry, role, principal_id
           from role_assignments where id = $1 and tenant_id = $2"#,
        assignment.id,
        tenant.0
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = existing {
        return match row.into_assignment() {
            Some(found) if &found == assignment => Ok(false),
            _ => Err(AssignError::IdTaken),
        };
    }
    let inserted = sqlx::query!(
        r#"insert into role_assignments
               (id, tenant_id, subscription_id, resource_group, registry, role, principal_id, created_by)
           values ($1, $2, $3, $4, $5, $6, $7, $8)
           on conflict do nothing"#,
        assignment.id,
        tenant.0,
        assignment.scope.subscription,
        assignment.scope.group,
        assignment.scope.registry,
        role_name(assignment.role),
        assignment.principal_id,
        created_by
    )
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        // Another tenant's id, or the same grant under another id.
        return Err(AssignError::Exists);
    }
    tx.commit().await?;
    Ok(true)
}

/// Deletes an assignment of the tenant; returns it if it existed.
pub async fn delete(pool: &PgPool, tenant: TenantId, id: Uuid) -> sqlx::Result<Option<Assignment>> {
    let row = sqlx::query_as!(
        Row,
        r#"delete from role_assignments where id = $1 and tenant_id = $2
           returning id, subscription_id, resource_group, registry, role, principal_id"#,
        id,
        tenant.0
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(Row::into_assignment))
}

/// One audit record.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub at: chrono::DateTime<chrono::Utc>,
    pub tenant: Uuid,
    pub principal: String,
    pub action: String,
    pub scope: String,
    pub outcome: String,
    pub status: i16,
    pub request_id: Option<String>,
}

/// Appends an audit record.
pub async fn record(pool: &PgPool, record: &AuditRecord) -> sqlx::Result<()> {
    sqlx::query!(
        r#"insert into audit_records (at, tenant_id, principal_id, action, scope, outcome, status, request_id)
           values ($1, $2, $3, $4, $5, $6, $7, $8)"#,
        record.at,
        record.tenant,
        record.principal,
        record.action,
        record.scope,
        record.outcome,
        record.status,
        record.request_id
    )
    .execute(pool)
    .await
    .map(drop)
}

/// The newest audit records of a subscription since `since`, at most `limit`.
pub async fn audit_log(
    pool: &PgPool,
    tenant: TenantId,
    subscription: Uuid,
    since: chrono::DateTime<chrono::Utc>,
    limit: i64,
) -> sqlx::Result<Vec<AuditRecord>> {
    let prefix = format!("/subscriptions/{subscription}");
    sqlx::query_as!(
        AuditRecord,
        r#"select at, tenant_id as tenant, principal_id as principal, action, scope, outcome,
                  status, request_id
           from audit_records
           where tenant_id = $1 and at >= $2
             and (lower(scope) = $3 or starts_with(lower(scope), $3 || '/'))
           order by at desc, id desc limit $4"#,
        tenant.0,
        since,
        prefix,
        limit
    )
    .fetch_all(pool)
    .await
}
