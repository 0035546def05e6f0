//! `POST /pos/transaction/{id}/cancel`: the POS asks to cancel. Before the device started, the
//! transaction ends `CANCELLED` at once; once started, the device is asked to stop and the real
//! outcome follows (`CANCELLED` if it stopped in time). `wait=<seconds>` holds the answer until
//! the outcome is known.

use super::access::authorize;
use super::error::ApiError;
use super::fields::Fields;
use super::polling::wait_param;
use super::ApiState;
use crate::engine::lifecycle::{Effect, Phase};
use crate::engine::timeline::outcome_text;
use crate::engine::transactions::Applied;
use axum::extract::{Path, State};
use axum::Json;
use protocol::pos_api::TransactionEnvelope;
use protocol::TransactionId;

/// Cancels a transaction (token or register identity required).
pub async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Json<TransactionEnvelope>, ApiError> {
    let not_found = || ApiError::not_found("Transaction not found");
    let id: TransactionId = id.parse().map_err(|_| not_found())?;
    let record = state
        .engine
        .transaction(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(not_found)?;
    authorize(&record, &fields)?;
    let wait = wait_param(fields.get("wait"))?;
    let record = match state.engine.cancel(&id).await.map_err(ApiError::internal)? {
        Applied::Unknown => return Err(not_found()),
        Applied::Done { record, effects } => {
            if effects.contains(&Effect::AlreadyCompleted) {
                let outcome = match &record.phase {
                    Phase::Completed(c) => outcome_text(c),
                    _ => String::new(),
                };
                return Err(ApiError::conflict(format!(
                    "Transaction already completed ({outcome}); it cannot be cancelled"
                )));
            }
            *record
        }
    };
    let record = state
        .wait_completed(record, wait.unwrap_or_default())
        .await?;
    Ok(Json(state.envelope(&record)))
}
