//! Amounts in integer cents, as the POS API sends them (`"500"` = 5.00).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A positive amount of money in cents, never zero and never absurdly large.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Cents(u64);

/// Why an amount string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("must be a whole number of cents, e.g. \"500\" for 5.00")]
    NotANumber,
    #[error("must be greater than zero")]
    Zero,
    #[error("must not exceed {} cents", Cents::MAX)]
    TooLarge,
}

impl Cents {
    /// The largest amount accepted: 999,999.99. Terminals print amounts in 8 digits of cents;
    /// anything larger is a typing error, not a sale.
    pub const MAX: u64 = 99_999_999;

    /// Parses the decimal string a POS sends (leading/trailing spaces tolerated).
    pub fn parse(s: &str) -> Result<Self, AmountError> {
        let s = s.trim();
        if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::NotANumber);
        }
        let v: u64 = s.parse().map_err(|_| AmountError::NotANumber)?;
        Self::new(v)
    }

    /// Builds an amount from a number of cents, checking the bounds.
    pub fn new(v: u64) -> Result<Self, AmountError> {
        match v {
            0 => Err(AmountError::Zero),
            v if v > Self::MAX => Err(AmountError::TooLarge),
            v => Ok(Self(v)),
        }
    }

    /// The number of cents.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The amount as dollars and cents, e.g. `12.34`, for receipts and prompts.
    pub fn display_decimal(self) -> String {
        format!("{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl TryFrom<u64> for Cents {
    type Error = AmountError;
    fn try_from(v: u64) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}

impl From<Cents> for u64 {
    fn from(c: Cents) -> u64 {
        c.0
    }
}

impl fmt::Display for Cents {
    /// Cents as the POS API writes them: a plain decimal integer string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_cents() {
        assert_eq!(Cents::parse("500").map(Cents::get), Ok(500));
        assert_eq!(Cents::parse(" 1 ").map(Cents::get), Ok(1));
        assert_eq!(Cents::parse("99999999").map(Cents::get), Ok(99_999_999));
    }

    #[test]
    fn refuses_bad_amounts() {
        assert_eq!(Cents::parse("0"), Err(AmountError::Zero));
        assert_eq!(Cents::parse("-5"), Err(AmountError::NotANumber));
        assert_eq!(Cents::parse("5.00"), Err(AmountError::NotANumber));
        assert_eq!(Cents::parse(""), Err(AmountError::NotANumber));
        assert_eq!(Cents::parse("abc"), Err(AmountError::NotANumber));
        assert_eq!(Cents::parse("100000000"), Err(AmountError::TooLarge));
        assert_eq!(
            Cents::parse("99999999999999999999999"),
            Err(AmountError::NotANumber)
        );
    }

    #[test]
    fn displays_decimal() {
        assert_eq!(
            Cents::parse("1234").map(Cents::display_decimal),
            Ok("12.34".into())
        );
        assert_eq!(
            Cents::parse("5").map(Cents::display_decimal),
            Ok("0.05".into())
        );
    }
}
