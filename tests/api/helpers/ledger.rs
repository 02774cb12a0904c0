//! A test-only record of every status an operation takes: a trigger, installed in
//! the test's own database, appends a row whenever an operation is inserted or its
//! status changes. The `operations` row shows only the last state; the ledger shows
//! whether an operation reached a terminal state once, who held it, and whether an
//! interrupted attempt was counted.

use sqlx::PgPool;
use uuid::Uuid;

/// Statuses an operation never leaves.
pub const TERMINAL: &[&str] = &["succeeded", "failed", "canceled"];

/// Installs the trigger (after the migrations, before any replica starts).
pub async fn install(pool: &PgPool) {
    for statement in [
        "create table test_status_ledger (
             seq bigserial primary key,
             operation_id uuid not null,
             status text not null,
             lease_owner uuid,
             attempts integer not null,
             finished_at timestamptz,
             error_code text,
             at timestamptz not null default clock_timestamp())",
        "create function test_record_status() returns trigger language plpgsql as $$
         begin
             if tg_op = 'INSERT' or new.status is distinct from old.status then
                 insert into test_status_ledger
                     (operation_id, status, lease_owner, attempts, finished_at, error_code)
                 values
                     (new.id, new.status::text, new.lease_owner, new.attempts, new.finished_at, new.error_code);
             end if;
             return null;
         end $$",
        "create trigger test_status_ledger after insert or update on operations
             for each row execute function test_record_status()",
    ] {
        sqlx::query(statement).execute(pool).await.unwrap();
    }
}

/// One status an operation took.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Entry {
    pub status: String,
    pub lease_owner: Option<Uuid>,
    pub attempts: i32,
    pub finished: bool,
    pub error_code: Option<String>,
}

/// Every status `id` took, in order.
pub async fn history(pool: &PgPool, id: Uuid) -> Vec<Entry> {
    sqlx::query_as(
        "select status, lease_owner, attempts, finished_at is not null as finished, error_code
         from test_status_ledger where operation_id = $1 order by seq",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Operations that entered a terminal status more than once, or left one.
pub async fn not_terminal_once(pool: &PgPool) -> Vec<(Uuid, Vec<String>)> {
    sqlx::query_as(
        "select operation_id, array_agg(status order by seq)
         from test_status_ledger
         group by operation_id
         having count(*) filter (where status = any($1)) <> 1
             or (array_agg(status order by seq desc))[1] <> all($1)",
    )
    .bind(TERMINAL)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// How many operations ever entered a terminal status.
pub async fn terminal_entries(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from test_status_ledger where status = any($1)")
        .bind(TERMINAL)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// How often operations went back to the queue after a claim: without an error
/// code (a rescued lease or a released one) and with one (a retry after a
/// transient failure).
pub async fn requeues(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as(
        "select count(*) filter (where error_code is null), count(*) filter (where error_code is not null)
         from (select status, error_code,
                      row_number() over (partition by operation_id order by seq) as n
               from test_status_ledger) entries
         where status = 'queued' and n > 1",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}
