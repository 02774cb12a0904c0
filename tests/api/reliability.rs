//! Reliability under faults: real `ferry serve` replicas sharing one database are
//! killed with SIGKILL or stopped with SIGTERM mid-copy, Postgres is restarted under
//! running imports, thousands of small imports run across replicas, imports are
//! cancelled or repeated, old operations are pruned, and API and workers run in
//! separate replicas. A gate in front of the source registry holds blob GETs so
//! every interruption lands mid-copy; a status ledger (a test-only trigger) shows
//! that each operation reached exactly one terminal state.

mod cancel;
mod concurrency;
mod crash;
mod db_restart;
mod idempotency;
mod retention;
mod shutdown;
mod split;
mod volume;

use std::{
    future::Future,
    time::{Duration, Instant},
};

use ferry::registry_client::RegistryClient;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{
    API, TestRegistry,
    gate::GateProxy,
    images::{self, TestImage},
    ledger, mint_all_roles,
    replica::{Replica, ReplicaSpec},
    skopeo, test_client,
};

/// The `location` of the registry resources a rig creates.
const LOCATION: &str = "westus";

/// Calls `probe` every 50 ms until it yields a value; panics after `within`.
pub(super) async fn until<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An operation's row as the queue sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct Row {
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub lease_owner: Option<Uuid>,
    pub finished: bool,
    pub error_code: Option<String>,
}

impl Row {
    pub fn is_terminal(&self) -> bool {
        ledger::TERMINAL.contains(&self.status.as_str())
    }
}

/// What replica tests share: a database (with the status ledger), a source
/// registry holding `app:v1` behind a gate, a target registry, and a tenant.
pub(super) struct Rig {
    pub url: String,
    pub pool: PgPool,
    pub source: TestRegistry,
    pub target: TestRegistry,
    pub gate: GateProxy,
    pub image: TestImage,
    pub subscription: Uuid,
    pub token: String,
    pub http: reqwest::Client,
    pub client: RegistryClient,
}

impl Rig {
    /// Sets up around a fresh, migrated database (`url`, `pool`).
    pub async fn new((url, pool): (String, PgPool)) -> Self {
        ledger::install(&pool).await;
        let (source, target) = tokio::join!(TestRegistry::start(), TestRegistry::start());
        let gate = GateProxy::start(&source.host).await;
        let client = test_client(&[source.host.clone(), target.host.clone()]);
        let image = images::image("amd64", 1, 64 * 1024);
        images::push(
            &client.registry(&source.host, None),
            "app",
            &image,
            Some("v1"),
        )
        .await;
        Self {
            url,
            pool,
            source,
            target,
            gate,
            image,
            subscription: Uuid::new_v4(),
            token: mint_all_roles(Uuid::new_v4()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            client,
        }
    }

    /// Replicas of the rig's database that reach its registries (and `extra` hosts).
    pub fn spec(&self, extra: &[&str]) -> ReplicaSpec {
        let mut insecure = vec![
            self.source.host.as_str(),
            self.target.host.as_str(),
            self.gate.host.as_str(),
        ];
        insecure.extend(extra);
        ReplicaSpec::new(&self.url, &insecure)
    }

    /// Creates the registry resource `target1`, bound to `login_server`, through `replica`.
    pub async fn create_target(&self, replica: &Replica, login_server: &str) {
        let url = format!(
            "{}/subscriptions/{}/resourceGroups/rg1/providers/Microsoft.ContainerRegistry/registries/target1?{API}",
            replica.base, self.subscription
        );
        let body = json!({ "location": LOCATION, "sku": { "name": "Standard" }, "properties": { "loginServer": login_server } });
        let response = self
            .http
            .put(url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }

    /// An import of `app:v1` through the gate into `target` (`repo:tag`) of `target1`.
    pub fn import_body(&self, target: &str) -> Value {
        json!({
            "source": { "registryUri": self.gate.host, "sourceImage": "app:v1" },
            "targetTags": [target],
            "mode": "NoForce",
        })
    }

    /// POSTs importImage to `replica`, asserts 202 and returns the operation id.
    pub async fn submit(&self, replica: &Replica, body: &Value) -> Uuid {
        let url = format!(
            "{}/subscriptions/{}/resourceGroups/rg1/providers/Microsoft.ContainerRegistry/registries/target1/importImage?{API}",
            replica.base, self.subscription
        );
        let response = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
        let location = response.headers()["location"].to_str().unwrap();
        let path = location.split('?').next().unwrap();
        Uuid::parse_str(path.rsplit('/').next().unwrap()).unwrap()
    }

    /// GETs the poll URL of `id` from `replica`.
    pub async fn poll(&self, replica: &Replica, id: Uuid) -> (u16, Value) {
        let url = format!(
            "{}/subscriptions/{}/providers/Microsoft.ContainerRegistry/locations/{LOCATION}/operationResults/{id}?{API}",
            replica.base, self.subscription
        );
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// The operation's row now.
    pub async fn row(&self, id: Uuid) -> Row {
        sqlx::query_as(
            "select status::text as status, attempts, max_attempts, lease_owner,
                    finished_at is not null as finished, error_code
             from operations where id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// Polls the row until `done` holds; panics after `within`.
    pub async fn wait_row(
        &self,
        id: Uuid,
        what: &str,
        within: Duration,
        done: impl Fn(&Row) -> bool,
    ) -> Row {
        let deadline = Instant::now() + within;
        loop {
            let row = self.row(id).await;
            if done(&row) {
                return row;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; last seen {row:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asserts the target serves the source's manifest bytes at `target`
    /// (`repo:tag`), to ferry's client and to skopeo.
    pub async fn assert_copied(&self, target: &str) {
        let (repository, tag) = target.split_once(':').unwrap();
        let copied = self
            .client
            .registry(&self.target.host, None)
            .get_manifest(&repository.parse().unwrap(), tag)
            .await
            .unwrap();
        assert_eq!(copied.digest, self.image.manifest.digest, "{target}");
        assert_eq!(copied.bytes, self.image.manifest.bytes, "{target}");
        skopeo::assert_manifest(&self.target, target, &self.image.manifest).await;
    }
}
