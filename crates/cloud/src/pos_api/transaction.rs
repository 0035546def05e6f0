//! `POST /POS/Transaction`: asynchronous (`TransactionMode=ASYNC`) and legacy synchronous mode.

use super::error::ApiError;
use super::fields::Fields;
use super::{envelope, sale_data, ApiState};
use crate::engine::transactions::{NewTransaction, StartError};
use crate::store::TransactionRecord;
use axum::extract::State;
use axum::Json;
use protocol::pos_api::{TransactionEnvelope, DEVICE_BUSY};
use protocol::{RegisterKey, TransactionRequest};

/// Whether the POS waits on this request or polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Async,
    Sync,
}

fn mode(fields: &Fields) -> Result<Mode, ApiError> {
    match fields.get("TransactionMode").map(str::trim) {
        None => Ok(Mode::Sync),
        Some(m) if m.eq_ignore_ascii_case("ASYNC") => Ok(Mode::Async),
        Some(m) if m.eq_ignore_ascii_case("SYNC") => Ok(Mode::Sync),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid TransactionMode '{other}': use ASYNC, or leave it out for the synchronous mode"
        ))),
    }
}

fn callback_url(fields: &Fields) -> Result<Option<String>, ApiError> {
    let Some(raw) = fields.get("PosNotificationCallbackUrl") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(
            "Invalid PosNotificationCallbackUrl: expected an absolute http or https URL",
        )
    };
    let url = url::Url::parse(raw.trim()).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || raw.len() > 2000 {
        return Err(bad());
    }
    Ok(Some(url.to_string()))
}

/// Parses the whole request before anything is stored, so a bad request changes nothing.
fn parse(fields: &Fields) -> Result<(Mode, NewTransaction), ApiError> {
    let register = RegisterKey::parse(
        fields.get("POSRegisterID"),
        fields.get("POSBusinessName"),
        fields.get("POSVendorName"),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mode = mode(fields)?;
    let request = TransactionRequest::parse(|k| fields.get(k))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let sale_data = match fields.get("SaleData") {
        Some(raw) => {
            sale_data::validate(raw).map_err(ApiError::bad_request)?;
            Some(raw.to_string())
        }
        None => None,
    };
    let callback_url = callback_url(fields)?;
    Ok((
        mode,
        NewTransaction {
            register,
            request,
            sale_data,
            callback_url,
        },
    ))
}

/// Starts a transaction on the register's device.
pub async fn create(
    State(state): State<ApiState>,
    fields: Fields,
) -> Result<Json<TransactionEnvelope>, ApiError> {
    let (mode, new) = parse(&fields)?;
    let record = state
        .engine
        .start_transaction(new)
        .await
        .map_err(|e| match e {
            StartError::NotPaired => ApiError::bad_request(e.to_string()),
            StartError::DeviceBusy => ApiError::too_many(DEVICE_BUSY, None),
            StartError::Engine(e) => ApiError::internal(e),
        })?;
    let record = match mode {
        Mode::Async => record,
        Mode::Sync => wait(&state, record).await?,
    };
    Ok(Json(state.envelope(&record)))
}

/// Holds a synchronous request until the transaction completes (or the sync timeout, or
/// shutdown: then the pending body is returned, with its polling URL to carry on).
async fn wait(state: &ApiState, record: TransactionRecord) -> Result<TransactionRecord, ApiError> {
    let waited = tokio::select! {
        r = state.engine.wait_completed(&record.id, state.settings.sync_timeout) => r.map_err(ApiError::internal)?,
        _ = state.shutdown.cancelled() => None,
    };
    Ok(waited.unwrap_or(record))
}

impl ApiState {
    /// The envelope of a record as of now.
    pub fn envelope(&self, record: &TransactionRecord) -> TransactionEnvelope {
        envelope::build(
            record,
            &self.settings.public_url,
            chrono::Utc::now(),
            self.engine.settings().delayed_after,
        )
    }
}
