//! The bound on streamed uploads. reqwest has no write timeout, and its read
//! timeout runs from a request's start to its response head, so it would cut every
//! upload slower than itself. Instead an upload body marks each chunk it hands to
//! the connection, and the request ends once nothing moved for
//! [`ClientSettings::upload_stall_timeout`](super::ClientSettings): a registry that
//! stops reading, or never answers after the last byte.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use reqwest::{RequestBuilder, Response};

use super::{Registry, RegistryError, Scope};
use crate::operations::reference::Repository;

/// When an upload body last handed out a chunk; cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Activity(Arc<Mutex<Instant>>);

impl Activity {
    /// Activity starting now.
    pub(super) fn new() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }

    /// Progress was made.
    pub(super) fn touch(&self) {
        *self.0.lock().expect("activity lock") = Instant::now();
    }

    /// Resolves once there was no progress for `limit`.
    async fn stalled(&self, limit: Duration) {
        loop {
            let idle = self.0.lock().expect("activity lock").elapsed();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }
}

impl Registry {
    /// Sends an upload request whose body touches `activity` (see the module doc);
    /// a stall is a transport error, so callers start the upload again.
    pub(super) async fn send_streamed(
        &self,
        repository: &Repository,
        request: RequestBuilder,
        activity: &Activity,
    ) -> Result<Response, RegistryError> {
        let limit = self.settings.upload_stall_timeout;
        let scope = Scope::push(repository);
        tokio::select! {
            result = self.send_once(&scope, request) => result,
            () = activity.stalled(limit) => Err(RegistryError::Transport(format!(
                "the upload made no progress for {} s",
                limit.as_secs_f64()
            ))),
        }
    }
}
