//! Pairing and the transaction lifecycle: the code that drives the pure state machine
//! ([`crate::domain::lifecycle`]) — store reads and compare-and-set writes, frames to devices through the bus,
//! wake-ups for waiting POS requests, and the deadline loop.

pub mod accounts;
pub mod actions;
mod active;
pub mod campaigns;
pub mod completions;
pub mod config;
pub mod deadlines;
pub mod devices;
pub mod events;
pub mod health;
pub mod orders;
pub mod outbox;
pub mod pairing;
pub mod payments;
pub mod people;
pub mod queries;
pub mod receipts;
pub mod reconciliation;
pub mod retention;
pub mod transactions;
pub mod webhooks;

use crate::bus::Bus;
use crate::domain::timeline::EventKind;
use crate::domain::{Clock, SystemClock};
use crate::metrics::Metrics;
use crate::store::Store;

/// What a failed store read or write says; engine methods that only read pass it on.
pub use crate::store::StoreError;
use active::{ActiveTransactions, Inserting};
use completions::{Completions, Waiter};
use protocol::TransactionId;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Timing rules of the engine.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// How long a pairing code stays valid.
    pub pairing_code_ttl: Duration,
    /// How long a device has to `accept` an offered transaction.
    pub accept_timeout: Duration,
    /// How long a polling token stays valid after the POST.
    pub token_ttl: Duration,
    /// After this long in `started`, polls show `OK-DELAYED`.
    pub delayed_after: Duration,
    /// How long completed transactions are kept (lookup by reference or id works until then).
    pub retention: Duration,
    /// Where "now" comes from: the system's clock, or a test's.
    pub clock: Arc<dyn Clock>,
    /// How long a device the virtual terminal page enrolled is kept while unused.
    pub virtual_terminal_ttl: Duration,
    /// A dashboard session ends after this long unused.
    pub session_idle: Duration,
    /// A dashboard session ends this long after sign-in, however busy.
    pub session_ttl: Duration,
    /// How often the update campaign loop looks again besides its wake-ups (for windows that
    /// open with the clock).
    pub update_tick: Duration,
    /// Refuse webhook targets on loopback, private or link-local addresses (`--production`,
    /// unless `--webhook-allow-private`).
    pub refuse_private_webhooks: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            pairing_code_ttl: Duration::from_secs(120),
            accept_timeout: Duration::from_secs(10),
            token_ttl: Duration::from_secs(15 * 60),
            delayed_after: Duration::from_secs(60),
            retention: Duration::from_secs(180 * 24 * 3600),
            clock: Arc::new(SystemClock),
            virtual_terminal_ttl: Duration::from_secs(24 * 3600),
            session_idle: Duration::from_secs(8 * 3600),
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            update_tick: Duration::from_secs(30),
            refuse_private_webhooks: false,
        }
    }
}

/// The engine: cheap to clone, shared by the POS API, the device gateway and the deadline loop.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    settings: EngineSettings,
    /// Long-polls and synchronous requests waiting for a completion.
    completions: Arc<Completions>,
    /// Pokes the callback dispatcher when a completion queued a callback.
    callbacks_queued: Notify,
    /// Pokes the update campaign loop when a campaign or a device's progress moved.
    updates_due: Notify,
    /// Moves when events were logged (here, or elsewhere as the bus said): wakes event
    /// readers and the webhook dispatcher.
    events_logged: tokio::sync::watch::Sender<u64>,
    /// The receipt outbox's channels and the delivery worker's wake-up.
    receipts: receipts::ReceiptOutbox,
    /// Pokes the deadline loop when a deadline earlier than its next wake-up was written.
    deadline_changed: Notify,
    /// When the deadline loop next wakes (ms since the epoch; `i64::MAX` while it scans).
    deadline_wake_ms: std::sync::atomic::AtomicI64,
    /// Each device's transaction in progress, as last written here.
    active: ActiveTransactions,
    /// Offers out before their insert committed (single node).
    inserting: Arc<Inserting>,
    metrics: Arc<Metrics>,
}

impl crate::bus::Announcements for Engine {
    fn completed_elsewhere(&self, id: TransactionId) {
        self.wake_completed(id);
        // A completion logs its events; the announcement stands for them too.
        self.events_logged_here();
    }

    fn updates_elsewhere(&self) {
        self.inner.updates_due.notify_one();
    }

    fn events_elsewhere(&self) {
        self.events_logged_here();
    }
}

/// A failure inside the engine that is not the caller's fault.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A compare-and-set kept losing to concurrent writers; should not happen in practice.
    #[error("transaction {0} is changing too fast, try again")]
    Contended(TransactionId),
    /// Another request stored a transaction with the same POS reference first.
    #[error("POS reference already used")]
    DuplicateReference,
}

