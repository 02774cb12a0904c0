-- Per-tenant admission limits (FERRY_TENANT_MAX_ACTIVE,
-- FERRY_TENANT_SUBMISSIONS_PER_MINUTE): each importImage counts its tenant's
-- operations, through the tenant's subscriptions, inside the enqueue transaction.

-- In-flight operations of a subscription; finished rows (the bulk, kept for days)
-- stay out of the index.
create index if not exists operations_active_by_subscription on operations (subscription_id)
    where status in ('queued', 'running');

-- Submissions of a subscription in the last minute.
create index if not exists operations_created_by_subscription on operations (subscription_id, created_at);
