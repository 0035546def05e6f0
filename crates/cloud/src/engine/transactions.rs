//! Starting transactions and moving them through their lifecycle.

use super::{Engine, EngineError};
use crate::domain::lifecycle::{self, DeviceBusy, DeviceState, Effect, Event, Phase};
use crate::store::{InsertError, TransactionRecord};
use chrono::Utc;
use protocol::device::{CloudMessage, TransactionOffer};
use protocol::{DeviceId, RegisterKey, TransactionId, TransactionRequest};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A transaction as the POS API hands it to the engine: parsed and validated.
#[derive(Debug, Clone)]
pub struct NewTransaction {
    pub register: RegisterKey,
    pub request: TransactionRequest,
    pub sale_data: Option<String>,
    pub callback_url: Option<String>,
    /// The POS's reference (idempotency key): a retry with it returns the same transaction.
    pub pos_reference: Option<String>,
    /// For a merchant's key: the merchant it is confined to. A register paired to another
    /// merchant's device is not paired for it, and that merchant's transactions do not exist.
    pub merchant: Option<crate::domain::accounts::MerchantId>,
    /// For a follow-up (`request.original`): the original's merchant, whose devices alone may
    /// run it.
    pub original_merchant: Option<crate::domain::accounts::MerchantId>,
}

