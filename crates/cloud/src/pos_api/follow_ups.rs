//! eftcloud extensions: the rest of a payment's life by reference. `POST
//! /pos/transaction/{id}/refund`, `/void`, `/adjust`, `/increment`, `/capture` and `/release`
//! start a follow-up of the payment `{id}`; `GET /pos/transaction/{id}/payment` shows what it
//! comes to with its follow-ups. SmartConnect's `Card.Refund` and `Card.Finalise` take an
//! original too (`OriginalTransactionId` or `OriginalPosReference`).
//!
//! A follow-up runs on the device of the register the request names (any register of the
//! original's merchant), or on the original's register when it names none (then the original's
//! polling token is the credential). It is a transaction of its own: the answer is its
//! envelope, polled like any other.

use super::access::{authorize, register_of, register_of_merchant, visible, AccessError};
use super::error::ApiError;
use super::fields::{FieldError, Fields};
use super::polling::wait_param;
use super::transaction::{callback_url, pos_reference};
use super::ApiState;
use crate::domain::accounts::Scope;
use crate::domain::payments::Summary;
use crate::engine::payments::{FollowUpKind, NewFollowUp, OriginalRef};
use crate::engine::transactions::{NewTransaction, Started};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::{Cents, Currency, Function, TransactionId};
use serde::Serialize;

/// The original named by `OriginalTransactionId` or `OriginalPosReference` (SmartConnect's
/// `Card.Refund` and `Card.Finalise`), if either is given.
pub fn original_of(fields: &Fields) -> Result<Option<OriginalRef>, FieldError> {
    let get = |k| fields.get(k).map(str::trim).filter(|v| !v.is_empty());
    match (get("OriginalTransactionId"), get("OriginalPosReference")) {
        (Some(_), Some(_)) => Err(FieldError::invalid(
            "Give OriginalTransactionId or OriginalPosReference, not both",
        )),
        (Some(id), None) => id
            .parse::<TransactionId>()
            .map(|id| Some(OriginalRef::Id(id)))
            .map_err(|_| {
                FieldError::invalid("Invalid OriginalTransactionId: expected a transactionId")
            }),
        (None, Some(r)) if r.chars().count() > 128 => Err(FieldError::invalid(
            "Invalid OriginalPosReference: at most 128 characters",
        )),
        (None, Some(r)) => Ok(Some(OriginalRef::PosReference(r.to_string()))),
        (None, None) => Ok(None),
    }
}

/// `POST /POS/Transaction` with an original: a SmartConnect `Card.Refund` or `Card.Finalise`
/// by reference. Its fields were parsed as for any transaction.
pub async fn start_from_transaction(
    state: &ApiState,
    fields: &Fields,
    new: NewTransaction,
    original: OriginalRef,
) -> Result<Started, ApiError> {
    let kind = match new.request.function {
        Function::CardRefund => {
            fields.credential().require(Scope::PosRefund)?;
            new.request.amount_total.map(FollowUpKind::Refund)
        }
        Function::CardFinalise => new.request.amount_final.map(FollowUpKind::Capture),
        _ => None,
    }
    .ok_or_else(|| {
        FieldError::invalid(
            "OriginalTransactionId and OriginalPosReference apply to Card.Refund and Card.Finalise only",
        )
    })?;
    let principal = &fields.credential().principal;
    let record = state
        .engine
        .find_original(principal, Some(&new.register), &original)
        .await?;
    visible(&record, fields.credential())?;
    let follow_up = NewFollowUp {
        kind,
        original,
        register: Some(new.register),
        currency: new.request.currency,
        callback_url: new.callback_url,
        pos_reference: new.pos_reference,
    };
    Ok(state
        .engine
        .start_follow_up(principal, &record, follow_up)
        .await?)
}

