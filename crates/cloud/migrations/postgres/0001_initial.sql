-- The PostgreSQL schema: the same tables and meaning as the SQLite migrations, in one step.
-- Times are BIGINT milliseconds since the epoch, as in SQLite, so both backends read alike.

-- Devices enrolled by an operator. Only a hash of the secret is kept.
CREATE TABLE devices (
    id             TEXT PRIMARY KEY,
    secret_hash    TEXT NOT NULL,
    vendor         TEXT NOT NULL DEFAULT '',
    model          TEXT NOT NULL DEFAULT '',
    merchant       TEXT NOT NULL DEFAULT '',
    merchant_id    TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    -- Set while a node holds the device's connection; cleared when it closes.
    connected_at   BIGINT,
    connected_node TEXT,
    last_seen_at   BIGINT
);

-- The code a device currently shows; at most one per device, single use.
CREATE TABLE pairing_codes (
    code       TEXT PRIMARY KEY,
    device_id  TEXT NOT NULL UNIQUE REFERENCES devices(id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL
);

-- Registers, identified by the triple, each paired to one device.
CREATE TABLE registers (
    register_id   TEXT NOT NULL,
    business_name TEXT NOT NULL,
    vendor_name   TEXT NOT NULL,
    register_name TEXT NOT NULL,
    device_id     TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    contact       TEXT NOT NULL DEFAULT '{}',
    paired_at     BIGINT NOT NULL,
    PRIMARY KEY (register_id, business_name, vendor_name)
);
CREATE INDEX registers_by_device ON registers(device_id);

CREATE TABLE transactions (
    id               TEXT PRIMARY KEY,
    device_id        TEXT NOT NULL,
    register_id      TEXT NOT NULL,
    business_name    TEXT NOT NULL,
    vendor_name      TEXT NOT NULL,
    register_name    TEXT NOT NULL,
    merchant_id      TEXT NOT NULL,
    merchant         TEXT NOT NULL,
    request          TEXT NOT NULL,      -- TransactionRequest as JSON
    sale_data        TEXT,
    callback_url     TEXT,
    token            TEXT NOT NULL,
    token_expires_at BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    -- 'offered' | 'started' | 'completed'
    state            TEXT NOT NULL,
    accept_deadline  BIGINT,
    started_at       BIGINT,
    completed_at     BIGINT,
    completion       TEXT,               -- Completion as JSON once completed
    display_text     TEXT,
    -- The POS's own reference (idempotency key), if it gave one.
    pos_reference    TEXT,
    -- A digest of what was asked, so a reused reference with a different request is told apart.
    fingerprint      TEXT NOT NULL DEFAULT ''
);
-- One transaction in progress per device, enforced by the store so racing POSTs on any node
-- cannot both win. The store tells this violation apart from the next one by its name.
CREATE UNIQUE INDEX one_active_transaction_per_device
    ON transactions(device_id) WHERE state <> 'completed';
-- POS references (idempotency keys): one transaction per register and reference.
CREATE UNIQUE INDEX transactions_by_reference
    ON transactions(register_id, business_name, vendor_name, pos_reference)
    WHERE pos_reference IS NOT NULL;
-- The deadline loop looks for offers whose accept deadline passed.
CREATE INDEX transactions_offer_deadlines
    ON transactions(accept_deadline) WHERE state = 'offered';
-- Retention sweeps delete the oldest completed transactions first.
CREATE INDEX transactions_by_created ON transactions(created_at);

-- What happened to each transaction, in order.
CREATE TABLE transaction_events (
    seq            BIGSERIAL PRIMARY KEY,
    transaction_id TEXT NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
    at             BIGINT NOT NULL,
    kind           TEXT NOT NULL,
    detail         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX transaction_events_by_transaction ON transaction_events(transaction_id, seq);

-- Completion callbacks waiting to be delivered: a durable outbox, filled in the same commit
-- that completes a transaction, emptied by the dispatcher with retries and backoff.
CREATE TABLE callback_outbox (
    transaction_id  TEXT PRIMARY KEY REFERENCES transactions(id) ON DELETE CASCADE,
    url             TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    -- 'pending' | 'delivered' | 'failed' (gave up)
    status          TEXT NOT NULL DEFAULT 'pending',
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX callback_outbox_due ON callback_outbox(next_attempt_at) WHERE status = 'pending';

-- Secrets the deployment generates for itself (e.g. the callback signing key).
CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
