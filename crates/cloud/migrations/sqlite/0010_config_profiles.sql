-- Configuration profiles: every version of every scope's profile (the newest is current), so
-- each change is a new version with who made it.
CREATE TABLE config_profiles (
    -- 'operator' | 'merchant' | 'site' | 'device'
    level   TEXT NOT NULL,
    -- '' for the operator's, else the merchant's, site's or device's id
    target  TEXT NOT NULL,
    version INTEGER NOT NULL,
    -- The profile as JSON (the fields it sets).
    profile TEXT NOT NULL,
    set_at  INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    PRIMARY KEY (level, target, version)
) STRICT;

-- A device's effective settings as last computed (JSON), their version (moving only when they
-- change), and the version the device acknowledged applying.
ALTER TABLE devices ADD COLUMN config TEXT;
ALTER TABLE devices ADD COLUMN config_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN config_acked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN config_acked_at INTEGER;
