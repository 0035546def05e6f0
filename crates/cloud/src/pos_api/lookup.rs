//! `GET /pos/lookup`: find a transaction again by the POS's reference or by its id, with the
//! register's identity, for as long as transactions are retained (long after the polling token
//! expired). `wait=<seconds>` long-polls as on the polling URL.

use super::access::require_register;
use super::error::ApiError;
use super::fields::Fields;
use super::polling::wait_param;
use super::ApiState;
use axum::extract::State;
use axum::Json;
use protocol::pos_api::TransactionEnvelope;
use protocol::TransactionId;

/// Finds a transaction of the register by `PosReference` or `TransactionId`.
pub async fn lookup(
    State(state): State<ApiState>,
    fields: Fields,
) -> Result<Json<TransactionEnvelope>, ApiError> {
    let register = require_register(&fields)?;
    let wait = wait_param(fields.get("wait"))?;
    let not_found = || ApiError::not_found("Transaction not found");
    let record = if let Some(reference) = fields.get("PosReference") {
        state
            .engine
            .store()
            .transaction_by_reference(&register, reference.trim())
            .await
            .map_err(ApiError::internal)?
    } else if let Some(id) = fields.get("TransactionId") {
        let id: TransactionId = id.parse().map_err(|_| not_found())?;
        state
            .engine
            .transaction(&id)
            .await
            .map_err(ApiError::internal)?
    } else {
        return Err(ApiError::bad_request(
            "Missing required field: PosReference or TransactionId",
        ));
    };
    // Another register's transaction is reported as not found, so ids cannot be probed.
    let record = record
        .filter(|r| r.register.key == register)
        .ok_or_else(not_found)?;
    let record = state
        .wait_completed(record, wait.unwrap_or_default())
        .await?;
    Ok(Json(state.envelope(&record)))
}