impl NewTransaction {
    /// A digest of everything the POS asked for, to tell a retry from a different request.
    pub fn fingerprint(&self) -> String {
        // A follow-up's original is named by its id alone: what the cloud adds about it (what
        // it comes to now, its acquirer references) changes as other follow-ups complete, and
        // a retry must still be recognised.
        let mut request = self.request.clone();
        if let Some(o) = request.original.as_mut() {
            o.amount = 0;
            o.fields.clear();
        }
        let canonical = serde_json::json!({
            "register": &self.register,
            "request": &request,
            "sale_data": &self.sale_data,
            "callback_url": &self.callback_url,
        });
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// What `start_transaction` did.
#[derive(Debug)]
pub struct Started {
    pub record: TransactionRecord,
    /// True when the POS reference named an existing transaction, which is returned as it
    /// stands; the device was not asked again.
    pub replayed: bool,
}

/// Why a transaction could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{}", protocol::pos_api::NOT_PAIRED)]
    NotPaired,
    #[error("{}", protocol::pos_api::DEVICE_BUSY)]
    DeviceBusy,
    /// The reference was already used by this register for a different request.
    #[error("PosReference '{0}' was already used by this register for a different request")]
    ReferenceConflict(String),
    /// The device lacks a capability the request needs; nothing was sent to it.
    #[error("device {device} cannot run this request: it does not declare the capability '{capability}' (update its agent)")]
    Unsupported {
        device: DeviceId,
        capability: &'static str,
    },
    /// A follow-up's original does not exist for this register (or this key).
    #[error("Transaction not found")]
    UnknownOriginal,
    /// A follow-up named its original by a reference several of the merchant's registers used.
    #[error("OriginalPosReference '{0}' names several transactions of this merchant: use OriginalTransactionId")]
    AmbiguousOriginal(String),
    /// The follow-up does not fit its original (refund past the refundable amount, a void
    /// after settlement, ...).
    #[error(transparent)]
    Refused(crate::domain::payments::Refusal),
    /// A tender does not fit its order (overpayment, cancelled or paid order).
    #[error(transparent)]
    OrderRefused(crate::domain::orders::OrderRefusal),
    /// The `OrderId` names no order of this register's merchant.
    #[error("Order not found")]
    UnknownOrder,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for StartError {
    fn from(e: crate::store::StoreError) -> Self {
        StartError::Engine(e.into())
    }
}

/// What applying an event did.
#[derive(Debug)]
pub enum Applied {
    /// No such transaction (or not this device's).
    Unknown,
    /// The event was applied; the record is as it stands afterwards.
    Done {
        record: Box<TransactionRecord>,
        effects: Vec<Effect>,
        /// For an event from the device's own frame: the frames to answer it with
        /// (`start`, `abort`, `result_ack`, `error`), which the device's connection sends
        /// itself instead of a round through the bus.
        replies: Vec<CloudMessage>,
    },
}

/// How many times a compare-and-set is retried when another writer moved the transaction first.
const CAS_ATTEMPTS: usize = 5;

impl Engine {
    /// Stores a new transaction and offers it to the device. The record is durable before this
    /// returns, so the POS's 200 never names a transaction a restart could lose. With a POS
    /// reference already used by the register, the existing transaction is returned instead.
    pub async fn start_transaction(&self, new: NewTransaction) -> Result<Started, StartError> {
        let fingerprint = new.fingerprint();
        let merchant = new.merchant.clone();
        if let Some(reference) = &new.pos_reference {
            if let Some(existing) = self
                .replay(&new.register, reference, &fingerprint, merchant.as_ref())
                .await?
            {
                return Ok(existing);
            }
        }
        let reference = new.pos_reference.clone();
        let register_key = new.register.clone();
        match self.start_new(new, fingerprint.clone()).await {
            // Two requests with one reference raced and the other stored first: same answer as
            // if this one had come second. The store may report the race as "busy" (the first
            // one occupies the device), so both refusals are checked against the reference.
            Err(
                e @ (StartError::DeviceBusy | StartError::Engine(EngineError::DuplicateReference)),
            ) => {
                let Some(reference) = reference else {
                    return Err(e);
                };
                match self
                    .replay(&register_key, &reference, &fingerprint, merchant.as_ref())
                    .await?
                {
                    Some(existing) => Ok(existing),
                    None => Err(e),
                }
            }
            other => other.map(|record| Started {
                record,
                replayed: false,
            }),
        }
    }

    async fn replay(
        &self,
        register: &RegisterKey,
        reference: &str,
        fingerprint: &str,
        merchant: Option<&crate::domain::accounts::MerchantId>,
    ) -> Result<Option<Started>, StartError> {
        match self
            .store()
            .transaction_by_reference(register, reference)
            .await?
        {
            // Another merchant's transaction (the register moved): not this key's to see.
            Some(existing) if merchant.is_some_and(|m| *m != existing.merchant_id) => {
                Err(StartError::NotPaired)
            }
            Some(existing) if existing.fingerprint == fingerprint => Ok(Some(Started {
                record: existing,
                replayed: true,
            })),
            Some(_) => Err(StartError::ReferenceConflict(reference.to_string())),
            None => Ok(None),
        }
    }

    async fn start_new(
        &self,
        new: NewTransaction,
        fingerprint: String,
    ) -> Result<TransactionRecord, StartError> {
        let store = self.store();
        let route = store
            .route(&new.register)
            .await?
            .filter(|r| {
                new.merchant
                    .as_ref()
                    .is_none_or(|m| *m == r.device.merchant_id)
            })
            .ok_or(StartError::NotPaired)?;
        let (register, device, mut busy) = (route.register, route.device, route.busy);
        let mut request = new.request;
        // A request that names no currency is in the merchant's; AUD stays implicit, so a
        // SmartConnect POS sees the fields it always saw.
        if request.currency.is_none() && route.currency != protocol::Currency::AUD {
            request.currency = Some(route.currency);
        }
        // A follow-up runs on any device of the original's merchant, none other.
        if new
            .original_merchant
            .as_ref()
            .is_some_and(|m| *m != device.merchant_id)
        {
            return Err(StartError::UnknownOriginal);
        }
        // The basket goes with the payment to a device with a customer-facing screen.
        if device.can(protocol::device::capability::DISPLAY) {
            request.cart =
                crate::domain::actions::cart_of_payment(&request, new.sale_data.as_deref());
        }
        // Refused before anything is sent: a device never hears of what it cannot parse.
        if let Some(capability) = protocol::device::capability::needed_by(&request)
            .into_iter()
            .find(|c| !device.can(c))
        {
            return Err(StartError::Unsupported {
                device: device.id.clone(),
                capability,
            });
        }
        // Stored with millisecond precision; truncate now so the POST's body and every poll's
        // body show the same `transactionTimeStamp`.
        let now = chrono::DateTime::<Utc>::from_timestamp_millis(self.now().timestamp_millis())
            .unwrap_or_default();
        let function = request.function;
        // An offer of this node may be out while its insert commits: wait for it and ask the
        // store again, so that it answers "busy" truly.
        if self.inner.inserting.settled(&device.id, None).await {
            busy = store.active_transaction(&device.id).await?.is_some();
        }
        let state = DeviceState {
            online: self.bus().is_online(&device.id).await,
            busy,
            reported: if busy {
                self.bus().reported_status(&device.id).await
            } else {
                None
            },
        };
        let admitted = lifecycle::admit(function, state, now, self.settings().accept_timeout)
            .map_err(|DeviceBusy| StartError::DeviceBusy)?;
        let record = TransactionRecord {
            id: TransactionId::new(),
            device_id: device.id.clone(),
            register: register.info,
            merchant_id: device.merchant_id,
            merchant: device.merchant,
            request,
            sale_data: new.sale_data,
            callback_url: new.callback_url,
            pos_reference: new.pos_reference,
            fingerprint,
            token: new_token(),
            token_expires_at: now + self.settings().token_ttl,
            created_at: now,
            phase: admitted.phase,
            display_text: None,
        };
        let events = admitted.timeline;
        // On a single node the offer goes out while the insert commits, so the device hears of
        // it one commit sooner. Safe because an offer commits the device to nothing: it runs a
        // payment only on `start`, which is sent only once `started` is stored, after the
        // insert. The device's frames about it wait for the insert (`Inserting::settled`); if
        // the insert fails the device is told to drop the offer. Another insert in progress for
        // the device, or a cluster (where the device's frames reach another node), keeps the
        // order insert, then offer.
        let offer = admitted.effects.contains(&Effect::SendOffer);
        // A follow-up (or a tender) is checked against its original (or order) in the insert's
        // commit and may be refused there: it is offered only once stored.
        let checked_at_insert =
            record.request.original.is_some() || record.request.order_id.is_some();
        let claim = match record.phase {
            Phase::Offered { .. } if offer && self.bus().single_node() && !checked_at_insert => {
                self.inner.inserting.claim(&record.device_id, record.id)
            }
            _ => None,
        };
        let mut offered = None;
        if claim.is_some() {
            offered = Some(
                self.bus()
                    .deliver(&record.device_id, offer_message(&record))
                    .await
                    .is_ok(),
            );
        }
        let logged = crate::domain::events::for_transaction(None, &record, &record.phase);
        if let Err(e) = store.insert_transaction(&record, &events, &logged).await {
            if offered == Some(true) {
                let abort = CloudMessage::Abort {
                    transaction_id: record.id,
                    reason: "the cloud could not store this transaction".into(),
                };
                let _ = self.bus().deliver(&record.device_id, abort).await;
            }
            return Err(match e {
                InsertError::DeviceBusy => StartError::DeviceBusy,
                InsertError::DuplicateReference => EngineError::DuplicateReference.into(),
                InsertError::AlreadyExists => EngineError::Contended(record.id).into(),
                InsertError::Refused(r) => StartError::Refused(r),
                InsertError::UnknownOriginal => StartError::UnknownOriginal,
                InsertError::OrderRefused(r) => StartError::OrderRefused(r),
                InsertError::UnknownOrder => StartError::UnknownOrder,
                InsertError::Store(e) => e.into(),
            });
        }
        self.events_logged().await;
        self.metrics().transaction_started(function);
        if let Some(original) = &record.request.original {
            let amount = crate::domain::payments::asked_amount(&record.request);
            let detail = format!("{} {} of {amount}", record.request.function, record.id);
            self.note_on_original(
                original.transaction_id,
                crate::domain::timeline::EventKind::FollowUp,
                detail,
            )
            .await;
        }
        match &record.phase {
            Phase::Offered { accept_deadline } => {
                self.metrics().track_phase(&record.id, &record.phase);
                self.inner.active.put(&record);
                // The device's frames about it may go ahead now.
                drop(claim);
                self.deadline_written(*accept_deadline);
                let delivered = match offered {
                    Some(delivered) => delivered,
                    None => self
                        .bus()
                        .deliver(&record.device_id, offer_message(&record))
                        .await
                        .is_ok(),
                };
                if !delivered {
                    // The connection vanished between the check and the send.
                    if let Applied::Done { record, .. } =
                        self.apply(&record.id, Event::DeviceGone, None).await?
                    {
                        return Ok(*record);
                    }
                }
            }
            Phase::Completed(c) => {
                self.metrics()
                    .transaction_completed(&record.id, function, c, record.created_at);
                self.completed(&record).await;
            }
            Phase::Started { .. } => {}
        }
        Ok(record)
    }

    /// Applies an event to a transaction: read, step the state machine, compare-and-set the
    /// new phase, then carry out the effects. With `device`, the transaction must be that
    /// device's (a device cannot touch another's transactions).
    pub async fn apply(
        &self,
        id: &TransactionId,
        event: Event,
        device: Option<&DeviceId>,
    ) -> Result<Applied, EngineError> {
        // A device's own frame: its transaction as last written here saves a read (see
        // `active`); a stale one fails the compare-and-set and the loop reads the store.
        if let Some(d) = device {
            // An offer sent before its insert committed: decide once the insert is over.
            self.inner.inserting.settled(d, Some(id)).await;
        }
        let mut cached = device.and_then(|d| self.inner.active.get(d, id));
        for _ in 0..CAS_ATTEMPTS {
            let (mut tx, from_cache) = match cached.take() {
                Some(tx) => (tx, true),
                None => match self.store().transaction(id).await? {
                    Some(tx) => (tx, false),
                    None => return Ok(Applied::Unknown),
                },
            };
            if device.is_some_and(|d| *d != tx.device_id) {
                return Ok(Applied::Unknown);
            }
            let now = self.now();
            let step = lifecycle::step(&tx.request, &tx.phase, &event, now);
            // A step that writes no new phase is not checked by a compare-and-set, so it is
            // only ever decided on what the store holds.
            if from_cache && step.next.is_none() {
                continue;
            }
            let events = &step.timeline;
            if let Some(next) = step.next {
                let logged = crate::domain::events::for_transaction(Some(&tx.phase), &tx, &next);
                if !self
                    .store()
                    .transition(id, &tx.phase, &next, events, &logged)
                    .await?
                {
                    continue;
                }
                if !logged.is_empty() {
                    // A completion's announcement (below) tells the other nodes.
                    self.events_logged_here();
                }
                tx.phase = next;
                // As the store has it: a completed transaction shows no prompt.
                if matches!(tx.phase, Phase::Completed(_)) {
                    tx.display_text = None;
                }
                // Completions are counted below (`Effect::Completed`), once.
                if matches!(tx.phase, Phase::Completed(_)) {
                    self.inner.active.remove(&tx.device_id, id);
                } else {
                    self.metrics().track_phase(id, &tx.phase);
                    self.inner.active.put(&tx);
                }
            } else {
                self.store().append_events(id, events).await?;
            }
            let replies = self.carry_out(&tx, &step.effects, device.is_some()).await;
            return Ok(Applied::Done {
                record: Box::new(tx),
                effects: step.effects,
                replies,
            });
        }
        Err(EngineError::Contended(*id))
    }

    /// Carries out a step's effects. Frames for the device go through the bus, or, when
    /// `reply` (the step answers the device's own frame), are returned for its connection to
    /// send.
    async fn carry_out(
        &self,
        tx: &TransactionRecord,
        effects: &[Effect],
        reply: bool,
    ) -> Vec<CloudMessage> {
        let id = tx.id;
        let mut replies = Vec::new();
        for effect in effects {
            let msg = match effect {
                Effect::SendOffer => offer_message(tx),
                Effect::SendStart => CloudMessage::Start { transaction_id: id },
                Effect::SendAbort(reason) => CloudMessage::Abort {
                    transaction_id: id,
                    reason: (*reason).to_string(),
                },
                Effect::SendCancel => CloudMessage::Cancel { transaction_id: id },
                Effect::SendResultAck => CloudMessage::ResultAck { transaction_id: id },
                Effect::Completed => {
                    tracing::info!(transaction = %id, device = %tx.device_id, "transaction completed");
                    if let Phase::Completed(c) = &tx.phase {
                        self.metrics().transaction_completed(
                            &id,
                            tx.request.function,
                            c,
                            tx.created_at,
                        );
                    }
                    self.completed(tx).await;
                    continue;
                }
                Effect::Conflict => {
                    tracing::error!(
                        transaction = %id,
                        device = %tx.device_id,
                        "device reported a result for a transaction the cloud had already ended; \
                         the stored outcome stands, reconcile with the device's journal"
                    );
                    continue;
                }
                Effect::AlreadyCompleted => continue,
                Effect::RejectResult(why) => {
                    let why = why.as_str();
                    tracing::warn!(transaction = %id, device = %tx.device_id, why, "device result refused");
                    CloudMessage::Error {
                        message: format!("result for {id} refused: {why}; fix and send it again"),
                    }
                }
            };
            if reply {
                replies.push(msg);
                continue;
            }
            // A device that is gone gets the frame again when needed: offers are re-sent on
            // reconnect and results are re-sent by the device until acknowledged.
            let _ = self.bus().deliver(&tx.device_id, msg).await;
        }
        replies
    }

    /// A device sent `accept`.
    pub async fn on_accept(
        &self,
        device: &DeviceId,
        id: &TransactionId,
    ) -> Result<Applied, EngineError> {
        self.apply(id, Event::Accepted, Some(device)).await
    }

    /// A device reported a result.
    pub async fn on_result(
        &self,
        device: &DeviceId,
        result: protocol::device::DeviceResult,
    ) -> Result<Applied, EngineError> {
        let id = result.transaction_id;
        self.apply(&id, Event::DeviceResult(result), Some(device))
            .await
    }

    /// A device shows a prompt.
    pub async fn on_progress(
        &self,
        device: &DeviceId,
        id: &TransactionId,
        text: &str,
    ) -> Result<(), EngineError> {
        Ok(self
            .store()
            .set_display_text(id, device, text, self.now())
            .await?)
    }

    /// The POS asked to cancel.
    pub async fn cancel(&self, id: &TransactionId) -> Result<Applied, EngineError> {
        self.apply(id, Event::CancelRequested, None).await
    }

    /// The device's connection on this node closed. If no other connection took over, an offer
    /// it had not accepted ends now (definite `FAILED-INTERFACE`, no waiting for the deadline).
    pub async fn on_device_gone(&self, device: &DeviceId) -> Result<(), EngineError> {
        if self.bus().is_online(device).await {
            return Ok(());
        }
        // An offer that went out during its insert is in the store once the insert is over.
        self.inner.inserting.settled(device, None).await;
        if let Some(tx) = self.store().active_transaction(device).await? {
            // Not an answer to a frame: whatever it says to the device goes through the bus
            // (a connection that took over meanwhile, on any node, hears it).
            if let Applied::Done { replies, .. } =
                self.apply(&tx.id, Event::DeviceGone, Some(device)).await?
            {
                for msg in replies {
                    let _ = self.bus().deliver(device, msg).await;
                }
            }
        }
        Ok(())
    }

    /// A device (re)connected, saying which transaction it is running (`in_progress`, from its
    /// journal). Repairs what a lost frame may have left: an offer not yet accepted is offered
    /// again; a started transaction the device is not running means the `start` was lost with
    /// the old connection, so it is sent again (the device either runs it now, or answers with
    /// a definite result if it no longer holds the offer).
    pub async fn on_device_connected(
        &self,
        device: &DeviceId,
        in_progress: Option<TransactionId>,
    ) -> Result<(), EngineError> {
        // An offer that went out to the old connection during its insert is offered again
        // below, once the insert is over.
        self.inner.inserting.settled(device, None).await;
        if let Some(tx) = self.store().active_transaction(device).await? {
            // After a restart this is how the node learns of transactions still running.
            self.metrics().track_phase(&tx.id, &tx.phase);
            let msg = match tx.phase {
                Phase::Offered { .. } => offer_message(&tx),
                Phase::Started { .. } if in_progress != Some(tx.id) => CloudMessage::Start {
                    transaction_id: tx.id,
                },
                Phase::Started { .. } | Phase::Completed(_) => return Ok(()),
            };
            let _ = self.bus().deliver(device, msg).await;
        }
        Ok(())
    }

    /// One transaction.
    pub async fn transaction(
        &self,
        id: &TransactionId,
    ) -> Result<Option<TransactionRecord>, EngineError> {
        Ok(self.store().transaction(id).await?)
    }

    /// Waits until the transaction is completed or `timeout` passes, woken by the completion
    /// itself rather than by polling the store. Returns the record as it stands then.
    pub async fn wait_completed(
        &self,
        id: &TransactionId,
        timeout: Duration,
    ) -> Result<Option<TransactionRecord>, EngineError> {
        // Registered before reading, so a completion between the read and the wait is not missed.
        let waiter = self.completion_waiter(*id);
        let Some(tx) = self.store().transaction(id).await? else {
            return Ok(None);
        };
        let done = self.wait_with(waiter, &tx, timeout).await?;
        Ok(Some(done.unwrap_or(tx)))
    }

    /// Like [`Self::wait_completed`], for a caller that registered `waiter` before it read
    /// `tx`: no second read. The completed record, or none if `tx` is still as it stands when
    /// `timeout` passes (or already completed).
    pub async fn wait_with(
        &self,
        mut waiter: super::completions::Waiter,
        tx: &TransactionRecord,
        timeout: Duration,
    ) -> Result<Option<TransactionRecord>, EngineError> {
        if matches!(tx.phase, Phase::Completed(_)) {
            return Ok(None);
        }
        tokio::select! {
            done = waiter.completed() => match done {
                Some(record) => Ok(Some(*record)),
                // Completed on another node: read what it stored.
                None => Ok(self.store().transaction(&tx.id).await?),
            },
            _ = tokio::time::sleep(timeout) => Ok(None),
        }
    }
}

/// The `transaction` frame for a stored record.
pub fn offer_message(tx: &TransactionRecord) -> CloudMessage {
    CloudMessage::Transaction(TransactionOffer {
        transaction_id: tx.id,
        register: tx.register.clone(),
        request: tx.request.clone(),
        request_timestamp: protocol::timestamp::utc_compact(tx.created_at),
    })
}

/// A polling token: 128 random bits, hex (the only credential of a polling URL).
fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}
