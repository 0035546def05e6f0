//! Who may see or act on a transaction: the holder of its polling token (until the token
//! expires), or the register that started it (its identity triple, which never expires — the
//! API's only identity, as in SmartConnect).

use super::error::ApiError;
use super::fields::Fields;
use crate::store::TransactionRecord;
use protocol::RegisterKey;

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
pub fn require_register(fields: &Fields) -> Result<RegisterKey, ApiError> {
    RegisterKey::parse(
        fields.get("POSRegisterID"),
        fields.get("POSBusinessName"),
        fields.get("POSVendorName"),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Checks that the request may access `record`: a valid token (`merchantAccessToken`) or the
/// register triple that started it; a token is checked against its expiry at `now`.
pub fn authorize(
    record: &TransactionRecord,
    fields: &Fields,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApiError> {
    // With POS API keys, another vendor's transaction does not exist for this key.
    if fields
        .key_vendor()
        .is_some_and(|v| v != record.register.key.vendor_name)
    {
        return Err(ApiError::not_found("Transaction not found"));
    }
    if let Some(key) = register_of(fields) {
        if key == record.register.key {
            return Ok(());
        }
        // The same answer as for an unknown id, so ids of other registers cannot be probed.
        return Err(ApiError::not_found("Transaction not found"));
    }
    match fields.get("merchantAccessToken") {
        Some(t)
            if crate::engine::devices::constant_time_eq(t.as_bytes(), record.token.as_bytes()) =>
        {
            if now >= record.token_expires_at {
                Err(ApiError::unauthorized("Token expired"))
            } else {
                Ok(())
            }
        }
        _ => Err(ApiError::unauthorized("Invalid token")),
    }
}

/// Loads the transaction named in the path and checks the request may access it; an id that
/// does not parse, does not exist, or belongs to someone else is `Transaction not found`.
pub async fn authorized_transaction(
    state: &super::ApiState,
    id: &str,
    fields: &Fields,
) -> Result<TransactionRecord, ApiError> {
    let not_found = || ApiError::not_found("Transaction not found");
    let id: protocol::TransactionId = id.parse().map_err(|_| not_found())?;
    let record = state
        .engine
        .transaction(&id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(not_found)?;
    authorize(&record, fields, state.engine.now())?;
    Ok(record)
}
