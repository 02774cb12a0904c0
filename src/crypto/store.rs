//! SQL over the tables that hold sealed values, for key rotation: read the rows
//! not sealed with a given key, a batch at a time, and swap one row's sealed value
//! only if nobody changed it since it was read.

use sqlx::PgPool;
use uuid::Uuid;

use super::Sealed;

/// A table of sealed values, each bound to the id of the row that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedTable {
    /// Registry resources' stored login (owner: the registry id).
    RegistryCredentials,
    /// Source credentials of queued and running imports (owner: the operation id).
    OperationSecrets,
}

impl SealedTable {
    /// Both tables.
    pub const ALL: [SealedTable; 2] = [Self::RegistryCredentials, Self::OperationSecrets];

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::RegistryCredentials => "registry_credentials",
            Self::OperationSecrets => "operation_secrets",
        }
    }
}

/// One sealed value and the row it belongs to.
#[derive(Debug, Clone)]
pub struct SealedRow {
    pub owner: Uuid,
    pub sealed: Sealed,
}

struct Row {
    owner: Uuid,
    key_id: String,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
}

impl From<Row> for SealedRow {
    fn from(row: Row) -> Self {
        Self {
            owner: row.owner,
            sealed: Sealed {
                key_id: row.key_id,
                nonce: row.nonce,
                ciphertext: row.ciphertext,
            },
        }
    }
}

/// Up to `limit` rows of `table` not sealed with `key_id`, owners after `after`,
/// in owner order (so a row that cannot be re-sealed is not read again).
pub async fn not_sealed_with(
    pool: &PgPool,
    table: SealedTable,
    key_id: &str,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<SealedRow>> {
    let rows =
        match table {
            SealedTable::RegistryCredentials => sqlx::query_as!(
                Row,
                r#"select registry_id as owner, key_id, nonce, ciphertext from registry_credentials
                   where key_id <> $1 and ($2::uuid is null or registry_id > $2)
                   order by registry_id limit $3"#,
                key_id,
                after,
                limit
            )
            .fetch_all(pool)
            .await?,
            SealedTable::OperationSecrets => sqlx::query_as!(
                Row,
                r#"select operation_id as owner, key_id, nonce, ciphertext from operation_secrets
                   where key_id <> $1 and ($2::uuid is null or operation_id > $2)
                   order by operation_id limit $3"#,
                key_id,
                after,
                limit
            )
            .fetch_all(pool)
            .await?,
        };
    Ok(rows.into_iter().map(SealedRow::from).collect())
}

/// Replaces `row`'s sealed value with `new`, only while it still holds exactly
/// what was read (same key id and nonce): a concurrent writer's new value, or a
/// deletion, wins. Returns whether the row was replaced.
pub async fn reseal(
    pool: &PgPool,
    table: SealedTable,
    row: &SealedRow,
    new: &Sealed,
) -> sqlx::Result<bool> {
    let result = match table {
        SealedTable::RegistryCredentials => {
            sqlx::query!(
                r#"update registry_credentials set key_id = $4, nonce = $5, ciphertext = $6
                   where registry_id = $1 and key_id = $2 and nonce = $3"#,
                row.owner,
                row.sealed.key_id,
                row.sealed.nonce,
                new.key_id,
                new.nonce,
                new.ciphertext
            )
            .execute(pool)
            .await?
        }
        SealedTable::OperationSecrets => {
            sqlx::query!(
                r#"update operation_secrets set key_id = $4, nonce = $5, ciphertext = $6
                   where operation_id = $1 and key_id = $2 and nonce = $3"#,
                row.owner,
                row.sealed.key_id,
                row.sealed.nonce,
                new.key_id,
                new.nonce,
                new.ciphertext
            )
            .execute(pool)
            .await?
        }
    };
    Ok(result.rows_affected() == 1)
}
