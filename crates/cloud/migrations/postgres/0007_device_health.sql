-- Devices' health reports (software, battery, network, paper, storage, uptime), newest kept:
-- the store keeps a bounded history per device.
CREATE TABLE device_health (
    device_id   TEXT NOT NULL,
    reported_at BIGINT NOT NULL,
    health      TEXT NOT NULL
);
CREATE INDEX device_health_by_device ON device_health(device_id, reported_at DESC);
