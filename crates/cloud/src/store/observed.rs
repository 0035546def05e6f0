//! A [`Store`] decorator that tells an observer of every call (its operation, how long it took,
//! how it ended): metrics and health tracking wrap whichever backend was opened without the
//! backends knowing of them. Its forwarding is generated with the traits (`aggregates.rs`).

use super::{InsertError, Store, StoreError};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One store operation, as declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// The method's name (a metrics label).
    pub name: &'static str,
    /// Whether it commits a write.
    pub writes: bool,
}

/// How a store call ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    Ok,
    /// Refused because of what is stored (a duplicate): the store itself worked.
    Refused,
    /// The store failed.
    Failed(&'a StoreError),
}

/// Told of every call through [`Observed`].
pub trait StoreObserver: Send + Sync + 'static {
    fn observe(&self, operation: Operation, elapsed: Duration, outcome: Outcome<'_>);
}

/// The store failure inside an operation's error, if it is one.
pub trait StoreFailure {
    fn store_error(&self) -> Option<&StoreError>;
}

impl StoreFailure for StoreError {
    fn store_error(&self) -> Option<&StoreError> {
        Some(self)
    }
}

impl StoreFailure for InsertError {
    fn store_error(&self) -> Option<&StoreError> {
        match self {
            InsertError::Store(e) => Some(e),
            _ => None,
        }
    }
}

/// A store whose every call is reported to `O`.
pub struct Observed<O> {
    inner: Arc<dyn Store>,
    observer: O,
}

impl<O: StoreObserver> Observed<O> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, observer: O) -> Self {
        Self { inner, observer }
    }

    pub(super) fn inner(&self) -> &dyn Store {
        &*self.inner
    }

    pub(super) async fn observe<T, E: StoreFailure>(
        &self,
        operation: Operation,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let begun = Instant::now();
        let out = call.await;
        let outcome = match &out {
            Ok(_) => Outcome::Ok,
            Err(e) => e.store_error().map_or(Outcome::Refused, Outcome::Failed),
        };
        self.observer.observe(operation, begun.elapsed(), outcome);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::records::DeviceRecord;
    use crate::store::aggregates::OPERATIONS;
    use crate::store::{DeviceStore, Housekeeping, SqliteStore, StoreFaults, TransactionStore};
    use chrono::Utc;
    use protocol::DeviceId;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Log(Mutex<Vec<(Operation, String)>>);

    impl StoreObserver for Arc<Log> {
        fn observe(&self, operation: Operation, _: Duration, outcome: Outcome<'_>) {
            let outcome = match outcome {
                Outcome::Ok => "ok".to_string(),
                Outcome::Refused => "refused".to_string(),
                Outcome::Failed(e) => format!("failed: {e}"),
            };
            self.0.lock().unwrap().push((operation, outcome));
        }
    }

    #[test]
    fn operations_are_named_once_and_writes_are_declared() {
        let mut names: Vec<_> = OPERATIONS.iter().map(|o| o.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OPERATIONS.len(), "an operation declared twice");
        let writes = |name| OPERATIONS.iter().find(|o| o.name == name).unwrap().writes;
        assert!(writes("insert_transaction") && writes("transition") && writes("probe_write"));
        assert!(!writes("transaction") && !writes("route") && !writes("ping"));
    }

    #[tokio::test]
    async fn every_call_is_reported_with_its_operation_and_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let faults = Arc::new(StoreFaults::default());
        let backend: Arc<dyn Store> = Arc::new(
            SqliteStore::open_with_faults(&url, faults.clone())
                .await
                .unwrap(),
        );
        let log = Arc::new(Log::default());
        let store = Observed::new(backend, log.clone());

        let id = DeviceId::parse("dev-1").unwrap();
        let device = DeviceRecord {
            id: id.clone(),
            secret_hash: "h".into(),
            vendor: "v".into(),
            model: "m".into(),
            merchant: "Shop".into(),
            merchant_id: crate::domain::accounts::MerchantId::from_stored("mid".into()),
            site_id: None,
            created_at: Utc::now(),
            connected_at: None,
            last_seen_at: None,
            self_enrolled: false,
            capabilities: Vec::new(),
            hardware: None,
        };
        assert!(store.device(&id).await.unwrap().is_none());
        store.insert_device(&device, None).await.unwrap();
        assert!(matches!(
            store.insert_device(&device, None).await,
            Err(InsertError::AlreadyExists)
        ));
        faults.fail_commits();
        assert!(store.probe_write().await.is_err());
        faults.heal();
        store.probe_write().await.unwrap();
        assert!(store.active_transaction(&id).await.unwrap().is_none());

        let seen = log.0.lock().unwrap().clone();
        let seen: Vec<_> = seen
            .iter()
            .map(|(o, outcome)| (o.name, o.writes, outcome.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("device", false, "ok"),
                ("insert_device", true, "ok"),
                ("insert_device", true, "refused"),
                (
                    "probe_write",
                    true,
                    "failed: commit failed: database or disk is full (injected fault)"
                ),
                ("probe_write", true, "ok"),
                ("active_transaction", false, "ok"),
            ]
        );
    }
}
