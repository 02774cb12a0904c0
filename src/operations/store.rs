//! The only SQL the API path runs on operations: enqueue (one short insert
//! transaction) and read for polling. The worker's SQL lives in `worker::lease`.

use std::time::Duration;

use sqlx::{PgPool, types::Json};
use uuid::Uuid;

use super::{
    FailureCode, OperationId, OperationStatus, OperationView, Progress,
    quota::{Limited, TenantLimits},
    spec::ImportSpec,
};
use crate::{auth::TenantId, crypto::Sealed};

/// What the importImage handler enqueues.
#[derive(Debug)]
pub struct NewOperation {
    pub id: OperationId,
    /// The caller's tenant, whose limits the submission counts against.
    pub tenant: TenantId,
    pub subscription: Uuid,
    pub location: String,
    pub registry: Uuid,
    pub spec: ImportSpec,
    pub secret: Option<Sealed>,
    pub created_by: String,
    /// The client's key for a repeatable request, if it sent one.
    pub idempotency_key: Option<String>,
}

/// The operation a submission stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued now.
    New,
    /// A repeat of an earlier submission (same principal and key within 24 hours):
    /// the original operation and its location.
    Repeat(OperationId, String),
    /// Refused: the tenant is over one of its limits. Nothing was stored.
    Limited(Limited),
}

/// Inserts the operation (and its sealed source credentials) in one transaction;
/// the insert trigger wakes the workers. A repeated key returns the original (even
/// over a limit: it adds nothing); a tenant over `limits` is refused.
pub async fn enqueue(
    pool: &PgPool,
    op: NewOperation,
    limits: TenantLimits,
) -> sqlx::Result<Enqueued> {
    let mut tx = pool.begin().await?;
    if let Some(key) = &op.idempotency_key {
        // Serialises concurrent repeats of one key, so only one of them inserts.
        let lock = format!("{}/{}/{key}", op.subscription, op.created_by);
        sqlx::query!("select pg_advisory_xact_lock(hashtext($1))", lock)
            .execute(&mut *tx)
            .await?;
        let original = sqlx::query!(
            r#"select id, location from operations
               where subscription_id = $1 and created_by = $2 and idempotency_key = $3
                 and created_at > now() - interval '24 hours'
               order by created_at desc limit 1"#,
            op.subscription,
            op.created_by,
            key
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(original) = original {
            return Ok(Enqueued::Repeat(
                OperationId(original.id),
                original.location,
            ));
        }
    }
    if let Some(limited) = over_limit(&mut tx, op.tenant, limits).await? {
        return Ok(Enqueued::Limited(limited));
    }
    sqlx::query!(
        r#"insert into operations (id, subscription_id, location, registry_id, spec, created_by, idempotency_key)
           values ($1, $2, $3, $4, $5, $6, $7)"#,
        op.id.0,
        op.subscription,
        op.location,
        op.registry,
        Json(&op.spec) as _,
        op.created_by,
        op.idempotency_key
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
    tx.commit().await?;
    Ok(Enqueued::New)
}

/// Checks the tenant's limits under a per-tenant lock held until the enqueue
/// commits, so concurrent submissions on any replica count each other's inserts.
async fn over_limit(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    limits: TenantLimits,
) -> sqlx::Result<Option<Limited>> {
    if !limits.any() {
        return Ok(None);
    }
    // The two-key form: a lock space apart from the idempotency locks.
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtext('ferry.tenant_limits'), hashtext($1))",
        tenant.0.to_string()
    )
    .execute(&mut *tx)
    .await?;
    if limits.max_active > 0 {
        let active = sqlx::query_scalar!(
            r#"select count(*) as "count!" from operations
               where status in ('queued', 'running')
                 and subscription_id in (select id from subscriptions where tenant_id = $1)"#,
            tenant.0
        )
        .fetch_one(&mut *tx)
        .await?;
        if active >= i64::from(limits.max_active) {
            return Ok(Some(Limited::active(limits.max_active)));
        }
    }
    if limits.per_minute > 0 {
        let recent = sqlx::query!(
            r#"select count(*) as "count!",
                      extract(epoch from now() - min(created_at))::float8 as "oldest_age"
               from operations
               where created_at > now() - interval '1 minute'
                 and subscription_id in (select id from subscriptions where tenant_id = $1)"#,
            tenant.0
        )
        .fetch_one(&mut *tx)
        .await?;
        if recent.count >= i64::from(limits.per_minute) {
            let age = Duration::from_secs_f64(recent.oldest_age.unwrap_or(0.0).max(0.0));
            return Ok(Some(Limited::rate(limits.per_minute, age)));
        }
    }
    Ok(None)
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// It was queued and is now canceled.
    Canceled,
    /// It is running; its worker will stop it.
    Requested,
    /// It had already ended.
    AlreadyFinished,
}

/// Cancels a queued operation at once, or asks the worker of a running one to stop.
/// `None` when the tenant has no such operation.
pub async fn cancel(
    pool: &PgPool,
    tenant: TenantId,
    subscription: Uuid,
    id: OperationId,
    message: &str,
) -> sqlx::Result<Option<Cancel>> {
    let mut tx = pool.begin().await?;
    let status = sqlx::query_scalar!(
        r#"select o.status as "status: OperationStatus"
           from operations o join subscriptions s on s.id = o.subscription_id
           where o.id = $1 and o.subscription_id = $2 and s.tenant_id = $3
           for update of o"#,
        id.0,
        subscription,
        tenant.0
    )
    .fetch_optional(&mut *tx)
    .await?;
    let outcome = match status {
        None => return Ok(None),
        Some(OperationStatus::Queued) => {
            sqlx::query!(
                r#"update operations
                   set status = 'canceled', finished_at = now(), cancel_requested_at = now(),
                       error_code = $2, error_message = $3
                   where id = $1"#,
                id.0,
                FailureCode::OperationCanceled.as_str(),
                message
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "delete from operation_secrets where operation_id = $1",
                id.0
            )
            .execute(&mut *tx)
            .await?;
            Cancel::Canceled
        }
        Some(OperationStatus::Running) => {
            sqlx::query!(
                "update operations set cancel_requested_at = coalesce(cancel_requested_at, now()) where id = $1",
                id.0
            )
            .execute(&mut *tx)
            .await?;
            Cancel::Requested
        }
        Some(_) => Cancel::AlreadyFinished,
    };
    tx.commit().await?;
    Ok(Some(outcome))
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
