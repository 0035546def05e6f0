-- Software updates: the operator's release keys, signed artifacts (a download URL, or the file
-- stored here), campaigns that roll an artifact out in waves, each device's progress in each
-- campaign, and every step devices report. Sites get a time zone, for maintenance windows.

ALTER TABLE sites ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';

CREATE TABLE release_keys (
    -- The first 16 hex digits of the SHA-256 of the public key.
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    public_key TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE artifacts (
    id         TEXT PRIMARY KEY NOT NULL,
    version    TEXT NOT NULL,
    -- NULL: the file is stored below and served to devices by the cloud.
    url        TEXT,
    size       BIGINT NOT NULL,
    sha256     TEXT NOT NULL,
    signature  TEXT NOT NULL,
    key_id     TEXT NOT NULL REFERENCES release_keys(id),
    file       BYTEA,
    created_at BIGINT NOT NULL
);

CREATE TABLE campaigns (
    id                   TEXT PRIMARY KEY NOT NULL,
    name                 TEXT NOT NULL,
    artifact_id          TEXT NOT NULL REFERENCES artifacts(id),
    rollback_artifact_id TEXT REFERENCES artifacts(id),
    -- 'running' | 'paused' | 'completed' | 'cancelled' | 'rolling_back' | 'rolled_back'
    state                TEXT NOT NULL,
    canary               BIGINT NOT NULL,
    wave_size            BIGINT NOT NULL,
    failure_threshold    BIGINT NOT NULL,
    -- Minutes after midnight in each site's time zone; NULL: no window (any time).
    window_start         BIGINT,
    window_end           BIGINT,
    created_at           BIGINT NOT NULL,
    created_by           TEXT NOT NULL
);

CREATE TABLE campaign_devices (
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    device_id   TEXT NOT NULL,
    -- 0 for the canary group, then 1, 2, ...
    wave        BIGINT NOT NULL,
    position    BIGINT NOT NULL,
    -- 'pending' | 'offered' | 'installed' | 'failed' | 'rollback_pending' | 'rollback_offered'
    -- | 'rolled_back' | 'rollback_failed'
    state       TEXT NOT NULL,
    -- The last step the device reported, and why it failed.
    step        TEXT,
    reason      TEXT,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, device_id)
);
CREATE INDEX campaign_devices_by_device ON campaign_devices(device_id);

CREATE TABLE update_steps (
    seq         BIGSERIAL PRIMARY KEY,
    campaign_id TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    at          BIGINT NOT NULL,
    version     TEXT NOT NULL,
    step        TEXT NOT NULL,
    reason      TEXT
);
CREATE INDEX update_steps_by_campaign ON update_steps(campaign_id, seq);
