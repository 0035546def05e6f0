//! Receipts by email or SMS as the engine sees them: a POS's request checked and queued with
//! its timeline events in one commit, the deliveries of a transaction, and the outbox that the
//! delivery worker (`crate::receipts`) claims from with a lease and records each attempt in.

use super::queries::sees;
use super::{Engine, EngineError};
use crate::domain::accounts::Principal;
use crate::domain::receipts::{
    receipt_of, Address, AttemptOutcome, Channels, DeliveryId, Queued, ReceiptCopy,
    ReceiptDelivery, ReceiptRefusal,
};
use crate::domain::timeline::{EventKind, TimelineEvent};
use crate::domain::TransactionRecord;
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use protocol::TransactionId;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// What the engine keeps for the receipt outbox: the channels this node sends through, and
/// the worker's wake-up.
#[derive(Default)]
pub(super) struct ReceiptOutbox {
    queued: Notify,
    email: AtomicBool,
    sms: AtomicBool,
}

/// A POS's request: send the receipt to these addresses (one per channel at most).
#[derive(Debug, Clone)]
pub struct ReceiptRequest {
    pub addresses: Vec<Address>,
    pub copy: ReceiptCopy,
}

/// Why a receipt was not queued.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// The principal does not see the transaction.
    #[error("Transaction not found")]
    NotFound,
    #[error(transparent)]
    Refused(#[from] ReceiptRefusal),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<StoreError> for ReceiptError {
    fn from(e: StoreError) -> Self {
        ReceiptError::Engine(e.into())
    }
}

impl Engine {
    /// Says which channels this node's delivery worker sends through (once, at start): a
    /// request for another is refused rather than queued for nobody.
    pub fn offer_receipt_channels(&self, channels: Channels) {
        let outbox = &self.inner.receipts;
        outbox.email.store(channels.email, Ordering::Relaxed);
        outbox.sms.store(channels.sms, Ordering::Relaxed);
    }

    /// The channels this node sends receipts through.
    pub fn receipt_channels(&self) -> Channels {
        let outbox = &self.inner.receipts;
        Channels {
            email: outbox.email.load(Ordering::Relaxed),
            sms: outbox.sms.load(Ordering::Relaxed),
        }
    }

    /// Queues `tx`'s receipt to each address, with a `receipt_queued` event for each new
    /// delivery, in one commit. A delivery of the same transaction, address and copy that is
    /// pending or sent already is returned as it stands instead (`replayed`), so a retried
    /// request sends no second email.
    pub async fn queue_receipts(
        &self,
        principal: &Principal,
        tx: &TransactionRecord,
        request: &ReceiptRequest,
    ) -> Result<Vec<Queued>, ReceiptError> {
        if !sees(principal, tx) {
            return Err(ReceiptError::NotFound);
        }
        let channels = self.receipt_channels();
        for a in &request.addresses {
            if !channels.has(a.channel()) {
                return Err(ReceiptRefusal::NotConfigured(a.channel()).into());
            }
        }
        receipt_of(tx, request.copy)?;
        let now = self.now();
        let deliveries: Vec<(ReceiptDelivery, TimelineEvent)> = request
            .addresses
            .iter()
            .map(|a| {
                let d = ReceiptDelivery::new(tx.id, a.clone(), request.copy, now);
                let event = TimelineEvent::new(now, EventKind::ReceiptQueued, d.describe());
                (d, event)
            })
            .collect();
        let queued = self.store().queue_receipts(&deliveries).await?;
        if queued.iter().any(|q| !q.replayed) {
            self.inner.receipts.queued.notify_one();
        }
        Ok(queued)
    }

    /// A transaction's receipt deliveries, oldest first.
    pub async fn receipt_deliveries(
        &self,
        id: &TransactionId,
    ) -> Result<Vec<ReceiptDelivery>, EngineError> {
        Ok(self.store().receipt_deliveries(id).await?)
    }

    /// Claims up to `limit` deliveries on this node's channels due at `now` until
    /// `lease_until`.
    pub async fn claim_receipts(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<ReceiptDelivery>, EngineError> {
        let channels = self.receipt_channels();
        Ok(self
            .store()
            .claim_receipts(now, limit, lease_until, channels)
            .await?)
    }

    /// When the next delivery on this node's channels is due, if any.
    pub async fn next_receipt_at(&self) -> Result<Option<DateTime<Utc>>, EngineError> {
        let channels = self.receipt_channels();
        Ok(self.store().next_receipt_at(channels).await?)
    }

    /// Records one attempt with its timeline event; false if the delivery was no longer
    /// pending.
    pub async fn record_receipt_attempt(
        &self,
        id: &DeliveryId,
        outcome: &AttemptOutcome,
        event: &TimelineEvent,
    ) -> Result<bool, EngineError> {
        Ok(self
            .store()
            .record_receipt_attempt(id, outcome, event)
            .await?)
    }

    /// Resolves when a request on this node queued a delivery.
    pub async fn receipt_queued(&self) {
        self.inner.receipts.queued.notified().await;
    }
}