impl EngineError {
    /// Whether the store was unavailable (see [`StoreError::is_unavailable`]).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, EngineError::Store(e) if e.is_unavailable())
    }
}

impl Engine {
    /// Builds the engine over a store and a bus (with metrics nobody reads: admin commands).
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>, settings: EngineSettings) -> Self {
        Self::with_metrics(store, bus, settings, Arc::new(Metrics::new()))
    }

    /// Builds the engine, recording into `metrics`.
    pub fn with_metrics(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        settings: EngineSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                bus,
                settings,
                completions: Arc::default(),
                callbacks_queued: Notify::new(),
                updates_due: Notify::new(),
                events_logged: tokio::sync::watch::Sender::new(0),
                receipts: Default::default(),
                deadline_changed: Notify::new(),
                deadline_wake_ms: std::sync::atomic::AtomicI64::new(i64::MAX),
                active: ActiveTransactions::default(),
                inserting: Arc::default(),
                metrics,
            }),
        }
    }

    /// The store: the engine's alone (its submodules included). Edges ask the engine.
    fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The bus: the engine's alone, like the store.
    fn bus(&self) -> &Arc<dyn Bus> {
        &self.inner.bus
    }

    /// The timing rules.
    pub fn settings(&self) -> &EngineSettings {
        &self.inner.settings
    }

    /// Now, by the engine's clock (every deadline, expiry and timestamp is taken from it).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.settings.clock.now()
    }

    /// Waits `d` by the engine's clock (the background loops' sleeps).
    pub fn sleep(&self, d: Duration) -> crate::domain::clock::Sleep {
        self.inner.settings.clock.sleep(d)
    }

    /// The metrics this engine records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Wakes this node's waiters for a transaction completed elsewhere.
    pub fn wake_completed(&self, id: TransactionId) {
        // It may have been pending here (offered through this node, completed on another).
        self.inner.metrics.forget_pending(&id);
        self.inner.completions.notify(&id, None);
    }

    /// A transaction completed on this node (`tx` as committed): wake waiters here and on
    /// other nodes, and the callback dispatcher if it has a callback to deliver.
    pub(crate) async fn completed(&self, tx: &crate::store::TransactionRecord) {
        self.inner.completions.notify(&tx.id, Some(tx));
        if tx.callback_url.is_some() {
            self.inner.callbacks_queued.notify_one();
        }
        self.inner.bus.announce_completed(tx.id).await;
        if let Some(original) = &tx.request.original {
            if let crate::domain::lifecycle::Phase::Completed(c) = &tx.phase {
                let detail = format!(
                    "{} {}: {}",
                    tx.request.function,
                    tx.id,
                    crate::domain::timeline::outcome_text(c)
                );
                self.note_on_original(
                    original.transaction_id,
                    EventKind::FollowUpCompleted,
                    detail,
                )
                .await;
            }
        }
    }

    /// Writes a line about a follow-up on its original's timeline. The follow-up's own
    /// timeline is the record; this line only saves a reader of the original a search, so a
    /// failure to write it is logged, not raised.
    pub(crate) async fn note_on_original(
        &self,
        original: TransactionId,
        kind: EventKind,
        detail: String,
    ) {
        let event = crate::domain::timeline::TimelineEvent::new(self.now(), kind, detail);
        if let Err(e) = self.store().append_events(&original, &[event]).await {
            tracing::warn!(transaction = %original, error = %e, "could not note a follow-up on its original");
        }
    }

    /// Registers a waiter for the completion of `id` (before reading the store, so that a
    /// completion in between is not missed).
    pub fn completion_waiter(&self, id: TransactionId) -> Waiter {
        self.inner.completions.wait(id)
    }

    /// How many requests on this node wait for a completion (long-polls, synchronous POSTs).
    pub fn requests_waiting(&self) -> usize {
        self.inner.completions.waiters()
    }

    /// Resolves when a completion on this node queued a callback.
    pub async fn callback_queued(&self) {
        self.inner.callbacks_queued.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unavailable_store_makes_an_engine_error_unavailable() {
        // Unavailable: the loops back off quietly (the outage is reported once, by `Health`).
        assert!(EngineError::Store(StoreError::Closed).is_unavailable());
        assert!(EngineError::Store(StoreError::Commit("disk full".into())).is_unavailable());
        // Anything else is a fault worth an error line.
        assert!(!EngineError::Store(StoreError::Corrupt("bad row".into())).is_unavailable());
        assert!(!EngineError::Contended(TransactionId::new()).is_unavailable());
        assert!(!EngineError::DuplicateReference.is_unavailable());
    }
}
