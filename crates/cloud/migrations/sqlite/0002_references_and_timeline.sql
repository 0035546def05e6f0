-- POS references (idempotency keys): one transaction per register and reference.
ALTER TABLE transactions ADD COLUMN pos_reference TEXT;
-- A digest of what was asked, so a reused reference with a different request is told apart.
ALTER TABLE transactions ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX transactions_by_reference
    ON transactions(register_id, business_name, vendor_name, pos_reference)
    WHERE pos_reference IS NOT NULL;
-- Retention sweeps delete the oldest completed transactions first.
CREATE INDEX transactions_by_created ON transactions(created_at);

-- What happened to each transaction, in order.
CREATE TABLE transaction_events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id TEXT NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
    at             INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    detail         TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX transaction_events_by_transaction ON transaction_events(transaction_id, seq);
