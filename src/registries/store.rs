//! SQL for subscriptions and registry resources. Every read is scoped by tenant, so
//! another tenant's data is indistinguishable from none.

use std::collections::BTreeMap;

use sqlx::{PgConnection, PgPool, types::Json};
use uuid::Uuid;

use super::{Registry, RegistryChange, RegistryKey, RegistryProperties};
use crate::{auth::TenantId, crypto::Sealed};

/// A subscription as `GET /subscriptions` lists it.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: Uuid,
    pub tenant_id: Uuid,
}

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("subscription belongs to another tenant")]
    ForeignSubscription,
    #[error("name in use in another resource group")]
    NameInUse,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

struct Row {
    id: Uuid,
    subscription_id: Uuid,
    resource_group: String,
    name: String,
    location: String,
    sku: String,
    tags: Json<BTreeMap<String, String>>,
    login_server: String,
    properties: Json<RegistryProperties>,
    has_credentials: Option<bool>,
    created_by: String,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_by: String,
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Row> for Registry {
    fn from(row: Row) -> Self {
        Self {
            id: row.id,
            subscription_id: row.subscription_id,
            resource_group: row.resource_group,
            name: row.name,
            location: row.location,
            sku: row.sku,
            tags: row.tags.0,
            login_server: row.login_server,
            properties: row.properties.0,
            has_credentials: row.has_credentials.unwrap_or(false),
            created_by: row.created_by,
            created_at: row.created_at,
            updated_by: row.updated_by,
            updated_at: row.updated_at,
        }
    }
}

/// The subscriptions a tenant owns.
pub async fn list_subscriptions(
    pool: &PgPool,
    tenant: TenantId,
) -> sqlx::Result<Vec<Subscription>> {
    sqlx::query_as!(
        Subscription,
        "select id, tenant_id from subscriptions where tenant_id = $1 order by id",
        tenant.0
    )
    .fetch_all(pool)
    .await
}

/// Whether `tenant` owns `subscription`.
pub async fn owns_subscription(
    pool: &PgPool,
    tenant: TenantId,
    subscription: Uuid,
) -> sqlx::Result<bool> {
    let found = sqlx::query_scalar!(
        "select exists(select 1 from subscriptions where id = $1 and tenant_id = $2)",
        subscription,
        tenant.0
    )
    .fetch_one(pool)
    .await?;
    Ok(found.unwrap_or(false))
}

/// One registry of the tenant, by subscription, group and name (case-insensitive).
pub async fn find(
    pool: &PgPool,
    tenant: TenantId,
    key: &RegistryKey,
) -> sqlx::Result<Option<Registry>> {
    let row = sqlx::query_as!(
        Row,
        r#"select r.id, r.subscription_id, r.resource_group, r.name, r.location, r.sku,
                  r.tags as "tags: Json<BTreeMap<String, String>>", r.login_server,
                  r.properties as "properties: Json<RegistryProperties>",
                  exists(select 1 from registry_credentials c where c.registry_id = r.id) as has_credentials,
                  r.created_by, r.created_at, r.updated_by, r.updated_at
           from registries r join subscriptions s on s.id = r.subscription_id
           where s.tenant_id = $1 and r.subscription_id = $2
             and lower(r.resource_group) = lower($3) and lower(r.name) = lower($4)"#,
        tenant.0,
        key.subscription,
        key.group,
        key.name
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Registry::from))
}

/// The tenant's registries in a subscription, optionally one resource group.
pub async fn list(
    pool: &PgPool,
    tenant: TenantId,
    subscription: Uuid,
    group: Option<&str>,
) -> sqlx::Result<Vec<Registry>> {
    let rows = sqlx::query_as!(
        Row,
        r#"select r.id, r.subscription_id, r.resource_group, r.name, r.location, r.sku,
                  r.tags as "tags: Json<BTreeMap<String, String>>", r.login_server,
                  r.properties as "properties: Json<RegistryProperties>",
                  exists(select 1 from registry_credentials c where c.registry_id = r.id) as has_credentials,
                  r.created_by, r.created_at, r.updated_by, r.updated_at
           from registries r join subscriptions s on s.id = r.subscription_id
           where s.tenant_id = $1 and r.subscription_id = $2
             and ($3::text is null or lower(r.resource_group) = lower($3))
           order by lower(r.name)"#,
        tenant.0,
        subscription,
        group
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Registry::from).collect())
}

/// Claims `subscription` for `tenant` if nobody owns it; fails if another tenant does.
pub(crate) async fn claim_subscription(
    conn: &mut PgConnection,
    tenant: TenantId,
    subscription: Uuid,
) -> Result<(), WriteError> {
    sqlx::query!(
        "insert into subscriptions (id, tenant_id) values ($1, $2) on conflict (id) do nothing",
        subscription,
        tenant.0
    )
    .execute(&mut *conn)
    .await?;
    let owner = sqlx::query_scalar!(
        "select tenant_id from subscriptions where id = $1",
        subscription
    )
    .fetch_one(&mut *conn)
    .await?;
    if owner == tenant.0 {
        Ok(())
    } else {
        Err(WriteError::ForeignSubscription)
    }
}

