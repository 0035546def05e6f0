//! `POST /pos/transaction/{id}/cancel`: the POS asks to cancel. Before the device started, the
//! transaction ends `CANCELLED` at once; once started, the device is asked to stop and the real
//! outcome follows (`CANCELLED` if it stopped in time). `wait=<seconds>` holds the answer until
//! the outcome is known.

use super::access::{authorized_transaction, AccessError};
use super::error::ApiError;
use super::fields::Fields;
use super::polling::wait_param;
use super::ApiState;
use crate::domain::lifecycle::{Effect, Phase};
use crate::domain::timeline::outcome_text;
use crate::engine::transactions::Applied;
use axum::extract::{Path, State};
use axum::Json;
use protocol::pos_api::{ErrorBody, TransactionEnvelope};

/// Documentation only: the cancel fields as `/openapi.json` lists them; the handler reads them
/// through [`Fields`].
#[derive(utoipa::ToSchema)]
#[schema(
    description = "The cancel fields (form body, JSON body or query string; the body wins). Give the polling token or the register triple; when the triple is given the token is not looked at."
)]
pub struct CancelForm {
    /// The polling token (valid until it expires).
    #[schema(rename = "merchantAccessToken", required = false)]
    pub merchant_access_token: String,
    /// The register that started the transaction (never expires).
    #[schema(rename = "POSRegisterID", required = false)]
    pub register_id: String,
    #[schema(rename = "POSBusinessName", required = false)]
    pub business_name: String,
    #[schema(rename = "POSVendorName", required = false)]
    pub vendor_name: String,
    /// Hold the answer up to this many seconds (at most 60) until the outcome is known.
    #[schema(rename = "wait", required = false, minimum = 0, maximum = 60)]
    pub wait: f64,
}

/// Cancel a transaction
///
/// eftcloud extension. Before the device started, the transaction ends `CANCELLED` at once;
/// once started, the device is asked to stop and the real outcome follows (`CANCELLED` if it
/// stopped in time, otherwise what the device did). The answer is the envelope as it then
/// stands; with `wait` it is held until the outcome is known (or the wait ends).
#[utoipa::path(
    post,
    path = "/pos/transaction/{id}/cancel",
    tag = "eftcloud extensions",
    params(
        ("id" = String, Path, min_length = 1, description = "The `transactionId`"),
    ),
    request_body(
        description = "The token or the register triple, and optionally `wait` (the query string works too).",
        content(
            (CancelForm = "application/x-www-form-urlencoded"),
            (CancelForm = "application/json"),
        ),
    ),
    responses(
        (status = 200, description = "The envelope after the cancel request: `COMPLETED` with `CANCELLED` if it stopped in time, else still `PENDING` (the device was asked to stop) or the real outcome", body = TransactionEnvelope),
        (status = 400, description = "`wait` is not a number of seconds, or a field given twice in the body or twice in the query string (`Field <name> given more than once`)", body = ErrorBody),
        (status = 413, description = "Request body over the server's limit (`--max-body-bytes`, 64 KiB by default), refused before it is read: `Request body too large: at most <n> bytes`", body = ErrorBody),
        (status = 401, description = "`Invalid token` or `Token expired`", body = ErrorBody),
        (status = 404, description = "`Transaction not found` (also for another register's or vendor's transaction)", body = ErrorBody),
        (status = 409, description = "The transaction had already completed: `Transaction already completed (<outcome>); it cannot be cancelled`", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
)]
pub async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Json<TransactionEnvelope>, ApiError> {
    let record = authorized_transaction(&state, &id, &fields).await?;
    let id = record.id;
    let wait = wait_param(fields.get("wait"))?;
    let record = match state.engine.cancel(&id).await? {
        Applied::Unknown => return Err(AccessError::NotFound.into()),
        Applied::Done {
            record, effects, ..
        } => {
            if effects.contains(&Effect::AlreadyCompleted) {
                let outcome = match &record.phase {
                    Phase::Completed(c) => outcome_text(c),
                    _ => String::new(),
                };
                return Err(AccessError::AlreadyCompleted(outcome).into());
            }
            *record
        }
    };
    let record = state
        .wait_completed(record, wait.unwrap_or_default())
        .await?;
    Ok(Json(state.envelope(&record)))
}
