//! Software update campaigns: which devices get an artifact, in which order, when, and when a
//! campaign stops. Pure: the engine feeds it the stored rows and carries out its decisions.
//!
//! A campaign's devices are fixed when it is created, in a stable order: the first `canary` of
//! them are the canary group (wave 0), the rest follow in waves of `wave_size`. A wave is
//! offered only once every device of the waves before it is done (installed or failed), and
//! each device only inside its site's maintenance window. When `failure_threshold` devices have
//! failed, the campaign pauses: the operator looks, then resumes, cancels or rolls back. A
//! rollback offers the rollback artifact to every device that installed (or was offered) the
//! update.

use chrono::{DateTime, Duration, NaiveTime, Timelike, Utc};
use std::fmt;
use std::str::FromStr;

/// An operator's release key (its public half), which artifacts must be signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseKeyRecord {
    pub id: String,
    pub name: String,
    /// 64 hex digits.
    pub public_key: String,
    pub created_at: DateTime<Utc>,
}

/// A registered artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRecord {
    pub id: String,
    pub version: String,
    /// Where devices download it; none: the file is stored by the cloud.
    pub url: Option<String>,
    pub size: u64,
    pub sha256: String,
    pub signature: String,
    pub key_id: String,
    /// Whether the stored file was uploaded (for an artifact without a URL).
    pub has_file: bool,
    pub created_at: DateTime<Utc>,
}

impl ArtifactRecord {
    /// The artifact as a device is offered it.
    pub fn offer(&self) -> protocol::update::Artifact {
        protocol::update::Artifact {
            version: self.version.clone(),
            url: self
                .url
                .clone()
                .unwrap_or_else(|| format!("/device/v1/artifacts/{}", self.id)),
            size: self.size,
            sha256: self.sha256.clone(),
            signature: self.signature.clone(),
            key_id: self.key_id.clone(),
        }
    }
}

/// A campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignRecord {
    pub id: String,
    pub name: String,
    pub artifact_id: String,
    pub rollback_artifact_id: Option<String>,
    pub state: CampaignState,
    pub canary: u32,
    pub wave_size: u32,
    pub failure_threshold: u32,
    pub window: Option<Window>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// One device of a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignDevice {
    pub campaign_id: String,
    pub device_id: protocol::DeviceId,
    pub wave: u32,
    pub position: u32,
    pub state: DeviceUpdate,
    pub step: Option<protocol::update::UpdateStep>,
    pub reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A step a device reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    pub device_id: protocol::DeviceId,
    pub at: DateTime<Utc>,
    pub version: String,
    pub step: protocol::update::UpdateStep,
    pub reason: Option<String>,
}

/// Parses a step's stored name.
pub fn parse_step(s: &str) -> Option<protocol::update::UpdateStep> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

/// A campaign's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CampaignState {
    Running,
    /// Stopped by its failure threshold or by the operator; nothing new is offered.
    Paused,
    Completed,
    Cancelled,
    RollingBack,
    RolledBack,
}

impl CampaignState {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Running => "running",
            CampaignState::Paused => "paused",
            CampaignState::Completed => "completed",
            CampaignState::Cancelled => "cancelled",
            CampaignState::RollingBack => "rolling_back",
            CampaignState::RolledBack => "rolled_back",
        }
    }

    /// Whether the campaign still offers anything.
    pub fn is_active(self) -> bool {
        matches!(self, CampaignState::Running | CampaignState::RollingBack)
    }
}

impl FromStr for CampaignState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "running" => CampaignState::Running,
            "paused" => CampaignState::Paused,
            "completed" => CampaignState::Completed,
            "cancelled" => CampaignState::Cancelled,
            "rolling_back" => CampaignState::RollingBack,
            "rolled_back" => CampaignState::RolledBack,
            other => return Err(format!("campaign state '{other}'")),
        })
    }
}

impl fmt::Display for CampaignState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one device stands in a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceUpdate {
    Pending,
    Offered,
    Installed,
    Failed,
    RollbackPending,
    RollbackOffered,
    RolledBack,
    RollbackFailed,
}

