//! The transaction envelope as the POS sees it, built from the stored record. A completed
//! record always builds the same body, so every re-poll is identical.

use crate::domain::lifecycle::{self, Phase};
use crate::domain::TransactionRecord;
use chrono::{DateTime, Utc};
use protocol::pos_api::{keys, TransactionEnvelope, TransactionStatus, DELAYED_TEXT};
use protocol::timestamp::{transaction_timestamp, utc_compact};
use protocol::{ResultCode, TransactionResult};
use std::collections::BTreeMap;
use std::time::Duration;
use url::Url;

/// Keys the cloud owns: a device's result can never override them.
const CLOUD_KEYS: &[&str] = &[
    keys::POS_VENDOR,
    keys::POS_REGISTER_ID,
    keys::POS_BUSINESS_NAME,
    keys::DEVICE_ID,
    keys::FUNCTION,
    keys::POLLING_URL,
    keys::MERCHANT,
    keys::COMPANY,
    keys::REQUEST_ID,
    keys::TRANSACTION_RESULT,
    keys::RESULT,
    keys::RESULT_TEXT,
    keys::REQUEST_TIMESTAMP,
    keys::RESPONSE_TIMESTAMP,
    keys::DISPLAY_TEXT,
    keys::POS_REFERENCE,
];

/// A device field key worth passing on: a short PascalCase-ish identifier.
fn acceptable_device_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.bytes().all(|b| b.is_ascii_alphanumeric())
        && !CLOUD_KEYS.contains(&k)
}

/// The polling URL of a transaction: `{public}/pos/transaction/{id}?merchantAccessToken={token}`.
pub fn polling_url(public_url: &Url, tx: &TransactionRecord) -> String {
    let base = public_url.as_str().trim_end_matches('/');
    format!(
        "{base}/pos/transaction/{}?merchantAccessToken={}",
        tx.id, tx.token
    )
}

/// Builds the envelope at time `now`. `delayed_after` decides when a started transaction is
/// reported as `OK-DELAYED`.
pub fn build(
    tx: &TransactionRecord,
    public_url: &Url,
    now: DateTime<Utc>,
    delayed_after: Duration,
) -> TransactionEnvelope {
    let mut data = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        data.insert(k.to_string(), v);
    };
    let key = &tx.register.key;
    put(keys::POS_VENDOR, key.vendor_name.clone());
    put(keys::POS_REGISTER_ID, key.register_id.clone());
    put(keys::POS_BUSINESS_NAME, key.business_name.clone());
    put(keys::DEVICE_ID, tx.device_id.to_string());
    put(keys::FUNCTION, tx.request.function.to_string());
    put(keys::POLLING_URL, polling_url(public_url, tx));
    put(keys::REQUEST_TIMESTAMP, utc_compact(tx.created_at));
    for (k, v) in tx.request.pos_fields() {
        put(k, v);
    }
    // Only when the POS gave one: clients that never use references see the same keys as ever.
    if let Some(r) = &tx.pos_reference {
        put(keys::POS_REFERENCE, r.clone());
    }
    let status = match &tx.phase {
        Phase::Completed(c) => {
            for (k, v) in &c.fields {
                if acceptable_device_key(k) {
                    put(k, v.clone());
                }
            }
            put(keys::MERCHANT, tx.merchant.clone());
            put(keys::COMPANY, key.business_name.clone());
            put(keys::REQUEST_ID, tx.id.to_string());
            if let Some(t) = c.transaction_result {
                put(keys::TRANSACTION_RESULT, t.to_string());
            }
            put(keys::RESULT, c.result.to_string());
            put(keys::RESULT_TEXT, c.result_text.clone());
            put(keys::RESPONSE_TIMESTAMP, utc_compact(c.completed_at));
            TransactionStatus::Completed
        }
        Phase::Started { .. } if lifecycle::shows_delayed(&tx.phase, now, delayed_after) => {
            put(
                keys::TRANSACTION_RESULT,
                TransactionResult::Delayed.to_string(),
            );
            put(keys::RESULT, ResultCode::DelayedTransaction.to_string());
            put(keys::RESULT_TEXT, DELAYED_TEXT.to_string());
            TransactionStatus::Pending
        }
        Phase::Offered { .. } | Phase::Started { .. } => {
            // Present but empty while pending, so clients that index these keys find them.
            put(keys::TRANSACTION_RESULT, String::new());
            put(keys::RESULT, String::new());
            put(keys::RESULT_TEXT, String::new());
            TransactionStatus::Pending
        }
    };
    if status == TransactionStatus::Pending {
        if let Some(text) = &tx.display_text {
            put(keys::DISPLAY_TEXT, text.clone());
        }
    }
    TransactionEnvelope {
        transaction_id: tx.id.to_string(),
        transaction_time_stamp: transaction_timestamp(tx.created_at),
        merchant_id: tx.merchant_id.to_string(),
        device_id: tx.device_id.to_string(),
        transaction_status: status,
        data,
        merchant_access_token: tx.token.clone(),
        receipts: match &tx.phase {
            Phase::Completed(c) => c.receipts.clone(),
            Phase::Offered { .. } | Phase::Started { .. } => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_cannot_override_cloud_keys() {
        assert!(acceptable_device_key("AuthId"));
        assert!(!acceptable_device_key("PosVendor"));
        assert!(!acceptable_device_key("RequestId"));
        assert!(!acceptable_device_key("Bad Key"));
        assert!(!acceptable_device_key(""));
    }
}
