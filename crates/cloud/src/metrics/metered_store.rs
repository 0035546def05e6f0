//! The store's observer: times every call into the `eftcloud_store_operation_seconds`
//! histogram and tells [`Health`] of failed and committed writes, around whichever backend was
//! opened, so the backends stay unaware of metrics and of outages.

use super::Metrics;
use crate::health::Health;
use crate::store::observed::{Observed, Operation, Outcome, StoreObserver};
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// The real store, with each call timed and its failures tracked.
pub type MeteredStore = Observed<StoreMeter>;

/// Wraps `inner` so that each call is timed and its failures tracked.
pub fn metered(inner: Arc<dyn Store>, metrics: Arc<Metrics>, health: Arc<Health>) -> MeteredStore {
    Observed::new(inner, StoreMeter { metrics, health })
}

/// Records each store call in the metrics and the store's health.
pub struct StoreMeter {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl StoreObserver for StoreMeter {
    fn observe(&self, operation: Operation, elapsed: Duration, outcome: Outcome<'_>) {
        self.metrics.store_call(operation.name, elapsed);
        match outcome {
            // Only during an outage does a committed write matter (it ends the outage): the
            // healthy path costs one load.
            Outcome::Ok if operation.writes && !self.health.store_available() => {
                self.health.store_wrote()
            }
            Outcome::Ok | Outcome::Refused => {}
            Outcome::Failed(e) => self.health.store_failed(e),
        }
    }
}
