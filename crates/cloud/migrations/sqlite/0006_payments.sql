-- The money lifecycle by reference: a follow-up (referenced refund, void, tip adjustment,
-- top-up, completion or release of a pre-authorisation) names its original; a tender names
-- its order; each transaction's function is a column so that settlements can be found.
ALTER TABLE transactions ADD COLUMN original_id TEXT;
ALTER TABLE transactions ADD COLUMN order_id TEXT;
ALTER TABLE transactions ADD COLUMN function TEXT NOT NULL DEFAULT '';
ALTER TABLE transactions ADD COLUMN transaction_reference TEXT;
UPDATE transactions SET function = COALESCE(json_extract(request, '$.function'), ''),
    transaction_reference = json_extract(request, '$.transaction_reference');
CREATE INDEX transactions_by_original ON transactions(original_id) WHERE original_id IS NOT NULL;
CREATE INDEX transactions_by_order ON transactions(order_id) WHERE order_id IS NOT NULL;
-- A SmartConnect Card.Finalise names its Card.Authorise by TransactionReference.
CREATE INDEX transactions_authorisations ON transactions(merchant_id, transaction_reference)
    WHERE function = 'Card.Authorise';
CREATE INDEX transactions_settlements ON transactions(device_id, completed_at)
    WHERE function = 'Acquirer.Settlement.Cutover';

-- What a device declared it can do in its last hello (space-separated names).
ALTER TABLE devices ADD COLUMN capabilities TEXT NOT NULL DEFAULT '';

-- Each merchant's default currency and tip limit.
ALTER TABLE merchants ADD COLUMN currency TEXT NOT NULL DEFAULT 'AUD';
ALTER TABLE merchants ADD COLUMN max_tip_percent INTEGER NOT NULL DEFAULT 30;

-- Orders paid by one or more tenders (split payments).
CREATE TABLE orders (
    id            TEXT PRIMARY KEY NOT NULL,
    merchant_id   TEXT NOT NULL,
    amount_total  INTEGER NOT NULL,
    currency      TEXT NOT NULL,
    pos_reference TEXT,
    -- 'open' | 'paid' | 'cancelled'
    state         TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    closed_at     INTEGER
) STRICT;
CREATE UNIQUE INDEX orders_by_reference ON orders(merchant_id, pos_reference)
    WHERE pos_reference IS NOT NULL;
CREATE INDEX orders_by_merchant ON orders(merchant_id, created_at);
