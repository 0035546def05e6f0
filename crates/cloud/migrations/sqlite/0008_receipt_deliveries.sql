-- Receipts sent by email or SMS at a POS's request: a durable outbox, written (with the
-- timeline events that say so) in the commit that queues them, emptied by the delivery worker
-- with retries and backoff.
CREATE TABLE receipt_deliveries (
    id              TEXT PRIMARY KEY NOT NULL,
    transaction_id  TEXT NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
    -- 'email' | 'sms'
    channel         TEXT NOT NULL,
    -- An email address, or a phone number in E.164 form.
    address         TEXT NOT NULL,
    -- 'customer' | 'merchant'
    receipt_copy    TEXT NOT NULL,
    -- 'pending' | 'sent' | 'failed' (gave up)
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
) STRICT;
-- One live delivery per transaction, address and copy: asking again finds it. A failed one
-- may be asked for again.
CREATE UNIQUE INDEX receipt_deliveries_once
    ON receipt_deliveries(transaction_id, channel, address, receipt_copy) WHERE state <> 'failed';
CREATE INDEX receipt_deliveries_by_transaction ON receipt_deliveries(transaction_id, created_at);
CREATE INDEX receipt_deliveries_due ON receipt_deliveries(next_attempt_at) WHERE state = 'pending';
