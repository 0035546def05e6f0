//! `POST /POS/Transaction`: asynchronous (`TransactionMode=ASYNC`) and legacy synchronous mode.

use super::error::{ApiError, HttpError, ServiceError};
use super::fields::{FieldError, Fields};
use super::{envelope, sale_data, ApiState};
use crate::domain::TransactionRecord;
use crate::engine::transactions::{NewTransaction, StartError};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::pos_api::{ErrorBody, TransactionEnvelope};
use protocol::{RegisterKey, TransactionRequest};

/// Starting a transaction: the family of `POST /POS/Transaction`, beside its fields'.
#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    /// 400 with SmartConnect's wording, which clients match.
    #[error("{}", protocol::pos_api::NOT_PAIRED)]
    NotPaired,
    /// 429: the device runs another transaction (one at a time per device).
    #[error("{}", protocol::pos_api::DEVICE_BUSY)]
    DeviceBusy,
    /// 409: the register used this reference for a different request.
    #[error("PosReference '{0}' was already used by this register for a different request")]
    ReferenceConflict(String),
    /// 409: the device cannot run the request (it did not declare the capability).
    #[error("{0}")]
    Unsupported(String),
    /// 404: a follow-up's original is not this register's merchant's (or does not exist).
    #[error("Transaction not found")]
    UnknownOriginal,
    /// 409: `OriginalPosReference` names several of the merchant's transactions.
    #[error("{0}")]
    AmbiguousOriginal(String),
    /// 409: the follow-up does not fit its original.
    #[error(transparent)]
    Refused(crate::domain::payments::Refusal),
    /// 409: the tender does not fit its order.
    #[error(transparent)]
    OrderRefused(crate::domain::orders::OrderRefusal),
    /// 404: the `OrderId` names no order of this register's merchant.
    #[error("Order not found")]
    UnknownOrder,
}

impl HttpError for TransactionError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotPaired => StatusCode::BAD_REQUEST,
            Self::DeviceBusy => StatusCode::TOO_MANY_REQUESTS,
            Self::ReferenceConflict(_)
            | Self::Unsupported(_)
            | Self::AmbiguousOriginal(_)
            | Self::Refused(_)
            | Self::OrderRefused(_) => StatusCode::CONFLICT,
            Self::UnknownOriginal | Self::UnknownOrder => StatusCode::NOT_FOUND,
        }
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Refused(r) => r
                .refundable()
                .map(|a| vec![("amountRefundable", a.to_string())])
                .unwrap_or_default(),
            Self::OrderRefused(r) => r
                .remaining()
                .map(|a| vec![("amountRemaining", a.to_string())])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::NotPaired => Some("not_paired"),
            Self::DeviceBusy => Some("busy"),
            Self::Unsupported(_) => Some("unsupported"),
            Self::Refused(_) | Self::OrderRefused(_) => Some("refused"),
            Self::ReferenceConflict(_)
            | Self::UnknownOriginal
            | Self::AmbiguousOriginal(_)
            | Self::UnknownOrder => None,
        }
    }
}

impl From<StartError> for ApiError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::NotPaired => TransactionError::NotPaired.into(),
            StartError::DeviceBusy => TransactionError::DeviceBusy.into(),
            StartError::ReferenceConflict(r) => TransactionError::ReferenceConflict(r).into(),
            e @ StartError::Unsupported { .. } => {
                TransactionError::Unsupported(e.to_string()).into()
            }
            StartError::UnknownOriginal => TransactionError::UnknownOriginal.into(),
            e @ StartError::AmbiguousOriginal(_) => {
                TransactionError::AmbiguousOriginal(e.to_string()).into()
            }
            StartError::Refused(r) => TransactionError::Refused(r).into(),
            StartError::OrderRefused(r) => TransactionError::OrderRefused(r).into(),
            StartError::UnknownOrder => TransactionError::UnknownOrder.into(),
            StartError::Engine(e) => ServiceError::engine(e).into(),
        }
    }
}

/// Whether the POS waits on this request or polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Async,
    Sync,
}

fn mode(fields: &Fields) -> Result<Mode, FieldError> {
    match fields.get("TransactionMode").map(str::trim) {
        None => Ok(Mode::Sync),
        Some(m) if m.eq_ignore_ascii_case("ASYNC") => Ok(Mode::Async),
        Some(m) if m.eq_ignore_ascii_case("SYNC") => Ok(Mode::Sync),
        Some(other) => Err(FieldError::invalid(format!(
            "Invalid TransactionMode '{other}': use ASYNC, or leave it out for the synchronous mode"
        ))),
    }
}

