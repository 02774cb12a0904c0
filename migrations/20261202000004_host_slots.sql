-- Blob-transfer slots per registry host, shared by every replica: a transfer holds
-- one row (host, slot) until it ends or its expiry passes (a crashed holder's slot
-- frees itself). The number of slots per host is the cluster-wide limit.
create table host_slots (
    host text not null,
    slot integer not null,
    holder uuid not null,
    expires_at timestamptz not null,
    primary key (host, slot)
);
