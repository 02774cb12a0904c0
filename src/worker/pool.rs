//! Runs workers continuously: each loops on `run_once`, sleeping when the queue is
//! empty until a NOTIFY from the insert trigger (or a poll tick, in case a
//! notification was missed) wakes it. Shutdown stops claiming and lets running
//! copies finish within a grace period.

use std::{sync::Arc, time::Duration};

use sqlx::{PgPool, postgres::PgListener};
use tokio::{
    sync::{Notify, watch},
    task::JoinSet,
};

use super::Worker;

/// How often idle workers look at the queue without a notification.
const POLL: Duration = Duration::from_secs(2);
/// The channel the operations insert trigger notifies.
const CHANNEL: &str = "ferry_operations";

/// A running set of workers.
#[derive(Debug)]
pub struct WorkerPool {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl WorkerPool {
    /// Starts `count` workers cloned from `template` (each with its own lease owner id).
    pub fn start(pool: PgPool, template: &Worker, count: usize) -> Self {
        let (stop, stopped) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();
        if count > 0 {
            tasks.spawn(listen(pool, wake.clone(), stopped.clone()));
        }
        for _ in 0..count {
            let worker = Worker {
                owner: uuid::Uuid::new_v4(),
                ..template.clone()
            };
            tasks.spawn(run(worker, wake.clone(), stopped.clone()));
        }
        Self { stop, tasks }
    }

    /// Stops claiming, waits up to `grace` for running imports, then abandons them
    /// (their leases expire and another replica picks them up).
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("imports still running after the grace period; abandoning them");
            self.tasks.abort_all();
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
