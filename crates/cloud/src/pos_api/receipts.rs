//! eftcloud extensions: a completed transaction's receipt sent to the customer by email or
//! SMS. `POST /pos/transaction/{id}/receipt` (`Email=`, `Phone=`, optional `Copy=`) queues one
//! delivery per channel in a durable outbox and answers 202; the delivery worker
//! (`crate::receipts`) sends them with retries. `GET /pos/transaction/{id}/receipt` shows the
//! receipt and each delivery's state. Access as for the payment view: any register of the
//! transaction's merchant, or its polling token.
//!
//! Addresses are answered masked (`a***@example.com`): every register of the merchant may read
//! a transaction's deliveries, and the POS that asked knows the address already.

use super::access::{authorize, register_of_merchant, visible, AccessError};
use super::error::{ApiError, HttpError, ServiceError};
use super::fields::{FieldError, Fields};
use super::ApiState;
use crate::domain::lifecycle::Phase;
use crate::domain::receipts::{
    Address, EmailAddress, PhoneNumber, Queued, ReceiptCopy, ReceiptDelivery, ReceiptRefusal,
};
use crate::domain::TransactionRecord;
use crate::engine::receipts::{ReceiptError, ReceiptRequest};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use protocol::pos_api::ErrorBody;
use protocol::TransactionId;
use serde::Serialize;

/// The receipt routes' own refusals.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptRouteError {
    /// 409: not completed, no receipt, or the channel is not configured.
    #[error("{0}")]
    Refused(ReceiptRefusal),
}

impl HttpError for ReceiptRouteError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Refused(_) => StatusCode::CONFLICT,
        }
    }
}

impl From<ReceiptError> for ApiError {
    fn from(e: ReceiptError) -> Self {
        match e {
            ReceiptError::NotFound => AccessError::NotFound.into(),
            ReceiptError::Refused(r) => ReceiptRouteError::Refused(r).into(),
            ReceiptError::Engine(e) => ServiceError::engine(e).into(),
        }
    }
}

/// Documentation only: the fields of `POST /pos/transaction/{id}/receipt`.
#[derive(utoipa::ToSchema)]
#[schema(
    description = "Where to send the receipt (form body, JSON body or query string; the body wins): `Email`, `Phone` or both, one delivery each. Name any register of the transaction's merchant, or give the transaction's polling token."
)]
pub struct ReceiptForm {
    /// An address such as `name@example.com` (a plain `local@domain`, no display name).
    #[schema(rename = "Email", required = false, example = "ann@example.com")]
    pub email: String,
    /// `+` and 6 to 15 digits (E.164); spaces, dots, hyphens and parentheses are ignored.
    #[schema(
        rename = "Phone",
        required = false,
        pattern = "^\\+[1-9][0-9]{5,14}$",
        example = "+61412345678"
    )]
    pub phone: String,
    /// Which copy: `customer` (the default) or `merchant`.
    #[schema(rename = "Copy", required = false, example = "customer")]
    pub copy: String,
    #[schema(rename = "POSRegisterID", required = false)]
    pub register_id: String,
    #[schema(rename = "POSBusinessName", required = false)]
    pub business_name: String,
    #[schema(rename = "POSVendorName", required = false)]
    pub vendor_name: String,
    /// The transaction's polling token, when no register is named.
    #[schema(rename = "merchantAccessToken", required = false)]
    pub merchant_access_token: String,
}

