-- Scoped grants of ferry's roles (ARM Microsoft.Authorization/roleAssignments) and the
-- audit trail of writes and refusals.

create table role_assignments (
    -- The assignment's name: the last segment of its ARM id.
    id uuid primary key,
    tenant_id uuid not null,
    subscription_id uuid not null references subscriptions (id),
    -- The scope below the subscription, lowercased (ARM paths are case-insensitive);
    -- null means the whole subscription, or the whole resource group for registry.
    resource_group text,
    registry text,
    role text not null check (role in ('DataImporter', 'DataReader', 'Contributor', 'Owner')),
    principal_id text not null,
    created_by text not null,
    created_at timestamptz not null default now(),
    check (registry is null or resource_group is not null)
);

-- One grant of a role to a principal at a scope (ARM answers a duplicate with 409).
create unique index role_assignments_unique on role_assignments
    (subscription_id, coalesce(resource_group, ''), coalesce(registry, ''), role, principal_id);
-- Every request loads the caller's grants.
create index role_assignments_principal on role_assignments (tenant_id, principal_id);

create table audit_records (
    id bigserial primary key,
    at timestamptz not null default now(),
    tenant_id uuid not null,
    principal_id text not null,
    -- ARM operation name, e.g. Microsoft.ContainerRegistry/registries/write.
    action text not null,
    -- The request path (the resource or scope acted on).
    scope text not null,
    -- succeeded | failed | denied
    outcome text not null,
    status smallint not null,
    request_id text
);

create index audit_records_tenant on audit_records (tenant_id, at desc);
