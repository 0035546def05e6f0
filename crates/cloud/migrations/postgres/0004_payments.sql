-- The money lifecycle by reference: the same tables and meaning as SQLite's 0006_payments.sql.
ALTER TABLE transactions ADD COLUMN original_id TEXT;
ALTER TABLE transactions ADD COLUMN order_id TEXT;
ALTER TABLE transactions ADD COLUMN function TEXT NOT NULL DEFAULT '';
ALTER TABLE transactions ADD COLUMN transaction_reference TEXT;
UPDATE transactions SET function = COALESCE(request::jsonb ->> 'function', ''),
    transaction_reference = request::jsonb ->> 'transaction_reference';
CREATE INDEX transactions_by_original ON transactions(original_id) WHERE original_id IS NOT NULL;
CREATE INDEX transactions_by_order ON transactions(order_id) WHERE order_id IS NOT NULL;
CREATE INDEX transactions_authorisations ON transactions(merchant_id, transaction_reference)
    WHERE function = 'Card.Authorise';
CREATE INDEX transactions_settlements ON transactions(device_id, completed_at)
    WHERE function = 'Acquirer.Settlement.Cutover';

ALTER TABLE devices ADD COLUMN capabilities TEXT NOT NULL DEFAULT '';

ALTER TABLE merchants ADD COLUMN currency TEXT NOT NULL DEFAULT 'AUD';
ALTER TABLE merchants ADD COLUMN max_tip_percent INTEGER NOT NULL DEFAULT 30;

CREATE TABLE orders (
    id            TEXT PRIMARY KEY,
    merchant_id   TEXT NOT NULL,
    amount_total  BIGINT NOT NULL,
    currency      TEXT NOT NULL,
    pos_reference TEXT,
    state         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    closed_at     BIGINT
);
CREATE UNIQUE INDEX orders_by_reference ON orders(merchant_id, pos_reference)
    WHERE pos_reference IS NOT NULL;
CREATE INDEX orders_by_merchant ON orders(merchant_id, created_at);