pub(super) fn callback_url(fields: &Fields) -> Result<Option<String>, FieldError> {
    let Some(raw) = fields.get("PosNotificationCallbackUrl") else {
        return Ok(None);
    };
    let bad = || {
        FieldError::invalid(
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
pub(super) fn pos_reference(
    fields: &Fields,
    headers: &HeaderMap,
) -> Result<Option<String>, FieldError> {
    let from_header = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map_err(|_| FieldError::invalid("Invalid Idempotency-Key: must be printable text"))
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
        return Err(FieldError::invalid(format!(
            "Invalid PosReference: at most {MAX_REFERENCE_LEN} printable characters"
        )));
    }
    Ok(Some(r.to_string()))
}

/// Parses the whole request before anything is stored, so a bad request changes nothing.
fn parse(fields: &Fields, headers: &HeaderMap) -> Result<(Mode, NewTransaction), FieldError> {
    let register = RegisterKey::parse(
        fields.get("POSRegisterID"),
        fields.get("POSBusinessName"),
        fields.get("POSVendorName"),
    )
    .map_err(FieldError::invalid)?;
    let mode = mode(fields)?;
    let mut request = TransactionRequest::parse(|k| fields.get(k)).map_err(FieldError::invalid)?;
    if let Some(order) = fields
        .get("OrderId")
        .map(str::trim)
        .filter(|o| !o.is_empty())
    {
        let order = crate::domain::orders::OrderId::parse(order).map_err(FieldError::invalid)?;
        request.order_id = Some(order.to_string());
    }
    let sale_data = match fields.get("SaleData") {
        Some(raw) => {
            sale_data::validate(raw).map_err(FieldError::invalid)?;
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
            merchant: fields.credential().merchant().cloned(),
            original_merchant: None,
        },
    ))
}

/// `TransactionType`: every function of the table.
fn function_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .description(Some(
            "The function to run. Amount and reference fields required per function: \
             `AmountTotal` for Card.Purchase, Card.Refund, Card.CashAdvance, \
             QR.Merchant.Purchase, QR.Consumer.Purchase, QR.Refund; `AmountTotal` and \
             `AmountCash` for Card.PurchasePlusCash; `AmountAuth` and `TransactionReference` for \
             Card.Authorise; `AmountFinal` and `TransactionReference` for Card.Finalise; \
             optional `Date` for Acquirer.Settlement.Inquiry; none for the others.",
        ))
        .enum_values(Some(protocol::Function::ALL.iter().map(|f| f.as_str())))
        .examples(["Card.Purchase"])
        .build()
}

/// `TransactionMode`: matched case-insensitively.
fn mode_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .description(Some(
            "`ASYNC`: answer at once with the pending envelope and poll `data.PollingUrl`. \
             Absent (or `SYNC`): the legacy synchronous mode, which holds the request until the \
             transaction completes (at most the server's `--sync-timeout`, then the pending body).",
        ))
        .enum_values(Some(["ASYNC", "SYNC"]))
        .examples(["ASYNC"])
        .build()
}

