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
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

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

/// Offers sent before their transaction's insert committed (single node only, see
/// `Engine::start_new`): at most one per device. The device's frames about such a transaction
/// wait here until the insert is over, so they are decided on what was stored.
#[derive(Default)]
pub(crate) struct Inserting {
    by_device: Mutex<HashMap<DeviceId, (TransactionId, watch::Receiver<bool>)>>,
}

impl Inserting {
    /// Claims the device for an insert of `id`; none if another insert holds it.
    pub(crate) fn claim(
        self: &Arc<Self>,
        device: &DeviceId,
        id: TransactionId,
    ) -> Option<InsertClaim> {
        let mut map = self.lock();
        if map.contains_key(device) {
            return None;
        }
        let (done, rx) = watch::channel(false);
        map.insert(device.clone(), (id, rx));
        Some(InsertClaim {
            inserting: self.clone(),
            device: device.clone(),
            done,
        })
    }

    /// Waits until no insert of `id` (or of any transaction, with none) is in progress for the
    /// device; true if there was one to wait for.
    pub(crate) async fn settled(&self, device: &DeviceId, id: Option<&TransactionId>) -> bool {
        let rx = self
            .lock()
            .get(device)
            .filter(|(claimed, _)| id.is_none_or(|i| i == claimed))
            .map(|(_, rx)| rx.clone());
        let Some(mut rx) = rx else {
            return false;
        };
        // An error means the claim was dropped: settled too.
        let _ = rx.wait_for(|done| *done).await;
        true
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<DeviceId, (TransactionId, watch::Receiver<bool>)>> {
        self.by_device.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A device claimed for one insert. Dropping it (the insert ended, failed, or the request was
/// abandoned) releases the device and wakes whoever waits in [`Inserting::settled`].
pub(crate) struct InsertClaim {
    inserting: Arc<Inserting>,
    device: DeviceId,
    done: watch::Sender<bool>,
}

impl Drop for InsertClaim {
    fn drop(&mut self) {
        self.inserting.lock().remove(&self.device);
        let _ = self.done.send(true);
    }
}
