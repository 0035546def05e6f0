//! `GET /pos/transaction/{id}/events`: the transaction's timeline, for the POS (token or
//! register identity) and for support.

use super::access::authorize;
use super::error::ApiError;
use super::fields::Fields;
use super::ApiState;
use axum::extract::{Path, State};
use axum::Json;
use protocol::TransactionId;
use serde::Serialize;

/// The timeline body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub transaction_id: String,
    pub transaction_status: protocol::pos_api::TransactionStatus,
    pub events: Vec<TimelineEntry>,
}

/// One timeline entry.
#[derive(Debug, Serialize)]
pub struct TimelineEntry {
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    pub event: &'static str,
    pub detail: String,
}

/// The events of a transaction, oldest first.
pub async fn events(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Json<Timeline>, ApiError> {
    let not_found = || ApiError::not_found("Transaction not found");
    let id: TransactionId = id.parse().map_err(|_| not_found())?;
    let record = state
        .engine
        .transaction(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(not_found)?;
    authorize(&record, &fields)?;
    let events = state
        .engine
        .store()
        .events(&id)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(Timeline {
        transaction_id: id.to_string(),
        transaction_status: state.envelope(&record).transaction_status,
        events: events
            .into_iter()
            .map(|e| TimelineEntry {
                at: e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                event: e.kind.as_str(),
                detail: e.detail,
            })
            .collect(),
    }))
}
