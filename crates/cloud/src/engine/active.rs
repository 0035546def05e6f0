//! The transaction each device is running, as this node last wrote it.
//!
//! A device's frames (`accept`, `result`) arrive on the node holding its connection, which in a
//! single node (and usually in a cluster) is the node that stored the transaction and moved it
//! since. Keeping that record here spares a store read before each compare-and-set. The record
//! may be stale (another node moved the transaction): it is only ever used for a step whose
//! write is a compare-and-set on the phase, which then fails and sends the engine back to the
//! store. At most one entry per device, removed when its transaction completes here.

use crate::domain::TransactionRecord;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lifecycle::Phase;
    use protocol::{Cents, Function, RegisterInfo, RegisterKey, TransactionRequest};
    use std::time::Duration;

    fn device(name: &str) -> DeviceId {
        DeviceId::parse(name).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn tx(on: &str) -> TransactionRecord {
        let now =
            chrono::DateTime::<chrono::Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        TransactionRecord {
            id: TransactionId::new(),
            device_id: device(on),
            register: RegisterInfo {
                key: RegisterKey {
                    register_id: "r1".into(),
                    business_name: "Shop".into(),
                    vendor_name: "Vendor".into(),
                },
                register_name: "Main".into(),
            },
            merchant_id: crate::domain::accounts::MerchantId::from_stored("mid".into()),
            merchant: "Shop".into(),
            request: TransactionRequest {
                amount_total: Cents::new(500).ok(),
                ..TransactionRequest::of(Function::CardPurchase)
            },
            sale_data: None,
            callback_url: None,
            pos_reference: None,
            fingerprint: "f".into(),
            token: "tok".into(),
            token_expires_at: now,
            created_at: now,
            phase: Phase::Offered {
                accept_deadline: now,
            },
            display_text: None,
        }
    }

    #[test]
    fn a_device_keeps_its_latest_transaction_and_forgets_only_that_one() {
        let active = ActiveTransactions::default();
        let (a, b) = (tx("dev-a"), tx("dev-b"));
        assert_eq!(active.get(&a.device_id, &a.id), None);
        active.put(&a);
        active.put(&b);
        assert_eq!(active.get(&a.device_id, &a.id), Some(a.clone()));
        assert_eq!(active.get(&b.device_id, &b.id), Some(b.clone()));
        // Asked for another transaction of the device: not this record.
        assert_eq!(active.get(&a.device_id, &b.id), None);

        // A newer transaction of the device replaces the older, whose removal leaves it alone.
        let mut newer = tx("dev-a");
        newer.id = TransactionId::new();
        active.put(&newer);
        assert_eq!(active.get(&a.device_id, &a.id), None);
        active.remove(&a.device_id, &a.id);
        assert_eq!(active.get(&a.device_id, &newer.id), Some(newer.clone()));
        active.remove(&a.device_id, &newer.id);
        assert_eq!(active.get(&a.device_id, &newer.id), None);
        assert_eq!(
            active.get(&b.device_id, &b.id),
            Some(b),
            "other devices keep theirs"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_insert_per_device_and_its_frames_wait_until_it_is_over() {
        let inserting = Arc::new(Inserting::default());
        let (a, b) = (device("dev-a"), device("dev-b"));
        let (id, other) = (TransactionId::new(), TransactionId::new());
        // Nothing to wait for before a claim.
        assert!(!inserting.settled(&a, Some(&id)).await);
        assert!(!inserting.settled(&a, None).await);

        let Some(claim) = inserting.claim(&a, id) else {
            panic!("a free device is claimed")
        };
        assert!(
            inserting.claim(&a, other).is_none(),
            "one insert per device"
        );
        let Some(claim_b) = inserting.claim(&b, other) else {
            panic!("another device is free")
        };
        // A frame about another transaction of the device does not wait for this insert.
        assert!(!inserting.settled(&a, Some(&other)).await);

        // A frame about it (or about any transaction of the device) waits for the claim's end.
        let waiting = {
            let inserting = inserting.clone();
            let a = a.clone();
            tokio::spawn(async move { inserting.settled(&a, Some(&id)).await })
        };
        let any = {
            let inserting = inserting.clone();
            let a = a.clone();
            tokio::spawn(async move { inserting.settled(&a, None).await })
        };
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished() && !any.is_finished());
        drop(claim);
        assert!(waiting.await.unwrap_or(false), "woken, and there was one");
        assert!(any.await.unwrap_or(false));
        // Released: the device may be claimed again; the other device's claim is untouched.
        assert!(inserting.claim(&a, other).is_some());
        assert!(inserting.claim(&b, id).is_none());
        drop(claim_b);
        assert!(inserting.claim(&b, id).is_some());
    }
}
