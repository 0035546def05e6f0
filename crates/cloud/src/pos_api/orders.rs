//! eftcloud extensions: orders paid by split tenders. `POST /pos/orders` makes one (a total,
//! a currency, the POS's reference); each tender is a `POST /pos/transaction` with `OrderId`,
//! on any device of the merchant; `GET /pos/orders/{id}` shows what is paid and left;
//! `POST /pos/orders/{id}/cancel` stops it taking tenders and, with `Reverse=true`, voids or
//! refunds the approved ones.

use super::access::{register_of_merchant, require_register};
use super::error::{ApiError, HttpError, ServiceError};
use super::fields::{FieldError, Fields};
use super::follow_ups::FollowUpView;
use super::transaction::pos_reference;
use super::ApiState;
use crate::domain::accounts::{Principal, Scope};
use crate::domain::orders::{OrderId, OrderSheet, OrderState};
use crate::engine::orders::{NewOrder, OrderError, Reversal};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::{Cents, Currency};
use serde::Serialize;

/// The orders family of errors.
#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    /// 404, also for another merchant's order.
    #[error("Order not found")]
    NotFound,
    /// 400, as for transactions.
    #[error("{}", protocol::pos_api::NOT_PAIRED)]
    NotPaired,
    /// 409.
    #[error("{0}")]
    ReferenceConflict(String),
}

impl HttpError for OrdersError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::NotPaired => StatusCode::BAD_REQUEST,
            Self::ReferenceConflict(_) => StatusCode::CONFLICT,
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::NotPaired => Some("not_paired"),
            _ => None,
        }
    }
}

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::NotPaired => OrdersError::NotPaired.into(),
            e @ OrderError::ReferenceConflict(_) => {
                OrdersError::ReferenceConflict(e.to_string()).into()
            }
            OrderError::Engine(e) => ServiceError::engine(e).into(),
        }
    }
}

/// What a cancel with `Reverse=true` did to one approved tender.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReversalView {
    pub tender_transaction_id: String,
    /// The void or refund started (poll it like any transaction), when one was.
    pub transaction_id: Option<String>,
    pub function: Option<String>,
    /// Why none was started (the device is busy, say: cancel again to retry).
    pub error: Option<String>,
}

/// An order with its tenders.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order_id: String,
    pub merchant_id: String,
    pub currency: String,
    /// How many digits follow the point in `currency` (JPY 0, AUD 2, KWD 3).
    pub minor_units: u8,
    /// Minor units, as every amount here.
    pub amount_total: String,
    pub amount_paid: String,
    /// Held by tenders still running.
    pub amount_in_flight: String,
    pub amount_remaining: String,
    /// `open`, `paid` or `cancelled`.
    #[schema(value_type = String)]
    pub state: OrderState,
    pub pos_reference: Option<String>,
    pub created_at: String,
    pub tenders: Vec<FollowUpView>,
    /// Only in the answer of a cancel with `Reverse=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reversals: Option<Vec<ReversalView>>,
}

/// The view of an order; with the reversals a cancel started, when it was asked to.
pub fn view(sheet: &OrderSheet, reversals: Option<&[Reversal]>) -> OrderView {
    let s = sheet.summary();
    let o = &sheet.order;
    OrderView {
        order_id: o.id.to_string(),
        merchant_id: o.merchant_id.to_string(),
        currency: o.currency.to_string(),
        minor_units: o.currency.minor_units(),
        amount_total: o.amount_total.to_string(),
        amount_paid: s.paid.to_string(),
        amount_in_flight: s.in_flight.to_string(),
        amount_remaining: s.remaining.to_string(),
        state: s.state,
        pos_reference: o.pos_reference.clone(),
        created_at: o
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        tenders: sheet.tenders.iter().map(FollowUpView::of).collect(),
        reversals: reversals.map(|rs| {
            rs.iter()
                .map(|r| match &r.outcome {
                    Ok(started) => ReversalView {
                        tender_transaction_id: r.tender.to_string(),
                        transaction_id: Some(started.record.id.to_string()),
                        function: Some(started.record.request.function.to_string()),
                        error: None,
                    },
                    Err(e) => ReversalView {
                        tender_transaction_id: r.tender.to_string(),
                        transaction_id: None,
                        function: None,
                        error: Some(e.to_string()),
                    },
                })
                .collect()
        }),
    }
}