/// One delivery of a receipt.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub id: String,
    /// `email` or `sms`.
    #[schema(example = "email")]
    pub channel: String,
    /// The address, masked: `a***@example.com`, `+61******678`.
    #[schema(example = "a***@example.com")]
    pub address: String,
    /// `customer` or `merchant`.
    pub copy: String,
    /// `pending` (waiting for its first attempt or a retry), `sent` (the mail server or the
    /// SMS provider took it) or `failed` (given up; `lastError` says why).
    #[schema(example = "pending")]
    pub state: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Why the last failed attempt failed (kept once sent).
    pub last_error: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<String>,
    pub sent_at: Option<String>,
    /// In the answer to a POST: this delivery had been asked for already (pending or sent),
    /// and nothing new is sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<bool>,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl DeliveryView {
    fn of(d: &ReceiptDelivery, replayed: Option<bool>) -> Self {
        use crate::domain::receipts::DeliveryState;
        DeliveryView {
            id: d.id.to_string(),
            channel: d.channel().as_str().to_string(),
            address: d.address.masked(),
            copy: d.copy.as_str().to_string(),
            state: d.state.as_str().to_string(),
            attempts: d.attempts,
            last_error: Some(d.last_error.clone()).filter(|e| !e.is_empty()),
            created_at: time(d.created_at),
            next_attempt_at: (d.state == DeliveryState::Pending).then(|| time(d.next_attempt_at)),
            sent_at: d.sent_at.map(time),
            replayed,
        }
    }
}

/// The answer to a POST: the deliveries queued (or found).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptsQueued {
    pub transaction_id: String,
    pub deliveries: Vec<DeliveryView>,
}

/// A transaction's receipt and its deliveries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptView {
    pub transaction_id: String,
    /// The copies as structured data, when the device reported them.
    pub receipts: Option<protocol::action::Receipts>,
    /// The fixed-width `Receipt` text of SmartConnect, when the device reported one.
    pub receipt_text: Option<String>,
    /// Oldest first.
    pub deliveries: Vec<DeliveryView>,
}

/// The request's addresses and copy, checked.
fn request_of(fields: &Fields) -> Result<ReceiptRequest, FieldError> {
    let get = |k| fields.get(k).map(str::trim).filter(|v| !v.is_empty());
    let mut addresses = Vec::new();
    if let Some(email) = get("Email") {
        addresses.push(Address::Email(
            EmailAddress::parse(email).map_err(FieldError::invalid)?,
        ));
    }
    if let Some(phone) = get("Phone") {
        addresses.push(Address::Phone(
            PhoneNumber::parse(phone).map_err(FieldError::invalid)?,
        ));
    }
    if addresses.is_empty() {
        return Err(FieldError::invalid(
            "Missing required field: Email or Phone (where to send the receipt)",
        ));
    }
    let copy = match get("Copy") {
        None => ReceiptCopy::default(),
        Some(c) => ReceiptCopy::parse(c)
            .ok_or_else(|| FieldError::invalid("Invalid Copy: customer or merchant"))?,
    };
    Ok(ReceiptRequest { addresses, copy })
}

/// The transaction in the path, if the request may see it: any register of its merchant, else
/// its polling token (as for the payment view).
async fn authorized(
    state: &ApiState,
    id: &str,
    fields: &Fields,
) -> Result<TransactionRecord, ApiError> {
    let id: TransactionId = id.parse().map_err(|_| AccessError::NotFound)?;
    let record = state
        .engine
        .transaction_as(&fields.credential().principal, &id)
        .await?
        .ok_or(AccessError::NotFound)?;
    visible(&record, fields.credential())?;
    match register_of_merchant(state, fields, &record.merchant_id).await? {
        Some(true) => {}
        Some(false) => return Err(AccessError::NotFound.into()),
        None => authorize(&record, fields, state.engine.now())?,
    }
    Ok(record)
}

