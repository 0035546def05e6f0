//! The callback outbox as the dispatcher sees it: jobs written in the same commit as the
//! completion that queued them, claimed with a lease so one node posts each, and each attempt
//! recorded on the transaction's timeline.

use super::{Engine, EngineError};
use crate::domain::timeline::TimelineEvent;
use crate::store::StoreError;

pub use crate::store::CallbackJob;
use chrono::{DateTime, Utc};
use protocol::TransactionId;

impl Engine {
    /// The named secret, created with `generate` the first time (the callback signing key).
    pub async fn secret(
        &self,
        name: &str,
        generate: &(dyn Fn() -> String + Send + Sync),
    ) -> Result<String, StoreError> {
        self.store().secret(name, generate).await
    }

    /// Claims up to `limit` callbacks due at `now` until `lease_until`.
    pub async fn claim_callbacks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<CallbackJob>, EngineError> {
        Ok(self
            .store()
            .claim_callbacks(now, limit, lease_until)
            .await?)
    }

    /// When the next callback is due, if any.
    pub async fn next_callback_at(&self) -> Result<Option<DateTime<Utc>>, EngineError> {
        Ok(self.store().next_callback_at().await?)
    }

    /// Records one attempt: delivered, retried at `retry_at`, or given up (neither).
    pub async fn record_callback_attempt(
        &self,
        id: &TransactionId,
        delivered: bool,
        retry_at: Option<DateTime<Utc>>,
        error: &str,
        event: &TimelineEvent,
    ) -> Result<(), EngineError> {
        Ok(self
            .store()
            .record_callback_attempt(id, delivered, retry_at, error, event)
            .await?)
    }
}
