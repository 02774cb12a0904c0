//! The only SQL the API path runs on operations: enqueue (one short insert
//! transaction) and read for polling. The worker's SQL lives in `worker::lease`.

use sqlx::{PgPool, types::Json};
use uuid::Uuid;

use super::{FailureCode, OperationId, OperationStatus, OperationView, Progress, spec::ImportSpec};
use crate::{auth::TenantId, crypto::Sealed};

/// What the importImage handler enqueues.
#[derive(Debug)]
pub struct NewOperation {
    pub id: OperationId,
    pub subscription: Uuid,
    pub location: String,
    pub registry: Uuid,
    pub spec: ImportSpec,
    pub secret: Option<Sealed>,
    pub created_by: String,
}

/// Inserts the operation (and its sealed source credentials) in one transaction;
/// the insert trigger wakes the workers.
pub async fn enqueue(pool: &PgPool, op: NewOperation) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        r#"insert into operations (id, subscription_id, location, registry_id, spec, created_by)
           values ($1, $2, $3, $4, $5, $6)"#,
        op.id.0,
        op.subscription,
        op.location,
        op.registry,
        Json(&op.spec) as _,
        op.created_by
    )
    .execute(&mut *tx)
    .await?;
    if let Some(secret) = op.secret {
        sqlx::query!(
            "insert into operation_secrets (operation_id, key_id, nonce, ciphertext) values ($1, $2, $3, $4)",
            op.id.0,
            secret.key_id,
            secret.nonce,
            secret.ciphertext
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// An operation of the tenant's subscription, for polling.
pub async fn find(
    pool: &PgPool,
    tenant: TenantId,
    subscription: Uuid,
    id: OperationId,
) -> sqlx::Result<Option<OperationView>> {
    let row = sqlx::query!(
        r#"select o.id, o.status as "status: OperationStatus", o.progress as "progress: Json<Progress>",
                  o.error_code, o.error_message, o.created_at, o.finished_at,
                  r.resource_group as "group?", r.name as "registry?"
           from operations o join subscriptions s on s.id = o.subscription_id
                left join registries r on r.id = o.registry_id
           where o.id = $1 and o.subscription_id = $2 and s.tenant_id = $3"#,
        id.0,
        subscription,
        tenant.0
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| OperationView {
        id: OperationId(row.id),
        target: row.group.zip(row.registry),
        status: row.status,
        progress: row.progress.0,
        failure: row.error_code.map(|code| {
            (
                FailureCode::parse(&code),
                row.error_message.unwrap_or_default(),
            )
        }),
        created_at: row.created_at,
        finished_at: row.finished_at,
    }))
}
