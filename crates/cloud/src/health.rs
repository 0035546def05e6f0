//! Whether this node can do its work: the store commits writes, and (in a cluster) the bus is
//! connected. Storage trouble is an outage to report once and recover from on its own, not a
//! crash per request: the first failed write marks the store unavailable (one log line, the
//! `eftcloud_store_available` gauge at 0), POS requests are answered 503 `storage unavailable`
//! with `Retry-After`, `/readyz` says not ready, and a probe writes until a write succeeds.

use crate::store::{Store, StoreError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the probe tries a write while the store is unavailable.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// The store's availability, shared by the store wrapper, the probe and `/readyz`.
pub struct Health {
    store_down: AtomicBool,
    /// When the current outage began and what ended the last write.
    outage: Mutex<Option<(Instant, String)>>,
    /// Wakes the probe when an outage begins.
    went_down: Notify,
    /// `eftcloud_store_available` and `eftcloud_store_outages_total`.
    available: Gauge,
    outages: Counter,
}

impl Health {
    /// Healthy until a write fails; reports into the gauge and counter given (the metrics'
    /// own, from [`crate::metrics::Metrics::store_availability`]).
    pub fn new((available, outages): (Gauge, Counter)) -> Self {
        available.set(1);
        Self {
            store_down: AtomicBool::new(false),
            outage: Mutex::new(None),
            went_down: Notify::new(),
            available,
            outages,
        }
    }

    /// Whether the store commits writes (as of the last write or probe).
    pub fn store_available(&self) -> bool {
        !self.store_down.load(Ordering::SeqCst)
    }

    /// Why the store is unavailable, while it is.
    pub fn store_problem(&self) -> Option<String> {
        if self.store_available() {
            return None;
        }
        lock(&self.outage).as_ref().map(|(_, why)| why.clone())
    }

    /// A store call failed: when the store itself is unavailable, an outage begins (reported
    /// once, however many calls fail during it).
    pub fn store_failed(&self, e: &StoreError) {
        if !e.is_unavailable() {
            return;
        }
        if !self.store_down.swap(true, Ordering::SeqCst) {
            *lock(&self.outage) = Some((Instant::now(), e.to_string()));
            self.available.set(0);
            self.outages.inc();
            tracing::error!(error = %e, "storage unavailable: POS requests are answered 503 and device frames are retried until a write succeeds");
            self.went_down.notify_one();
        }
    }

    /// A write committed: an outage, if any, is over.
    pub fn store_wrote(&self) {
        // Read first: a healthy store (nearly always) costs every write a shared load, not a
        // read-modify-write that bounces the cache line between cores.
        if self.store_down.load(Ordering::Acquire) && self.store_down.swap(false, Ordering::SeqCst)
        {
            let began = lock(&self.outage).take().map(|(at, _)| at.elapsed());
            self.available.set(1);
            tracing::warn!(
                outage_ms = began.map(|d| d.as_millis() as u64).unwrap_or(0),
                "storage available again"
            );
        }
    }

    /// While the store is unavailable, writes a probe every `interval` until one commits, so
    /// the node recovers even when no request comes (a load balancer has moved traffic away).
    pub async fn run_probe(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            let down = self.went_down.notified();
            if self.store_available() {
                tokio::select! {
                    _ = down => {}
                    _ = shutdown.cancelled() => return,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => return,
            }
            // The wrapper around `store` records the outcome (`store_wrote` / `store_failed`).
            if let Err(e) = store.probe_write().await {
                tracing::debug!(error = %e, "store probe failed");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_begins_on_an_unavailable_error_and_ends_on_a_write() {
        let (available, outages) = (Gauge::default(), Counter::default());
        let h = Health::new((available.clone(), outages.clone()));
        assert_eq!(available.get(), 1);
        assert!(h.store_available());
        h.store_failed(&StoreError::Corrupt("bad row".into()));
        assert!(h.store_available(), "a corrupt row is not an outage");
        h.store_failed(&StoreError::Commit("disk full".into()));
        assert!(!h.store_available());
        assert_eq!((available.get(), outages.get()), (0, 1));
        assert!(h.store_problem().is_some_and(|p| p.contains("disk full")));
        h.store_failed(&StoreError::Closed);
        assert!(
            h.store_problem().is_some_and(|p| p.contains("disk full")),
            "first cause kept"
        );
        assert_eq!(outages.get(), 1, "one outage, however many failures");
        h.store_wrote();
        assert!(h.store_available());
        assert_eq!(h.store_problem(), None);
        assert_eq!((available.get(), outages.get()), (1, 1));
    }
}
