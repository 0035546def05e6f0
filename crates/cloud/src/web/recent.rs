//! The transactions the dashboard shows. The store has no "list transactions" query yet, so
//! this module remembers them itself, since this node started: the id of every transaction a
//! POS creates through this node (a middleware on the POS routes notes it), plus any
//! transaction seen in progress on a device (the dashboard looks about once a second, which
//! catches those created through other nodes). Unfinished ones are re-read from the store.
//! A store query listing recent transactions would replace this module.

use crate::engine::lifecycle::Phase;
use crate::engine::Engine;
use crate::store::{DeviceRecord, StoreError, TransactionRecord};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use protocol::TransactionId;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// How many transactions are remembered (oldest forgotten first).
const CAPACITY: usize = 1000;

/// Recently seen transactions, newest last.
#[derive(Default)]
pub struct Recent {
    /// Off when no dashboard can read it: nothing is noted then.
    enabled: bool,
    seen: Mutex<VecDeque<TransactionRecord>>,
    /// Ids noted at creation, not read from the store yet.
    noted: Mutex<VecDeque<TransactionId>>,
}

/// Middleware on the POS routes: notes the id of each transaction a POS creates, so the
/// dashboard lists it even when it ends before the dashboard looks.
pub async fn observe(State(recent): State<Arc<Recent>>, req: Request, next: Next) -> Response {
    // Paths are folded to lower case before routing.
    let creates =
        recent.enabled && req.method() == Method::POST && req.uri().path() == "/pos/transaction";
    let response = next.run(req).await;
    if !creates || !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    // The body is a small JSON envelope already complete in memory.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error, please retry",
        )
            .into_response();
    };
    #[derive(serde::Deserialize)]
    struct Created {
        #[serde(rename = "transactionId")]
        transaction_id: String,
    }
    if let Some(id) = serde_json::from_slice::<Created>(&bytes)
        .ok()
        .and_then(|c| c.transaction_id.parse::<TransactionId>().ok())
    {
        recent.note(id);
    }
    Response::from_parts(parts, Body::from(bytes))
}

impl Recent {
    /// An empty list; `enabled` false when no dashboard will read it.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            ..Self::default()
        }
    }

    /// Notes a transaction id, to be read from the store at the next refresh.
    pub fn note(&self, id: TransactionId) {
        let mut noted = self.noted.lock().unwrap_or_else(|p| p.into_inner());
        if noted.len() >= CAPACITY {
            noted.pop_front();
        }
        noted.push_back(id);
    }

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
        let noted: Vec<TransactionId> = self
            .noted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        // Unfinished ones may have completed since the last look (completed ones never change).
        let mut unfinished: Vec<TransactionId> = self
            .lock()
            .iter()
            .filter(|t| !matches!(t.phase, Phase::Completed(_)))
            .map(|t| t.id)
            .collect();
        unfinished.extend(noted);
        let mut wanted: Vec<TransactionId> = Vec::new();
        for id in unfinished {
            if !wanted.contains(&id) && !found.iter().any(|f| f.id == id) {
                wanted.push(id);
            }
        }
        let mut gone = Vec::new();
        for id in wanted {
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
        all.sort_by_key(|t| std::cmp::Reverse(t.created_at));
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
