//! The queue's SQL: claim one ready operation under a lease, extend it, and end it.
//! Every write after the claim is fenced with `lease_owner`, so a worker that lost
//! its lease (and whose operation was rescued) can no longer change anything.

use std::time::Duration;

use sqlx::{PgPool, types::Json};
use uuid::Uuid;

use crate::{
    crypto::Sealed,
    operations::{FailureCode, OperationId, Progress, spec::ImportSpec},
};

/// An operation this worker now holds.
#[derive(Debug)]
pub struct Claimed {
    pub id: OperationId,
    pub spec: ImportSpec,
    pub registry: Option<Uuid>,
    pub attempts: i32,
    pub max_attempts: i32,
    /// An earlier claim ran it (and may have got as far as tagging).
    pub ran_before: bool,
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// Claims the oldest ready operation, skipping rows other workers have locked.
pub async fn claim(pool: &PgPool, owner: Uuid, lease: Duration) -> sqlx::Result<Option<Claimed>> {
    let row = sqlx::query!(
        r#"update operations
           set status = 'running', lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2),
               attempts = attempts + 1, started_at = coalesce(started_at, now())
           where id = (select id from operations
                       where status = 'queued' and run_after <= now()
                       order by run_after, created_at
                       for update skip locked
                       limit 1)
           returning id, spec as "spec: Json<ImportSpec>", registry_id, attempts, max_attempts,
                     started_at < now() as "ran_before!""#,
        owner,
        seconds(lease)
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| Claimed {
        id: OperationId(r.id),
        spec: r.spec.0,
        registry: r.registry_id,
        attempts: r.attempts,
        max_attempts: r.max_attempts,
        ran_before: r.ran_before,
    }))
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// The lease is ours and extended.
    Held,
    /// The lease is ours and extended, but a client asked to cancel the import.
    CancelRequested,
    /// Another worker owns the operation now (or it ended).
    Lost,
}

/// Extends the lease and records progress.
pub async fn heartbeat(
    pool: &PgPool,
    id: OperationId,
    owner: Uuid,
    lease: Duration,
    progress: &Progress,
) -> sqlx::Result<Beat> {
    let cancel = sqlx::query_scalar!(
        r#"update operations set lease_expires_at = now() + make_interval(secs => $3), progress = $4
           where id = $1 and lease_owner = $2 and status = 'running'
           returning cancel_requested_at is not null as "cancel!""#,
        id.0,
        owner,
        seconds(lease),
        Json(progress) as _
    )
    .fetch_optional(pool)
    .await?;
    Ok(match cancel {
        None => Beat::Lost,
        Some(true) => Beat::CancelRequested,
        Some(false) => Beat::Held,
    })
}