/// Send the receipt by email or SMS
///
/// eftcloud extension. Queues the receipt of a completed transaction for delivery to `Email`
/// and/or `Phone` (one delivery each) and answers 202 at once; a worker sends them, retrying
/// with exponential backoff, and each queueing and each outcome appears on the transaction's
/// timeline (`receipt_queued`, `receipt_sent`, `receipt_failed`). The copy sent is the device's
/// structured copy (`Copy`: `customer` by default, or `merchant`), else its fixed-width
/// `Receipt` text. Idempotent: asking again for a delivery that is pending or sent (same
/// transaction, channel, address and copy) returns it with `replayed: true` and sends nothing
/// new; a `failed` one may be asked for again.
#[utoipa::path(
    post,
    path = "/pos/transaction/{id}/receipt",
    tag = "eftcloud extensions",
    params(
        ("id" = String, Path, min_length = 1, description = "The `transactionId`"),
    ),
    request_body(content(
        (ReceiptForm = "application/x-www-form-urlencoded"),
        (ReceiptForm = "application/json"),
    )),
    responses(
        (status = 202, description = "Queued (or found): the deliveries, addresses masked", body = ReceiptsQueued),
        (status = 400, description = "No `Email` or `Phone`, or an invalid one (`Invalid Email: ...`, `Invalid Phone: ...`), an invalid `Copy`, or a field given twice in the body or twice in the query string (`Field <name> given more than once`)", body = ErrorBody),
        (status = 401, description = "`Invalid token` or `Token expired` (no register named)", body = ErrorBody),
        (status = 404, description = "`Transaction not found`: no such transaction for this register's merchant, token or key", body = ErrorBody),
        (status = 409, description = "Nothing queued: the transaction has not completed yet, it has no receipt, or the channel is not configured on this server (`email delivery is not configured on this server`, `SMS delivery is not configured on this server`)", body = ErrorBody),
        (status = 413, description = "Request body over the server's limit (`--max-body-bytes`, 64 KiB by default), refused before it is read: `Request body too large: at most <n> bytes`", body = ErrorBody),
        (status = 503, description = "Storage unavailable; retry after `Retry-After`", body = ErrorBody),
    ),
)]
pub async fn send(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Response, ApiError> {
    let request = request_of(&fields)?;
    let record = authorized(&state, &id, &fields).await?;
    let queued: Vec<Queued> = state
        .engine
        .queue_receipts(&fields.credential().principal, &record, &request)
        .await?;
    let body = ReceiptsQueued {
        transaction_id: record.id.to_string(),
        deliveries: queued
            .iter()
            .map(|q| DeliveryView::of(&q.delivery, Some(q.replayed)))
            .collect(),
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// A transaction's receipt and its deliveries
///
/// eftcloud extension. The receipt the device reported (structured copies and the fixed-width
/// text) and every delivery asked for, oldest first, with its state, attempts, last error and
/// when it was sent. Access as for the payment view: any register of the transaction's
/// merchant, or its polling token.
#[utoipa::path(
    get,
    path = "/pos/transaction/{id}/receipt",
    tag = "eftcloud extensions",
    params(
        ("id" = String, Path, min_length = 1, description = "The `transactionId`"),
        ("merchantAccessToken" = Option<String>, Query, description = "The polling token"),
        ("POSRegisterID" = Option<String>, Query),
        ("POSBusinessName" = Option<String>, Query),
        ("POSVendorName" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "The receipt and its deliveries", body = ReceiptView),
        (status = 401, description = "`Invalid token` or `Token expired`", body = ErrorBody),
        (status = 404, description = "`Transaction not found`", body = ErrorBody),
    ),
)]
pub async fn show(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Json<ReceiptView>, ApiError> {
    let record = authorized(&state, &id, &fields).await?;
    let deliveries = state.engine.receipt_deliveries(&record.id).await?;
    let (receipts, receipt_text) = match &record.phase {
        Phase::Completed(c) => (
            c.receipts.clone(),
            c.fields
                .get(protocol::pos_api::keys::RECEIPT)
                .filter(|t| !t.trim().is_empty())
                .cloned(),
        ),
        _ => (None, None),
    };
    Ok(Json(ReceiptView {
        transaction_id: record.id.to_string(),
        receipts,
        receipt_text,
        deliveries: deliveries
            .iter()
            .map(|d| DeliveryView::of(d, None))
            .collect(),
    }))
}