/// Documentation only: the transaction fields as `/openapi.json` lists them; the handler
/// reads them through [`Fields`] and [`TransactionRequest::parse`].
#[derive(utoipa::ToSchema)]
#[schema(
    description = "The transaction fields (form body, JSON body or query string; the body wins; unknown keys are ignored). Which amount fields are required depends on `TransactionType`."
)]
pub struct TransactionForm {
    /// Register identity: must match a paired register exactly.
    #[schema(
        rename = "POSRegisterID",
        example = "7444ae07-dc63-e49c-33e3-59a7c108cc80",
        min_length = 1,
        max_length = 200
    )]
    pub register_id: String,
    #[schema(
        rename = "POSBusinessName",
        example = "Toys Shop",
        min_length = 1,
        max_length = 200
    )]
    pub business_name: String,
    #[schema(
        rename = "POSVendorName",
        example = "Till2Go",
        min_length = 1,
        max_length = 200
    )]
    pub vendor_name: String,
    #[schema(rename = "TransactionMode", required = false, schema_with = mode_schema)]
    pub transaction_mode: String,
    #[schema(rename = "TransactionType", schema_with = function_schema)]
    pub transaction_type: String,
    /// Whole cents as a decimal string, 1 to 99999999 (`"500"` = 5.00).
    #[schema(
        rename = "AmountTotal",
        required = false,
        pattern = "^[0-9]+$",
        example = "500"
    )]
    pub amount_total: String,
    /// Cents of cash out, part of `AmountTotal` (at most `AmountTotal`); `Card.PurchasePlusCash`.
    #[schema(rename = "AmountCash", required = false, pattern = "^[0-9]+$")]
    pub amount_cash: String,
    /// Cents to pre-authorise; `Card.Authorise`.
    #[schema(rename = "AmountAuth", required = false, pattern = "^[0-9]+$")]
    pub amount_auth: String,
    /// Final cents of a pre-authorisation; `Card.Finalise`.
    #[schema(rename = "AmountFinal", required = false, pattern = "^[0-9]+$")]
    pub amount_final: String,
    /// Links `Card.Finalise` to its `Card.Authorise` (at most 64 characters).
    #[schema(rename = "TransactionReference", required = false, max_length = 64)]
    pub transaction_reference: String,
    /// Settlement date `yyyyMMdd`; optional, `Acquirer.Settlement.Inquiry` only.
    #[schema(
        rename = "Date",
        required = false,
        pattern = "^[0-9]{8}$",
        example = "20240131"
    )]
    pub date: String,
    /// The basket as one JSON string: `{"version": "1.0.0", "saleData": {"totalAmount": "500",
    /// "totalTax": "45", ...}}` (`totalAmount` and `totalTax` required, `lineItems` an array,
    /// at most 256 KiB). Stored as sent.
    #[schema(
        rename = "SaleData",
        required = false,
        content_media_type = "application/json"
    )]
    pub sale_data: String,
    /// Absolute http(s) URL to notify when the transaction completes (stored).
    #[schema(
        rename = "PosNotificationCallbackUrl",
        required = false,
        format = "uri",
        max_length = 2000
    )]
    pub callback_url: String,
    /// eftcloud extension: the POS's own reference for this transaction (at most 128
    /// printable characters; same as the `Idempotency-Key` header, the field wins). The same
    /// register and reference returns the original transaction (`Idempotent-Replayed: true`)
    /// instead of a second charge; a different request under the same reference is 409.
    #[schema(
        rename = "PosReference",
        required = false,
        max_length = 128,
        example = "sale-000123"
    )]
    pub pos_reference: String,
    /// eftcloud extension: the ISO 4217 currency of the amounts (which are in its minor units:
    /// JPY 0 decimals, AUD 2, KWD 3). Absent: the merchant's default (AUD unless the operator
    /// set another). A device must declare the `currency` capability for any but AUD.
    #[schema(
        rename = "Currency",
        required = false,
        example = "AUD",
        min_length = 3,
        max_length = 3
    )]
    pub currency: String,
    /// eftcloud extension, `Card.Refund` and `Card.Finalise` only: the payment this refunds or
    /// completes, by `transactionId`. The refund may run on any device of that payment's
    /// merchant and never takes refunds past what it came to (409 with `amountRefundable`); a
    /// completion never captures more than is authorised. Needs `pos:refund` for a refund.
    #[schema(rename = "OriginalTransactionId", required = false)]
    pub original_transaction_id: String,
    /// eftcloud extension: like `OriginalTransactionId`, by the `PosReference` the POS gave the
    /// payment (this register's first, else the only one of the merchant's with it).
    #[schema(rename = "OriginalPosReference", required = false, max_length = 128)]
    pub original_pos_reference: String,
    /// eftcloud extension: this payment is a tender of the order (`POST /pos/orders`), on any
    /// device of the order's merchant; refused (409 with `amountRemaining`) if it would pay more
    /// than the order has left, or the order is paid or cancelled.
    #[schema(rename = "OrderId", required = false)]
    pub order_id: String,
}