/// What one follow-up route asks for, from its fields.
fn kind_of(function: Function, fields: &Fields) -> Result<FollowUpKind, FieldError> {
    let amount = |name: &'static str| -> Result<Cents, FieldError> {
        let raw = fields
            .get(name)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| FieldError::invalid(format!("Missing required field: {name}")))?;
        Cents::parse(raw).map_err(|e| FieldError::invalid(format!("Invalid {name}: {e}")))
    };
    Ok(match function {
        Function::CardRefund => FollowUpKind::Refund(amount("AmountTotal")?),
        Function::CardTopUp => FollowUpKind::TopUp(amount("AmountTotal")?),
        Function::CardFinalise => FollowUpKind::Capture(amount("AmountFinal")?),
        Function::CardTipAdjust => {
            let raw = fields
                .get("AmountTip")
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| FieldError::invalid("Missing required field: AmountTip"))?;
            let bad = || {
                FieldError::invalid(format!(
                    "Invalid AmountTip: a whole number of minor units from 0 to {}",
                    Cents::MAX
                ))
            };
            let tip: u64 = raw
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| raw.parse().ok())
                .flatten()
                .ok_or_else(bad)?;
            if tip > Cents::MAX {
                return Err(bad());
            }
            FollowUpKind::TipAdjust(tip)
        }
        Function::CardVoid => FollowUpKind::Void,
        Function::CardRelease => FollowUpKind::Release,
        // The routes name only the functions above.
        other => {
            return Err(FieldError::invalid(format!(
                "{other} is not a follow-up of a payment"
            )))
        }
    })
}

/// Starts the follow-up `function` of the payment in the path and answers with its envelope.
async fn follow_up(
    state: ApiState,
    id: String,
    headers: HeaderMap,
    fields: Fields,
    function: Function,
) -> Result<Response, ApiError> {
    let kind = kind_of(function, &fields)?;
    let currency = fields
        .get("Currency")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(Currency::parse)
        .transpose()
        .map_err(FieldError::invalid)?;
    let register = register_of(&fields);
    let wait = wait_param(fields.get("wait"))?;
    let new = NewFollowUp {
        kind,
        original: OriginalRef::Id(id.parse().map_err(|_| AccessError::NotFound)?),
        register: register.clone(),
        currency,
        callback_url: callback_url(&fields)?,
        pos_reference: pos_reference(&fields, &headers)?,
    };
    let principal = &fields.credential().principal;
    let original = state
        .engine
        .find_original(principal, register.as_ref(), &new.original)
        .await?;
    visible(&original, fields.credential())?;
    // Without a register the original's polling token is the credential (it runs on the
    // original's register); with one, the engine checks the register's device is of the
    // original's merchant.
    if register.is_none() {
        authorize(&original, &fields, state.engine.now())?;
    }
    let started = state
        .engine
        .start_follow_up(principal, &original, new)
        .await?;
    let record = match wait {
        Some(wait) => state.wait_completed(started.record, wait).await?,
        None => started.record,
    };
    let mut response = Json(state.envelope(&record)).into_response();
    if started.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Documentation only: the fields of a follow-up, as `/openapi.json` lists them.
#[derive(utoipa::ToSchema)]
#[schema(
    description = "A follow-up's fields (form body, JSON body or query string; the body wins). Name the register whose device runs it (any register of the original's merchant), or give the original's polling token to run it on the original's register."
)]
pub struct FollowUpForm {
    #[schema(rename = "POSRegisterID", required = false)]
    pub register_id: String,
    #[schema(rename = "POSBusinessName", required = false)]
    pub business_name: String,
    #[schema(rename = "POSVendorName", required = false)]
    pub vendor_name: String,
    /// The original's polling token, when no register is named.
    #[schema(rename = "merchantAccessToken", required = false)]
    pub merchant_access_token: String,
    /// `/refund` and `/increment`: the amount in minor units of the original's currency.
    #[schema(
        rename = "AmountTotal",
        required = false,
        pattern = "^[0-9]+$",
        example = "500"
    )]
    pub amount_total: String,
    /// `/adjust`: the new tip in minor units (0 removes it), at most the merchant's maximum
    /// percentage of the amount asked for.
    #[schema(
        rename = "AmountTip",
        required = false,
        pattern = "^[0-9]+$",
        example = "150"
    )]
    pub amount_tip: String,
    /// `/capture`: the amount to capture, at most what is authorised.
    #[schema(rename = "AmountFinal", required = false, pattern = "^[0-9]+$")]
    pub amount_final: String,
    /// Optional; must be the original's.
    #[schema(rename = "Currency", required = false, example = "AUD")]
    pub currency: String,
    /// The POS's reference for the follow-up: a retry returns the same follow-up.
    #[schema(rename = "PosReference", required = false, max_length = 128)]
    pub pos_reference: String,
    #[schema(
        rename = "PosNotificationCallbackUrl",
        required = false,
        format = "uri"
    )]
    pub callback_url: String,
    /// Hold the answer up to this many seconds (at most 60) until the follow-up completes.
    #[schema(rename = "wait", required = false, minimum = 0, maximum = 60)]
    pub wait: f64,
}

