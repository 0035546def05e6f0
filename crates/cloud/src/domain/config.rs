//! Configuration profiles: where each is set, and how a device's effective settings follow
//! from them.
//!
//! A [`Profile`] may be set at four levels — the operator's (the installation's), a
//! merchant's, a site's and a device's — each naming only the fields it overrides. A device's
//! effective [`Settings`] are the defaults (with its merchant's currency) overlaid by the
//! operator's profile, its merchant's, its site's and its own, in that order. Every change is a
//! new version of that level's profile, kept with who made it; the device's effective settings
//! carry a version of their own that moves only when they change.

use super::accounts::{MerchantId, SiteId};
use chrono::{DateTime, Utc};
use protocol::config::{Profile, Settings};
use protocol::{Currency, DeviceId};
use std::fmt;

/// The level a profile is set at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Operator,
    Merchant,
    Site,
    Device,
}

impl Level {
    /// From the top down: the order in which profiles are overlaid.
    pub const ALL: [Level; 4] = [Level::Operator, Level::Merchant, Level::Site, Level::Device];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Operator => "operator",
            Level::Merchant => "merchant",
            Level::Site => "site",
            Level::Device => "device",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one profile is set: a level and, below the operator's, what it is set on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProfileScope {
    Operator,
    Merchant(MerchantId),
    Site(SiteId),
    Device(DeviceId),
}

impl ProfileScope {
    pub fn level(&self) -> Level {
        match self {
            ProfileScope::Operator => Level::Operator,
            ProfileScope::Merchant(_) => Level::Merchant,
            ProfileScope::Site(_) => Level::Site,
            ProfileScope::Device(_) => Level::Device,
        }
    }

    /// The id it is set on; empty for the operator's.
    pub fn target(&self) -> &str {
        match self {
            ProfileScope::Operator => "",
            ProfileScope::Merchant(m) => m.as_str(),
            ProfileScope::Site(s) => s.as_str(),
            ProfileScope::Device(d) => d.as_str(),
        }
    }

    /// Rebuilds a scope read back from the store.
    pub fn from_stored(level: &str, target: String) -> Option<Self> {
        Some(match level {
            "operator" => ProfileScope::Operator,
            "merchant" => ProfileScope::Merchant(MerchantId::from_stored(target)),
            "site" => ProfileScope::Site(SiteId::from_stored(target)),
            "device" => ProfileScope::Device(DeviceId::parse(&target).ok()?),
            _ => return None,
        })
    }

    /// The four scopes whose profiles apply to a device, from the top down.
    pub fn chain(
        merchant: &MerchantId,
        site: Option<&SiteId>,
        device: &DeviceId,
    ) -> Vec<ProfileScope> {
        let mut out = vec![
            ProfileScope::Operator,
            ProfileScope::Merchant(merchant.clone()),
        ];
        if let Some(site) = site {
            out.push(ProfileScope::Site(site.clone()));
        }
        out.push(ProfileScope::Device(device.clone()));
        out
    }
}

impl fmt::Display for ProfileScope {
    /// `operator`, `merchant:<id>`, ...: the audit log's target.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileScope::Operator => f.write_str("operator"),
            other => write!(f, "{}:{}", other.level(), other.target()),
        }
    }
}

/// One version of a level's profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRecord {
    pub scope: ProfileScope,
    /// 1 for the first profile set at this scope, one more for each change.
    pub version: u64,
    pub profile: Profile,
    pub set_at: DateTime<Utc>,
    /// Who set it, as the audit log records it.
    pub actor: String,
}

/// A device's configuration as the cloud last computed it, and what the device applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfigState {
    /// 0 until settings were first computed for the device.
    pub version: u64,
    /// The effective settings of `version`, as JSON.
    pub settings: Option<String>,
    /// The newest version the device acknowledged applying (0: none).
    pub acked: u64,
    pub acked_at: Option<DateTime<Utc>>,
}

