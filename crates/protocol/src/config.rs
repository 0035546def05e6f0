//! A terminal's configuration: tips, surcharges, receipt text, currency, language, timeouts
//! and the idle screen.
//!
//! An operator sets a [`Profile`] at any of four levels (the installation, a merchant, a site,
//! a device), each naming only the fields it overrides; a device's effective [`Settings`] are
//! the defaults overlaid by each level in turn ([`Settings::overlay`]). The cloud pushes them to
//! a device that declares the `config` capability in a `config` frame with a version; the
//! device applies them between transactions, never during one, and answers `config_ack` with
//! that version.

use crate::amount::Cents;
use crate::currency::Currency;
use serde::{Deserialize, Serialize};

/// Most tip presets a terminal offers.
pub const MAX_TIP_PRESETS: usize = 6;
/// Most surcharge rules.
pub const MAX_SURCHARGE_RULES: usize = 20;
/// The largest surcharge rate, in basis points (10%).
pub const MAX_SURCHARGE_BPS: u32 = 1_000;
/// Longest receipt header or footer, in characters (a few printed lines).
pub const MAX_RECEIPT_TEXT: usize = 400;
/// Longest idle screen text, in characters.
pub const MAX_IDLE_TEXT: usize = 120;
/// Bounds of the timeouts, in seconds.
pub const TIMEOUT_SECS: std::ops::RangeInclusive<u32> = 5..=600;
/// The card type a surcharge rule names to apply to any card no other rule names.
pub const ANY_CARD: &str = "*";

/// A surcharge on payments with one card type: `bps` basis points of the amount (150 is
/// 1.5%), rounded half up to the cent, at most `cap` when one is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurchargeRule {
    /// The `CardType` a result reports (`VISA`, `MASTERCARD`, `AMEX`, ...), or `*` for any
    /// card no other rule names.
    pub card: String,
    pub bps: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<Cents>,
}

impl SurchargeRule {
    /// The surcharge on `amount` (in minor units).
    pub fn on(&self, amount: u64) -> u64 {
        let raw = (u128::from(amount) * u128::from(self.bps) + 5_000) / 10_000;
        let raw = u64::try_from(raw).unwrap_or(u64::MAX);
        match self.cap {
            Some(cap) => raw.min(cap.get()),
            None => raw,
        }
    }
}

/// A configuration as set at one level: every field is optional, and a field left out is
/// inherited from the level above (the installation's defaults at the top).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Profile {
    /// Whether the terminal asks the customer for a tip on a purchase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tipping: Option<bool>,
    /// The tips offered, as percentages of the amount (1 to 100 each, at most six).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tip_presets: Option<Vec<u8>>,
    /// Surcharge rules, at most one per card type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surcharges: Option<Vec<SurchargeRule>>,
    /// Printed above each receipt (lines separated by `\n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_header: Option<String>,
    /// Printed below each receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_footer: Option<String>,
    /// The currency of a request that names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    /// The language of the terminal's screens and receipts (a language tag: `en`, `en-AU`,
    /// `fr-CA`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Seconds the terminal waits for a card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_timeout_secs: Option<u32>,
    /// Seconds the terminal waits for a customer's input when the request sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_timeout_secs: Option<u32>,
    /// What the screen shows between payments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_text: Option<String>,
}

