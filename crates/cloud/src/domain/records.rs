//! The records the cloud keeps: a device, a paired register, a transaction. Plain data; the
//! store persists them and the engine moves them through the lifecycle.

use super::accounts::{MerchantId, SiteId};
use super::lifecycle::Phase;
use chrono::{DateTime, Utc};
use protocol::{DeviceId, RegisterInfo, TransactionId, TransactionRequest};
use std::collections::BTreeMap;

/// A device as enrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub id: DeviceId,
    pub secret_hash: String,
    pub vendor: String,
    pub model: String,
    /// The merchant's name as the POS is told it (`Merchant`).
    pub merchant: String,
    /// The merchant the device belongs to.
    pub merchant_id: MerchantId,
    /// The site (store) it stands in, if the operator said.
    pub site_id: Option<SiteId>,
    pub created_at: DateTime<Utc>,
    /// Set while a node holds the device's connection.
    pub connected_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Enrolled by the virtual terminal page rather than by an operator: removed once unused
    /// (the store purges those unused for a while).
    pub self_enrolled: bool,
    /// What it declared it can do in its last `hello` (`protocol::device::capability`),
    /// sorted; empty for a device that never declared anything.
    pub capabilities: Vec<String>,
    /// The screen and printer it declared in its last `hello`.
    pub hardware: Option<protocol::device::Hardware>,
}

impl DeviceRecord {
    /// Whether the device declared `capability`.
    pub fn can(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }
}

/// A paired register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterRecord {
    pub info: RegisterInfo,
    pub device_id: DeviceId,
    /// Contact metadata sent at pairing (`Contact Name`, `Address`, ...).
    pub contact: BTreeMap<String, String>,
    pub paired_at: DateTime<Utc>,
}

/// A transaction and everything needed to answer any poll about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRecord {
    pub id: TransactionId,
    pub device_id: DeviceId,
    pub register: RegisterInfo,
    /// The merchant of the device when the transaction started: whose transaction it is.
    pub merchant_id: MerchantId,
    pub merchant: String,
    pub request: TransactionRequest,
    pub sale_data: Option<String>,
    pub callback_url: Option<String>,
    /// The POS's own reference for this transaction (idempotency key), if it gave one.
    pub pos_reference: Option<String>,
    /// Digest of the request, to tell a retry from a different request under the same reference.
    pub fingerprint: String,
    pub token: String,
    pub token_expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub phase: Phase,
    /// The prompt the device last showed, while it runs.
    pub display_text: Option<String>,
}

impl TransactionRecord {
    /// When it completed, if it has.
    pub fn completed_at(&self) -> Option<DateTime<Utc>> {
        match &self.phase {
            Phase::Completed(c) => Some(c.completed_at),
            Phase::Offered { .. } | Phase::Started { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_can_what_it_declared_and_nothing_else() {
        let device = DeviceRecord {
            id: DeviceId::parse("d").unwrap_or_else(|_| unreachable!()),
            secret_hash: String::new(),
            vendor: String::new(),
            model: String::new(),
            merchant: String::new(),
            merchant_id: MerchantId::default(),
            site_id: None,
            created_at: DateTime::<Utc>::default(),
            connected_at: None,
            last_seen_at: None,
            self_enrolled: false,
            capabilities: vec!["currency".into(), "void".into()],
            hardware: None,
        };
        assert!(device.can("void") && device.can("currency"));
        assert!(!device.can("refund.referenced"));
        assert!(!device.can(""));
    }
}