/// Creates or replaces a registry (PUT); returns whether it was created. The caller
/// seals credentials with the returned id through `seal`.
pub async fn put(
    pool: &PgPool,
    tenant: TenantId,
    key: &RegistryKey,
    change: RegistryChange,
    principal: &str,
    seal: impl FnOnce(Uuid) -> anyhow::Result<Option<Sealed>>,
) -> Result<(Uuid, bool), PutError> {
    let RegistryKey {
        subscription,
        group,
        name,
    } = key;
    let (subscription, group, name) = (*subscription, group.as_str(), name.as_str());
    let mut tx = pool.begin().await.map_err(WriteError::from)?;
    claim_subscription(&mut tx, tenant, subscription).await?;
    let existing = sqlx::query!(
        "select id, resource_group from registries where subscription_id = $1 and lower(name) = lower($2) for update",
        subscription,
        name
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(WriteError::from)?;
    let properties = Json(change.properties);
    let tags = Json(change.tags.unwrap_or_default());
    let sku = change.sku.map(|s| s.as_str()).unwrap_or("Basic");
    let (id, created) = match existing {
        Some(row) if !row.resource_group.eq_ignore_ascii_case(group) => {
            return Err(WriteError::NameInUse.into());
        }
        Some(row) => {
            sqlx::query!(
                r#"update registries set location = $2, sku = $3, tags = $4, login_server = $5,
                       properties = $6, updated_by = $7, updated_at = now()
                   where id = $1"#,
                row.id,
                change.location,
                sku,
                tags as _,
                change.login_server,
                properties as _,
                principal
            )
            .execute(&mut *tx)
            .await
            .map_err(WriteError::from)?;
            (row.id, false)
        }
        None => {
            let id = Uuid::new_v4();
            sqlx::query!(
                r#"insert into registries (id, subscription_id, resource_group, name, location, sku, tags,
                       login_server, properties, created_by, updated_by)
                   values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)"#,
                id,
                subscription,
                group,
                name,
                change.location,
                sku,
                tags as _,
                change.login_server,
                properties as _,
                principal
            )
            .execute(&mut *tx)
            .await
            .map_err(|e| map_unique(e, WriteError::NameInUse))?;
            (id, true)
        }
    };
    if let Some(sealed) = seal(id).map_err(PutError::Seal)? {
        store_credentials(&mut tx, id, &sealed).await?;
    }
    tx.commit().await.map_err(WriteError::from)?;
    Ok((id, created))
}

/// Applies a validated PATCH to an existing registry.
pub async fn patch(
    pool: &PgPool,
    registry: Uuid,
    change: RegistryChange,
    principal: &str,
    sealed: Option<Sealed>,
) -> Result<(), WriteError> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        r#"update registries set sku = coalesce($2, sku), tags = coalesce($3, tags),
               login_server = coalesce($4, login_server), properties = $5,
               updated_by = $6, updated_at = now()
           where id = $1"#,
        registry,
        change.sku.map(|s| s.as_str()),
        change.tags.map(Json) as _,
        change.login_server,
        Json(change.properties) as _,
        principal
    )
    .execute(&mut *tx)
    .await?;
    if let Some(sealed) = sealed {
        store_credentials(&mut tx, registry, &sealed).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn store_credentials(
    conn: &mut PgConnection,
    registry: Uuid,
    sealed: &Sealed,
) -> Result<(), WriteError> {
    sqlx::query!(
        r#"insert into registry_credentials (registry_id, key_id, nonce, ciphertext) values ($1, $2, $3, $4)
           on conflict (registry_id) do update set key_id = excluded.key_id, nonce = excluded.nonce,
               ciphertext = excluded.ciphertext"#,
        registry,
        sealed.key_id,
        sealed.nonce,
        sealed.ciphertext
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The sealed credentials of a registry, if it has any.
pub async fn credentials(pool: &PgPool, registry: Uuid) -> sqlx::Result<Option<Sealed>> {
    sqlx::query_as!(
        Sealed,
        "select key_id, nonce, ciphertext from registry_credentials where registry_id = $1",
        registry
    )
    .fetch_optional(pool)
    .await
}

/// Deletes a registry; returns whether it existed.
pub async fn delete(pool: &PgPool, registry: Uuid) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    // Grants at the registry go with it: a registry re-created under the same name
    // must not inherit them.
    sqlx::query!(
        r#"delete from role_assignments a using registries r
           where r.id = $1 and a.subscription_id = r.subscription_id
             and a.resource_group = lower(r.resource_group) and a.registry = lower(r.name)"#,
        registry
    )
    .execute(&mut *tx)
    .await?;
    let result = sqlx::query!("delete from registries where id = $1", registry)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(result.rows_affected() > 0)
}

/// The error of [`put`]: a refused write or a sealing failure.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("sealing credentials: {0}")]
    Seal(anyhow::Error),
}

/// Maps a unique-constraint violation to `conflict`; other errors pass through.
/// The one place a Postgres constraint becomes a client error.
pub fn map_unique(error: sqlx::Error, conflict: WriteError) -> WriteError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => conflict,
        _ => WriteError::Database(error),
    }
}

/// Whether a registry resource (of any tenant) bound to `login_server` is closed to
/// public networks: such a registry is reachable only as a `resourceId` source of
/// its own tenant. `host` and `host:443` are one address.
pub async fn closed_to_public(pool: &PgPool, login_server: &str) -> sqlx::Result<bool> {
    let host = login_server.to_ascii_lowercase();
    let bare = host.strip_suffix(":443").unwrap_or(&host).to_owned();
    let spellings = vec![format!("{bare}:443"), bare];
    let closed = sqlx::query_scalar!(
        r#"select exists(select 1 from registries
                         where lower(login_server) = any($1)
                           and properties->>'publicNetworkAccess' = 'Disabled')"#,
        &spellings
    )
    .fetch_one(pool)
    .await?;
    Ok(closed.unwrap_or(false))
}
