//! `GET /pos/transaction/{id}?merchantAccessToken=...` — the polling URL.

use super::error::ApiError;
use super::ApiState;
use crate::engine::lifecycle::Phase;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use chrono::Utc;
use protocol::pos_api::TransactionEnvelope;
use protocol::TransactionId;
use std::time::{Duration, Instant};

/// Longest long-poll a client may ask for with `wait=<seconds>`.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Parses `wait=<seconds>` (an eftcloud extension), capped at [`MAX_WAIT`].
pub fn wait_param(v: Option<&str>) -> Result<Option<Duration>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    let secs: f64 = v
        .trim()
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| ApiError::bad_request("Invalid wait: expected a number of seconds"))?;
    Ok(Some(Duration::from_secs_f64(
        secs.min(MAX_WAIT.as_secs_f64()),
    )))
}

/// Answers a poll; with `wait=<seconds>` (an eftcloud extension) a pending transaction is held
/// until it completes or the wait ends, woken by the completion itself.
pub async fn poll(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<TransactionEnvelope>, ApiError> {
    let not_found = || ApiError::not_found("Transaction not found");
    let id: TransactionId = id.parse().map_err(|_| not_found())?;
    let mut token = None;
    let mut wait = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if k.eq_ignore_ascii_case("merchantAccessToken") {
            token = Some(v.into_owned());
        } else if k.eq_ignore_ascii_case("wait") {
            wait = wait_param(Some(&v))?;
        }
    }
    let record = state
        .engine
        .transaction(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(not_found)?;
    // Both token checks compare the whole string; the token is random, so equality leaks nothing useful.
    match token {
        Some(t) if t == record.token => {}
        _ => return Err(ApiError::unauthorized("Invalid token")),
    }
    if Utc::now() >= record.token_expires_at {
        return Err(ApiError::unauthorized("Token expired"));
    }
    let pending = !matches!(record.phase, Phase::Completed(_));
    let long_poll = wait.filter(|w| !w.is_zero() && pending);
    // A long-poll of a pending transaction paces itself, so the limiter does not apply to it.
    if long_poll.is_none() {
        state.limiter.check(id, Instant::now()).map_err(|retry| {
            let secs = retry.as_secs_f64().ceil().max(1.0) as u64;
            ApiError::too_many(
                format!(
                    "Polling too fast: poll this transaction at most every {} s",
                    state.limiter_interval_secs()
                ),
                Some(secs),
            )
        })?;
    }
    let record = match long_poll {
        Some(w) => state.wait_completed(record, w).await?,
        None => record,
    };
    Ok(Json(state.envelope(&record)))
}
