//! Currencies by ISO 4217 code, with the number of minor units each is counted in.
//!
//! Amounts travel as whole minor units (`Cents` is "the smallest unit of the currency"): 500 is
//! AUD 5.00, JPY 500 and KWD 0.500. Only a currency's minor units say where the point goes,
//! so a request's currency travels with its amounts to the device, the receipts and the
//! dashboard. SmartConnect has no currency field; a request without one is in the merchant's
//! default, AUD unless the operator set another.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An active ISO 4217 currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency {
    code: [u8; 3],
    minor_units: u8,
}

/// A `Currency` that is not an active ISO 4217 code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid Currency '{0}': expected an ISO 4217 code such as AUD, EUR or JPY")]
pub struct UnknownCurrency(pub String);

/// Every active ISO 4217 code (funds and precious metals aside).
const CODES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// Currencies counted in whole units (ISO 4217 exponent 0).
const NO_MINOR_UNITS: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];

/// Currencies counted in thousandths (ISO 4217 exponent 3).
const THREE_MINOR_UNITS: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];

impl Currency {
    /// The Australian dollar: SmartConnect's currency, and every merchant's default unless the
    /// operator sets another.
    pub const AUD: Currency = Currency {
        code: *b"AUD",
        minor_units: 2,
    };

    /// Parses a code, ignoring ASCII case and surrounding spaces.
    pub fn parse(s: &str) -> Result<Self, UnknownCurrency> {
        let t = s.trim().to_ascii_uppercase();
        let code = CODES
            .iter()
            .find(|c| **c == t)
            .ok_or_else(|| UnknownCurrency(s.to_string()))?;
        let minor_units = if NO_MINOR_UNITS.contains(code) {
            0
        } else if THREE_MINOR_UNITS.contains(code) {
            3
        } else {
            2
        };
        let b = code.as_bytes();
        Ok(Currency {
            code: [b[0], b[1], b[2]],
            minor_units,
        })
    }

    /// The three-letter code.
    pub fn code(&self) -> &str {
        // The bytes always come from `CODES`, which are ASCII.
        std::str::from_utf8(&self.code).unwrap_or("XXX")
    }

    /// How many digits follow the decimal point (JPY 0, AUD 2, KWD 3).
    pub fn minor_units(&self) -> u8 {
        self.minor_units
    }

    /// An amount in minor units written as a decimal in this currency: `1234` is `12.34` in
    /// AUD, `1234` in JPY and `1.234` in KWD.
    pub fn decimal(&self, minor: u64) -> String {
        match self.minor_units {
            0 => minor.to_string(),
            n => {
                let scale = 10u64.pow(u32::from(n));
                format!(
                    "{}.{:0width$}",
                    minor / scale,
                    minor % scale,
                    width = usize::from(n)
                )
            }
        }
    }

    /// An amount with its code, as receipts and screens show it: `AUD 12.34`.
    pub fn display(&self, minor: u64) -> String {
        format!("{} {}", self.code(), self.decimal(minor))
    }
}

impl Default for Currency {
    fn default() -> Self {
        Currency::AUD
    }
}

impl FromStr for Currency {
    type Err = UnknownCurrency;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = UnknownCurrency;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Currency::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code().to_string()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_units_follow_iso_4217() {
        let units = |c: &str| Currency::parse(c).map(|c| c.minor_units());
        assert_eq!(units("AUD"), Ok(2));
        assert_eq!(units("JPY"), Ok(0));
        assert_eq!(units("KWD"), Ok(3));
        assert_eq!(units("eur"), Ok(2));
        assert_eq!(units(" krw "), Ok(0));
        assert_eq!(units("BHD"), Ok(3));
    }

    #[test]
    fn every_listed_exception_is_a_listed_code() {
        for c in NO_MINOR_UNITS.iter().chain(THREE_MINOR_UNITS) {
            assert!(CODES.contains(c), "{c}");
        }
        for c in CODES {
            assert_eq!(c.len(), 3);
            assert!(c.bytes().all(|b| b.is_ascii_uppercase()), "{c}");
            assert_eq!(
                Currency::parse(c).map(|x| x.code().to_string()),
                Ok(c.to_string())
            );
        }
    }

    #[test]
    fn unknown_codes_are_refused() {
        for s in ["", "AU", "AUDD", "XYZ", "12A", "A$"] {
            assert!(Currency::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn decimals_are_placed_by_minor_units() {
        let show = |c: &str, m: u64| Currency::parse(c).map(|c| c.display(m));
        assert_eq!(show("AUD", 1234), Ok("AUD 12.34".into()));
        assert_eq!(show("AUD", 5), Ok("AUD 0.05".into()));
        assert_eq!(show("JPY", 1234), Ok("JPY 1234".into()));
        assert_eq!(show("KWD", 1234), Ok("KWD 1.234".into()));
        assert_eq!(show("KWD", 7), Ok("KWD 0.007".into()));
    }

    #[test]
    fn serialises_as_the_code() {
        let c = Currency::parse("nzd").unwrap_or_default();
        assert_eq!(serde_json::to_string(&c).ok(), Some("\"NZD\"".into()));
        let back: Result<Currency, _> = serde_json::from_str("\"JPY\"");
        assert_eq!(back.map(|c| c.minor_units()).ok(), Some(0));
        assert!(serde_json::from_str::<Currency>("\"ZZZ\"").is_err());
    }
}
