//! Runs workers continuously: each loops on `run_once`, sleeping when the queue is
//! empty until a NOTIFY from the insert trigger (or a poll tick, in case a
//! notification was missed) wakes it. A janitor prunes finished operations past
//! their retention. Shutdown stops claiming, lets running copies finish within a
//! grace period, then hands the rest back to the queue for another replica.

use std::{sync::Arc, time::Duration};

use sqlx::{PgPool, postgres::PgListener};
use tokio::{
    sync::{Notify, watch},
    task::JoinSet,
};

use super::{InFlight, Worker, lease};

/// How often idle workers look at the queue without a notification.
const POLL: Duration = Duration::from_secs(2);
/// The channel the operations insert trigger notifies.
const CHANNEL: &str = "ferry_operations";
/// How often the janitor prunes, and how many rows one statement deletes.
const PRUNE_EVERY: Duration = Duration::from_secs(300);
const PRUNE_BATCH: i64 = 500;

/// A running set of workers.
#[derive(Debug)]
pub struct WorkerPool {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    pool: PgPool,
    in_flight: InFlight,
}

impl WorkerPool {
    /// Starts `count` workers cloned from `template` (each with its own lease owner id).
    pub fn start(pool: PgPool, template: &Worker, count: usize) -> Self {
        let (stop, stopped) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();
        if count > 0 {
            tasks.spawn(listen(pool.clone(), wake.clone(), stopped.clone()));
            tasks.spawn(janitor(
                pool.clone(),
                template.settings.retention,
                stopped.clone(),
            ));
        }
        for _ in 0..count {
            let worker = Worker {
                owner: uuid::Uuid::new_v4(),
                ..template.clone()
            };
            tasks.spawn(run(worker, wake.clone(), stopped.clone()));
        }
        Self {
            stop,
            tasks,
            pool,
            in_flight: template.in_flight(),
        }
    }

    /// Stops claiming, waits up to `grace` for running imports, then stops them and
    /// gives their operations back to the queue (not failed, the attempt not
    /// counted), so another replica carries on at once.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_ok() {
            return;
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let held: Vec<_> = self
            .in_flight
            .lock()
            .expect("in-flight lock")
            .drain()
            .collect();
        for (id, owner) in held {
            match lease::release(&self.pool, id, owner).await {
                Ok(true) => tracing::info!(op.id = %id, "import handed back to the queue"),
                Ok(false) => {}
                Err(error) => tracing::warn!(
                    op.id = %id,
                    error = %error,
                    "could not hand the import back; its lease will expire"
                ),
            }
        }
    }
}

/// Prunes finished operations older than `retention`, at start and periodically.
async fn janitor(pool: PgPool, retention: Duration, mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow() {
        loop {
            match lease::prune(&pool, retention, PRUNE_BATCH).await {
                Ok(n) if n > 0 => tracing::info!(pruned = n, "pruned finished operations"),
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(error = %error, "pruning failed");
                    break;
                }
            }
            if *stopped.borrow() {
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stopped.changed() => return,
        }
    }
}

async fn run(worker: Worker, wake: Arc<Notify>, mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow() {
        let idle = match worker.run_once().await {
            Ok(ran) => !ran,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "worker step failed");
                true
            }
        };
        if idle {
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                _ = stopped.changed() => {}
            }
        }
    }
}

/// Forwards NOTIFYs to idle workers, reconnecting after database trouble.
async fn listen(pool: PgPool, wake: Arc<Notify>, mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow() {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(error = %error, "LISTEN connection failed; workers fall back to polling");
                tokio::select! {
                    () = tokio::time::sleep(POLL) => continue,
                    _ = stopped.changed() => return,
                }
            }
        };
        if let Err(error) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %error, "LISTEN failed");
            continue;
        }
        loop {
            tokio::select! {
                message = listener.recv() => match message {
                    Ok(_) => wake.notify_waiters(),
                    Err(error) => {
                        tracing::warn!(error = %error, "LISTEN connection lost");
                        break;
                    }
                },
                _ = stopped.changed() => return,
            }
        }
    }
}