/// Documentation only: the fields of a new order.
#[derive(utoipa::ToSchema)]
#[schema(description = "A new order (form body, JSON body or query string; the body wins).")]
pub struct OrderForm {
    /// A register of the merchant (any of its registers may pay tenders).
    #[schema(rename = "POSRegisterID")]
    pub register_id: String,
    #[schema(rename = "POSBusinessName")]
    pub business_name: String,
    #[schema(rename = "POSVendorName")]
    pub vendor_name: String,
    /// The total to pay, in minor units of the currency.
    #[schema(rename = "AmountTotal", pattern = "^[0-9]+$", example = "10000")]
    pub amount_total: String,
    /// ISO 4217; the merchant's default when absent.
    #[schema(rename = "Currency", required = false, example = "AUD")]
    pub currency: String,
    /// The POS's reference: the same reference (and total) returns the same order.
    #[schema(rename = "PosReference", required = false, max_length = 128)]
    pub pos_reference: String,
}

/// Documentation only: the fields of an order's cancel.
#[derive(utoipa::ToSchema)]
#[schema(description = "Name a register of the order's merchant (or use a key that sees it).")]
pub struct OrderCancelForm {
    #[schema(rename = "POSRegisterID", required = false)]
    pub register_id: String,
    #[schema(rename = "POSBusinessName", required = false)]
    pub business_name: String,
    #[schema(rename = "POSVendorName", required = false)]
    pub vendor_name: String,
    /// `true`: void or refund the approved tenders too.
    #[schema(rename = "Reverse", required = false)]
    pub reverse: bool,
}

