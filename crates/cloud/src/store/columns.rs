//! What both SQL backends share: times as milliseconds, the columns a phase occupies, and the
//! transaction columns in the order both schemas list them.

use super::StoreError;
use crate::domain::lifecycle::Phase;
use chrono::{DateTime, Utc};
use protocol::DeviceId;

/// A time as stored: milliseconds since the epoch.
pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A stored time.
pub(super) fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(v).unwrap_or_default()
}

/// A stored device id, checked again on the way out.
pub(super) fn parse_device_id(s: String) -> Result<DeviceId, StoreError> {
    DeviceId::parse(&s).map_err(|e| StoreError::Corrupt(format!("device id {s}: {e}")))
}

/// The columns a phase occupies: (state, accept_deadline, started_at, completed_at, completion).
pub(super) type PhaseColumns = (
    &'static str,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

pub(super) fn phase_columns(p: &Phase) -> Result<PhaseColumns, StoreError> {
    Ok(match p {
        Phase::Offered { accept_deadline } => {
            ("offered", Some(ms(*accept_deadline)), None, None, None)
        }
        Phase::Started { started_at } => ("started", None, Some(ms(*started_at)), None, None),
        Phase::Completed(c) => (
            "completed",
            None,
            None,
            Some(ms(c.completed_at)),
            Some(serde_json::to_string(c).map_err(|e| StoreError::Corrupt(e.to_string()))?),
        ),
    })
}

/// The outbox status after an attempt: delivered, retried later, or given up.
pub(super) fn callback_status(delivered: bool, retry: bool) -> &'static str {
    match (delivered, retry) {
        (true, _) => "delivered",
        (false, true) => "pending",
        (false, false) => "failed",
    }
}

pub(super) fn phase_kind(p: &Phase) -> &'static str {
    match p {
        Phase::Offered { .. } => "offered",
        Phase::Started { .. } => "started",
        Phase::Completed(_) => "completed",
    }
}

/// The transaction columns, as a literal so that SQL text can be built with `concat!` once at
/// compile time rather than with `format!` on every call.
macro_rules! tx_columns {
    () => {
        "id, device_id, register_id, business_name, vendor_name, register_name, \
         merchant_id, merchant, request, sale_data, callback_url, token, token_expires_at, \
         created_at, state, accept_deadline, started_at, completed_at, completion, display_text, \
         pos_reference, fingerprint"
    };
}
pub(super) use tx_columns;

pub(super) const TX_COLUMNS: &str = tx_columns!();
