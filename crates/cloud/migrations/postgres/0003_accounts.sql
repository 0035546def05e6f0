-- Accounts: the installation serves merchants; a merchant has sites; devices belong to a
-- merchant (and optionally a site); API keys with scopes; the audit log of admin actions.
-- The same tables and meaning as SQLite's 0005_accounts.sql.

CREATE TABLE merchants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE sites (
    id          TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants(id),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (merchant_id, name)
);

-- Existing data moves over: each distinct merchant name of the devices becomes a merchant
-- (devices with none share one named 'Unnamed merchant'), whose id is the smallest merchant
-- id its devices had, so a POS sees no new merchantId for at least one of them.
INSERT INTO merchants (id, name, created_at)
SELECT MIN(merchant_id), COALESCE(NULLIF(merchant, ''), 'Unnamed merchant'), MIN(created_at)
FROM devices
GROUP BY COALESCE(NULLIF(merchant, ''), 'Unnamed merchant');
UPDATE devices SET merchant_id = m.id FROM merchants m
WHERE m.name = COALESCE(NULLIF(devices.merchant, ''), 'Unnamed merchant');
-- Transactions belong to the merchant of their device.
UPDATE transactions SET merchant_id = d.merchant_id FROM devices d
WHERE d.id = transactions.device_id;

ALTER TABLE devices ADD COLUMN site_id TEXT REFERENCES sites(id);
CREATE INDEX devices_by_merchant ON devices(merchant_id);
CREATE INDEX transactions_by_merchant ON transactions(merchant_id, created_at);

-- API keys. Only the SHA-256 of the secret part is kept; `id` is the visible prefix.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    secret_hash  TEXT NOT NULL,
    -- 'installation' | 'merchant' | 'vendor'
    owner        TEXT NOT NULL,
    merchant_id  TEXT REFERENCES merchants(id),
    vendor       TEXT,
    scopes       TEXT NOT NULL,
    label        TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);

-- Every admin action, append-only: the trigger refuses any change or deletion.
CREATE TABLE audit_log (
    seq         BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    source      TEXT,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    merchant_id TEXT,
    detail      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_by_merchant ON audit_log(merchant_id, seq);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- People who sign in to the dashboard. Passwords are argon2id hashes (PHC strings).
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    -- Lower-cased, so one person has one account.
    email           TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    -- 'owner' | 'operator' | 'merchant-admin' | 'viewer'
    role            TEXT NOT NULL,
    merchant_id     TEXT REFERENCES merchants(id),
    created_at      BIGINT NOT NULL,
    -- Wrong passwords since the last sign-in, and the lockout they caused; in the store, so
    -- every node counts the same guesses.
    failed_sign_ins INTEGER NOT NULL DEFAULT 0,
    locked_until    BIGINT
);

-- Dashboard sessions, stored so that they hold on every node. `id` is the SHA-256 of the
-- cookie's token.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions(user_id);
