//! A [`Store`] decorator that times every call into the `eftcloud_store_operation_seconds`
//! histogram and tells [`Health`] of failed and committed writes: one wrapper around whichever
//! backend was opened, so the backends stay unaware of metrics and of outages.

use super::Metrics;
use crate::domain::lifecycle::Phase;
use crate::domain::timeline::TimelineEvent;
use crate::health::Health;
use crate::store::{
    CallbackJob, DeviceRecord, InsertError, RegisterRecord, Route, Store, StoreError,
    TransactionQuery, TransactionRecord,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use protocol::{DeviceId, PairingCode, RegisterKey, TransactionId};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// The real store, with each call timed.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// The operations that write: one committing proves the store writable again.
const WRITES: &[&str] = &[
    "insert_device",
    "set_secret_hash",
    "set_device_connection",
    "clear_connections",
    "replace_pairing_code",
    "take_pairing_code",
    "pair_register",
    "unpair",
    "insert_transaction",
    "transition",
    "append_events",
    "set_display_text",
    "purge_completed_before",
    "purge_unused_self_enrolled",
    "claim_callbacks",
    "record_callback_attempt",
    "secret",
    "probe_write",
];

/// The store failure inside an operation's error, if it is one.
trait StoreFailure {
    fn store_error(&self) -> Option<&StoreError>;
}

impl StoreFailure for StoreError {
    fn store_error(&self) -> Option<&StoreError> {
        Some(self)
    }
}

impl StoreFailure for InsertError {
    fn store_error(&self) -> Option<&StoreError> {
        match self {
            InsertError::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl MeteredStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>, health: Arc<Health>) -> Self {
        Self {
            inner,
            metrics,
            health,
        }
    }

    async fn timed<T, E: StoreFailure>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let begun = Instant::now();
        let out = call.await;
        self.metrics.store_call(operation, begun.elapsed());
        match &out {
            // Only during an outage does a committed write matter (it ends the outage): the
            // healthy path costs one load, not a search of the list.
            Ok(_) if !self.health.store_available() && WRITES.contains(&operation) => {
                self.health.store_wrote()
            }
            Ok(_) => {}
            Err(e) => {
                if let Some(e) = e.store_error() {
                    self.health.store_failed(e);
                }
            }
        }
        out
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn insert_device(&self, device: &DeviceRecord) -> Result<(), InsertError> {
        self.timed("insert_device", self.inner.insert_device(device))
            .await
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        self.timed("probe_write", self.inner.probe_write()).await
    }

    async fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        self.timed("device", self.inner.device(id)).await
    }

    async fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        self.timed("devices", self.inner.devices()).await
    }

    async fn set_secret_hash(&self, id: &DeviceId, secret_hash: &str) -> Result<bool, StoreError> {
        self.timed(
            "set_secret_hash",
            self.inner.set_secret_hash(id, secret_hash),
        )
        .await
    }

    async fn set_device_connection(
        &self,
        id: &DeviceId,
        node: &str,
        connected: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.timed(
            "set_device_connection",
            self.inner.set_device_connection(id, node, connected, now),
        )
        .await
    }

    async fn clear_connections(&self, node: &str) -> Result<(), StoreError> {
        self.timed("clear_connections", self.inner.clear_connections(node))
            .await
    }

    async fn purge_unused_self_enrolled(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.timed(
            "purge_unused_self_enrolled",
            self.inner.purge_unused_self_enrolled(before),
        )
        .await
    }

    async fn replace_pairing_code(
        &self,
        device: &DeviceId,
        code: &PairingCode,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.timed(
            "replace_pairing_code",
            self.inner.replace_pairing_code(device, code, expires_at),
        )
        .await
    }

    async fn take_pairing_code(
        &self,
        code: &PairingCode,
        now: DateTime<Utc>,
    ) -> Result<Option<DeviceId>, StoreError> {
        self.timed("take_pairing_code", self.inner.take_pairing_code(code, now))
            .await
    }

    async fn pair_register(
        &self,
        register: &RegisterRecord,
    ) -> Result<Option<DeviceId>, StoreError> {
        self.timed("pair_register", self.inner.pair_register(register))
            .await
    }

    async fn register(&self, key: &RegisterKey) -> Result<Option<RegisterRecord>, StoreError> {
        self.timed("register", self.inner.register(key)).await
    }

    async fn route(&self, key: &RegisterKey) -> Result<Option<Route>, StoreError> {
        self.timed("route", self.inner.route(key)).await
    }

    async fn registers_of(&self, device: &DeviceId) -> Result<Vec<RegisterRecord>, StoreError> {
        self.timed("registers_of", self.inner.registers_of(device))
            .await
    }

    async fn unpair(
        &self,
        device: &DeviceId,
        register: Option<&RegisterKey>,
    ) -> Result<Vec<RegisterKey>, StoreError> {
        self.timed("unpair", self.inner.unpair(device, register))
            .await
    }

    async fn insert_transaction(
        &self,
        tx: &TransactionRecord,
        events: &[TimelineEvent],
    ) -> Result<(), InsertError> {
        self.timed(
            "insert_transaction",
            self.inner.insert_transaction(tx, events),
        )
        .await
    }

    async fn transaction_by_reference(
        &self,
        register: &RegisterKey,
        reference: &str,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        self.timed(
            "transaction_by_reference",
            self.inner.transaction_by_reference(register, reference),
        )
        .await
    }

    async fn transaction(
        &self,
        id: &TransactionId,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        self.timed("transaction", self.inner.transaction(id)).await
    }

    async fn transition(
        &self,
        id: &TransactionId,
        from: &Phase,
        to: &Phase,
        events: &[TimelineEvent],
    ) -> Result<bool, StoreError> {
        self.timed("transition", self.inner.transition(id, from, to, events))
            .await
    }

    async fn append_events(
        &self,
        id: &TransactionId,
        events: &[TimelineEvent],
    ) -> Result<(), StoreError> {
        self.timed("append_events", self.inner.append_events(id, events))
            .await
    }

    async fn events(&self, id: &TransactionId) -> Result<Vec<TimelineEvent>, StoreError> {
        self.timed("events", self.inner.events(id)).await
    }

    async fn set_display_text(
        &self,
        id: &TransactionId,
        device: &DeviceId,
        text: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.timed(
            "set_display_text",
            self.inner.set_display_text(id, device, text, at),
        )
        .await
    }

    async fn purge_completed_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.timed(
            "purge_completed_before",
            self.inner.purge_completed_before(before),
        )
        .await
    }

    async fn due_callbacks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CallbackJob>, StoreError> {
        self.timed("due_callbacks", self.inner.due_callbacks(now, limit))
            .await
    }

    async fn claim_callbacks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<CallbackJob>, StoreError> {
        self.timed(
            "claim_callbacks",
            self.inner.claim_callbacks(now, limit, lease_until),
        )
        .await
    }

    async fn next_callback_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.timed("next_callback_at", self.inner.next_callback_at())
            .await
    }

    async fn record_callback_attempt(
        &self,
        id: &TransactionId,
        delivered: bool,
        retry_at: Option<DateTime<Utc>>,
        error: &str,
        event: &TimelineEvent,
    ) -> Result<(), StoreError> {
        self.timed(
            "record_callback_attempt",
            self.inner
                .record_callback_attempt(id, delivered, retry_at, error, event),
        )
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed("ping", self.inner.ping()).await
    }

    async fn secret(
        &self,
        name: &str,
        generate: &(dyn Fn() -> String + Send + Sync),
    ) -> Result<String, StoreError> {
        self.timed("secret", self.inner.secret(name, generate))
            .await
    }

    async fn active_transaction(
        &self,
        device: &DeviceId,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        self.timed("active_transaction", self.inner.active_transaction(device))
            .await
    }

    async fn expired_offers(&self, now: DateTime<Utc>) -> Result<Vec<TransactionId>, StoreError> {
        self.timed("expired_offers", self.inner.expired_offers(now))
            .await
    }

    async fn query_transactions(
        &self,
        q: &TransactionQuery,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        self.timed("query_transactions", self.inner.query_transactions(q))
            .await
    }

    async fn next_offer_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.timed("next_offer_deadline", self.inner.next_offer_deadline())
            .await
    }
}
