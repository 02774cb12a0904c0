//! The cluster-wide cap on blob transfers per registry host: before a transfer, a
//! worker takes a slot row in Postgres (shared by every replica), renews it while the
//! transfer runs, and frees it after; a crashed replica's slots expire on their own.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::lease;

/// How long a slot outlives its holder's last renewal.
const TTL: Duration = Duration::from_secs(30);
/// The longest pause between two tries for a slot.
const MAX_WAIT: Duration = Duration::from_millis(500);

/// Slots of this cluster.
#[derive(Debug, Clone)]
pub struct HostSlots {
    pool: PgPool,
    /// Transfers per host across all replicas; 0 turns the cap off.
    limit: i32,
}

/// A held slot: renewed in the background, freed when dropped.
#[derive(Debug)]
pub struct Slot {
    renew: tokio::task::JoinHandle<()>,
    // Dropped after `renew` is aborted; frees the row whether or not the renewal
    // task ever ran.
    _free: FreeOnDrop,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

impl HostSlots {
    pub fn new(pool: PgPool, limit: usize) -> Self {
        Self {
            pool,
            limit: i32::try_from(limit).unwrap_or(i32::MAX),
        }
    }

    /// Waits for a slot of `host`. Database trouble does not stop the copy: the
    /// transfer goes ahead uncapped (and says so in the log).
    pub async fn acquire(&self, host: &str) -> Option<Slot> {
        if self.limit == 0 {
            return None;
        }
        let holder = Uuid::new_v4();
        let mut wait = Duration::from_millis(20);
        let slot = loop {
            match lease::take_host_slot(&self.pool, host, self.limit, holder, TTL).await {
                Ok(Some(slot)) => break slot,
                Ok(None) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_WAIT);
                }
                Err(error) => {
                    tracing::warn!(%error, host, "no host slot (database); transferring anyway");
                    return None;
                }
            }
        };
        let (pool, host) = (self.pool.clone(), host.to_owned());
        let free = FreeOnDrop {
            pool: pool.clone(),
            host: host.clone(),
            slot,
            holder,
        };
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(TTL / 3).await;
                if let Err(error) = lease::renew_host_slot(&pool, &host, slot, holder, TTL).await {
                    tracing::warn!(%error, "could not renew a host slot");
                }
            }
        });
        Some(Slot { renew, _free: free })
    }
}

/// Frees a slot row when dropped.
#[derive(Debug)]
struct FreeOnDrop {
    pool: PgPool,
    host: String,
    slot: i32,
    holder: Uuid,
}

impl Drop for FreeOnDrop {
    fn drop(&mut self) {
        let (pool, host, slot, holder) = (
            self.pool.clone(),
            std::mem::take(&mut self.host),
            self.slot,
            self.holder,
        );
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            if let Err(error) = lease::free_host_slot(&pool, &host, slot, holder).await {
                tracing::debug!(%error, "could not free a host slot; it will expire");
            }
        });
    }
}