impl DeviceUpdate {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceUpdate::Pending => "pending",
            DeviceUpdate::Offered => "offered",
            DeviceUpdate::Installed => "installed",
            DeviceUpdate::Failed => "failed",
            DeviceUpdate::RollbackPending => "rollback_pending",
            DeviceUpdate::RollbackOffered => "rollback_offered",
            DeviceUpdate::RolledBack => "rolled_back",
            DeviceUpdate::RollbackFailed => "rollback_failed",
        }
    }

    /// Done with this phase of the campaign (nothing more will be offered to it).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeviceUpdate::Installed
                | DeviceUpdate::Failed
                | DeviceUpdate::RolledBack
                | DeviceUpdate::RollbackFailed
        )
    }

    /// What a step the device reported makes of this state (none: it stays).
    pub fn after(self, step: protocol::update::UpdateStep) -> Option<DeviceUpdate> {
        use protocol::update::UpdateStep as S;
        let rollback = matches!(
            self,
            DeviceUpdate::RollbackPending | DeviceUpdate::RollbackOffered
        );
        match (step, rollback) {
            (S::Installed, false) => Some(DeviceUpdate::Installed),
            (S::Failed, false) => Some(DeviceUpdate::Failed),
            (S::Postponed, false) => Some(DeviceUpdate::Pending),
            (S::Installed, true) => Some(DeviceUpdate::RolledBack),
            (S::Failed, true) => Some(DeviceUpdate::RollbackFailed),
            (S::Postponed, true) => Some(DeviceUpdate::RollbackPending),
            (S::Downloading | S::Verified | S::Installing, _) => None,
        }
    }
}

impl FromStr for DeviceUpdate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => DeviceUpdate::Pending,
            "offered" => DeviceUpdate::Offered,
            "installed" => DeviceUpdate::Installed,
            "failed" => DeviceUpdate::Failed,
            "rollback_pending" => DeviceUpdate::RollbackPending,
            "rollback_offered" => DeviceUpdate::RollbackOffered,
            "rolled_back" => DeviceUpdate::RolledBack,
            "rollback_failed" => DeviceUpdate::RollbackFailed,
            other => return Err(format!("device update state '{other}'")),
        })
    }
}

/// A daily maintenance window in a site's local time, `start` to `end` (past midnight when
/// `end` is before `start`: 22:00–04:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Minutes after local midnight.
    pub start: u16,
    pub end: u16,
}

impl Window {
    /// Parses `HH:MM`.
    pub fn minutes(s: &str) -> Result<u16, String> {
        let t = NaiveTime::parse_from_str(s.trim(), "%H:%M")
            .map_err(|_| format!("'{s}' is not a time of day (HH:MM)"))?;
        Ok(u16::try_from(t.hour() * 60 + t.minute()).unwrap_or(0))
    }

    pub fn new(start: u16, end: u16) -> Result<Self, String> {
        if start >= 24 * 60 || end >= 24 * 60 || start == end {
            return Err("a window is two different times of day".into());
        }
        Ok(Self { start, end })
    }

    fn contains(&self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }

    /// If the window is open at `now` in `tz`, when it closes (UTC).
    pub fn open_until(&self, now: DateTime<Utc>, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&tz);
        let minute = u16::try_from(local.hour() * 60 + local.minute()).unwrap_or(0);
        if !self.contains(minute) {
            return None;
        }
        // Minutes left until `end`, through midnight if need be. Counted in minutes from the
        // local wall clock, which is right but for the hour a daylight-saving change moves.
        let left = (i64::from(self.end) - i64::from(minute)).rem_euclid(24 * 60);
        let closes = now + Duration::minutes(left) - Duration::seconds(i64::from(local.second()));
        Some(closes)
    }

    pub fn describe(&self) -> String {
        format!(
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// How long an offer made outside any window may take to install.
pub const NO_WINDOW_INSTALL_WITHIN: Duration = Duration::hours(24);

/// The wave of each position, for `n` devices.
pub fn waves(n: usize, canary: usize, wave_size: usize) -> Vec<u32> {
    let wave_size = wave_size.max(1);
    (0..n)
        .map(|i| {
            if i < canary {
                0
            } else {
                u32::try_from((i - canary) / wave_size + 1).unwrap_or(u32::MAX)
            }
        })
        .collect()
}

/// One device's row, as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub wave: u32,
    pub state: DeviceUpdate,
}

/// What a campaign should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Offer the devices at these indexes (of the rows given).
    Offer(Vec<usize>),
    /// Failures reached the threshold: pause.
    Pause { failed: usize },
    /// Every device is done.
    Complete,
    /// Nothing to do now (waiting for devices of the current wave).
    Wait,
}