macro_rules! follow_up_route {
    ($name:ident, $path:literal, $function:expr, $summary:literal, $doc:literal) => {
        #[doc = $summary]
        #[doc = ""]
        #[doc = $doc]
        #[utoipa::path(
            post,
            path = $path,
            tag = "eftcloud extensions",
            params(
                ("id" = String, Path, min_length = 1, description = "The original's `transactionId`"),
                ("Idempotency-Key" = Option<String>, Header, nullable = false, description = "Same as `PosReference`"),
            ),
            request_body(content(
                (FollowUpForm = "application/x-www-form-urlencoded"),
                (FollowUpForm = "application/json"),
            )),
            responses(
                (status = 200, description = "The follow-up's own envelope (`PENDING`, or as it stands when `wait` ends); `data.OriginalTransactionId` names the original", body = protocol::pos_api::TransactionEnvelope),
                (status = 400, description = "A missing or invalid field (the message names it), the register is not paired, or a field given twice in the body or twice in the query string (`Field <name> given more than once`)", body = protocol::pos_api::ErrorBody),
                (status = 413, description = "Request body over the server's limit (`--max-body-bytes`, 64 KiB by default), refused before it is read: `Request body too large: at most <n> bytes`", body = protocol::pos_api::ErrorBody),
                (status = 401, description = "`Invalid token` or `Token expired` (no register named)", body = protocol::pos_api::ErrorBody),
                (status = 403, description = "The key lacks the scope (`pos:refund` for refunds and voids)", body = protocol::pos_api::ErrorBody),
                (status = 404, description = "`Transaction not found`: no such payment for this register's merchant or this key", body = protocol::pos_api::ErrorBody),
                (status = 409, description = "The follow-up does not fit the payment (more than is refundable, with `amountRefundable`; voided; settled; tip over the merchant's maximum; pre-authorisation closed; ...) or the device cannot run it (it did not declare the capability); nothing was sent to the device", body = protocol::pos_api::ErrorBody),
                (status = 429, description = "`device is busy`", body = protocol::pos_api::ErrorBody),
            ),
        )]
        pub async fn $name(
            State(state): State<ApiState>,
            Path(id): Path<String>,
            headers: HeaderMap,
            fields: Fields,
        ) -> Result<Response, ApiError> {
            follow_up(state, id, headers, fields, $function).await
        }
    };
}

follow_up_route!(
    refund,
    "/pos/transaction/{id}/refund",
    Function::CardRefund,
    "Refund a payment",
    "Refunds all or part (`AmountTotal`) of an approved purchase, on any device of its merchant. Refused with 409 and `amountRefundable` when approved and in-flight refunds would pass what the payment came to. Needs `pos:refund`."
);
follow_up_route!(
    void,
    "/pos/transaction/{id}/void",
    Function::CardVoid,
    "Void a payment",
    "Reverses an approved payment before its device settles; once. Needs `pos:refund`."
);
follow_up_route!(
    adjust,
    "/pos/transaction/{id}/adjust",
    Function::CardTipAdjust,
    "Adjust the tip",
    "Sets the tip (`AmountTip`) of an approved purchase before settlement, at most the merchant's maximum percentage of the amount asked for."
);
follow_up_route!(
    increment,
    "/pos/transaction/{id}/increment",
    Function::CardTopUp,
    "Top up a pre-authorisation",
    "Raises an approved `Card.Authorise` by `AmountTotal`; any number of times until it is captured or released."
);
follow_up_route!(
    capture,
    "/pos/transaction/{id}/capture",
    Function::CardFinalise,
    "Capture a pre-authorisation",
    "Completes an approved `Card.Authorise` (a `Card.Finalise`) for `AmountFinal`, at most the authorised total (the authorisation and its approved top-ups)."
);
follow_up_route!(
    release,
    "/pos/transaction/{id}/release",
    Function::CardRelease,
    "Release a pre-authorisation",
    "Releases an approved `Card.Authorise` that was not captured."
);

