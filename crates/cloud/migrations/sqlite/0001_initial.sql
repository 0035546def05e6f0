-- Devices enrolled by an operator. Only a hash of the secret is kept.
CREATE TABLE devices (
    id            TEXT PRIMARY KEY NOT NULL,
    secret_hash   TEXT NOT NULL,
    vendor        TEXT NOT NULL DEFAULT '',
    model         TEXT NOT NULL DEFAULT '',
    merchant      TEXT NOT NULL DEFAULT '',
    merchant_id   TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    -- Set while a node holds the device's connection; cleared when it closes.
    connected_at  INTEGER,
    connected_node TEXT,
    last_seen_at  INTEGER
) STRICT;

-- The code a device currently shows; at most one per device, single use.
CREATE TABLE pairing_codes (
    code       TEXT PRIMARY KEY NOT NULL,
    device_id  TEXT NOT NULL UNIQUE REFERENCES devices(id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
) STRICT;

-- Registers, identified by the triple, each paired to one device.
CREATE TABLE registers (
    register_id   TEXT NOT NULL,
    business_name TEXT NOT NULL,
    vendor_name   TEXT NOT NULL,
    register_name TEXT NOT NULL,
    device_id     TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    contact       TEXT NOT NULL DEFAULT '{}',
    paired_at     INTEGER NOT NULL,
    PRIMARY KEY (register_id, business_name, vendor_name)
) STRICT;
CREATE INDEX registers_by_device ON registers(device_id);

CREATE TABLE transactions (
    id               TEXT PRIMARY KEY NOT NULL,
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
    token_expires_at INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    -- 'offered' | 'started' | 'completed'
    state            TEXT NOT NULL,
    accept_deadline  INTEGER,
    started_at       INTEGER,
    completed_at     INTEGER,
    completion       TEXT,               -- Completion as JSON once completed
    display_text     TEXT
) STRICT;
-- One transaction in progress per device, enforced by the store so racing POSTs cannot both win.
CREATE UNIQUE INDEX one_active_transaction_per_device
    ON transactions(device_id) WHERE state <> 'completed';
-- The deadline loop looks for offers whose accept deadline passed.
CREATE INDEX transactions_offer_deadlines
    ON transactions(accept_deadline) WHERE state = 'offered';
