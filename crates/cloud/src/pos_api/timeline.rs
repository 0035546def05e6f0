//! `GET /pos/transaction/{id}/events`: the transaction's timeline, for the POS (token or
//! register identity) and for support.

use super::access::authorized_transaction;
use super::error::ApiError;
use super::fields::Fields;
use super::ApiState;
use axum::extract::{Path, State};
use axum::Json;
use protocol::pos_api::ErrorBody;
use serde::Serialize;

fn event_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .description(Some(
            "What happened: `received` (request stored), `offered` (sent to the device), \
             `accepted`, `started`, `prompt` (the device showed a prompt; `detail` says which), \
             `cancel_requested`, `cancel_sent`, `aborted` (the device was told not to run it), \
             `result` (the device's outcome), `result_acknowledged`, `result_refused`, \
             `completed` (final state; `detail` is the outcome), `conflict` (a result after the \
             cloud ended the transaction), `callback_delivered`, `callback_failed`, \
             `follow_up`, `follow_up_completed` (a refund, void, ... of this payment), \
             `receipt_queued`, `receipt_sent`, `receipt_failed` (the receipt by email or SMS; \
             `detail` names the channel and the masked address).",
        ))
        .enum_values(Some(
            crate::domain::timeline::ALL.iter().map(|k| k.as_str()),
        ))
        .build()
}

/// The timeline body (eftcloud extension).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub transaction_id: String,
    pub transaction_status: protocol::pos_api::TransactionStatus,
    /// Oldest first.
    pub events: Vec<TimelineEntry>,
}

/// One timeline entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    /// RFC 3339, UTC, milliseconds.
    #[schema(example = "2024-01-31T09:15:00.123Z")]
    pub at: String,
    #[schema(schema_with = event_schema)]
    pub event: &'static str,
    /// Free text: the prompt, the outcome (`OK-ACCEPTED / OK: APPROVED`), a reason; may be
    /// empty.
    pub detail: String,
}

/// Transaction timeline
///
/// eftcloud extension. The transaction's events with timestamps, oldest first, for the POS and
/// for support. Give the polling token or the register triple (query string, or a form or JSON
/// body); when the triple is given the token is not looked at.
#[utoipa::path(
    get,
    path = "/pos/transaction/{id}/events",
    tag = "eftcloud extensions",
    params(
        ("id" = String, Path, min_length = 1, description = "The `transactionId`"),
        ("merchantAccessToken" = Option<String>, Query, nullable = false, description = "The polling token (valid until it expires)"),
        ("POSRegisterID" = Option<String>, Query, nullable = false, description = "Register identity (instead of the token)"),
        ("POSBusinessName" = Option<String>, Query, nullable = false, description = "Register identity"),
        ("POSVendorName" = Option<String>, Query, nullable = false, description = "Register identity"),
    ),
    responses(
        (status = 200, description = "The timeline", body = Timeline),
        (status = 400, description = "A field given twice in the body or twice in the query string (`Field <name> given more than once`)", body = ErrorBody),
        (status = 401, description = "`Invalid token` or `Token expired`", body = ErrorBody),
        (status = 404, description = "`Transaction not found` (also for another register's or vendor's transaction)", body = ErrorBody),
        (status = 413, description = "Request body over the server's limit (`--max-body-bytes`, 64 KiB by default), refused before it is read: `Request body too large: at most <n> bytes`", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
)]
pub async fn events(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Json<Timeline>, ApiError> {
    let record = authorized_transaction(&state, &id, &fields).await?;
    let id = record.id;
    let events = state.engine.timeline(&id).await?;
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