/// A transaction as a payment lists its follow-ups and an order its tenders.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FollowUpView {
    pub transaction_id: String,
    /// The device that ran it.
    pub device_id: String,
    pub function: String,
    /// The amount asked for, in minor units (the refund, the top-up, the new tip, the capture).
    pub amount: String,
    /// `in_flight`, `approved` or `not_approved`.
    #[schema(value_type = String)]
    pub state: crate::domain::payments::FollowUpState,
    /// The transaction's `Result`, once completed.
    pub result: Option<String>,
}

impl FollowUpView {
    pub fn of(t: &crate::domain::TransactionRecord) -> Self {
        let f = crate::domain::payments::FollowUp::of(t);
        FollowUpView {
            transaction_id: t.id.to_string(),
            device_id: t.device_id.to_string(),
            function: t.request.function.to_string(),
            amount: f.amount.to_string(),
            state: f.state,
            result: match &t.phase {
                crate::domain::lifecycle::Phase::Completed(c) => Some(c.result.to_string()),
                _ => None,
            },
        }
    }
}

/// A payment with its follow-ups.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    pub transaction_id: String,
    pub function: String,
    pub currency: String,
    pub approved: bool,
    /// What it comes to now (tip adjustments included), in minor units.
    pub amount_total: String,
    pub amount_tip: String,
    pub amount_refunded: String,
    /// Held by refunds still running.
    pub amount_refunding: String,
    pub amount_refundable: String,
    pub voided: bool,
    pub settled: bool,
    /// Pre-authorisations: held, captured and released amounts.
    pub amount_authorised: String,
    pub amount_captured: String,
    pub amount_released: String,
    /// Oldest first.
    pub follow_ups: Vec<FollowUpView>,
}

/// The view of a stored payment.
pub fn view(p: &crate::domain::payments::PaymentRecord) -> PaymentView {
    let s: Summary = p.summary();
    PaymentView {
        transaction_id: p.original.id.to_string(),
        function: s.function.to_string(),
        currency: s.currency.to_string(),
        approved: s.approved,
        amount_total: s.amount.to_string(),
        amount_tip: s.tip.to_string(),
        amount_refunded: s.refunded.to_string(),
        amount_refunding: s.refunding.to_string(),
        amount_refundable: s.refundable.to_string(),
        voided: s.voided,
        settled: s.settled,
        amount_authorised: s.authorised.to_string(),
        amount_captured: s.captured.to_string(),
        amount_released: s.released.to_string(),
        follow_ups: p.follow_ups.iter().map(FollowUpView::of).collect(),
    }
}

/// A payment and its follow-ups
///
/// eftcloud extension. What an approved payment comes to after its refunds, void and tip
/// adjustments (or, for a pre-authorisation, its top-ups, capture and release), and each
/// follow-up with its state. Access as for polling: the polling token, or the register triple
/// of any register of its merchant.
#[utoipa::path(
    get,
    path = "/pos/transaction/{id}/payment",
    tag = "eftcloud extensions",
    params(
        ("id" = String, Path, min_length = 1, description = "The payment's `transactionId`"),
        ("merchantAccessToken" = Option<String>, Query, description = "The polling token"),
        ("POSRegisterID" = Option<String>, Query),
        ("POSBusinessName" = Option<String>, Query),
        ("POSVendorName" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "The payment", body = PaymentView),
        (status = 401, description = "`Invalid token` or `Token expired`", body = protocol::pos_api::ErrorBody),
        (status = 404, description = "`Transaction not found`", body = protocol::pos_api::ErrorBody),
    ),
)]
pub async fn payment(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Json<PaymentView>, ApiError> {
    let id: TransactionId = id.parse().map_err(|_| AccessError::NotFound)?;
    let principal = &fields.credential().principal;
    let p = state
        .engine
        .payment_as(principal, &id)
        .await?
        .ok_or(AccessError::NotFound)?;
    visible(&p.original, fields.credential())?;
    // Any register of the payment's merchant, else the payment's own token.
    match register_of_merchant(&state, &fields, &p.original.merchant_id).await? {
        Some(true) => {}
        Some(false) => return Err(AccessError::NotFound.into()),
        None => authorize(&p.original, &fields, state.engine.now())?,
    }
    Ok(Json(view(&p)))
}
