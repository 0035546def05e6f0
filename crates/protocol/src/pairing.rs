//! Pairing codes: eight digits shown on the device and typed into the POS.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An eight-digit pairing code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PairingCode(String);

/// A string that is not eight digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a pairing code is 8 digits")]
pub struct BadPairingCode;

impl PairingCode {
    /// Number of digits in a code.
    pub const LEN: usize = 8;

    /// Parses a code as typed: surrounding spaces and inner spaces or dashes (`1234 5678`,
    /// `1234-5678`) are tolerated because operators copy what the screen shows.
    pub fn parse(s: &str) -> Result<Self, BadPairingCode> {
        let digits: String = s
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '\t'))
            .collect();
        if digits.len() == Self::LEN && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(digits))
        } else {
            Err(BadPairingCode)
        }
    }

    /// Builds a code from a number below 10^8, zero-padded.
    pub fn from_number(n: u32) -> Self {
        Self(format!("{:08}", n % 100_000_000))
    }

    /// The eight digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PairingCode {
    type Error = BadPairingCode;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<PairingCode> for String {
    fn from(c: PairingCode) -> String {
        c.0
    }
}

impl fmt::Display for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(
            PairingCode::parse("01234567").map(|c| c.0),
            Ok("01234567".into())
        );
        assert_eq!(
            PairingCode::parse("0123 4567").map(|c| c.0),
            Ok("01234567".into())
        );
        assert!(PairingCode::parse("1234567").is_err());
        assert!(PairingCode::parse("123456789").is_err());
        assert!(PairingCode::parse("abcdefgh").is_err());
        assert_eq!(PairingCode::from_number(42).as_str(), "00000042");
    }
}
