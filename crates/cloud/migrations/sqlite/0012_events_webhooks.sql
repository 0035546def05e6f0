-- The event catalogue: one ordered log of what happened (transactions, devices, pairings,
-- configuration, updates), written in the same commit as each change, replayed by cursor
-- (`seq`: the single writer commits in its order) and delivered to webhook endpoints.
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    type           TEXT NOT NULL,
    -- NULL: an installation-wide event.
    merchant_id    TEXT,
    -- The POS vendor of the register concerned (transactions, pairings).
    vendor         TEXT,
    device_id      TEXT,
    created_at     INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    data           TEXT NOT NULL
) STRICT;
-- One index besides the keys: every commit that logs pays for each. A merchant's reader (and
-- webhook endpoint) seeks its own events; a vendor's reader, and the retention sweep (the log
-- is in time order), read in `seq` order.
CREATE INDEX events_by_merchant ON events (merchant_id, seq);

-- Webhook endpoints: each delivers the log, in order, from its own cursor (the last event it
-- took), so the log itself is the outbox and an endpoint that was down catches up.
CREATE TABLE webhook_endpoints (
    id                     TEXT PRIMARY KEY NOT NULL,
    -- Owner: a merchant, a vendor, or (both NULL) the installation.
    merchant_id            TEXT,
    vendor                 TEXT,
    url                    TEXT NOT NULL,
    -- Comma-separated names and `family.*`; empty: every type.
    event_types            TEXT NOT NULL,
    description            TEXT NOT NULL DEFAULT '',
    secret                 TEXT NOT NULL,
    previous_secret        TEXT,
    previous_secret_until  INTEGER,
    enabled                INTEGER NOT NULL DEFAULT 1,
    disabled_reason        TEXT,
    created_at             INTEGER NOT NULL,
    cursor_epoch           INTEGER NOT NULL,
    cursor_seq             INTEGER NOT NULL,
    -- Attempts at the event at the head of its queue, and since when it fails.
    attempts               INTEGER NOT NULL DEFAULT 0,
    failing_since          INTEGER,
    next_attempt_at        INTEGER NOT NULL DEFAULT 0,
    -- The node delivering to it now, until when.
    lease_owner            TEXT,
    lease_until            INTEGER
) STRICT;

-- Events asked for again (redelivery on request), delivered before the endpoint's queue.
CREATE TABLE webhook_redeliveries (
    endpoint_id  TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_id     TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    PRIMARY KEY (endpoint_id, event_id)
) STRICT;

-- Every attempt, for the delivery log.
CREATE TABLE webhook_deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id   TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_id      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    delivered     INTEGER NOT NULL,
    response_code INTEGER,
    error         TEXT,
    at            INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