/// Decides a campaign's next move from its rows.
pub fn decide(state: CampaignState, failure_threshold: u32, rows: &[Row]) -> Decision {
    match state {
        CampaignState::Running => {
            let failed = rows
                .iter()
                .filter(|r| r.state == DeviceUpdate::Failed)
                .count();
            if failure_threshold > 0 && failed >= failure_threshold as usize {
                return Decision::Pause { failed };
            }
            let Some(wave) = rows
                .iter()
                .filter(|r| !r.state.is_final())
                .map(|r| r.wave)
                .min()
            else {
                return Decision::Complete;
            };
            let offer: Vec<usize> = rows
                .iter()
                .enumerate()
                .filter(|(_, r)| r.wave == wave && r.state == DeviceUpdate::Pending)
                .map(|(i, _)| i)
                .collect();
            if offer.is_empty() {
                Decision::Wait
            } else {
                Decision::Offer(offer)
            }
        }
        CampaignState::RollingBack => {
            let offer: Vec<usize> = rows
                .iter()
                .enumerate()
                .filter(|(_, r)| r.state == DeviceUpdate::RollbackPending)
                .map(|(i, _)| i)
                .collect();
            let open = rows.iter().any(|r| {
                matches!(
                    r.state,
                    DeviceUpdate::RollbackPending | DeviceUpdate::RollbackOffered
                )
            });
            if !offer.is_empty() {
                Decision::Offer(offer)
            } else if open {
                Decision::Wait
            } else {
                Decision::Complete
            }
        }
        CampaignState::Paused
        | CampaignState::Completed
        | CampaignState::Cancelled
        | CampaignState::RolledBack => Decision::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::update::UpdateStep;

    fn rows(spec: &[(u32, DeviceUpdate)]) -> Vec<Row> {
        spec.iter()
            .map(|(wave, state)| Row {
                wave: *wave,
                state: *state,
            })
            .collect()
    }

    #[test]
    fn the_canary_goes_first_then_waves() {
        assert_eq!(waves(7, 1, 3), vec![0, 1, 1, 1, 2, 2, 2]);
        assert_eq!(waves(3, 0, 2), vec![1, 1, 2]);
        assert_eq!(waves(2, 5, 2), vec![0, 0]);
        assert_eq!(
            waves(3, 1, 0),
            vec![0, 1, 2],
            "a wave holds one device at least"
        );
    }

    #[test]
    fn a_wave_waits_for_the_one_before_and_failures_pause() {
        use DeviceUpdate::*;
        let r = rows(&[(0, Pending), (1, Pending), (1, Pending)]);
        assert_eq!(
            decide(CampaignState::Running, 2, &r),
            Decision::Offer(vec![0])
        );
        let r = rows(&[(0, Offered), (1, Pending), (1, Pending)]);
        assert_eq!(decide(CampaignState::Running, 2, &r), Decision::Wait);
        let r = rows(&[(0, Installed), (1, Pending), (1, Offered)]);
        assert_eq!(
            decide(CampaignState::Running, 2, &r),
            Decision::Offer(vec![1])
        );
        let r = rows(&[(0, Installed), (1, Failed), (1, Pending)]);
        assert_eq!(
            decide(CampaignState::Running, 2, &r),
            Decision::Offer(vec![2])
        );
        let r = rows(&[(0, Installed), (1, Failed), (1, Failed), (2, Pending)]);
        assert_eq!(
            decide(CampaignState::Running, 2, &r),
            Decision::Pause { failed: 2 }
        );
        // Threshold 0: never pauses.
        assert_eq!(
            decide(CampaignState::Running, 0, &r),
            Decision::Offer(vec![3])
        );
        let r = rows(&[(0, Installed), (1, Failed)]);
        assert_eq!(decide(CampaignState::Running, 2, &r), Decision::Complete);
        assert_eq!(decide(CampaignState::Running, 2, &[]), Decision::Complete);
        for s in [
            CampaignState::Paused,
            CampaignState::Completed,
            CampaignState::Cancelled,
            CampaignState::RolledBack,
        ] {
            assert_eq!(decide(s, 2, &rows(&[(0, Pending)])), Decision::Wait, "{s}");
        }
    }

    #[test]
    fn a_rollback_reaches_every_device_that_took_the_update() {
        use DeviceUpdate::*;
        let r = rows(&[
            (0, RollbackPending),
            (1, Failed),
            (1, RollbackPending),
            (2, Pending),
        ]);
        assert_eq!(
            decide(CampaignState::RollingBack, 1, &r),
            Decision::Offer(vec![0, 2])
        );
        let r = rows(&[(0, RollbackOffered), (1, RolledBack)]);
        assert_eq!(decide(CampaignState::RollingBack, 1, &r), Decision::Wait);
        let r = rows(&[(0, RollbackFailed), (1, RolledBack), (2, Pending)]);
        assert_eq!(
            decide(CampaignState::RollingBack, 1, &r),
            Decision::Complete
        );
    }

    #[test]
    fn stored_step_names_parse_back() {
        for step in [
            UpdateStep::Downloading,
            UpdateStep::Verified,
            UpdateStep::Installing,
            UpdateStep::Installed,
            UpdateStep::Failed,
            UpdateStep::Postponed,
        ] {
            assert_eq!(parse_step(step.as_str()), Some(step));
        }
        assert_eq!(parse_step("exploded"), None);
    }

    #[test]
    fn steps_move_states_in_both_phases() {
        use DeviceUpdate::*;
        for (from, step, to) in [
            (Offered, UpdateStep::Installed, Some(Installed)),
            (Offered, UpdateStep::Failed, Some(Failed)),
            (Offered, UpdateStep::Postponed, Some(Pending)),
            (Offered, UpdateStep::Downloading, None),
            (Offered, UpdateStep::Verified, None),
            (Pending, UpdateStep::Installing, None),
            (RollbackOffered, UpdateStep::Installed, Some(RolledBack)),
            (RollbackOffered, UpdateStep::Failed, Some(RollbackFailed)),
            (
                RollbackOffered,
                UpdateStep::Postponed,
                Some(RollbackPending),
            ),
            (RollbackPending, UpdateStep::Installed, Some(RolledBack)),
        ] {
            assert_eq!(from.after(step), to, "{from:?} {step:?}");
        }
        for s in [
            Pending,
            Offered,
            Installed,
            Failed,
            RollbackPending,
            RollbackOffered,
            RolledBack,
            RollbackFailed,
        ] {
            assert_eq!(s.as_str().parse::<DeviceUpdate>(), Ok(s));
        }
        for s in [
            CampaignState::Running,
            CampaignState::Paused,
            CampaignState::Completed,
            CampaignState::Cancelled,
            CampaignState::RollingBack,
            CampaignState::RolledBack,
        ] {
            assert_eq!(s.as_str().parse::<CampaignState>(), Ok(s));
        }
    }

    #[test]
    fn windows_open_in_the_sites_time_zone_and_may_span_midnight() {
        let sydney: chrono_tz::Tz = "Australia/Sydney".parse().unwrap_or(chrono_tz::UTC);
        let w = Window::new(
            Window::minutes("02:00").unwrap_or(0),
            Window::minutes("05:00").unwrap_or(0),
        )
        .unwrap_or(Window { start: 0, end: 1 });
        // 2026-06-01 16:30 UTC is 02:30 in Sydney (UTC+10 in June).
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|d| d.with_timezone(&Utc))
                .unwrap_or_default()
        };
        let closes = w.open_until(at("2026-06-01T16:30:00Z"), sydney);
        assert_eq!(closes, Some(at("2026-06-01T19:00:00Z")));
        assert_eq!(w.open_until(at("2026-06-01T20:00:00Z"), sydney), None);
        assert_eq!(
            w.open_until(at("2026-06-01T16:30:00Z"), chrono_tz::UTC),
            None
        );
        let night = Window::new(22 * 60, 4 * 60).unwrap_or(w);
        assert_eq!(
            night.open_until(at("2026-06-01T23:15:00Z"), chrono_tz::UTC),
            Some(at("2026-06-02T04:00:00Z"))
        );
        assert_eq!(
            night.open_until(at("2026-06-01T03:00:00Z"), chrono_tz::UTC),
            Some(at("2026-06-01T04:00:00Z"))
        );
        assert!(night
            .open_until(at("2026-06-01T12:00:00Z"), chrono_tz::UTC)
            .is_none());
        assert!(Window::new(60, 60).is_err());
        assert!(Window::minutes("25:00").is_err());
        assert_eq!(w.describe(), "02:00-05:00");
    }
}
