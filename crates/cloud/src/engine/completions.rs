//! Who waits for which transaction to complete: long-polls and synchronous POSTs.
//!
//! A map from transaction id to its waiters, so a completion wakes only the requests waiting
//! for that transaction (a broadcast of every completion to every waiter costs waiters ×
//! completions wake-ups under load). A completion on this node hands the waiters the record as
//! it was committed, so they answer without reading the store again; one announced by another
//! node (through the bus) carries no record, and the waiter reads the store.

use crate::store::TransactionRecord;
use protocol::TransactionId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// What a woken waiter receives: the completed record, when the completion happened here.
pub type Completed = Option<Box<TransactionRecord>>;

/// The waiters of this node.
#[derive(Default)]
pub struct Completions {
    waiting: Mutex<HashMap<TransactionId, Vec<oneshot::Sender<Completed>>>>,
}

impl Completions {
    /// Registers a waiter for `id`. Register before reading the store, so that a completion
    /// between the read and the wait is not missed.
    pub fn wait(self: &Arc<Self>, id: TransactionId) -> Waiter {
        let (tx, rx) = oneshot::channel();
        self.lock().entry(id).or_default().push(tx);
        Waiter {
            id,
            rx,
            completions: self.clone(),
        }
    }

    /// Wakes every waiter of `id`.
    pub fn notify(&self, id: &TransactionId, record: Option<&TransactionRecord>) {
        let Some(waiters) = self.lock().remove(id) else {
            return;
        };
        for w in waiters {
            let _ = w.send(record.map(|r| Box::new(r.clone())));
        }
    }

    /// How many requests wait, over all transactions.
    pub fn waiters(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// How many transactions have waiters.
    #[cfg(test)]
    fn waited_for(&self) -> usize {
        self.lock().len()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<TransactionId, Vec<oneshot::Sender<Completed>>>> {
        // The map stays consistent whatever a panicking holder did: every operation on it is
        // a single insert or remove.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One registered waiter; dropping it (a timeout, a closed request) unregisters it.
pub struct Waiter {
    id: TransactionId,
    rx: oneshot::Receiver<Completed>,
    completions: Arc<Completions>,
}

impl Waiter {
    /// Resolves when the transaction completes: with the record if it completed on this node.
    pub async fn completed(&mut self) -> Completed {
        (&mut self.rx).await.unwrap_or(None)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.rx.close();
        let mut waiting = self.completions.lock();
        if let Some(senders) = waiting.get_mut(&self.id) {
            senders.retain(|s| !s.is_closed());
            if senders.is_empty() {
                waiting.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Whether the waiter is woken within a short while (paused time: the wait is instant when
    /// nothing can wake it, and never flakes).
    async fn woken(w: &mut Waiter) -> bool {
        tokio::time::timeout(Duration::from_millis(20), w.completed())
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_completion_wakes_only_its_own_waiters_and_dropped_waiters_leave_no_trace() {
        let c = Arc::new(Completions::default());
        let (a, b) = (TransactionId::new(), TransactionId::new());
        let mut wa1 = c.wait(a);
        let mut wa2 = c.wait(a);
        let mut wb = c.wait(b);
        assert_eq!(c.waited_for(), 2);
        assert_eq!(c.waiters(), 3);
        c.notify(&a, None);
        assert!(woken(&mut wa1).await);
        assert!(woken(&mut wa2).await);
        assert!(
            !woken(&mut wb).await,
            "b's waiter must not be woken by a's completion"
        );
        assert_eq!(c.waited_for(), 1);
        drop(wb);
        assert_eq!(c.waited_for(), 0, "a dropped waiter unregisters itself");
        drop((wa1, wa2));
        assert_eq!(c.waited_for(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_dropped_before_the_completion_does_not_disturb_the_others() {
        let c = Arc::new(Completions::default());
        let id = TransactionId::new();
        let early = c.wait(id);
        let mut late = c.wait(id);
        drop(early);
        assert_eq!(c.waited_for(), 1);
        assert!(!woken(&mut late).await);
        c.notify(&id, None);
        assert!(woken(&mut late).await);
    }
}
