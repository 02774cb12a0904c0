//! `ferry rotate-keys`: re-seal every stored credential that is not sealed with the
//! current key, so previous keys can be dropped from the configuration. Batched,
//! each row swapped only if unchanged since it was read (replicas may keep running),
//! and idempotent: a second run finds nothing to do.

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::PgPool;

use super::{
    Keyring,
    store::{self, SealedTable},
};
use crate::{config::RotateKeysArgs, db::Database};

/// What a rotation did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub table: &'static str,
    /// Rows now sealed with the current key.
    pub resealed: u64,
    /// Rows changed or deleted by someone else between read and write; left to them.
    pub changed: u64,
    /// Rows no configured key opens; left as they are.
    pub unreadable: u64,
}

impl std::fmt::Display for TableReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} re-sealed, {} changed meanwhile, {} unreadable",
            self.table, self.resealed, self.changed, self.unreadable
        )
    }
}

/// Re-seals, `batch` rows at a time, every row of both tables that is not sealed
/// with `keyring`'s current key.
pub async fn rotate(
    pool: &PgPool,
    keyring: &Keyring,
    batch: u32,
) -> anyhow::Result<Vec<TableReport>> {
    let limit = i64::from(batch.max(1));
    let mut reports = Vec::new();
    for table in SealedTable::ALL {
        let mut report = TableReport {
            table: table.name(),
            resealed: 0,
            changed: 0,
            unreadable: 0,
        };
        let mut after = None;
        loop {
            let rows = store::not_sealed_with(pool, table, keyring.current_key_id(), after, limit)
                .await
                .with_context(|| format!("reading {}", table.name()))?;
            for row in &rows {
                let owner = row.owner.as_bytes();
                let plaintext = match keyring.open(&row.sealed, owner) {
                    Ok(plaintext) => plaintext,
                    Err(error) => {
                        tracing::error!(table = table.name(), owner = %row.owner, %error, "cannot open a sealed value; left as it is");
                        report.unreadable += 1;
                        continue;
                    }
                };
                let new = keyring.seal(plaintext.expose_secret(), owner)?;
                if store::reseal(pool, table, row, &new)
                    .await
                    .with_context(|| format!("updating {}", table.name()))?
                {
                    report.resealed += 1;
                } else {
                    report.changed += 1;
                }
            }
            match rows.last() {
                Some(last) if i64::try_from(rows.len()).unwrap_or(i64::MAX) >= limit => {
                    after = Some(last.owner);
                }
                _ => break,
            }
        }
        tracing::info!(
            table = report.table,
            resealed = report.resealed,
            changed = report.changed,
            unreadable = report.unreadable,
            "re-sealed"
        );
        reports.push(report);
    }
    Ok(reports)
}

/// The command: load the keys (never generating one), open the database, rotate,
/// print one line per table; fails if any row could not be opened.
pub async fn run(args: &RotateKeysArgs) -> anyhow::Result<()> {
    let keyring = Keyring::load_existing(&args.secrets, &args.database.data_dir)?;
    tracing::info!(
        current = keyring.current_key_id(),
        keys = keyring.key_ids().count(),
        "re-sealing stored credentials with the current key"
    );
    let database = Database::open(&args.database, 2).await?;
    let result = rotate(&database.pool, &keyring, args.batch).await;
    database.close().await;
    let reports = result?;
    for report in &reports {
        println!("{report}");
    }
    let unreadable: u64 = reports.iter().map(|r| r.unreadable).sum();
    anyhow::ensure!(
        unreadable == 0,
        "{unreadable} sealed value(s) could not be opened with the configured keys (see the log); configure the key they were sealed with and run again"
    );
    let changed: u64 = reports.iter().map(|r| r.changed).sum();
    if changed > 0 {
        tracing::warn!(
            changed,
            "some rows changed while re-sealing; run rotate-keys again to be sure none is left"
        );
    }
    Ok(())
}