/// Why a profile was refused, said plainly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadProfile {
    #[error("tipPresets must hold 1 to {MAX_TIP_PRESETS} distinct percentages from 1 to 100")]
    TipPresets,
    #[error("surcharges: at most {MAX_SURCHARGE_RULES} rules, one per card type")]
    TooManySurcharges,
    #[error("surcharges: '{0}' is not a card type (letters, digits and '_', up to 20, or '*')")]
    CardType(String),
    #[error("surcharges: card type '{0}' has two rules")]
    DuplicateCardType(String),
    #[error("surcharges: bps must be 1 to {MAX_SURCHARGE_BPS} (10%), got {0}")]
    SurchargeRate(u32),
    #[error("{0} must be at most {1} characters, with no control characters but line breaks")]
    Text(&'static str, usize),
    #[error("language '{0}' is not a language tag such as en, en-AU or fr-CA")]
    Language(String),
    #[error("{0} must be {lo} to {hi} seconds, got {1}", lo = TIMEOUT_SECS.start(), hi = TIMEOUT_SECS.end())]
    Timeout(&'static str, u32),
}

impl Profile {
    /// Whether every field is left to the level above.
    pub fn is_empty(&self) -> bool {
        *self == Profile::default()
    }

    /// Checks every field's rules; a profile that passes can be applied by any device.
    pub fn check(&self) -> Result<(), BadProfile> {
        if let Some(presets) = &self.tip_presets {
            let mut sorted = presets.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if presets.is_empty()
                || presets.len() > MAX_TIP_PRESETS
                || sorted.len() != presets.len()
                || presets.iter().any(|p| !(1..=100).contains(p))
            {
                return Err(BadProfile::TipPresets);
            }
        }
        if let Some(rules) = &self.surcharges {
            if rules.len() > MAX_SURCHARGE_RULES {
                return Err(BadProfile::TooManySurcharges);
            }
            let mut seen = std::collections::BTreeSet::new();
            for rule in rules {
                let card = &rule.card;
                let valid = card == ANY_CARD
                    || (!card.is_empty()
                        && card.len() <= 20
                        && card
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
                if !valid {
                    return Err(BadProfile::CardType(card.clone()));
                }
                if !seen.insert(card.as_str()) {
                    return Err(BadProfile::DuplicateCardType(card.clone()));
                }
                if rule.bps == 0 || rule.bps > MAX_SURCHARGE_BPS {
                    return Err(BadProfile::SurchargeRate(rule.bps));
                }
            }
        }
        check_text(
            "receiptHeader",
            self.receipt_header.as_deref(),
            MAX_RECEIPT_TEXT,
            true,
        )?;
        check_text(
            "receiptFooter",
            self.receipt_footer.as_deref(),
            MAX_RECEIPT_TEXT,
            true,
        )?;
        check_text("idleText", self.idle_text.as_deref(), MAX_IDLE_TEXT, false)?;
        if let Some(tag) = &self.language {
            if !is_language_tag(tag) {
                return Err(BadProfile::Language(tag.clone()));
            }
        }
        for (name, value) in [
            ("cardTimeoutSecs", self.card_timeout_secs),
            ("inputTimeoutSecs", self.input_timeout_secs),
        ] {
            if let Some(v) = value {
                if !TIMEOUT_SECS.contains(&v) {
                    return Err(BadProfile::Timeout(name, v));
                }
            }
        }
        Ok(())
    }

    /// The fields this profile sets, by their API names.
    pub fn fields_set(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let set = [
            ("tipping", self.tipping.is_some()),
            ("tipPresets", self.tip_presets.is_some()),
            ("surcharges", self.surcharges.is_some()),
            ("receiptHeader", self.receipt_header.is_some()),
            ("receiptFooter", self.receipt_footer.is_some()),
            ("currency", self.currency.is_some()),
            ("language", self.language.is_some()),
            ("cardTimeoutSecs", self.card_timeout_secs.is_some()),
            ("inputTimeoutSecs", self.input_timeout_secs.is_some()),
            ("idleText", self.idle_text.is_some()),
        ];
        for (name, is_set) in set {
            if is_set {
                out.push(name);
            }
        }
        out
    }
}

fn check_text(
    name: &'static str,
    text: Option<&str>,
    max: usize,
    lines: bool,
) -> Result<(), BadProfile> {
    let Some(text) = text else { return Ok(()) };
    let bad_char = text
        .chars()
        .any(|c| c.is_control() && !(lines && c == '\n'));
    if bad_char || text.chars().count() > max {
        return Err(BadProfile::Text(name, max));
    }
    Ok(())
}

/// `en`, `deu`, `en-AU`, `es-419`: a primary language of two or three lower-case letters and
/// an optional region of two upper-case letters or three digits (the subset of BCP 47 that
/// terminals' language packs use).
fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let lang = parts.next().unwrap_or_default();
    let region = parts.next();
    let lang_ok = (2..=3).contains(&lang.len()) && lang.chars().all(|c| c.is_ascii_lowercase());
    let region_ok = region.is_none_or(|r| {
        (r.len() == 2 && r.chars().all(|c| c.is_ascii_uppercase()))
            || (r.len() == 3 && r.chars().all(|c| c.is_ascii_digit()))
    });
    lang_ok && region_ok && parts.next().is_none()
}

/// A device's effective configuration, every field resolved: the body of the `config` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub tipping: bool,
    pub tip_presets: Vec<u8>,
    pub surcharges: Vec<SurchargeRule>,
    pub receipt_header: String,
    pub receipt_footer: String,
    pub currency: Currency,
    pub language: String,
    pub card_timeout_secs: u32,
    pub input_timeout_secs: u32,
    pub idle_text: String,
}

