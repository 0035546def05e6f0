//! Orders paid by split tenders: an order has a total; each tender is a payment against it
//! (`OrderId`) on any device of the merchant. The order tracks what is paid and in flight,
//! refuses a tender that would pay more than is left, is paid when its approved tenders reach
//! the total, and can be cancelled.
//!
//! No I/O. The store calls [`admit_tender`] in the commit that inserts a tender, with the order
//! locked and its tenders read in that commit, so racing tenders never overpay it.

use super::accounts::MerchantId;
use super::lifecycle::Phase;
use super::records::TransactionRecord;
use chrono::{DateTime, Utc};
use protocol::{Currency, Function, TransactionResult};
use serde::Serialize;
use std::fmt;

/// An order's id: a UUID, as transaction ids are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId(String);

impl OrderId {
    /// A new random id.
    pub fn new() -> Self {
        OrderId(uuid::Uuid::new_v4().to_string())
    }

    /// Parses an id given by a client (a UUID, any case).
    pub fn parse(s: &str) -> Result<Self, InvalidOrderId> {
        uuid::Uuid::parse_str(s.trim())
            .map(|u| OrderId(u.to_string()))
            .map_err(|_| InvalidOrderId)
    }

    /// An id as stored (trusted).
    pub fn from_stored(s: String) -> Self {
        OrderId(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for OrderId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An `OrderId` that is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Invalid OrderId: expected the orderId eftcloud gave the order")]
pub struct InvalidOrderId;

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub id: OrderId,
    pub merchant_id: MerchantId,
    /// In minor units of `currency`.
    pub amount_total: u64,
    pub currency: Currency,
    /// The POS's reference (idempotency key within the merchant).
    pub pos_reference: Option<String>,
    pub cancelled: bool,
    pub created_at: DateTime<Utc>,
}

/// An order with its tenders (oldest first), as the store reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSheet {
    pub order: OrderRecord,
    pub tenders: Vec<TransactionRecord>,
}

impl OrderSheet {
    pub fn summary(&self) -> OrderSummary {
        summarise(&self.order, &self.tenders)
    }
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Takes tenders until paid.
    Open,
    /// Approved tenders reached the total.
    Paid,
    /// Cancelled: takes no more tenders.
    Cancelled,
}

/// An order and its tenders, summed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderSummary {
    pub state: OrderState,
    pub paid: u64,
    /// Held by tenders still running.
    pub in_flight: u64,
    pub remaining: u64,
}

/// Why a tender does not fit its order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderRefusal {
    #[error("order {0} is cancelled")]
    Cancelled(OrderId),
    #[error("order {0} is paid already")]
    Paid(OrderId),
    #[error("tender of {} exceeds what the order has left to pay: {} (paid {}, in progress {})",
        currency.decimal(*asked), currency.decimal(*remaining), currency.decimal(*paid), currency.decimal(*in_flight))]
    Overpayment {
        asked: u64,
        remaining: u64,
        paid: u64,
        in_flight: u64,
        currency: Currency,
    },
    #[error("Currency {asked} differs from the order's {order}")]
    CurrencyMismatch { asked: Currency, order: Currency },
    #[error("{0} cannot be a tender of an order: use Card.Purchase or a QR purchase")]
    NotATender(Function),
}

impl OrderRefusal {
    /// What is left to pay, for a refusal about it (the 409's `amountRemaining`).
    pub fn remaining(&self) -> Option<u64> {
        match self {
            OrderRefusal::Overpayment { remaining, .. } => Some(*remaining),
            OrderRefusal::Paid(_) => Some(0),
            _ => None,
        }
    }
}

/// The functions that may pay an order.
pub fn is_tender(f: Function) -> bool {
    matches!(
        f,
        Function::CardPurchase | Function::QrMerchantPurchase | Function::QrConsumerPurchase
    )
}

/// A tender's amount and whether it counts: approved (paid), in flight (held), or neither.
fn tender(tx: &TransactionRecord) -> (u64, Option<bool>) {
    let amount = tx.request.amount_total.map_or(0, protocol::Cents::get);
    let counts = match &tx.phase {
        Phase::Completed(c) if c.transaction_result == Some(TransactionResult::Accepted) => {
            Some(true)
        }
        Phase::Completed(_) => None,
        Phase::Offered { .. } | Phase::Started { .. } => Some(false),
    };
    (amount, counts)
}

/// Sums an order's tenders.
pub fn summarise(order: &OrderRecord, tenders: &[TransactionRecord]) -> OrderSummary {
    let (mut paid, mut in_flight) = (0u64, 0u64);
    for t in tenders {
        match tender(t) {
            (a, Some(true)) => paid = paid.saturating_add(a),
            (a, Some(false)) => in_flight = in_flight.saturating_add(a),
            (_, None) => {}
        }
    }
    let state = if order.cancelled {
        OrderState::Cancelled
    } else if paid >= order.amount_total {
        OrderState::Paid
    } else {
        OrderState::Open
    };
    OrderSummary {
        state,
        paid,
        in_flight,
        remaining: order
            .amount_total
            .saturating_sub(paid)
            .saturating_sub(in_flight),
    }
}

