//! Orders paid by split tenders: creating one, reading it, cancelling it (and, on request,
//! reversing its approved tenders: a void before its device settles, else a refund).
//! Tenders are ordinary transactions with `order_id`, started by `start_transaction`; the store
//! checks each against its order in the commit that inserts it.

use super::payments::{FollowUpKind, NewFollowUp, OriginalRef};
use super::transactions::{StartError, Started};
use super::{Engine, EngineError};
use crate::domain::accounts::{MerchantId, Principal};
use crate::domain::orders::{OrderId, OrderRecord, OrderSheet};
use crate::store::InsertError;
use protocol::{Cents, Currency, RegisterKey, TransactionId};

/// An order as the POS API hands it to the engine.
#[derive(Debug, Clone)]
pub struct NewOrder {
    /// A register of the merchant (whose merchant the order is).
    pub register: RegisterKey,
    pub amount_total: Cents,
    /// The merchant's default when absent.
    pub currency: Option<Currency>,
    /// The POS's reference: the same reference returns the same order.
    pub pos_reference: Option<String>,
    /// For a merchant's key: the merchant it is confined to.
    pub merchant: Option<MerchantId>,
}

/// Why an order could not be made.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("{}", protocol::pos_api::NOT_PAIRED)]
    NotPaired,
    #[error("PosReference '{0}' was already used by this merchant for a different order")]
    ReferenceConflict(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for OrderError {
    fn from(e: crate::store::StoreError) -> Self {
        OrderError::Engine(e.into())
    }
}

/// What became of one approved tender when its order was cancelled with reversal.
#[derive(Debug)]
pub struct Reversal {
    pub tender: TransactionId,
    /// The void or refund started (or found, on a repeated cancel), or why it was not.
    pub outcome: Result<Started, StartError>,
}

impl Engine {
    /// Creates an order for the merchant of `new.register`'s device (or returns the one the
    /// merchant made with the same reference: `true` then).
    pub async fn create_order(&self, new: NewOrder) -> Result<(OrderSheet, bool), OrderError> {
        let store = self.store();
        let route = store
            .route(&new.register)
            .await?
            .filter(|r| {
                new.merchant
                    .as_ref()
                    .is_none_or(|m| *m == r.device.merchant_id)
            })
            .ok_or(OrderError::NotPaired)?;
        let merchant = route.device.merchant_id;
        let currency = new.currency.unwrap_or(route.currency);
        let order = OrderRecord {
            id: OrderId::new(),
            merchant_id: merchant.clone(),
            amount_total: new.amount_total.get(),
            currency,
            pos_reference: new.pos_reference.clone(),
            cancelled: false,
            created_at: self.now(),
        };
        let replay = |existing: OrderRecord| async move {
            if existing.amount_total != order.amount_total || existing.currency != currency {
                return Err(OrderError::ReferenceConflict(
                    existing.pos_reference.unwrap_or_default(),
                ));
            }
            let sheet = self.store().order(&existing.id).await?;
            sheet.map(|s| (s, true)).ok_or(OrderError::NotPaired)
        };
        if let Some(reference) = &new.pos_reference {
            if let Some(existing) = store.order_by_reference(&merchant, reference).await? {
                return replay(existing).await;
            }
        }
        match store.insert_order(&order).await {
            Ok(()) => Ok((
                OrderSheet {
                    order: order.clone(),
                    tenders: Vec::new(),
                },
                false,
            )),
            // Two requests with one reference raced: the one stored first is the order.
            Err(InsertError::DuplicateReference) => {
                let reference = new.pos_reference.unwrap_or_default();
                match store.order_by_reference(&merchant, &reference).await? {
                    Some(existing) => replay(existing).await,
                    None => Err(OrderError::ReferenceConflict(reference)),
                }
            }
            Err(InsertError::Store(e)) => Err(e.into()),
            // A fresh UUID cannot clash, and an order is checked against nothing else.
            Err(e) => Err(crate::store::StoreError::Corrupt(format!("order insert: {e}")).into()),
        }
    }

    /// An order with its tenders, if `principal` sees it.
    pub async fn order_as(
        &self,
        principal: &Principal,
        id: &OrderId,
    ) -> Result<Option<OrderSheet>, EngineError> {
        Ok(self
            .store()
            .order(id)
            .await?
            .filter(|s| principal.sees(&s.order.merchant_id, None)))
    }

    /// Cancels an order: it takes no more tenders. With `reverse`, each approved tender is
    /// voided (before its device settles) or refunded (after), on its own register, under a
    /// POS reference derived from the order and the tender, so a repeated cancel finds the
    /// reversals it started instead of starting them twice.
    pub async fn cancel_order(
        &self,
        principal: &Principal,
        id: &OrderId,
        reverse: bool,
    ) -> Result<(OrderSheet, Vec<Reversal>), EngineError> {
        self.store().cancel_order(id, self.now()).await?;
        let sheet = self
            .store()
            .order(id)
            .await?
            .ok_or_else(|| crate::store::StoreError::Corrupt(format!("order {id} vanished")))?;
        let mut reversals = Vec::new();
        if !reverse {
            return Ok((sheet, reversals));
        }
        for tender in &sheet.tenders {
            if !super::payments::approved(tender) {
                continue;
            }
            let outcome = self.reverse_tender(principal, id, tender).await;
            reversals.push(Reversal {
                tender: tender.id,
                outcome,
            });
        }
        Ok((sheet, reversals))
    }

    async fn reverse_tender(
        &self,
        principal: &Principal,
        order: &OrderId,
        tender: &crate::domain::TransactionRecord,
    ) -> Result<Started, StartError> {
        let payment = self
            .store()
            .payment(&tender.id)
            .await?
            .ok_or(StartError::UnknownOriginal)?;
        // A reversal started by an earlier cancel comes back by its reference: a repeated void
        // is the same request under the same reference (replayed by `start_transaction`).
        let reference = |what: &str| format!("order-{order}-{what}-{}", tender.id);
        let (kind, what) = if payment.settled {
            let summary = payment.summary();
            match Cents::new(summary.refundable) {
                Ok(amount) => (FollowUpKind::Refund(amount), "refund"),
                // Nothing left to refund: the refund an earlier cancel made, if it made one.
                Err(_) => {
                    return self.earlier_reversal(&payment, &reference("refund")).ok_or(
                        StartError::Refused(crate::domain::payments::Refusal::ExceedsRefundable {
                            asked: 0,
                            refundable: 0,
                            refunded: summary.refunded,
                            refunding: summary.refunding,
                            currency: summary.currency,
                        }),
                    )
                }
            }
        } else {
            (FollowUpKind::Void, "void")
        };
        let new = NewFollowUp {
            kind,
            original: OriginalRef::Id(tender.id),
            register: None,
            currency: None,
            callback_url: None,
            pos_reference: Some(reference(what)),
        };
        self.start_follow_up(principal, tender, new).await
    }

    /// The follow-up of `payment` with this POS reference, if there is one.
    fn earlier_reversal(
        &self,
        payment: &crate::domain::payments::PaymentRecord,
        reference: &str,
    ) -> Option<Started> {
        payment
            .follow_ups
            .iter()
            .find(|f| f.pos_reference.as_deref() == Some(reference))
            .map(|f| Started {
                record: f.clone(),
                replayed: true,
            })
    }
}
