//! `GET /v1/events`: the event catalogue replayed from a cursor, within the key's audience (a
//! merchant's key its merchant's events, a vendor's its registers', the installation's all),
//! optionally held open until an event arrives; `GET /v1/events/{id}`: one event. Keyless
//! requests are refused: a register triple names one register, not a merchant.

use super::error::{ApiError, HttpError};
use super::fields::Fields;
use super::ApiState;
use crate::domain::accounts::{KeyOwner, Principal};
use crate::domain::events::{Audience, Cursor, EventError, EventId, TypeFilter};
use crate::engine::events::{EventsQuery, DEFAULT_LIMIT, MAX_LIMIT, MAX_WAIT};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use protocol::pos_api::ErrorBody;
use serde::Serialize;
use std::time::Duration;

/// Why an events request is refused.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// 401: events are read with an API key.
    #[error("A valid POS API key is required: Authorization: Bearer <key>")]
    KeyRequired,
    #[error(transparent)]
    Bad(#[from] EventError),
    #[error("limit must be a whole number from 1 to {MAX_LIMIT}")]
    BadLimit,
    #[error("wait must be a whole number of seconds from 0 to {}", MAX_WAIT.as_secs())]
    BadWait,
    #[error("Event not found")]
    NotFound,
}

impl HttpError for EventsError {
    fn status(&self) -> StatusCode {
        match self {
            Self::KeyRequired => StatusCode::UNAUTHORIZED,
            Self::Bad(_) | Self::BadLimit | Self::BadWait => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

/// Whose events the request's credential reads.
pub fn audience_of(principal: &Principal) -> Result<Audience, EventsError> {
    match principal {
        Principal::Keyless => Err(EventsError::KeyRequired),
        Principal::Key { owner, .. } | Principal::Person { owner, .. } => Ok(Audience::of(owner)),
    }
}

/// The key owner of a credential (keyless has none).
pub fn owner_of(principal: &Principal) -> Option<&KeyOwner> {
    match principal {
        Principal::Keyless => None,
        Principal::Key { owner, .. } | Principal::Person { owner, .. } => Some(owner),
    }
}

/// A page of events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventsPage {
    /// Oldest first: `{id, cursor, type, createdAt, schemaVersion, merchantId, data}`.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
    /// Pass as `after` for the next page: the last event's cursor, or the `after` given.
    pub next_cursor: String,
    /// More events are there already (this page was full).
    pub has_more: bool,
}

fn whole(s: Option<&str>, default: u64, max: u64) -> Option<u64> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Some(default),
        Some(s) => s.parse::<u64>().ok().filter(|n| *n <= max),
    }
}

/// Replay events
///
/// eftcloud extension. The event catalogue (`transaction.created`, `transaction.completed`,
/// `refund.completed`, `void.completed`, `adjustment.completed`, `settlement.completed`,
/// `device.connected`, `device.disconnected`, `pairing.paired`, `pairing.unpaired`,
/// `config.applied`, `update.step`) after a cursor, oldest first, within the key's merchant or
/// vendor (an installation key: every event). Needs an API key with `pos:read`. With `wait`,
/// the request is held until an event arrives or `wait` seconds pass. See docs/events.md.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "eftcloud extensions",
    params(
        ("after" = Option<String>, Query, description = "A cursor (`nextCursor` or an event's `cursor`); omitted: from the oldest event kept"),
        ("types" = Option<String>, Query, description = "Comma-separated types or families (`transaction.*`); omitted: every type"),
        ("limit" = Option<u32>, Query, description = "1 to 500, default 100"),
        ("wait" = Option<u32>, Query, description = "Seconds (0 to 60) to hold the request while nothing is there"),
    ),
    responses(
        (status = 200, description = "A page of events", body = EventsPage),
        (status = 400, description = "Malformed cursor, unknown type, bad limit or wait", body = ErrorBody),
        (status = 401, description = "No key, or an invalid one", body = ErrorBody),
        (status = 403, description = "The key lacks `pos:read`", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<ApiState>,
    fields: Fields,
) -> Result<Json<EventsPage>, ApiError> {
    let audience = audience_of(&fields.credential().principal)?;
    let after = match fields.get("after").map(str::trim).filter(|s| !s.is_empty()) {
        None => Cursor::START,
        Some(c) => c.parse().map_err(EventsError::Bad)?,
    };
    let types =
        TypeFilter::parse_list(fields.get("types").unwrap_or("")).map_err(EventsError::Bad)?;
    let limit = whole(
        fields.get("limit"),
        u64::from(DEFAULT_LIMIT),
        u64::from(MAX_LIMIT),
    )
    .filter(|n| *n >= 1)
    .ok_or(EventsError::BadLimit)?;
    let wait = whole(fields.get("wait"), 0, MAX_WAIT.as_secs()).ok_or(EventsError::BadWait)?;
    let query = EventsQuery {
        after,
        types,
        limit: u32::try_from(limit).unwrap_or(MAX_LIMIT),
        wait: Duration::from_secs(wait),
    };
    let page = state
        .engine
        .read_events(&audience, &query, &state.shutdown)
        .await?;
    Ok(Json(EventsPage {
        events: page.events.iter().map(|e| e.to_json()).collect(),
        next_cursor: page.next.to_string(),
        has_more: page.has_more,
    }))
}

/// One event
///
/// eftcloud extension. An event by id, within the key's merchant or vendor.
#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    tag = "eftcloud extensions",
    params(("id" = String, Path, min_length = 1, description = "The event's id, `evt_…`")),
    responses(
        (status = 200, description = "The event", body = Object),
        (status = 401, description = "No key, or an invalid one", body = ErrorBody),
        (status = 404, description = "No such event for this key", body = ErrorBody),
    ),
)]
pub async fn one(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Json<serde_json::Value>, ApiError> {
    let audience = audience_of(&fields.credential().principal)?;
    let id = EventId::parse(&id).map_err(|_| EventsError::NotFound)?;
    let event = state
        .engine
        .event(&audience, &id)
        .await?
        .ok_or(EventsError::NotFound)?;
    Ok(Json(event.to_json()))
}
