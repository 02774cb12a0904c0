-- ferry's foundation schema: tenants own subscriptions, subscriptions hold registry
-- resources, and the operations table doubles as the work queue (insert = enqueue).

create table subscriptions (
    id uuid primary key,
    -- The tenant that first created a resource in this subscription owns it; every
    -- other tenant sees the subscription (and all it holds) as nonexistent.
    tenant_id uuid not null,
    created_at timestamptz not null default now()
);

create index subscriptions_tenant on subscriptions (tenant_id);

create table registries (
    id uuid primary key,
    subscription_id uuid not null references subscriptions (id),
    resource_group text not null,
    name text not null,
    location text not null,
    sku text not null,
    tags jsonb not null default '{}',
    login_server text not null,
    -- The ARM-visible, user-settable properties (network access, policies...) as one
    -- typed document; ferry reads them through serde, never field by field in SQL.
    properties jsonb not null,
    created_by text not null,
    created_at timestamptz not null default now(),
    updated_by text not null,
    updated_at timestamptz not null default now()
);

-- ARM lookups are case-insensitive, and a name is unique within a subscription so
-- that `az acr import` can find a registry by name alone.
create unique index registries_name on registries (subscription_id, lower(name));
create index registries_group on registries (subscription_id, lower(resource_group));

-- Write-only credentials for the registry a resource is bound to, sealed with
-- AES-256-GCM (the registry id is the associated data, so a row moved elsewhere
-- fails to open).
create table registry_credentials (
    registry_id uuid primary key references registries (id) on delete cascade,
    key_id text not null,
    nonce bytea not null,
    ciphertext bytea not null
);

create type operation_status as enum ('queued', 'running', 'succeeded', 'failed');

create table operations (
    id uuid primary key,
    subscription_id uuid not null references subscriptions (id),
    location text not null,
    -- Set null when the target registry is deleted: the operation stays pollable and
    -- a worker that claims it fails it with RegistryNotFound.
    registry_id uuid references registries (id) on delete set null,
    -- The validated import request, without credentials.
    spec jsonb not null,
    status operation_status not null default 'queued',
    attempts integer not null default 0,
    max_attempts integer not null default 3,
    run_after timestamptz not null default now(),
    lease_owner uuid,
    lease_expires_at timestamptz,
    progress jsonb not null default '{}',
    error_code text,
    error_message text,
    created_by text not null,
    created_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz,
    -- A running operation always has a lease; nothing else does.
    constraint lease_matches_status check ((status = 'running') = (lease_owner is not null))
);

-- The claim query scans only ready rows.
create index operations_ready on operations (run_after) where status = 'queued';
-- The rescuer scans only leased rows.
create index operations_leased on operations (lease_expires_at) where status = 'running';

-- Source credentials given in an importImage body, sealed like registry credentials
-- with the operation id as associated data; deleted when the operation ends.
create table operation_secrets (
    operation_id uuid primary key references operations (id) on delete cascade,
    key_id text not null,
    nonce bytea not null,
    ciphertext bytea not null
);

-- Wake idle workers as soon as an operation is enqueued; they also poll, so a
-- missed notification only delays work.
create function notify_operation_queued() returns trigger as $$
begin
    perform pg_notify('ferry_operations', new.id::text);
    return null;
end;
$$ language plpgsql;

create trigger operations_queued after insert on operations
    for each row execute function notify_operation_queued();