/// Start a transaction
///
/// Starts a function on the register's paired device. With `TransactionMode=ASYNC` the answer
/// is immediate (`PENDING`, poll `data.PollingUrl`); without it the request is held until the
/// transaction completes (legacy synchronous mode). One transaction at a time per device.
///
/// eftcloud extension: a retry with the same `PosReference` (or `Idempotency-Key`) gets the
/// original transaction back, with header `Idempotent-Replayed: true`, never a second charge.
#[utoipa::path(
    post,
    path = "/POS/Transaction",
    tag = "SmartConnect",
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, description = "eftcloud extension: same as the `PosReference` field (the field wins when both are sent)."),
    ),
    request_body(
        description = "The register triple, the function and its fields.",
        content(
            (TransactionForm = "application/x-www-form-urlencoded"),
            (TransactionForm = "application/json"),
        ),
    ),
    responses(
        (status = 200, description = "The transaction envelope: `PENDING` (async mode), or as it stands when the synchronous wait ends",
            body = TransactionEnvelope,
            headers(("Idempotent-Replayed" = String, description = "eftcloud extension: `true` when this is the original transaction returned for a repeated `PosReference`; absent otherwise")),
            example = json!({
                "transactionId": "f363c7de-102c-4d80-a902-ed37413ca599",
                "transactionTimeStamp": "201809182353193193",
                "merchantId": "8dac4049-20b3-473f-b3a3-2682667ece33",
                "deviceId": "7070714000",
                "transactionStatus": "PENDING",
                "data": {
                    "PosVendor": "Till2Go",
                    "PosRegisterID": "7444ae07-dc63-e49c-33e3-59a7c108cc80",
                    "PosBusinessName": "Toys Shop",
                    "AmountTotal": "500",
                    "DeviceID": "7070714000",
                    "Function": "Card.Purchase",
                    "PollingUrl": "https://eftcloud.example/pos/transaction/f363c7de-102c-4d80-a902-ed37413ca599?merchantAccessToken=a4934205-e3fa-47ea-88c3-6f6422a0af72",
                    "RequestTimestamp": "20180918235319",
                    "TransactionResult": "",
                    "Result": "",
                    "ResultText": ""
                },
                "merchantAccessToken": "a4934205-e3fa-47ea-88c3-6f6422a0af72"
            })),
        (status = 400, description = "Bad request: missing or invalid field (the message names it), or `This register is not paired to a device, please pair it first.`, or a field given twice in the body or twice in the query string (`Field <name> given more than once`)", body = ErrorBody),
        (status = 413, description = "Request body over the server's limit (`--max-body-bytes`, 64 KiB by default), refused before it is read: `Request body too large: at most <n> bytes`", body = ErrorBody),
        (status = 404, description = "eftcloud extension: `Transaction not found`: the `OriginalTransactionId` or `OriginalPosReference` names no payment of this register's merchant", body = ErrorBody),
        (status = 409, description = "eftcloud extension: the `PosReference` was already used by this register for a different request; or a refund or completion by reference does not fit its original (`amountRefundable` says what is left); or the device does not declare a capability the request needs (`currency`, `refund.referenced`); nothing was sent to the device", body = ErrorBody),
        (status = 429, description = "`device is busy`: the device already runs a transaction", body = ErrorBody),
        (status = 500, description = "Internal error; retry with the same `PosReference` to be safe", body = ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    fields: Fields,
) -> Result<Response, ApiError> {
    let begun = std::time::Instant::now();
    let (mode, new) = parse(&fields, &headers)?;
    // A SmartConnect completion names its pre-authorisation by TransactionReference: linked to
    // it, the cloud keeps the authorised, captured and released amounts and refuses a capture
    // of more than is held.
    let original = match super::follow_ups::original_of(&fields)? {
        None if new.request.function == protocol::Function::CardFinalise => {
            match &new.request.transaction_reference {
                Some(r) => state
                    .engine
                    .authorisation_for(&new.register, r)
                    .await?
                    .map(crate::engine::payments::OriginalRef::Id),
                None => None,
            }
        }
        other => other,
    };
    let started = match original {
        Some(original) => {
            super::follow_ups::start_from_transaction(&state, &fields, new, original).await?
        }
        None => state.engine.start_transaction(new).await?,
    };
    // Still offered when it returns: the offer went to the bus (a failed hand-over completes
    // it with FAILED-INTERFACE instead).
    if !started.replayed
        && matches!(
            started.record.phase,
            crate::domain::lifecycle::Phase::Offered { .. }
        )
    {
        state.engine.metrics().offer_handed_over(begun);
    }
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
        if matches!(record.phase, crate::domain::lifecycle::Phase::Completed(_))
            || timeout.is_zero()
        {
            return Ok(record);
        }
        let waited = tokio::select! {
            r = self.engine.wait_completed(&record.id, timeout) => r?,
            _ = self.shutdown.cancelled() => None,
        };
        Ok(waited.unwrap_or(record))
    }

    /// Like [`Self::wait_completed`], with a waiter registered before `record` was read.
    pub async fn wait_completed_with(
        &self,
        waiter: crate::engine::completions::Waiter,
        record: TransactionRecord,
        timeout: std::time::Duration,
    ) -> Result<TransactionRecord, ApiError> {
        if timeout.is_zero() {
            return Ok(record);
        }
        let done = tokio::select! {
            r = self.engine.wait_with(waiter, &record, timeout) => r?,
            _ = self.shutdown.cancelled() => None,
        };
        Ok(done.unwrap_or(record))
    }
    /// The envelope of a record as of now.
    pub fn envelope(&self, record: &TransactionRecord) -> TransactionEnvelope {
        envelope::build(
            record,
            &self.settings.public_url,
            self.engine.now(),
            self.engine.settings().delayed_after,
        )
    }
}
