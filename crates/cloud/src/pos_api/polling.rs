//! `GET /pos/transaction/{id}?merchantAccessToken=...` — the polling URL.

use super::access::AccessError;
use super::error::ApiError;
use super::fields::FieldError;
use super::ApiState;
use crate::domain::lifecycle::Phase;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use protocol::pos_api::{ErrorBody, TransactionEnvelope};
use protocol::TransactionId;
use std::time::{Duration, Instant};

/// Longest long-poll a client may ask for with `wait=<seconds>`.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Parses `wait=<seconds>` (an eftcloud extension), capped at [`MAX_WAIT`].
pub fn wait_param(v: Option<&str>) -> Result<Option<Duration>, FieldError> {
    let Some(v) = v else { return Ok(None) };
    let secs: f64 = v
        .trim()
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| FieldError::invalid("Invalid wait: expected a number of seconds"))?;
    Ok(Some(Duration::from_secs_f64(
        secs.min(MAX_WAIT.as_secs_f64()),
    )))
}

/// Poll a transaction
///
/// The polling URL (`data.PollingUrl`). `transactionStatus` is `PENDING` until `COMPLETED`; a
/// completed transaction re-polls to the identical body. The token expires some time after the
/// POST (15 minutes by default); afterwards use `GET /pos/lookup` with the register identity.
///
/// eftcloud extension: with `wait=<seconds>` (at most 60) a pending transaction is held until
/// it completes or the wait ends, woken by the completion itself; such a long-poll is exempt
/// from the polling rate limit.
#[utoipa::path(
    get,
    path = "/pos/transaction/{id}",
    tag = "SmartConnect",
    params(
        ("id" = String, Path, min_length = 1, description = "The `transactionId`"),
        ("merchantAccessToken" = String, Query, min_length = 1, description = "The polling token from the envelope"),
        ("wait" = Option<f64>, Query, nullable = false, minimum = 0, maximum = 60, description = "eftcloud extension: long-poll up to this many seconds (capped at 60) while the transaction is pending"),
    ),
    responses(
        (status = 200, description = "The transaction envelope as it stands", body = TransactionEnvelope),
        (status = 400, description = "`wait` is not a number of seconds, or a query key given twice (`Field <name> given more than once`)", body = ErrorBody),
        (status = 401, description = "`Invalid token` (missing or wrong) or `Token expired`", body = ErrorBody),
        (status = 404, description = "`Transaction not found` (unknown or malformed id)", body = ErrorBody),
        (status = 429, description = "Polled faster than the server's minimum interval (about 2 s by default)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Whole seconds to wait before the next poll"))),
        (status = 500, description = "Internal error; keep polling", body = ErrorBody),
    ),
)]
pub async fn poll(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    credential: Option<axum::Extension<super::credentials::Credential>>,
) -> Result<Json<TransactionEnvelope>, ApiError> {
    let id: TransactionId = id.parse().map_err(|_| AccessError::NotFound)?;
    let (mut token, mut wait) = (None, None);
    let mut wait_given = false;
    // A repeated key is refused, as in every other POS request (see `fields`).
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if k.eq_ignore_ascii_case("merchantAccessToken") {
            if token.replace(v.into_owned()).is_some() {
                return Err(FieldError::Repeated(k.to_string()).into());
            }
        } else if k.eq_ignore_ascii_case("wait") {
            if std::mem::replace(&mut wait_given, true) {
                return Err(FieldError::Repeated(k.to_string()).into());
            }
            wait = wait_param(Some(&v))?;
        }
    }
    // A long-poll registers for the completion before reading, so it needs no second read.
    let waiter = wait
        .filter(|w| !w.is_zero())
        .map(|_| state.engine.completion_waiter(id));
    // Another merchant's or vendor's transaction does not exist for a key.
    let credential = credential.map(|c| c.0).unwrap_or_default();
    let record = state
        .engine
        .transaction_as(&credential.principal, &id)
        .await?
        .ok_or(AccessError::NotFound)?;
    super::access::visible(&record, &credential)?;
    // Compared in constant time, so response timing tells nothing about how much of a guess matched.
    match token {
        Some(t)
            if crate::engine::devices::constant_time_eq(t.as_bytes(), record.token.as_bytes()) => {}
        _ => return Err(AccessError::InvalidToken.into()),
    }
    if state.engine.now() >= record.token_expires_at {
        return Err(AccessError::TokenExpired.into());
    }
    let pending = !matches!(record.phase, Phase::Completed(_));
    let long_poll = wait.filter(|w| !w.is_zero() && pending);
    // A long-poll of a pending transaction paces itself, so the limiter does not apply to it.
    if long_poll.is_none() {
        state
            .limiter
            .check(id, Instant::now())
            .map_err(|retry| AccessError::PollingTooFast {
                interval_secs: state.limiter_interval_secs(),
                retry_after_secs: retry.as_secs_f64().ceil().max(1.0) as u64,
            })?;
    }
    let record = match (long_poll, waiter) {
        (Some(w), Some(waiter)) => state.wait_completed_with(waiter, record, w).await?,
        _ => record,
    };
    Ok(Json(state.envelope(&record)))
}
