-- Completion callbacks waiting to be delivered: a durable outbox, filled in the same commit
-- that completes a transaction, emptied by the dispatcher with retries and backoff.
CREATE TABLE callback_outbox (
    transaction_id  TEXT PRIMARY KEY NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
    url             TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    -- 'pending' | 'delivered' | 'failed' (gave up)
    status          TEXT NOT NULL DEFAULT 'pending',
    last_error      TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX callback_outbox_due ON callback_outbox(next_attempt_at) WHERE status = 'pending';

-- Secrets the deployment generates for itself (e.g. the callback signing key).
CREATE TABLE secrets (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
