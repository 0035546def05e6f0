//! The fleet's health as gauges: devices by agent version, low on battery, out of paper.
//!
//! Each node counts the devices connected to it that reported health, from their latest report;
//! a device that disconnects leaves its node's counts, so in a cluster the sum over the nodes
//! counts every connected device once.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use protocol::health::Health;
use protocol::DeviceId;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    agent_version: String,
}

/// What one device adds to the gauges.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Tally {
    agent_version: String,
    low_battery: bool,
    out_of_paper: bool,
}

/// The gauges and the tallies behind them.
pub struct FleetHealth {
    by_version: Family<VersionLabels, Gauge>,
    low_battery: Gauge,
    out_of_paper: Gauge,
    devices: Mutex<HashMap<DeviceId, Tally>>,
}

impl FleetHealth {
    /// The gauges, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let by_version = Family::<VersionLabels, Gauge>::default();
        registry.register(
            "devices_by_agent_version",
            "Connected devices of this node that reported health, by agent version",
            by_version.clone(),
        );
        let low_battery = Gauge::default();
        registry.register(
            "devices_low_battery",
            "Connected devices of this node whose last report says below 20% and not charging",
            low_battery.clone(),
        );
        let out_of_paper = Gauge::default();
        registry.register(
            "devices_out_of_paper",
            "Connected devices of this node whose last report says the printer is out of paper",
            out_of_paper.clone(),
        );
        Self {
            by_version,
            low_battery,
            out_of_paper,
            devices: Mutex::new(HashMap::new()),
        }
    }

    /// A device reported `health`: it counts by this report from now on.
    pub fn report(&self, device: &DeviceId, health: &Health) {
        let tally = Tally {
            agent_version: if health.agent_version.is_empty() {
                "unknown".into()
            } else {
                health.agent_version.clone()
            },
            low_battery: health.low_battery(),
            out_of_paper: health.out_of_paper(),
        };
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let old = devices.insert(device.clone(), tally.clone());
        if let Some(old) = old {
            self.add(&old, -1);
        }
        self.add(&tally, 1);
    }

    /// The device's connection to this node closed: it no longer counts here.
    pub fn forget(&self, device: &DeviceId) {
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = devices.remove(device) {
            self.add(&old, -1);
        }
    }

    fn add(&self, t: &Tally, by: i64) {
        self.by_version
            .get_or_create(&VersionLabels {
                agent_version: t.agent_version.clone(),
            })
            .inc_by(by);
        if t.low_battery {
            self.low_battery.inc_by(by);
        }
        if t.out_of_paper {
            self.out_of_paper.inc_by(by);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::health::{Battery, PaperState};

    #[test]
    fn each_device_counts_once_by_its_latest_report() {
        let mut registry = Registry::default();
        let fleet = FleetHealth::register(&mut registry);
        let d = |s: &str| DeviceId::parse(s).unwrap_or_else(|_| unreachable!());
        let low = Health {
            agent_version: "1.0".into(),
            battery: Some(Battery {
                level_percent: 5,
                charging: false,
            }),
            printer_paper: Some(PaperState::Out),
            ..Health::default()
        };
        fleet.report(&d("a"), &low);
        fleet.report(&d("a"), &low);
        fleet.report(&d("b"), &low);
        let v1 = VersionLabels {
            agent_version: "1.0".into(),
        };
        assert_eq!(fleet.by_version.get_or_create(&v1).get(), 2);
        assert_eq!((fleet.low_battery.get(), fleet.out_of_paper.get()), (2, 2));
        // Updated: charging, paper loaded, a new version.
        let fine = Health {
            agent_version: "1.1".into(),
            ..Health::default()
        };
        fleet.report(&d("a"), &fine);
        assert_eq!(fleet.by_version.get_or_create(&v1).get(), 1);
        assert_eq!((fleet.low_battery.get(), fleet.out_of_paper.get()), (1, 1));
        fleet.forget(&d("b"));
        fleet.forget(&d("b"));
        assert_eq!(fleet.by_version.get_or_create(&v1).get(), 0);
        assert_eq!((fleet.low_battery.get(), fleet.out_of_paper.get()), (0, 0));
        let v11 = VersionLabels {
            agent_version: "1.1".into(),
        };
        assert_eq!(fleet.by_version.get_or_create(&v11).get(), 1);
    }
}
