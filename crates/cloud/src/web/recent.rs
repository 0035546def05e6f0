//! The transactions the dashboard shows. The store has no "list transactions" query yet, so
//! this remembers every transaction it has seen in progress on a device (it looks while a
//! dashboard is open, about once a second) and re-reads the unfinished ones from the store. A
//! transaction that starts and ends between two looks is missed; a store query listing recent
//! transactions would replace this module.

use crate::engine::lifecycle::Phase;
use crate::engine::Engine;
use crate::store::{DeviceRecord, StoreError, TransactionRecord};
use protocol::TransactionId;
use std::collections::VecDeque;
use std::sync::Mutex;

/// How many transactions are remembered (oldest forgotten first).
const CAPACITY: usize = 1000;

/// Recently seen transactions, newest last.
#[derive(Default)]
pub struct Recent {
    seen: Mutex<VecDeque<TransactionRecord>>,
}

impl Recent {
    /// Looks at every device's transaction in progress and refreshes the unfinished ones;
    /// returns the devices read on the way (the dashboard shows them too).
    pub async fn refresh(&self, engine: &Engine) -> Result<Vec<DeviceRecord>, StoreError> {
        let store = engine.store();
        let devices = store.devices().await?;
        let mut found = Vec::new();
        for d in &devices {
            if let Some(tx) = store.active_transaction(&d.id).await? {
                found.push(tx);
            }
        }
        // Unfinished ones may have completed since the last look (completed ones never change).
        let unfinished: Vec<TransactionId> = self
            .lock()
            .iter()
            .filter(|t| !matches!(t.phase, Phase::Completed(_)))
            .map(|t| t.id)
            .filter(|id| !found.iter().any(|f| f.id == *id))
            .collect();
        let mut gone = Vec::new();
        for id in unfinished {
            match store.transaction(&id).await? {
                Some(tx) => found.push(tx),
                None => gone.push(id),
            }
        }
        let mut seen = self.lock();
        seen.retain(|t| !gone.contains(&t.id));
        for tx in found {
            self.upsert(&mut seen, tx);
        }
        Ok(devices)
    }

    /// Remembers one transaction (e.g. one an operator looked up by id).
    pub fn remember(&self, tx: TransactionRecord) {
        let mut seen = self.lock();
        self.upsert(&mut seen, tx);
    }

    /// A copy of what is remembered, newest first.
    pub fn snapshot(&self) -> Vec<TransactionRecord> {
        let mut all: Vec<TransactionRecord> = self.lock().iter().cloned().collect();
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        all
    }

    fn upsert(&self, seen: &mut VecDeque<TransactionRecord>, tx: TransactionRecord) {
        if let Some(slot) = seen.iter_mut().find(|t| t.id == tx.id) {
            *slot = tx;
            return;
        }
        if seen.len() >= CAPACITY {
            seen.pop_front();
        }
        seen.push_back(tx);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<TransactionRecord>> {
        // A panic while holding this lock cannot leave the list half-written (each change is
        // one push, pop or assignment), so a poisoned lock is still usable.
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}