impl Default for Settings {
    /// What a device runs with before any profile is set: no tipping (presets ready for when
    /// it is turned on), no surcharge, no receipt text, AUD, English, a minute for a card and
    /// a minute for an input (the POS API's default `TimeoutSeconds`).
    fn default() -> Self {
        Self {
            tipping: false,
            tip_presets: vec![10, 15, 20],
            surcharges: Vec::new(),
            receipt_header: String::new(),
            receipt_footer: String::new(),
            currency: Currency::AUD,
            language: "en".into(),
            card_timeout_secs: 60,
            input_timeout_secs: crate::action::DEFAULT_TIMEOUT_SECS,
            idle_text: String::new(),
        }
    }
}

impl Settings {
    /// These settings with every field `profile` sets replaced by its value.
    pub fn overlay(mut self, profile: &Profile) -> Self {
        let p = profile.clone();
        if let Some(v) = p.tipping {
            self.tipping = v;
        }
        if let Some(v) = p.tip_presets {
            self.tip_presets = v;
        }
        if let Some(v) = p.surcharges {
            self.surcharges = v;
        }
        if let Some(v) = p.receipt_header {
            self.receipt_header = v;
        }
        if let Some(v) = p.receipt_footer {
            self.receipt_footer = v;
        }
        if let Some(v) = p.currency {
            self.currency = v;
        }
        if let Some(v) = p.language {
            self.language = v;
        }
        if let Some(v) = p.card_timeout_secs {
            self.card_timeout_secs = v;
        }
        if let Some(v) = p.input_timeout_secs {
            self.input_timeout_secs = v;
        }
        if let Some(v) = p.idle_text {
            self.idle_text = v;
        }
        self
    }

    /// Every field, as a profile that sets them all (how the admin API shows them).
    pub fn as_profile(&self) -> Profile {
        Profile {
            tipping: Some(self.tipping),
            tip_presets: Some(self.tip_presets.clone()),
            surcharges: Some(self.surcharges.clone()),
            receipt_header: Some(self.receipt_header.clone()),
            receipt_footer: Some(self.receipt_footer.clone()),
            currency: Some(self.currency),
            language: Some(self.language.clone()),
            card_timeout_secs: Some(self.card_timeout_secs),
            input_timeout_secs: Some(self.input_timeout_secs),
            idle_text: Some(self.idle_text.clone()),
        }
    }

    /// The rule for `card_type` (a result's `CardType`): its own, or the `*` rule.
    pub fn surcharge_rule(&self, card_type: &str) -> Option<&SurchargeRule> {
        self.surcharges
            .iter()
            .find(|r| r.card.eq_ignore_ascii_case(card_type))
            .or_else(|| self.surcharges.iter().find(|r| r.card == ANY_CARD))
    }

    /// The surcharge on a payment of `amount` with `card_type`.
    pub fn surcharge(&self, card_type: &str, amount: u64) -> u64 {
        self.surcharge_rule(card_type).map_or(0, |r| r.on(amount))
    }
}

