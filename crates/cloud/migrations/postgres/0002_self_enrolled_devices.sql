-- Devices the virtual terminal page enrolled for anyone who asked (not an operator): the
-- retention sweep deletes them once unused, so such enrollments cannot grow the store forever.
ALTER TABLE devices ADD COLUMN self_enrolled BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX devices_self_enrolled ON devices(created_at) WHERE self_enrolled;