/// Gives a held operation back to the queue without counting the attempt (this
/// process is shutting down); false when the lease was no longer ours.
pub async fn release(pool: &PgPool, id: OperationId, owner: Uuid) -> sqlx::Result<bool> {
    let result = sqlx::query!(
        r#"update operations
           set status = 'queued', lease_owner = null, lease_expires_at = null,
               attempts = greatest(attempts - 1, 0), run_after = now()
           where id = $1 and lease_owner = $2 and status = 'running'"#,
        id.0,
        owner
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Deletes up to `batch` operations that finished more than `retention` ago;
/// returns how many.
pub async fn prune(pool: &PgPool, retention: Duration, batch: i64) -> sqlx::Result<u64> {
    let result = sqlx::query!(
        r#"delete from operations where id in (
               select id from operations
               where finished_at < now() - make_interval(secs => $1)
               order by finished_at limit $2)"#,
        seconds(retention),
        batch
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

/// How a held operation ends.
#[derive(Debug)]
pub enum Outcome {
    Succeeded,
    Failed(FailureCode, String),
    /// A transient failure: back to the queue after a backoff computed in SQL.
    Retry(FailureCode, String),
    /// Stopped on the client's request.
    Canceled,
}

/// What a canceled operation's poll says.
pub const CANCELED_MESSAGE: &str = "The import was canceled at the client's request.";

/// Ends (or re-queues) an operation; its sealed source credentials go in the same
/// transaction when it becomes terminal. False when the lease was lost.
pub async fn finish(
    pool: &PgPool,
    id: OperationId,
    owner: Uuid,
    outcome: &Outcome,
    progress: &Progress,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let (status, code, message) = match outcome {
        Outcome::Succeeded => ("succeeded", None, None),
        Outcome::Failed(code, message) => ("failed", Some(code.as_str()), Some(message.as_str())),
        Outcome::Retry(code, message) => ("queued", Some(code.as_str()), Some(message.as_str())),
        Outcome::Canceled => (
            "canceled",
            Some(FailureCode::OperationCanceled.as_str()),
            Some(CANCELED_MESSAGE),
        ),
    };
    let result = sqlx::query!(
        r#"update operations
           set status = $3::text::operation_status, lease_owner = null, lease_expires_at = null,
               error_code = $4, error_message = $5, progress = $6,
               finished_at = case when $3 = 'queued' then null else now() end,
               run_after = case when $3 = 'queued'
                   then now() + least(interval '2 seconds' * power(2, attempts - 1), interval '5 minutes')
                   else run_after end
           where id = $1 and lease_owner = $2 and status = 'running'"#,
        id.0,
        owner,
        status,
        code,
        message,
        Json(progress) as _
    )
    .execute(&mut *tx)
    .await?;
    if result.rows_affected() != 1 {
        return Ok(false);
    }
    if status != "queued" {
        sqlx::query!(
            "delete from operation_secrets where operation_id = $1",
            id.0
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Returns operations whose lease expired (their worker died) to the queue, or
/// fails them when they have used all their attempts. Returns how many it touched.
pub async fn rescue(pool: &PgPool) -> sqlx::Result<u64> {
    let rows = sqlx::query_scalar!(
        r#"with rescued as (
               update operations
               set status = case when attempts >= max_attempts then 'failed' else 'queued' end::operation_status,
                   lease_owner = null, lease_expires_at = null,
                   error_code = case when attempts >= max_attempts then 'ImportFailed' else error_code end,
                   error_message = case when attempts >= max_attempts
                       then 'The import was interrupted too many times.' else error_message end,
                   finished_at = case when attempts >= max_attempts then now() end
               where status = 'running' and lease_expires_at < now()
               returning id, status
           ), cleaned as (
               delete from operation_secrets where operation_id in (select id from rescued where status = 'failed')
           )
           select count(*) as "count!" from rescued"#
    )
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(rows).unwrap_or(0))
}

/// The sealed source credentials given with an operation, if any.
pub async fn operation_secret(pool: &PgPool, id: OperationId) -> sqlx::Result<Option<Sealed>> {
    sqlx::query_as!(
        Sealed,
        "select key_id, nonce, ciphertext from operation_secrets where operation_id = $1",
        id.0
    )
    .fetch_optional(pool)
    .await
}

/// The login server of a registry resource, if it still exists.
pub async fn login_server(pool: &PgPool, registry: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        "select login_server from registries where id = $1",
        registry
    )
    .fetch_optional(pool)
    .await
}

/// Takes a free transfer slot of `host` (one of `limit`), or one whose holder let
/// it expire; `None` when all are taken.
pub async fn take_host_slot(
    pool: &PgPool,
    host: &str,
    limit: i32,
    holder: Uuid,
    ttl: Duration,
) -> sqlx::Result<Option<i32>> {
    sqlx::query_scalar!(
        r#"insert into host_slots (host, slot, holder, expires_at)
           select $1, s.slot, $2, now() + make_interval(secs => $4)
           from generate_series(0, $3 - 1) as s(slot)
           where not exists (select 1 from host_slots h
                             where h.host = $1 and h.slot = s.slot and h.expires_at > now())
           order by s.slot limit 1
           on conflict (host, slot) do update
               set holder = excluded.holder, expires_at = excluded.expires_at
               where host_slots.expires_at <= now()
           returning slot"#,
        host,
        holder,
        limit,
        seconds(ttl)
    )
    .fetch_optional(pool)
    .await
}

/// Keeps a held slot from expiring.
pub async fn renew_host_slot(
    pool: &PgPool,
    host: &str,
    slot: i32,
    holder: Uuid,
    ttl: Duration,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"update host_slots set expires_at = now() + make_interval(secs => $4)
           where host = $1 and slot = $2 and holder = $3"#,
        host,
        slot,
        holder,
        seconds(ttl)
    )
    .execute(pool)
    .await
    .map(drop)
}

/// Frees a held slot.
pub async fn free_host_slot(
    pool: &PgPool,
    host: &str,
    slot: i32,
    holder: Uuid,
) -> sqlx::Result<()> {
    sqlx::query!(
        "delete from host_slots where host = $1 and slot = $2 and holder = $3",
        host,
        slot,
        holder
    )
    .execute(pool)
    .await
    .map(drop)
}
