//! eftcloud's money lifecycle by reference: follow-ups of a payment (refund, void, tip
//! adjustment, pre-authorisation top-up, capture, release), a payment's summary, and orders
//! paid by split tenders.

use crate::client::PosClient;
use crate::error::PosError;
use crate::extensions::register_form;
use protocol::pos_api::TransactionEnvelope;
use protocol::{Cents, RegisterKey};
use serde::Deserialize;
use std::time::Duration;

/// A follow-up of an earlier payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    /// Refund this much of a purchase (`/refund`).
    Refund(Cents),
    /// Reverse the payment before settlement (`/void`).
    Void,
    /// Make the tip this much, in minor units (`/adjust`).
    TipAdjust(u64),
    /// Raise a pre-authorisation (`/increment`).
    TopUp(Cents),
    /// Complete a pre-authorisation for this much (`/capture`).
    Capture(Cents),
    /// Release a pre-authorisation (`/release`).
    Release,
}

impl FollowUp {
    /// The route under `/pos/transaction/{id}/`, and the amount field it takes.
    fn route(&self) -> (&'static str, Option<(&'static str, String)>) {
        match *self {
            FollowUp::Refund(a) => ("refund", Some(("AmountTotal", a.to_string()))),
            FollowUp::Void => ("void", None),
            FollowUp::TipAdjust(t) => ("adjust", Some(("AmountTip", t.to_string()))),
            FollowUp::TopUp(a) => ("increment", Some(("AmountTotal", a.to_string()))),
            FollowUp::Capture(a) => ("capture", Some(("AmountFinal", a.to_string()))),
            FollowUp::Release => ("release", None),
        }
    }
}

/// One follow-up as a payment lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFollowUp {
    pub transaction_id: String,
    pub function: String,
    pub amount: String,
    /// `in_flight`, `approved` or `not_approved`.
    pub state: String,
    #[serde(default)]
    pub result: Option<String>,
}

/// `GET /pos/transaction/{id}/payment`: what a payment comes to with its follow-ups. Amounts
/// are minor units of `currency`, as strings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub transaction_id: String,
    pub function: String,
    pub currency: String,
    pub approved: bool,
    pub amount_total: String,
    pub amount_tip: String,
    pub amount_refunded: String,
    pub amount_refunding: String,
    pub amount_refundable: String,
    pub voided: bool,
    pub settled: bool,
    pub amount_authorised: String,
    pub amount_captured: String,
    pub amount_released: String,
    pub follow_ups: Vec<PaymentFollowUp>,
}

/// One tender of an order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tender {
    pub transaction_id: String,
    pub device_id: String,
    pub function: String,
    pub amount: String,
    pub state: String,
    #[serde(default)]
    pub result: Option<String>,
}

/// What cancelling an order with reversal did to one tender.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reversal {
    pub tender_transaction_id: String,
    #[serde(default)]
    pub transaction_id: Option<String>,
    #[serde(default)]
    pub function: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// An order paid by split tenders.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub order_id: String,
    pub merchant_id: String,
    pub currency: String,
    pub amount_total: String,
    pub amount_paid: String,
    pub amount_in_flight: String,
    pub amount_remaining: String,
    /// `open`, `paid` or `cancelled`.
    pub state: String,
    #[serde(default)]
    pub pos_reference: Option<String>,
    pub created_at: String,
    pub tenders: Vec<Tender>,
    #[serde(default)]
    pub reversals: Option<Vec<Reversal>>,
}

impl PosClient {
    /// Starts a follow-up of the payment `original` on `register`'s device (any register of
    /// the payment's merchant). With `pos_reference`, a retry returns the same follow-up; with
    /// `wait`, the answer is held until it completes. The answer is the follow-up's own
    /// envelope, polled like any transaction's.
    pub async fn follow_up(
        &self,
        register: &RegisterKey,
        original: &str,
        follow_up: FollowUp,
        pos_reference: Option<&str>,
        wait: Option<Duration>,
    ) -> Result<TransactionEnvelope, PosError> {
        let (route, amount) = follow_up.route();
        let url = self
            .endpoints()
            .path(&["pos", "transaction", original, route])?;
        self.post_job(
            url,
            register,
            amount.into_iter().collect(),
            pos_reference,
            wait,
        )
        .await
    }

    /// What a payment comes to with its follow-ups.
    pub async fn payment(
        &self,
        register: &RegisterKey,
        transaction_id: &str,
    ) -> Result<Payment, PosError> {
        self.get_as_register(&["pos", "transaction", transaction_id, "payment"], register)
            .await
    }

    /// Creates an order of `register`'s merchant, in `currency` (its default when none).
    pub async fn create_order(
        &self,
        register: &RegisterKey,
        total: Cents,
        currency: Option<&str>,
        pos_reference: Option<&str>,
    ) -> Result<Order, PosError> {
        let url = self.endpoints().path(&["pos", "orders"])?;
        let mut form = register_form(register);
        form.push(("AmountTotal", total.to_string()));
        form.extend(currency.map(|c| ("Currency", c.to_string())));
        form.extend(pos_reference.map(|r| ("PosReference", r.to_string())));
        let resp = self.http().post(url).form(&form).send().await?;
        crate::client::read_json(resp).await
    }

    /// An order with its tenders.
    pub async fn order(&self, register: &RegisterKey, order_id: &str) -> Result<Order, PosError> {
        self.get_as_register(&["pos", "orders", order_id], register)
            .await
    }

    /// Cancels an order; with `reverse`, its approved tenders are voided or refunded.
    pub async fn cancel_order(
        &self,
        register: &RegisterKey,
        order_id: &str,
        reverse: bool,
    ) -> Result<Order, PosError> {
        let url = self
            .endpoints()
            .path(&["pos", "orders", order_id, "cancel"])?;
        let mut form = register_form(register);
        if reverse {
            form.push(("Reverse", "true".to_string()));
        }
        let resp = self.http().post(url).form(&form).send().await?;
        crate::client::read_json(resp).await
    }
}