impl DeviceConfigState {
    /// Whether the device has settings to apply that it has not acknowledged.
    pub fn pending(&self) -> bool {
        self.version > self.acked
    }
}

/// A device's effective settings, with the level each field came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub settings: Settings,
    /// For each field (by its API name) that a profile set, the lowest level that set it;
    /// fields absent here are the defaults.
    pub sources: Vec<(&'static str, Level)>,
}

/// Overlays `profiles` (from the top down) on the defaults, the currency being the merchant's
/// unless a profile sets one.
pub fn resolve(currency: Currency, profiles: &[(Level, &Profile)]) -> Effective {
    let base = Settings {
        currency,
        ..Settings::default()
    };
    let mut sources: Vec<(&'static str, Level)> = Vec::new();
    let mut settings = base;
    for (level, profile) in profiles {
        settings = settings.overlay(profile);
        for field in profile.fields_set() {
            match sources.iter_mut().find(|(f, _)| *f == field) {
                Some(entry) => entry.1 = *level,
                None => sources.push((field, *level)),
            }
        }
    }
    Effective { settings, sources }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_level_that_sets_a_field_wins_and_is_named() {
        let operator = Profile {
            tipping: Some(true),
            idle_text: Some("Welcome".into()),
            ..Profile::default()
        };
        let merchant = Profile {
            idle_text: Some("Joe's".into()),
            currency: Some(Currency::parse("NZD").unwrap_or_default()),
            ..Profile::default()
        };
        let site = Profile::default();
        let device = Profile {
            tipping: Some(false),
            ..Profile::default()
        };
        let e = resolve(
            Currency::AUD,
            &[
                (Level::Operator, &operator),
                (Level::Merchant, &merchant),
                (Level::Site, &site),
                (Level::Device, &device),
            ],
        );
        assert!(!e.settings.tipping);
        assert_eq!(e.settings.idle_text, "Joe's");
        assert_eq!(e.settings.currency.code(), "NZD");
        let source = |f: &str| e.sources.iter().find(|(n, _)| *n == f).map(|(_, l)| *l);
        assert_eq!(source("tipping"), Some(Level::Device));
        assert_eq!(source("idleText"), Some(Level::Merchant));
        assert_eq!(source("currency"), Some(Level::Merchant));
        assert_eq!(source("tipPresets"), None);
        // Nothing set: the defaults, in the merchant's currency.
        let bare = resolve(Currency::parse("EUR").unwrap_or_default(), &[]);
        assert_eq!(bare.settings.currency.code(), "EUR");
        assert_eq!(bare.settings.tip_presets, Settings::default().tip_presets);
        assert!(bare.sources.is_empty());
    }

    #[test]
    fn scopes_round_trip_through_the_store_and_name_the_audit_target() {
        let device = DeviceId::parse("cfg-1").unwrap_or_else(|_| unreachable!());
        let merchant = MerchantId::new();
        let site = SiteId::new();
        for scope in [
            ProfileScope::Operator,
            ProfileScope::Merchant(merchant.clone()),
            ProfileScope::Site(site.clone()),
            ProfileScope::Device(device.clone()),
        ] {
            let back = ProfileScope::from_stored(scope.level().as_str(), scope.target().into());
            assert_eq!(back.as_ref(), Some(&scope));
        }
        assert_eq!(ProfileScope::Operator.to_string(), "operator");
        assert_eq!(
            ProfileScope::Merchant(merchant.clone()).to_string(),
            format!("merchant:{merchant}")
        );
        assert_eq!(ProfileScope::from_stored("planet", String::new()), None);
        assert_eq!(ProfileScope::chain(&merchant, None, &device).len(), 3);
        assert_eq!(
            ProfileScope::chain(&merchant, Some(&site), &device)
                .iter()
                .map(ProfileScope::level)
                .collect::<Vec<_>>(),
            Level::ALL.to_vec()
        );
    }
}