/// Create an order
///
/// eftcloud extension. An order to be paid by one or more tenders: `POST /pos/transaction`
/// with `OrderId` (Card.Purchase or a QR purchase) on any device of the merchant. A tender that
/// would pay more than is left is refused (409 with `amountRemaining`); the order is `paid`
/// when its approved tenders reach the total.
#[utoipa::path(
    post,
    path = "/pos/orders",
    tag = "eftcloud extensions",
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = "Same as `PosReference`")),
    request_body(content((OrderForm = "application/x-www-form-urlencoded"), (OrderForm = "application/json"))),
    responses(
        (status = 200, description = "The order (`Idempotent-Replayed: true` when the reference named an existing one)", body = OrderView),
        (status = 400, description = "A missing or invalid field, the register is not paired, or a field given twice in the body or twice in the query string (`Field <name> given more than once`)", body = protocol::pos_api::ErrorBody),
        (status = 413, description = "Request body over the server's limit (`--max-body-bytes`, 64 KiB by default), refused before it is read: `Request body too large: at most <n> bytes`", body = protocol::pos_api::ErrorBody),
        (status = 409, description = "The reference was used for a different order", body = protocol::pos_api::ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    fields: Fields,
) -> Result<Response, ApiError> {
    let register = require_register(&fields)?;
    fields.credential().check_vendor(&register.vendor_name)?;
    let amount = fields
        .get("AmountTotal")
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| FieldError::invalid("Missing required field: AmountTotal"))
        .and_then(|v| {
            Cents::parse(v).map_err(|e| FieldError::invalid(format!("Invalid AmountTotal: {e}")))
        })?;
    let currency = fields
        .get("Currency")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(Currency::parse)
        .transpose()
        .map_err(FieldError::invalid)?;
    let (sheet, replayed) = state
        .engine
        .create_order(NewOrder {
            register,
            amount_total: amount,
            currency,
            pos_reference: pos_reference(&fields, &headers)?,
            merchant: fields.credential().merchant().cloned(),
        })
        .await?;
    let mut response = Json(view(&sheet, None)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The order in the path, if this request may see it: a key of its merchant (or one that sees
/// every merchant), or a register triple of a register of its merchant.
async fn authorized_order(
    state: &ApiState,
    id: &str,
    fields: &Fields,
) -> Result<OrderSheet, ApiError> {
    let id = OrderId::parse(id).map_err(|_| OrdersError::NotFound)?;
    let principal = &fields.credential().principal;
    let sheet = state
        .engine
        .order_as(principal, &id)
        .await?
        .ok_or(OrdersError::NotFound)?;
    match register_of_merchant(state, fields, &sheet.order.merchant_id).await? {
        Some(true) => {}
        Some(false) => return Err(OrdersError::NotFound.into()),
        // Without a key, the register is the only credential.
        None if matches!(principal, Principal::Keyless) => return Err(OrdersError::NotFound.into()),
        None => {}
    }
    Ok(sheet)
}

/// An order
///
/// eftcloud extension: an order with its tenders and what is paid, in flight and left.
/// Access: a register triple of a register of its merchant, or a key that sees it.
#[utoipa::path(
    get,
    path = "/pos/orders/{id}",
    tag = "eftcloud extensions",
    params(
        ("id" = String, Path, min_length = 1, description = "The `orderId`"),
        ("POSRegisterID" = Option<String>, Query),
        ("POSBusinessName" = Option<String>, Query),
        ("POSVendorName" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 404, description = "`Order not found`", body = protocol::pos_api::ErrorBody),
    ),
)]
pub async fn get_order(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Json<OrderView>, ApiError> {
    let sheet = authorized_order(&state, &id, &fields).await?;
    Ok(Json(view(&sheet, None)))
}

/// Cancel an order
///
/// eftcloud extension. The order takes no more tenders. With `Reverse=true` each approved
/// tender is voided (before its device settles) or refunded (after), on its own register;
/// repeating the cancel starts nothing twice (it reports the reversals it started). Reversing
/// needs `pos:refund`.
#[utoipa::path(
    post,
    path = "/pos/orders/{id}/cancel",
    tag = "eftcloud extensions",
    params(("id" = String, Path, min_length = 1, description = "The `orderId`")),
    request_body(content((OrderCancelForm = "application/x-www-form-urlencoded"), (OrderCancelForm = "application/json"))),
    responses(
        (status = 200, description = "The cancelled order, with `reversals` when asked", body = OrderView),
        (status = 400, description = "A field given twice in the body or twice in the query string (`Field <name> given more than once`), or `Reverse` is not true or false", body = protocol::pos_api::ErrorBody),
        (status = 413, description = "Request body over the server's limit (`--max-body-bytes`, 64 KiB by default), refused before it is read: `Request body too large: at most <n> bytes`", body = protocol::pos_api::ErrorBody),
        (status = 403, description = "`Reverse=true` with a key that lacks `pos:refund`", body = protocol::pos_api::ErrorBody),
        (status = 404, description = "`Order not found`", body = protocol::pos_api::ErrorBody),
    ),
)]
pub async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Json<OrderView>, ApiError> {
    let reverse = match fields.get("Reverse").map(|v| v.trim().to_ascii_lowercase()) {
        None => false,
        Some(v) if v == "true" => true,
        Some(v) if v == "false" || v.is_empty() => false,
        Some(_) => return Err(FieldError::invalid("Invalid Reverse: true or false").into()),
    };
    if reverse {
        fields.credential().require(Scope::PosRefund)?;
    }
    let principal = &fields.credential().principal;
    let sheet = authorized_order(&state, &id, &fields).await?;
    let (sheet, reversals) = state
        .engine
        .cancel_order(principal, &sheet.order.id, reverse)
        .await?;
    Ok(Json(view(&sheet, reverse.then_some(reversals.as_slice()))))
}
