//! `GET /pos/lookup`: find a transaction again by the POS's reference or by its id, with the
//! register's identity, for as long as transactions are retained (long after the polling token
//! expired). `wait=<seconds>` long-polls as on the polling URL.

use super::access::{require_register, AccessError};
use super::error::ApiError;
use super::fields::FieldError;
use super::fields::Fields;
use super::polling::wait_param;
use super::ApiState;
use axum::extract::State;
use axum::Json;
use protocol::pos_api::{ErrorBody, TransactionEnvelope};
use protocol::TransactionId;

/// Look up a transaction
///
/// eftcloud extension. Finds a transaction of the register by the POS's `PosReference` or by
/// its `TransactionId`, with the register's identity, for as long as transactions are retained
/// (long after the polling token expired).
/// One of `PosReference` or `TransactionId` is required (400 without either; with both,
/// `PosReference` is used). Another register's transaction is reported as not found.
/// `wait=<seconds>` long-polls as on the polling URL. Fields may also come in a form or JSON
/// body.
#[utoipa::path(
    get,
    path = "/pos/lookup",
    tag = "eftcloud extensions",
    params(
        ("POSRegisterID" = String, Query, min_length = 1, description = "Register identity"),
        ("POSBusinessName" = String, Query, min_length = 1, description = "Register identity"),
        ("POSVendorName" = String, Query, min_length = 1, description = "Register identity"),
        ("PosReference" = Option<String>, Query, nullable = false, min_length = 1, description = "The POS's reference given at `POST /POS/Transaction`. One of `PosReference` or `TransactionId` is required; with both, `PosReference` is used"),
        ("TransactionId" = Option<String>, Query, nullable = false, min_length = 1, description = "The `transactionId`. One of `PosReference` or `TransactionId` is required; with both, `PosReference` is used"),
        ("wait" = Option<f64>, Query, nullable = false, minimum = 0, maximum = 60, description = "Long-poll up to this many seconds (capped at 60) while the transaction is pending"),
    ),
    responses(
        (status = 200, description = "The transaction envelope as it stands; its `merchantAccessToken` and `PollingUrl` are the original ones, which stop working when the token expires (lookup keeps working)", body = TransactionEnvelope),
        (status = 400, description = "Missing register field, neither `PosReference` nor `TransactionId` (`Missing required field: PosReference or TransactionId`), or bad `wait`, or a field given twice in the body or twice in the query string (`Field <name> given more than once`)", body = ErrorBody),
        (status = 413, description = "Request body over the server's limit (`--max-body-bytes`, 64 KiB by default), refused before it is read: `Request body too large: at most <n> bytes`", body = ErrorBody),
        (status = 404, description = "`Transaction not found` for this register", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
)]
pub async fn lookup(
    State(state): State<ApiState>,
    fields: Fields,
) -> Result<Json<TransactionEnvelope>, ApiError> {
    let register = require_register(&fields)?;
    let wait = wait_param(fields.get("wait"))?;
    let principal = &fields.credential().principal;
    let record = if let Some(reference) = fields.get("PosReference") {
        state
            .engine
            .transaction_by_reference(principal, &register, reference.trim())
            .await?
    } else if let Some(id) = fields.get("TransactionId") {
        let id: TransactionId = id.parse().map_err(|_| AccessError::NotFound)?;
        state.engine.transaction_as(principal, &id).await?
    } else {
        return Err(
            FieldError::invalid("Missing required field: PosReference or TransactionId").into(),
        );
    };
    // Another register's transaction is reported as not found, so ids cannot be probed.
    let record = record
        .filter(|r| r.register.key == register)
        .ok_or(AccessError::NotFound)?;
    super::access::visible(&record, fields.credential())?;
    let record = state
        .wait_completed(record, wait.unwrap_or_default())
        .await?;
    Ok(Json(state.envelope(&record)))
}
