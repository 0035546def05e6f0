//! `POST /POS/Transaction`: asynchronous (`TransactionMode=ASYNC`) and legacy synchronous mode.

use super::error::ApiError;
use super::fields::Fields;
use super::{envelope, sale_data, ApiState};
use crate::engine::transactions::{NewTransaction, StartError};
use crate::store::TransactionRecord;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
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

/// Longest POS reference accepted.
const MAX_REFERENCE_LEN: usize = 128;

/// The POS's reference: the `PosReference` field, else the `Idempotency-Key` header.
fn pos_reference(fields: &Fields, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let from_header = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str().map_err(|_| {
                ApiError::bad_request("Invalid Idempotency-Key: must be printable text")
            })
        })
        .transpose()?;
    let Some(r) = fields
        .get("PosReference")
        .or(from_header)
        .map(str::trim)
        .filter(|r| !r.is_empty())
    else {
        return Ok(None);
    };
    if r.chars().count() > MAX_REFERENCE_LEN || r.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "Invalid PosReference: at most {MAX_REFERENCE_LEN} printable characters"
        )));
    }
    Ok(Some(r.to_string()))
}

/// Parses the whole request before anything is stored, so a bad request changes nothing.
fn parse(fields: &Fields, headers: &HeaderMap) -> Result<(Mode, NewTransaction), ApiError> {
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
            pos_reference: pos_reference(fields, headers)?,
        },
    ))
}

/// Starts a transaction on the register's device. A retry with the same POS reference gets the
/// original transaction back (header `Idempotent-Replayed: true`), never a second charge.
pub async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    fields: Fields,
) -> Result<Response, ApiError> {
    let (mode, new) = parse(&fields, &headers)?;
    let started = state
        .engine
        .start_transaction(new)
        .await
        .map_err(|e| match e {
            StartError::NotPaired => ApiError::bad_request(e.to_string()),
            StartError::DeviceBusy => ApiError::too_many(DEVICE_BUSY, None),
            StartError::ReferenceConflict(_) => ApiError::conflict(e.to_string()),
            StartError::Engine(e) => ApiError::internal(e),
        })?;
    let record = match mode {
        Mode::Async => started.record,
        Mode::Sync => {
            let timeout = state.settings.sync_timeout;
            state.wait_completed(started.record, timeout).await?
        }
    };
    let mut response = Json(state.envelope(&record)).into_response();
    if started.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

impl ApiState {
    /// Holds a request until the transaction completes, `timeout` passes, or the server shuts
    /// down; returns the record as it then stands (pending ones carry their polling URL).
    pub async fn wait_completed(
        &self,
        record: TransactionRecord,
        timeout: std::time::Duration,
    ) -> Result<TransactionRecord, ApiError> {
        if matches!(record.phase, crate::engine::lifecycle::Phase::Completed(_))
            || timeout.is_zero()
        {
            return Ok(record);
        }
        let waited = tokio::select! {
            r = self.engine.wait_completed(&record.id, timeout) => r.map_err(ApiError::internal)?,
            _ = self.shutdown.cancelled() => None,
        };
        Ok(waited.unwrap_or(record))
    }
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
