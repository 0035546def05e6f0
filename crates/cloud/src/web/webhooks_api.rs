//! The admin API's webhook endpoints (`/admin/webhooks...`, needing `webhooks:manage`, which
//! `admin` grants) and event log (`/admin/event-log`, needing `reports:read`), for the
//! operator's token, the dashboard and the CLI. The same operations as the POS API's
//! `/v1/webhook-endpoints` and `/v1/events` (`pos_api::webhooks`, `pos_api::events`): a
//! merchant's credential reaches its own merchant's only.

use super::dashboard::Admin;
use super::WebState;
use crate::domain::accounts::{KeyOwner, Principal, Scope};
use crate::domain::events::{Cursor, TypeFilter};
use crate::engine::events::{EventsQuery, DEFAULT_LIMIT, MAX_LIMIT};
use crate::pos_api::error::ApiError;
use crate::pos_api::events::{audience_of, EventsError};
use crate::pos_api::webhooks as ops;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use std::time::Duration;

/// The owner whose endpoints a credential manages.
fn manager(admin: &Admin) -> Result<KeyOwner, ApiError> {
    admin.require(Scope::WebhooksManage)?;
    Ok(match &admin.principal {
        Principal::Key { owner, .. } | Principal::Person { owner, .. } => owner.clone(),
        // The admin extractor never yields a keyless principal; treat one as nobody's.
        Principal::Keyless => return Err(EventsError::KeyRequired.into()),
    })
}

pub async fn list(State(state): State<WebState>, admin: Admin) -> Result<Response, ApiError> {
    ops::list_as(&state.engine, &manager(&admin)?).await
}

pub async fn create(
    State(state): State<WebState>,
    admin: Admin,
    body: Bytes,
) -> Result<Response, ApiError> {
    ops::create_as(&state.engine, &manager(&admin)?, &admin.actor, &body).await
}

pub async fn get_one(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    ops::get_as(&state.engine, &manager(&admin)?, &id).await
}

pub async fn change(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    ops::change_as(&state.engine, &manager(&admin)?, &admin.actor, &id, &body).await
}

pub async fn delete(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    ops::delete_as(&state.engine, &manager(&admin)?, &admin.actor, &id).await
}

pub async fn rotate(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    ops::rotate_as(&state.engine, &manager(&admin)?, &admin.actor, &id, &body).await
}

pub async fn deliveries(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let limit = ops::log_limit(q.as_deref())?;
    ops::deliveries_as(&state.engine, &manager(&admin)?, &id, limit).await
}

pub async fn redeliver(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    ops::redeliver_as(&state.engine, &manager(&admin)?, &id, &body).await
}

/// `/admin/event-log` query.
#[derive(Debug, Deserialize, Default)]
pub struct LogQuery {
    after: Option<String>,
    types: Option<String>,
    limit: Option<String>,
}

/// A page of the event log, as `/v1/events` gives it (no long-poll here).
pub async fn event_log(
    State(state): State<WebState>,
    admin: Admin,
    Query(q): Query<LogQuery>,
) -> Result<Json<crate::pos_api::events::EventsPage>, ApiError> {
    admin.require(Scope::ReportsRead)?;
    let audience = audience_of(&admin.principal)?;
    let after = match q.after.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Cursor::START,
        Some(c) => c.parse::<Cursor>().map_err(EventsError::Bad)?,
    };
    let types =
        TypeFilter::parse_list(q.types.as_deref().unwrap_or("")).map_err(EventsError::Bad)?;
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or(EventsError::BadLimit)?,
    };
    let query = EventsQuery {
        after,
        types,
        limit,
        wait: Duration::ZERO,
    };
    let page = state
        .engine
        .read_events(
            &audience,
            &query,
            &tokio_util::sync::CancellationToken::new(),
        )
        .await?;
    Ok(Json(crate::pos_api::events::EventsPage {
        events: page.events.iter().map(|e| e.to_json()).collect(),
        next_cursor: page.next.to_string(),
        has_more: page.has_more,
    }))
}
