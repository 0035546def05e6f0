//! A device's health as it reports it (`health` frame): its software, battery, network,
//! printer paper, storage and uptime, so an operator sees which terminals run old software or
//! are about to stop. Every figure is optional: a device reports what its OS tells it.

use serde::{Deserialize, Serialize};

/// The `health` frame's body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The agent's version (as in `hello`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent_version: String,
    /// The payment application's or OS's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery: Option<Battery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printer_paper: Option<PaperState>,
    /// Free bytes where the device keeps its journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_free_bytes: Option<u64>,
    /// Seconds since the device (or, where the OS does not say, the agent) started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_secs: Option<u64>,
}

/// The battery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Battery {
    /// 0 to 100.
    pub level_percent: u8,
    pub charging: bool,
}

/// How the device reaches the cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub kind: NetworkKind,
    /// 0 to 100, where the radio says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_percent: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkKind {
    Ethernet,
    Wifi,
    Cellular,
    Other,
}

/// The printer's paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaperState {
    Ok,
    Low,
    Out,
    /// The device has no printer.
    NoPrinter,
}

/// Below this battery level (and not charging) a device counts as low on battery.
pub const LOW_BATTERY_PERCENT: u8 = 20;

/// Longest version text kept.
const MAX_VERSION_LEN: usize = 64;

/// Why a health report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("health refused: {0}")]
pub struct BadHealth(pub String);

impl Health {
    /// Checks the ranges and lengths: percentages within 0 to 100, versions short printable
    /// text.
    pub fn check(&self) -> Result<(), BadHealth> {
        let percent = |what: &str, v: u8| {
            if v > 100 {
                Err(BadHealth(format!("{what} {v} is above 100")))
            } else {
                Ok(())
            }
        };
        if let Some(b) = self.battery {
            percent("battery level", b.level_percent)?;
        }
        if let Some(s) = self.network.as_ref().and_then(|n| n.signal_percent) {
            percent("signal", s)?;
        }
        let versions = [
            ("agent_version", Some(&self.agent_version)),
            ("software_version", self.software_version.as_ref()),
            ("firmware_version", self.firmware_version.as_ref()),
        ];
        for (name, v) in versions {
            if let Some(v) = v {
                if v.chars().count() > MAX_VERSION_LEN || v.chars().any(char::is_control) {
                    return Err(BadHealth(format!(
                        "{name}: at most {MAX_VERSION_LEN} printable characters"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Low on battery: below [`LOW_BATTERY_PERCENT`] and not charging.
    pub fn low_battery(&self) -> bool {
        self.battery
            .is_some_and(|b| b.level_percent < LOW_BATTERY_PERCENT && !b.charging)
    }

    /// Out of paper.
    pub fn out_of_paper(&self) -> bool {
        self.printer_paper == Some(PaperState::Out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_lengths_are_checked() {
        let ok = Health {
            agent_version: "0.1.0".into(),
            battery: Some(Battery {
                level_percent: 100,
                charging: false,
            }),
            network: Some(Network {
                kind: NetworkKind::Wifi,
                signal_percent: Some(100),
            }),
            ..Health::default()
        };
        assert_eq!(ok.check(), Ok(()));
        let mut bad = ok.clone();
        bad.battery = Some(Battery {
            level_percent: 101,
            charging: true,
        });
        assert!(bad.check().is_err());
        let mut bad = ok.clone();
        bad.network = Some(Network {
            kind: NetworkKind::Cellular,
            signal_percent: Some(101),
        });
        assert!(bad.check().is_err());
        let mut bad = ok.clone();
        bad.firmware_version = Some("v".repeat(65));
        assert!(bad.check().is_err());
        let mut bad = ok;
        bad.agent_version = "1\n2".into();
        assert!(bad.check().is_err());
        assert_eq!(Health::default().check(), Ok(()));
    }

    #[test]
    fn low_battery_and_paper_out() {
        let with = |level, charging, paper| Health {
            battery: Some(Battery {
                level_percent: level,
                charging,
            }),
            printer_paper: paper,
            ..Health::default()
        };
        assert!(with(19, false, None).low_battery());
        assert!(!with(20, false, None).low_battery());
        assert!(!with(5, true, None).low_battery(), "charging");
        assert!(!Health::default().low_battery());
        assert!(with(50, false, Some(PaperState::Out)).out_of_paper());
        assert!(!with(50, false, Some(PaperState::Low)).out_of_paper());
        let json = r#"{"battery":{"level_percent":5,"charging":false},"network":{"kind":"cellular","signal_percent":40},"printer_paper":"no_printer","uptime_secs":7}"#;
        let h: Result<Health, _> = serde_json::from_str(json);
        assert!(h.as_ref().is_ok_and(Health::low_battery), "{h:?}");
        assert_eq!(
            h.ok().and_then(|h| h.printer_paper),
            Some(PaperState::NoPrinter)
        );
    }
}
