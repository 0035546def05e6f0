//! Identifiers: transactions are UUIDs issued by the cloud, devices are named by their maker.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// A transaction's id, issued by the cloud (`transactionId`, `RequestId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TransactionId(pub Uuid);

impl TransactionId {
    /// A fresh id: a UUIDv7, time-ordered (48 bits of milliseconds, 74 random bits), so that
    /// new transactions land at the end of the store's indexes instead of on a random page
    /// each: fewer pages written per commit. The id is not a credential (the polling token is).
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for TransactionId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for TransactionId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim()).map(Self)
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A device's id as enrolled (`DeviceID`): 1 to 64 characters of letters, digits, `.`, `_`, `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

/// A device id that does not fit the allowed shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device id must be 1 to 64 characters of letters, digits, '.', '_' or '-'")]
pub struct BadDeviceId;

impl DeviceId {
    /// Parses and checks a device id.
    pub fn parse(s: &str) -> Result<Self, BadDeviceId> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(BadDeviceId)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceId {
    type Error = BadDeviceId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<DeviceId> for String {
    fn from(d: DeviceId) -> String {
        d.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids() {
        assert!(DeviceId::parse("7070714000").is_ok());
        assert!(DeviceId::parse("term-01.shop_a").is_ok());
        assert!(DeviceId::parse("").is_err());
        assert!(DeviceId::parse("a b").is_err());
        assert!(DeviceId::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn transaction_ids_round_trip() {
        let id = TransactionId::new();
        assert_eq!(id.to_string().parse::<TransactionId>().ok(), Some(id));
        assert!("nope".parse::<TransactionId>().is_err());
    }
}
