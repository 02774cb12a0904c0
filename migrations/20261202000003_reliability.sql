-- Cancellation, idempotent submissions and retention.

-- A canceled operation is terminal, like succeeded and failed.
alter type operation_status add value 'canceled';

-- Set by the cancel request; a queued operation is canceled at once, a running one
-- by its worker, which sees this at its next heartbeat tick.
alter table operations add column cancel_requested_at timestamptz;

-- The client's key for a repeatable POST (Repeatability-Request-ID, Idempotency-Key
-- or x-ms-client-request-id): a repeat by the same principal within 24 hours gets
-- the original operation.
alter table operations add column idempotency_key text;
create index operations_idempotency on operations (subscription_id, created_by, idempotency_key)
    where idempotency_key is not null;

-- Retention pruning scans finished operations by age.
create index operations_finished on operations (finished_at) where finished_at is not null;
