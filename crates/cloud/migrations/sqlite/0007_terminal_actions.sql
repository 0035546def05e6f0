-- Terminal actions: the screen and printer a device declared in its last hello (JSON), and
-- what its customer-facing screen shows between payments (a cart as JSON, NULL when clear),
-- with a version that grows with each change so a device never shows an older cart.
ALTER TABLE devices ADD COLUMN hardware TEXT;
ALTER TABLE devices ADD COLUMN display TEXT;
ALTER TABLE devices ADD COLUMN display_version INTEGER NOT NULL DEFAULT 0;
