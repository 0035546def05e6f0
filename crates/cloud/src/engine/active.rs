//! The transaction each device is running, as this node last wrote it.
//!
//! A device's frames (`accept`, `result`) arrive on the node holding its connection, which in a
//! single node (and usually in a cluster) is the node that stored the transaction and moved it
//! since. Keeping that record here spares a store read before each compare-and-set. The record
//! may be stale (another node moved the transaction): it is only ever used for a step whose
//! write is a compare-and-set on the phase, which then fails and sends the engine back to the
//! store. At most one entry per device, removed when its transaction completes here.

use crate::store::TransactionRecord;
use protocol::{DeviceId, TransactionId};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct ActiveTransactions {
    by_device: Mutex<HashMap<DeviceId, TransactionRecord>>,
}

impl ActiveTransactions {
    /// The device's transaction `id`, if it is the one recorded here.
    pub(crate) fn get(&self, device: &DeviceId, id: &TransactionId) -> Option<TransactionRecord> {
        self.lock().get(device).filter(|t| t.id == *id).cloned()
    }

    /// Records the device's transaction as just written.
    pub(crate) fn put(&self, tx: &TransactionRecord) {
        self.lock().insert(tx.device_id.clone(), tx.clone());
    }

    /// Forgets the device's transaction `id` (completed); a newer one is left alone.
    pub(crate) fn remove(&self, device: &DeviceId, id: &TransactionId) {
        let mut map = self.lock();
        if map.get(device).is_some_and(|t| t.id == *id) {
            map.remove(device);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, TransactionRecord>> {
        // Every operation is one insert, lookup or remove: the map is consistent even if a
        // holder panicked.
        self.by_device.lock().unwrap_or_else(|e| e.into_inner())
    }
}
