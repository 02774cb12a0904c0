//! The database: connect to `DATABASE_URL` or to the embedded cluster, apply the
//! migrations in `migrations/`, and answer readiness pings.

pub mod embedded;

use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::DatabaseConfig;

/// The migrations compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// An open database, plus the embedded cluster when ferry runs its own.
#[derive(Debug)]
pub struct Database {
    pub pool: PgPool,
    pub embedded: Option<embedded::Cluster>,
}

impl Database {
    /// Connects as configured (starting the embedded cluster if no URL is set) and
    /// applies pending migrations.
    pub async fn open(config: &DatabaseConfig, max_connections: u32) -> anyhow::Result<Self> {
        let (options, embedded) = match &config.database_url {
            Some(url) => (
                url.expose_secret()
                    .parse::<PgConnectOptions>()
                    .context("DATABASE_URL is not a valid Postgres URL")?,
                None,
            ),
            None => {
                let cluster = embedded::Cluster::start(&config.data_dir).await?;
                (cluster.connect_options(), Some(cluster))
            }
        };
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .context("connecting to Postgres")?;
        MIGRATOR.run(&pool).await.context("applying migrations")?;
        Ok(Self { pool, embedded })
    }

    /// Closes the pool, then stops the embedded cluster if there is one.
    pub async fn close(self) {
        self.pool.close().await;
        if let Some(cluster) = self.embedded {
            cluster.stop().await;
        }
    }
}

/// Succeeds when the database answers a trivial query.
pub async fn ping(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query_scalar!("select 1 as one")
        .fetch_one(pool)
        .await
        .map(|_| ())
}