/// The `config` frame's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// Moves up each time the device's effective settings change; the device answers
    /// `config_ack` with it once applied, and ignores a frame older than what it runs.
    pub version: u64,
    pub settings: Settings,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(card: &str, bps: u32, cap: Option<u64>) -> SurchargeRule {
        SurchargeRule {
            card: card.into(),
            bps,
            cap: cap.and_then(|c| Cents::new(c).ok()),
        }
    }

    #[test]
    fn each_level_overrides_only_what_it_sets() {
        let operator = Profile {
            tipping: Some(true),
            receipt_header: Some("Operator".into()),
            language: Some("en-AU".into()),
            ..Profile::default()
        };
        let merchant = Profile {
            receipt_header: Some("Joe's".into()),
            tip_presets: Some(vec![5, 10]),
            ..Profile::default()
        };
        let device = Profile {
            tipping: Some(false),
            ..Profile::default()
        };
        let s = Settings::default()
            .overlay(&operator)
            .overlay(&merchant)
            .overlay(&Profile::default())
            .overlay(&device);
        assert!(!s.tipping);
        assert_eq!(s.tip_presets, vec![5, 10]);
        assert_eq!(s.receipt_header, "Joe's");
        assert_eq!(s.language, "en-AU");
        assert_eq!(s.card_timeout_secs, 60);
        // A profile of every field replaces everything.
        let all = s.as_profile();
        assert_eq!(Settings::default().overlay(&all), s);
    }

    #[test]
    fn surcharges_round_half_up_and_stop_at_the_cap() {
        let s = Settings {
            surcharges: vec![rule("AMEX", 250, Some(300)), rule("*", 150, None)],
            ..Settings::default()
        };
        // 2.5% of $100.00 is $2.50, under the $3.00 cap.
        assert_eq!(s.surcharge("AMEX", 10_000), 250);
        assert_eq!(s.surcharge("amex", 100_000), 300);
        // 1.5% of 1,001 cents is 15.015: 15.
        assert_eq!(s.surcharge("VISA", 1_001), 15);
        // 1.5% of 1,010 cents is 15.15: 15; of 1,030 is 15.45: 15; of 1,034 is 15.51: 16.
        assert_eq!(s.surcharge("VISA", 1_034), 16);
        assert_eq!(s.surcharge("VISA", 0), 0);
        let none = Settings::default();
        assert_eq!(none.surcharge("VISA", 10_000), 0);
        // Half a cent rounds up.
        assert_eq!(rule("VISA", 50, None).on(100), 1);
        assert_eq!(rule("VISA", 1_000, None).on(Cents::MAX), 9_999_999 + 1);
    }

    #[test]
    fn bad_profiles_are_refused_with_the_field_named() {
        let cases: Vec<(Profile, &str)> = vec![
            (
                Profile {
                    tip_presets: Some(vec![]),
                    ..Profile::default()
                },
                "tipPresets",
            ),
            (
                Profile {
                    tip_presets: Some(vec![10, 10]),
                    ..Profile::default()
                },
                "tipPresets",
            ),
            (
                Profile {
                    tip_presets: Some(vec![0]),
                    ..Profile::default()
                },
                "tipPresets",
            ),
            (
                Profile {
                    tip_presets: Some(vec![101]),
                    ..Profile::default()
                },
                "tipPresets",
            ),
            (
                Profile {
                    tip_presets: Some(vec![1, 2, 3, 4, 5, 6, 7]),
                    ..Profile::default()
                },
                "tipPresets",
            ),
            (
                Profile {
                    surcharges: Some(vec![rule("visa", 100, None)]),
                    ..Profile::default()
                },
                "card type",
            ),
            (
                Profile {
                    surcharges: Some(vec![rule("VISA", 100, None), rule("VISA", 50, None)]),
                    ..Profile::default()
                },
                "two rules",
            ),
            (
                Profile {
                    surcharges: Some(vec![rule("VISA", 0, None)]),
                    ..Profile::default()
                },
                "bps",
            ),
            (
                Profile {
                    surcharges: Some(vec![rule("VISA", 1_001, None)]),
                    ..Profile::default()
                },
                "bps",
            ),
            (
                Profile {
                    surcharges: Some((0..21).map(|i| rule(&format!("C{i}"), 1, None)).collect()),
                    ..Profile::default()
                },
                "at most",
            ),
            (
                Profile {
                    receipt_header: Some("x".repeat(MAX_RECEIPT_TEXT + 1)),
                    ..Profile::default()
                },
                "receiptHeader",
            ),
            (
                Profile {
                    receipt_footer: Some("bell\u{7}".into()),
                    ..Profile::default()
                },
                "receiptFooter",
            ),
            (
                Profile {
                    idle_text: Some("two\nlines".into()),
                    ..Profile::default()
                },
                "idleText",
            ),
            (
                Profile {
                    language: Some("english".into()),
                    ..Profile::default()
                },
                "language",
            ),
            (
                Profile {
                    language: Some("en-au".into()),
                    ..Profile::default()
                },
                "language",
            ),
            (
                Profile {
                    card_timeout_secs: Some(4),
                    ..Profile::default()
                },
                "cardTimeoutSecs",
            ),
            (
                Profile {
                    input_timeout_secs: Some(601),
                    ..Profile::default()
                },
                "inputTimeoutSecs",
            ),
        ];
        for (profile, named) in cases {
            let err = profile
                .check()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(named), "{profile:?}: {err}");
        }
        let good = Profile {
            tipping: Some(true),
            tip_presets: Some(vec![10, 15, 20]),
            surcharges: Some(vec![rule("AMEX", 250, Some(500)), rule("*", 100, None)]),
            receipt_header: Some("Joe's Coffee\n1 Main St".into()),
            receipt_footer: Some("Thank you".into()),
            currency: Some(Currency::AUD),
            language: Some("es-419".into()),
            card_timeout_secs: Some(5),
            input_timeout_secs: Some(600),
            idle_text: Some("Welcome".into()),
        };
        assert_eq!(good.check(), Ok(()));
        assert_eq!(good.fields_set().len(), 10);
        assert!(Profile::default().is_empty());
        assert_eq!(Profile::default().check(), Ok(()));
    }

    #[test]
    fn limits_are_inclusive_and_one_past_them_is_refused() {
        let ok = |p: Profile| p.check().is_ok();
        let presets = |n: u8| Profile {
            tip_presets: Some((1..=n).collect()),
            ..Profile::default()
        };
        assert!(ok(presets(6)) && !ok(presets(7)));
        let rules = |n: usize| Profile {
            surcharges: Some((0..n).map(|i| rule(&format!("C_{i}"), 1, None)).collect()),
            ..Profile::default()
        };
        assert!(ok(rules(MAX_SURCHARGE_RULES)) && !ok(rules(MAX_SURCHARGE_RULES + 1)));
        let rate = |bps| Profile {
            surcharges: Some(vec![rule("VISA", bps, None)]),
            ..Profile::default()
        };
        assert!(ok(rate(MAX_SURCHARGE_BPS)) && ok(rate(1)) && !ok(rate(MAX_SURCHARGE_BPS + 1)));
        let card = |c: &str| Profile {
            surcharges: Some(vec![rule(c, 10, None)]),
            ..Profile::default()
        };
        assert!(ok(card("AMEX_2")) && ok(card("*")) && ok(card(&"A".repeat(20))));
        for bad in ["", "A-B", "Visa", &"A".repeat(21), "**"] {
            assert!(!ok(card(bad)), "{bad:?}");
        }
        let header = |n: usize| Profile {
            receipt_header: Some("x".repeat(n)),
            ..Profile::default()
        };
        assert!(ok(header(MAX_RECEIPT_TEXT)) && !ok(header(MAX_RECEIPT_TEXT + 1)));
        let language = |l: &str| Profile {
            language: Some(l.into()),
            ..Profile::default()
        };
        for good in ["en", "deu", "en-AU", "es-419"] {
            assert!(ok(language(good)), "{good}");
        }
        for bad in [
            "e", "engl", "EN", "en-A", "en-AUS", "es-41", "es-4190", "en-AU-x", "en-a1",
        ] {
            assert!(!ok(language(bad)), "{bad}");
        }
        assert!(!Profile {
            idle_text: Some("Welcome".into()),
            ..Profile::default()
        }
        .is_empty());
    }

    #[test]
    fn profiles_read_camel_case_and_refuse_unknown_fields() {
        let p: Result<Profile, _> = serde_json::from_str(
            r#"{"tipPresets":[10],"surcharges":[{"card":"VISA","bps":150,"cap":200}],"currency":"NZD"}"#,
        );
        let p = p.ok().unwrap_or_default();
        assert_eq!(p.tip_presets, Some(vec![10]));
        assert_eq!(p.surcharges.as_deref().map(<[_]>::len), Some(1));
        assert_eq!(p.currency.map(|c| c.code().to_string()), Some("NZD".into()));
        assert!(serde_json::from_str::<Profile>(r#"{"tip_presets":[10]}"#).is_err());
        assert!(serde_json::from_str::<Profile>(r#"{"currency":"XYZ"}"#).is_err());
        assert!(serde_json::from_str::<Profile>(r#"{"tipping":"yes"}"#).is_err());
        // A cap is an amount: more than zero.
        assert!(serde_json::from_str::<Profile>(
            r#"{"surcharges":[{"card":"VISA","bps":150,"cap":0}]}"#
        )
        .is_err());
        // The frame's body is snake_case, every field present.
        let v = serde_json::to_value(DeviceConfig {
            version: 3,
            settings: Settings::default(),
        })
        .unwrap_or_default();
        assert_eq!(v["version"], 3);
        assert_eq!(
            v["settings"]["tip_presets"],
            serde_json::json!([10, 15, 20])
        );
        assert_eq!(v["settings"]["currency"], "AUD");
    }
}
