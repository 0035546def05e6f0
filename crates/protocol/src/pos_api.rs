//! Bodies of the POS API (SmartConnect-compatible): the transaction envelope, its `data` keys,
//! and the error body.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `transactionStatus` of the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TransactionStatus {
    Pending,
    Completed,
}

/// The body of `POST /Transaction` (async), of every poll, and of the legacy synchronous mode.
/// Envelope keys are camelCase; `data` keys are PascalCase and every value is a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionEnvelope {
    pub transaction_id: String,
    pub transaction_time_stamp: String,
    pub merchant_id: String,
    pub device_id: String,
    pub transaction_status: TransactionStatus,
    pub data: BTreeMap<String, String>,
    pub merchant_access_token: String,
}

impl TransactionEnvelope {
    /// A `data` field, if present and not empty.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.data
            .get(key)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Whether the transaction has completed.
    pub fn is_completed(&self) -> bool {
        self.transaction_status == TransactionStatus::Completed
    }
}

/// Every error body: `{"error": "<human readable message>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// The body of a successful pairing: `{"result": "success"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingResponse {
    pub result: String,
}

/// Names of `data` keys, so no part of the code spells them twice.
pub mod keys {
    pub const POS_VENDOR: &str = "PosVendor";
    pub const POS_REGISTER_ID: &str = "PosRegisterID";
    pub const POS_BUSINESS_NAME: &str = "PosBusinessName";
    pub const DEVICE_ID: &str = "DeviceID";
    pub const FUNCTION: &str = "Function";
    pub const POLLING_URL: &str = "PollingUrl";
    pub const MERCHANT: &str = "Merchant";
    pub const COMPANY: &str = "Company";
    pub const REQUEST_ID: &str = "RequestId";
    pub const TRANSACTION_RESULT: &str = "TransactionResult";
    pub const RESULT: &str = "Result";
    pub const RESULT_TEXT: &str = "ResultText";
    pub const AMOUNT_TOTAL: &str = "AmountTotal";
    pub const REQUEST_TIMESTAMP: &str = "RequestTimestamp";
    pub const RESPONSE_TIMESTAMP: &str = "ResponseTimestamp";
    pub const RECEIPT: &str = "Receipt";
    pub const STATUS: &str = "Status";
    /// eftcloud extension: the prompt the device shows while the transaction runs.
    pub const DISPLAY_TEXT: &str = "DisplayText";
    /// eftcloud extension: the POS's own reference for the transaction, when it gave one.
    pub const POS_REFERENCE: &str = "PosReference";
}

/// Error text for a transaction from a register that is not paired (the vendor's wording).
pub const NOT_PAIRED: &str = "This register is not paired to a device, please pair it first.";
/// Error text for an unknown, used or expired pairing code (the vendor's wording).
pub const INVALID_PAIRING_CODE: &str =
    "Invalid Pairing Code. Please make sure you entered the code correctly";
/// Error text when the device already runs a transaction.
pub const DEVICE_BUSY: &str = "device is busy";
/// `ResultText` while a started transaction is late.
pub const DELAYED_TEXT: &str = "Transaction takes longer than usual";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_keys_are_camel_case() {
        let e = TransactionEnvelope {
            transaction_id: "t".into(),
            transaction_time_stamp: "s".into(),
            merchant_id: "m".into(),
            device_id: "d".into(),
            transaction_status: TransactionStatus::Pending,
            data: BTreeMap::new(),
            merchant_access_token: "k".into(),
        };
        let v = serde_json::to_value(&e).unwrap_or_default();
        for k in [
            "transactionId",
            "transactionTimeStamp",
            "merchantId",
            "deviceId",
            "transactionStatus",
            "data",
            "merchantAccessToken",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["transactionStatus"], "PENDING");
    }
}
