//! Who may see or act on a transaction: the holder of its polling token (until the token
//! expires), or the register that started it (its identity triple, which never expires — the
//! API's only identity, as in SmartConnect).

use super::credentials::{Credential, Refusal};
use super::error::{ApiError, HttpError};
use super::fields::{FieldError, Fields};
use crate::domain::TransactionRecord;
use axum::http::StatusCode;
use protocol::RegisterKey;

/// Reading or acting on one transaction (polling, lookup, cancel, timeline): the family of
/// every handler that names an existing transaction.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// 404, also for another register's or vendor's transaction, so ids cannot be probed.
    #[error("Transaction not found")]
    NotFound,
    /// 401: the polling token is wrong.
    #[error("Invalid token")]
    InvalidToken,
    /// 401: the polling token expired.
    #[error("Token expired")]
    TokenExpired,
    /// 429: short polls of one transaction come faster than the limiter allows.
    #[error("Polling too fast: poll this transaction at most every {interval_secs} s")]
    PollingTooFast {
        /// The least interval, as shown (`0.5`).
        interval_secs: String,
        retry_after_secs: u64,
    },
    /// 409: a cancel of a transaction that had already completed.
    #[error("Transaction already completed ({0}); it cannot be cancelled")]
    AlreadyCompleted(String),
    /// 401: a keyless request for a vendor whose registers must send a key.
    #[error("A valid POS API key is required: Authorization: Bearer <key>")]
    KeyRequired,
}

impl HttpError for AccessError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::InvalidToken | Self::TokenExpired | Self::KeyRequired => StatusCode::UNAUTHORIZED,
            Self::PollingTooFast { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::AlreadyCompleted(_) => StatusCode::CONFLICT,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::PollingTooFast {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

/// The register identity in the request, if all three fields are present.
pub fn register_of(fields: &Fields) -> Option<RegisterKey> {
    RegisterKey::parse(
        fields.get("POSRegisterID"),
        fields.get("POSBusinessName"),
        fields.get("POSVendorName"),
    )
    .ok()
}

/// The register identity, required.
pub fn require_register(fields: &Fields) -> Result<RegisterKey, FieldError> {
    RegisterKey::parse(
        fields.get("POSRegisterID"),
        fields.get("POSBusinessName"),
        fields.get("POSVendorName"),
    )
    .map_err(FieldError::invalid)
}

/// Whether the register the request names (if it names one) is paired to a device of
/// `merchant`: any register of a merchant may see that merchant's payments and orders. `None`
/// when the request names no register.
pub async fn register_of_merchant(
    state: &super::ApiState,
    fields: &Fields,
    merchant: &crate::domain::accounts::MerchantId,
) -> Result<Option<bool>, ApiError> {
    let Some(key) = register_of(fields) else {
        return Ok(None);
    };
    fields.credential().check_vendor(&key.vendor_name)?;
    let of = state.engine.register_merchant(&key).await?;
    Ok(Some(of.as_ref() == Some(merchant)))
}

/// Checks that the request may access `record`: a valid token (`merchantAccessToken`) or the
/// register triple that started it; a token is checked against its expiry at `now`.
pub fn authorize(
    record: &TransactionRecord,
    fields: &Fields,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), AccessError> {
    visible(record, fields.credential())?;
    if let Some(key) = register_of(fields) {
        if key == record.register.key {
            return Ok(());
        }
        // The same answer as for an unknown id, so ids of other registers cannot be probed.
        return Err(AccessError::NotFound);
    }
    match fields.get("merchantAccessToken") {
        Some(t)
            if crate::engine::devices::constant_time_eq(t.as_bytes(), record.token.as_bytes()) =>
        {
            if now >= record.token_expires_at {
                Err(AccessError::TokenExpired)
            } else {
                Ok(())
            }
        }
        _ => Err(AccessError::InvalidToken),
    }
}

/// Whether the credential may know of `record` at all: another merchant's or vendor's
/// transaction does not exist for a key; a keyless request needs its vendor to allow it.
pub fn visible(record: &TransactionRecord, credential: &Credential) -> Result<(), AccessError> {
    credential
        .check(&record.merchant_id, &record.register.key.vendor_name)
        .map_err(|r| match r {
            Refusal::NotFound => AccessError::NotFound,
            Refusal::KeyRequired => AccessError::KeyRequired,
        })
}

/// Loads the transaction named in the path and checks the request may access it; an id that
/// does not parse, does not exist, or belongs to someone else is `Transaction not found`.
pub async fn authorized_transaction(
    state: &super::ApiState,
    id: &str,
    fields: &Fields,
) -> Result<TransactionRecord, ApiError> {
    let id: protocol::TransactionId = id.parse().map_err(|_| AccessError::NotFound)?;
    let record = state
        .engine
        .transaction_as(&fields.credential().principal, &id)
        .await?
        .ok_or(AccessError::NotFound)?;
    authorize(&record, fields, state.engine.now())?;
    Ok(record)
}
