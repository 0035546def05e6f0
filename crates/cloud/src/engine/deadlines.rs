//! The deadline loop: ends offers that were not accepted in time.
//!
//! Deadlines are columns in the store, not timers, so a restart loses none: the first pass after
//! start-up ends every offer whose deadline passed while the node was down. Between passes the
//! loop sleeps until the earliest stored deadline, or until a new offer is written.

use super::Engine;
use crate::domain::lifecycle::Event;
use chrono::Utc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest sleep between passes: the safety net when a wake-up is missed, and how late at
/// worst a node enforces a deadline written by another node (which only wakes its own loop).
const MAX_SLEEP: Duration = Duration::from_secs(5);
/// Pause after a store error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

impl Engine {
    /// Runs until `shutdown` is cancelled.
    pub async fn run_deadlines(self, shutdown: CancellationToken) {
        loop {
            // While scanning, any new deadline pokes the loop: the scan may have missed it.
            self.inner
                .deadline_wake_ms
                .store(i64::MAX, Ordering::SeqCst);
            let sleep = match self.expire_due_offers().await {
                Ok(sleep) => sleep,
                Err(e) => {
                    // A storage outage is reported once, by the store's health.
                    if e.is_unavailable() {
                        tracing::debug!(error = %e, "deadline pass failed");
                    } else {
                        tracing::error!(error = %e, "deadline pass failed");
                    }
                    ERROR_BACKOFF
                }
            };
            let wake = self.now() + chrono::Duration::from_std(sleep).unwrap_or_default();
            self.inner
                .deadline_wake_ms
                .store(wake.timestamp_millis(), Ordering::SeqCst);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.inner.deadline_changed.notified() => {}
                () = self.sleep(sleep) => {}
            }
        }
    }

    /// A deadline was written: wakes the loop if it would otherwise sleep past it. New offers
    /// mostly expire after the loop's next wake-up, so most writes wake nothing.
    pub(super) fn deadline_written(&self, at: chrono::DateTime<Utc>) {
        if at.timestamp_millis() < self.inner.deadline_wake_ms.load(Ordering::SeqCst) {
            self.inner.deadline_changed.notify_one();
        }
    }

    /// Ends every offer whose deadline passed; returns how long to sleep until the next one.
    async fn expire_due_offers(&self) -> Result<Duration, super::EngineError> {
        let now = self.now();
        for id in self.store().expired_offers(now).await? {
            self.apply(&id, Event::AcceptDeadlineCheck, None).await?;
        }
        let next = self.store().next_offer_deadline().await?;
        Ok(match next {
            Some(at) => (at - self.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(MAX_SLEEP),
            None => MAX_SLEEP,
        })
    }
}