/// Whether a new tender (`request`) fits the order.
pub fn admit_tender(
    order: &OrderRecord,
    tenders: &[TransactionRecord],
    request: &protocol::TransactionRequest,
) -> Result<(), OrderRefusal> {
    if !is_tender(request.function) {
        return Err(OrderRefusal::NotATender(request.function));
    }
    let s = summarise(order, tenders);
    match s.state {
        OrderState::Cancelled => return Err(OrderRefusal::Cancelled(order.id.clone())),
        OrderState::Paid => return Err(OrderRefusal::Paid(order.id.clone())),
        OrderState::Open => {}
    }
    if request.currency() != order.currency {
        return Err(OrderRefusal::CurrencyMismatch {
            asked: request.currency(),
            order: order.currency,
        });
    }
    let asked = request.amount_total.map_or(0, protocol::Cents::get);
    if asked > s.remaining {
        return Err(OrderRefusal::Overpayment {
            asked,
            remaining: s.remaining,
            paid: s.paid,
            in_flight: s.in_flight,
            currency: order.currency,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lifecycle::{CompletedBy, Completion};
    use proptest::prelude::*;
    use protocol::{
        Cents, RegisterInfo, RegisterKey, ResultCode, TransactionId, TransactionRequest,
    };

    fn order(total: u64) -> OrderRecord {
        OrderRecord {
            id: OrderId::new(),
            merchant_id: MerchantId::default(),
            amount_total: total,
            currency: Currency::AUD,
            pos_reference: None,
            cancelled: false,
            created_at: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
        }
    }

    fn request(amount: u64) -> TransactionRequest {
        let mut r = TransactionRequest::of(Function::CardPurchase);
        r.amount_total = Cents::new(amount).ok();
        r
    }

    fn tender_of(amount: u64, outcome: Option<TransactionResult>) -> TransactionRecord {
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        TransactionRecord {
            id: TransactionId::new(),
            device_id: protocol::DeviceId::parse("d").unwrap_or_else(|_| unreachable!()),
            register: RegisterInfo {
                key: RegisterKey {
                    register_id: "r".into(),
                    business_name: "b".into(),
                    vendor_name: "v".into(),
                },
                register_name: "R".into(),
            },
            merchant_id: MerchantId::default(),
            merchant: String::new(),
            request: request(amount),
            sale_data: None,
            callback_url: None,
            pos_reference: None,
            fingerprint: String::new(),
            token: String::new(),
            token_expires_at: at,
            created_at: at,
            phase: match outcome {
                None => Phase::Started { started_at: at },
                Some(r) => Phase::Completed(Completion {
                    by: CompletedBy::Device,
                    transaction_result: Some(r),
                    result: ResultCode::Ok,
                    result_text: String::new(),
                    fields: Default::default(),
                    completed_at: at,
                    receipts: None,
                    settlement: None,
                }),
            },
            display_text: None,
        }
    }

    #[test]
    fn tenders_pay_an_order_and_never_overpay_it() {
        let o = order(10_000);
        let tenders = [
            tender_of(4_000, Some(TransactionResult::Accepted)),
            tender_of(3_000, None),
            tender_of(9_000, Some(TransactionResult::Declined)),
        ];
        let s = summarise(&o, &tenders);
        assert_eq!(
            (s.state, s.paid, s.in_flight, s.remaining),
            (OrderState::Open, 4_000, 3_000, 3_000)
        );
        assert!(admit_tender(&o, &tenders, &request(3_000)).is_ok());
        let e = admit_tender(&o, &tenders, &request(3_001));
        assert_eq!(
            e.as_ref().err().and_then(OrderRefusal::remaining),
            Some(3_000)
        );
        let paid = [
            tender_of(4_000, Some(TransactionResult::Accepted)),
            tender_of(6_000, Some(TransactionResult::Accepted)),
        ];
        assert_eq!(summarise(&o, &paid).state, OrderState::Paid);
        assert!(matches!(
            admit_tender(&o, &paid, &request(1)),
            Err(OrderRefusal::Paid(_))
        ));
        let cancelled = OrderRecord {
            cancelled: true,
            ..o.clone()
        };
        assert!(matches!(
            admit_tender(&cancelled, &[], &request(1)),
            Err(OrderRefusal::Cancelled(_))
        ));
        let mut refund = request(1);
        refund.function = Function::CardRefund;
        assert!(matches!(
            admit_tender(&o, &[], &refund),
            Err(OrderRefusal::NotATender(_))
        ));
        let mut yen = request(1);
        yen.currency = Currency::parse("JPY").ok();
        assert!(matches!(
            admit_tender(&o, &[], &yen),
            Err(OrderRefusal::CurrencyMismatch { .. })
        ));
    }

    #[test]
    fn order_ids_are_uuids() {
        assert!(OrderId::parse("nope").is_err());
        let id = OrderId::new();
        assert_eq!(OrderId::parse(&id.as_str().to_uppercase()), Ok(id.clone()));
        assert_eq!(id.to_string(), id.as_str());
        let stored = OrderId::from_stored("as-stored".into());
        assert_eq!(
            (stored.as_str(), stored.to_string()),
            ("as-stored", "as-stored".to_string())
        );
        assert_ne!(OrderId::new(), OrderId::default());
    }

    #[test]
    fn a_paid_order_has_nothing_left() {
        let id = OrderId::new();
        assert_eq!(OrderRefusal::Paid(id.clone()).remaining(), Some(0));
        assert_eq!(OrderRefusal::Cancelled(id).remaining(), None);
    }

    proptest! {
        /// However tenders are asked for and end, admitted ones never pay more than the total.
        #[test]
        fn admitted_tenders_never_overpay(
            total in 1u64..5_000,
            asks in proptest::collection::vec((1u64..3_000, 0u8..3), 0..20),
        ) {
            let o = order(total);
            let mut tenders = Vec::new();
            for (amount, end) in asks {
                if admit_tender(&o, &tenders, &request(amount)).is_ok() {
                    let outcome = match end {
                        0 => None,
                        1 => Some(TransactionResult::Accepted),
                        _ => Some(TransactionResult::Declined),
                    };
                    tenders.push(tender_of(amount, outcome));
                }
                let s = summarise(&o, &tenders);
                prop_assert!(s.paid + s.in_flight <= total);
                prop_assert_eq!(s.remaining, total - s.paid - s.in_flight);
            }
        }
    }
}
