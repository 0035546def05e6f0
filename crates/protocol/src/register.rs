//! Register identity: the triple that names a POS register, and what is stored with it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The triple `POSRegisterID` + `POSBusinessName` + `POSVendorName` that identifies a register.
/// Compared exactly: changing any part is a different register that must pair again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RegisterKey {
    pub register_id: String,
    pub business_name: String,
    pub vendor_name: String,
}

/// A register field that is missing or unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("Missing required field: {0}")]
    Missing(&'static str),
    #[error("Field {0} is too long (at most {1} characters)")]
    TooLong(&'static str, usize),
}

/// Longest accepted register field; generous for UUIDs and business names, bounded for storage.
pub const MAX_FIELD_LEN: usize = 200;

/// Checks one required text field: present, not blank, bounded. Keeps the value as sent
/// (only surrounding whitespace is dropped) because the triple must match exactly later.
pub fn required_field(name: &'static str, value: Option<&str>) -> Result<String, RegisterError> {
    let v = value.map(str::trim).unwrap_or_default();
    if v.is_empty() {
        return Err(RegisterError::Missing(name));
    }
    if v.chars().count() > MAX_FIELD_LEN {
        return Err(RegisterError::TooLong(name, MAX_FIELD_LEN));
    }
    Ok(v.to_string())
}

impl RegisterKey {
    /// Builds the triple from the three POS fields, each required.
    pub fn parse(
        register_id: Option<&str>,
        business_name: Option<&str>,
        vendor_name: Option<&str>,
    ) -> Result<Self, RegisterError> {
        Ok(Self {
            register_id: required_field("POSRegisterID", register_id)?,
            business_name: required_field("POSBusinessName", business_name)?,
            vendor_name: required_field("POSVendorName", vendor_name)?,
        })
    }
}

impl fmt::Display for RegisterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} / {} / {}",
            self.register_id, self.business_name, self.vendor_name
        )
    }
}

/// A paired register as the device sees it: its identity and the name to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterInfo {
    #[serde(flatten)]
    pub key: RegisterKey,
    pub register_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triple_requires_each_part() {
        assert!(RegisterKey::parse(Some("r1"), Some("Shop"), Some("V")).is_ok());
        assert_eq!(
            RegisterKey::parse(None, Some("Shop"), Some("V")),
            Err(RegisterError::Missing("POSRegisterID"))
        );
        assert_eq!(
            RegisterKey::parse(Some("r1"), Some("  "), Some("V")),
            Err(RegisterError::Missing("POSBusinessName"))
        );
        assert!(RegisterKey::parse(Some(&"x".repeat(201)), Some("S"), Some("V")).is_err());
    }
}
