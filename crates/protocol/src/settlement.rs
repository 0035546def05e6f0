//! A terminal's settlement batch: what an `Acquirer.Settlement.Cutover` (or `.Inquiry`) closed
//! or counted, in structured form, so the cloud can reconcile it against its own records
//! (`docs/device-protocol.md` §4.9). Optional in a result: a device that sends none keeps
//! working, and its settlements are listed as unreported.

use crate::function::Function;
use crate::ids::TransactionId;
use serde::{Deserialize, Serialize};

/// The card type of a transaction whose result names none.
pub const UNKNOWN_CARD_TYPE: &str = "UNKNOWN";

/// How a settled transaction counts in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchKind {
    /// Money taken from a card (a purchase, cash out, a completion, a QR payment).
    Purchase,
    /// Money given back.
    Refund,
}

/// Whether an approved transaction of `function` enters a batch, and how: the cloud and the
/// reference terminal agree on it through this one function. A pre-authorisation only holds
/// funds (its completion settles); a void and a tip adjustment change their original instead
/// of counting themselves.
pub fn settles(function: Function) -> Option<BatchKind> {
    match function {
        Function::CardPurchase
        | Function::CardPurchasePlusCash
        | Function::CardCashAdvance
        | Function::CardFinalise
        | Function::QrMerchantPurchase
        | Function::QrConsumerPurchase => Some(BatchKind::Purchase),
        Function::CardRefund | Function::QrRefund => Some(BatchKind::Refund),
        _ => None,
    }
}

/// A batch as the terminal reports it in a settlement's result (`settlement`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementBatch {
    /// When the period began, device-local `yyyyMMddHHmmss` (the previous cutover, or the
    /// terminal's oldest journaled transaction); absent when the terminal does not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_start: Option<String>,
    /// When it ended (this settlement), device-local `yyyyMMddHHmmss`.
    pub period_end: String,
    /// Totals by card type, as the terminal (and its acquirer) counted them.
    #[serde(default)]
    pub totals: Vec<CardTotals>,
    /// Every transaction of the batch, with what it settled for; absent when the terminal
    /// cannot list them (the cloud then compares the totals only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions: Option<Vec<BatchTransaction>>,
}

/// One card type's totals in a batch, in minor units.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardTotals {
    /// `VISA`, `MASTERCARD`, `EFTPOS`, a QR wallet, or [`UNKNOWN_CARD_TYPE`].
    pub card_type: String,
    pub purchase_count: u64,
    pub purchase_amount: u64,
    pub refund_count: u64,
    pub refund_amount: u64,
}

impl CardTotals {
    /// Purchases less refunds (negative when more was refunded).
    pub fn net(&self) -> i128 {
        i128::from(self.purchase_amount) - i128::from(self.refund_amount)
    }

    /// Counts one transaction in.
    pub fn add(&mut self, kind: BatchKind, amount: u64) {
        match kind {
            BatchKind::Purchase => {
                self.purchase_count += 1;
                self.purchase_amount = self.purchase_amount.saturating_add(amount);
            }
            BatchKind::Refund => {
                self.refund_count += 1;
                self.refund_amount = self.refund_amount.saturating_add(amount);
            }
        }
    }
}

/// One transaction of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchTransaction {
    /// The cloud's id of the transaction (the offer's `transaction_id`).
    pub transaction_id: TransactionId,
    /// Its function (one that [`settles`]).
    pub function: Function,
    pub card_type: String,
    /// What it settled for, in minor units: with surcharge and tip, after tip adjustments.
    /// A voided transaction is not in the batch.
    pub amount: u64,
}

impl BatchTransaction {
    /// How it counts: a function that does not settle counts as a purchase (the cloud reports
    /// such an entry against its own records anyway).
    pub fn kind(&self) -> BatchKind {
        settles(self.function).unwrap_or(BatchKind::Purchase)
    }
}

/// Totals by card type of `transactions`, sorted by card type.
pub fn totals_of<'a>(
    transactions: impl IntoIterator<Item = (&'a str, BatchKind, u64)>,
) -> Vec<CardTotals> {
    let mut by_type: std::collections::BTreeMap<&str, CardTotals> = Default::default();
    for (card_type, kind, amount) in transactions {
        by_type
            .entry(card_type)
            .or_insert_with(|| CardTotals {
                card_type: card_type.to_string(),
                ..CardTotals::default()
            })
            .add(kind, amount);
    }
    by_type.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_settles_and_how() {
        for f in Function::ALL
            .iter()
            .chain(&Function::FOLLOW_UPS)
            .chain(&Function::ACTIONS)
        {
            let expected = match f {
                Function::CardRefund | Function::QrRefund => Some(BatchKind::Refund),
                Function::CardPurchase
                | Function::CardPurchasePlusCash
                | Function::CardCashAdvance
                | Function::CardFinalise
                | Function::QrMerchantPurchase
                | Function::QrConsumerPurchase => Some(BatchKind::Purchase),
                _ => None,
            };
            assert_eq!(settles(*f), expected, "{f}");
            // Only money movements settle.
            if expected.is_some() {
                assert!(f.is_financial(), "{f}");
            }
        }
    }

    #[test]
    fn totals_are_by_card_type_sorted() {
        let t = totals_of([
            ("VISA", BatchKind::Purchase, 1000),
            ("AMEX", BatchKind::Refund, 300),
            ("VISA", BatchKind::Refund, 200),
            ("VISA", BatchKind::Purchase, 500),
        ]);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].card_type, "AMEX");
        assert_eq!(
            (t[0].refund_count, t[0].refund_amount, t[0].net()),
            (1, 300, -300)
        );
        assert_eq!(
            (
                t[1].purchase_count,
                t[1].purchase_amount,
                t[1].refund_count,
                t[1].net()
            ),
            (2, 1500, 1, 1300)
        );
    }

    #[test]
    fn a_batch_without_its_list_or_start_round_trips_and_old_json_parses() {
        let b = SettlementBatch {
            period_start: None,
            period_end: "20261204120000".into(),
            totals: vec![],
            transactions: None,
        };
        let json = serde_json::to_string(&b).unwrap_or_default();
        assert_eq!(json, r#"{"period_end":"20261204120000","totals":[]}"#);
        let back: SettlementBatch = serde_json::from_str(&json).unwrap_or_else(|_| unreachable!());
        assert_eq!(back, b);
        let full = r#"{"period_start":"20261204090000","period_end":"20261204120000",
            "totals":[{"card_type":"VISA","purchase_count":1,"purchase_amount":1000,"refund_count":0,"refund_amount":0}],
            "transactions":[{"transaction_id":"3f6c2a1e-8b4d-4c1f-9a57-2d0e6b9c1a44","function":"Card.Purchase","card_type":"VISA","amount":1000}]}"#;
        let b: SettlementBatch = serde_json::from_str(full).unwrap_or_else(|_| unreachable!());
        assert_eq!(
            b.transactions.map(|t| t[0].kind()),
            Some(BatchKind::Purchase)
        );
    }
}
