-- The event catalogue: one ordered log of what happened (transactions, devices, pairings,
-- configuration, updates), written in the same commit as each change, replayed by cursor
-- and delivered to webhook endpoints. Read in (epoch, seq) order: `epoch` is the writing
-- transaction's id, and readers see only events below the oldest transaction still running
-- (`pg_snapshot_xmin`), so a commit still in flight can never land behind a reader's cursor.
CREATE TABLE events (
    seq            BIGSERIAL PRIMARY KEY,
    epoch          BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    id             TEXT NOT NULL UNIQUE,
    type           TEXT NOT NULL,
    -- NULL: an installation-wide event.
    merchant_id    TEXT,
    -- The POS vendor of the register concerned (transactions, pairings).
    vendor         TEXT,
    device_id      TEXT,
    created_at     BIGINT NOT NULL,
    schema_version BIGINT NOT NULL,
    data           TEXT NOT NULL
);
CREATE INDEX events_by_cursor ON events (epoch, seq);
CREATE INDEX events_by_merchant ON events (merchant_id, epoch, seq);
CREATE INDEX events_by_vendor ON events (vendor, epoch, seq);
CREATE INDEX events_by_time ON events (created_at);

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
    previous_secret_until  BIGINT,
    enabled                BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason        TEXT,
    created_at             BIGINT NOT NULL,
    cursor_epoch           BIGINT NOT NULL,
    cursor_seq             BIGINT NOT NULL,
    -- Attempts at the event at the head of its queue, and since when it fails.
    attempts               BIGINT NOT NULL DEFAULT 0,
    failing_since          BIGINT,
    next_attempt_at        BIGINT NOT NULL DEFAULT 0,
    -- The node delivering to it now, until when.
    lease_owner            TEXT,
    lease_until            BIGINT
);

-- Events asked for again (redelivery on request), delivered before the endpoint's queue.
CREATE TABLE webhook_redeliveries (
    endpoint_id  TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_id     TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    PRIMARY KEY (endpoint_id, event_id)
);

-- Every attempt, for the delivery log.
CREATE TABLE webhook_deliveries (
    id            BIGSERIAL PRIMARY KEY,
    endpoint_id   TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_id      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    attempt       BIGINT NOT NULL,
    delivered     BOOLEAN NOT NULL,
    response_code BIGINT,
    error         TEXT,
    at            BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
