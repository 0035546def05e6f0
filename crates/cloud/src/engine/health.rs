//! Devices' health reports: stored with a bounded history, counted in the fleet's gauges, read
//! by the operator.

use super::{Engine, EngineError};
use chrono::{DateTime, Utc};
use protocol::health::{BadHealth, Health};
use protocol::DeviceId;

/// How many reports each device keeps (at one every five minutes, over eight hours).
pub const HEALTH_HISTORY: u32 = 100;

/// One stored report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub at: DateTime<Utc>,
    pub health: Health,
}

impl Engine {
    /// A device reported its health: checked, stored (the oldest report past the bounded
    /// history goes in the same commit), counted. A report out of range is refused, for the
    /// device to be told.
    pub async fn on_health(
        &self,
        device: &DeviceId,
        health: Health,
    ) -> Result<Result<(), BadHealth>, EngineError> {
        if let Err(bad) = health.check() {
            return Ok(Err(bad));
        }
        // A `Health` is strings and numbers: serialising it cannot fail.
        let json = serde_json::to_string(&health).unwrap_or_default();
        self.store()
            .record_health(device, self.now(), &json, HEALTH_HISTORY)
            .await?;
        self.metrics().fleet.report(device, &health);
        Ok(Ok(()))
    }

    /// Every device's latest report.
    pub async fn latest_health(
        &self,
    ) -> Result<std::collections::HashMap<DeviceId, HealthReport>, EngineError> {
        Ok(self
            .store()
            .latest_health()
            .await?
            .into_iter()
            .filter_map(|(id, at, json)| {
                serde_json::from_str(&json)
                    .ok()
                    .map(|health| (id, HealthReport { at, health }))
            })
            .collect())
    }

    /// The device's newest `limit` reports, newest first. A stored report that no longer
    /// parses is skipped (it was checked when it came in).
    pub async fn health_history(
        &self,
        device: &DeviceId,
        limit: u32,
    ) -> Result<Vec<HealthReport>, EngineError> {
        Ok(self
            .store()
            .health_history(device, limit)
            .await?
            .into_iter()
            .filter_map(|(at, json)| {
                serde_json::from_str(&json)
                    .ok()
                    .map(|health| HealthReport { at, health })
            })
            .collect())
    }
}
