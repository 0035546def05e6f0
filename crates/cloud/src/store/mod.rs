//! Durable state behind one trait of domain-level methods. The backend is chosen from the
//! database URL at startup; the engine only ever sees `Arc<dyn Store>`.

mod columns;
pub mod faults;
mod postgres;
mod sqlite;

pub use crate::domain::records::{DeviceRecord, RegisterRecord, TransactionRecord};
pub use faults::StoreFaults;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// The row of `secrets` that [`Store::probe_write`] overwrites; never read as a secret.
const PROBE_NAME: &str = "store-probe";

use crate::domain::lifecycle::Phase;
use crate::domain::timeline::TimelineEvent;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use protocol::{DeviceId, PairingCode, RegisterKey, TransactionId};
use std::sync::Arc;

/// A failure of the store itself (not "not found", which is an `Option`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored value has an unexpected type: {0}")]
    Decode(#[from] rusqlite::types::FromSqlError),
    /// The commit of a group of writes failed: none of them is stored.
    #[error("commit failed: {0}")]
    Commit(String),
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "unsupported database URL '{0}': expected sqlite://<path> or postgres://[user@]host/db"
    )]
    UnsupportedUrl(String),
    #[error("cannot open the database: {0}")]
    Open(String),
}

impl StoreError {
    /// Whether the store itself is unavailable (full disk, I/O error, database down or
    /// restarting, connection lost, shutting down): the same call may succeed later, so the
    /// caller should retry or ask its client to. Constraint violations, corrupt rows and
    /// configuration errors are not.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Commit(_) | StoreError::Closed => true,
            StoreError::Sqlite(e) => sqlite_unavailable(e),
            StoreError::Database(e) => sqlx_unavailable(e),
            StoreError::Decode(_)
            | StoreError::Migration(_)
            | StoreError::Corrupt(_)
            | StoreError::UnsupportedUrl(_)
            | StoreError::Open(_) => false,
        }
    }
}

fn sqlite_unavailable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if matches!(
        f.code,
        C::DiskFull
            | C::SystemIoFailure
            | C::CannotOpen
            | C::DatabaseBusy
            | C::DatabaseLocked
            | C::ReadOnly
            | C::OutOfMemory
    ))
}

fn sqlx_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE classes: 08 connection exception, 53 insufficient resources (disk full),
        // 57 operator intervention (shutdown, restart, "cannot connect now"), 58 system error;
        // 40001/40P01 (serialization failure, deadlock) succeed when retried.
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            ["08", "53", "57", "58"]
                .iter()
                .any(|class| c.starts_with(class))
                || c == "40001"
                || c == "40P01"
        }),
        _ => false,
    }
}

impl InsertError {
    /// See [`StoreError::is_unavailable`].
    pub fn is_unavailable(&self) -> bool {
        matches!(self, InsertError::Store(e) if e.is_unavailable())
    }
}

/// An insert refused because of what is already stored.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    #[error("already exists")]
    AlreadyExists,
    /// The device already has a transaction in progress.
    #[error("device is busy")]
    DeviceBusy,
    /// The register already used this POS reference (a retry, or a race with one).
    #[error("POS reference already used")]
    DuplicateReference,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a new transaction of a register goes: the register's pairing, its device, and whether
/// that device has a transaction in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub register: RegisterRecord,
    pub device: DeviceRecord,
    pub busy: bool,
}

/// The store. Every method is one atomic step; conditional writes say whether they applied.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Devices.
    /// Enrolls a device.
    async fn insert_device(&self, device: &DeviceRecord) -> Result<(), InsertError>;
    /// One device.
    async fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError>;
    /// Replaces a device's secret hash (rotation, or revocation with a hash no secret has);
    /// false if the device is not enrolled.
    async fn set_secret_hash(&self, id: &DeviceId, secret_hash: &str) -> Result<bool, StoreError>;
    /// Every device, by id.
    async fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError>;
    /// Records that `node` now holds the device's connection (or, with `None`, that the
    /// connection `node` held closed; a newer holder is left alone).
    async fn set_device_connection(
        &self,
        id: &DeviceId,
        node: &str,
        connected: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Marks every device held by `node` as disconnected (at startup, after a crash).
    async fn clear_connections(&self, node: &str) -> Result<(), StoreError>;
    /// Deletes self-enrolled devices not connected and not seen since `before` (never
    /// connected: enrolled before it), with their pairing codes and registers; a device with a
    /// transaction in progress is kept. Returns how many were deleted.
    async fn purge_unused_self_enrolled(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    // Pairing.
    /// Makes `code` the device's only valid code. False if the code is taken by another device.
    async fn replace_pairing_code(
        &self,
        device: &DeviceId,
        code: &PairingCode,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Consumes a valid code (single use): the device it belonged to, if it was valid at `now`.
    async fn take_pairing_code(
        &self,
        code: &PairingCode,
        now: DateTime<Utc>,
    ) -> Result<Option<DeviceId>, StoreError>;
    /// Pairs (or re-pairs) a register; returns the device it was paired to before, if another.
    async fn pair_register(
        &self,
        register: &RegisterRecord,
    ) -> Result<Option<DeviceId>, StoreError>;
    /// The register with this identity, if paired.
    async fn register(&self, key: &RegisterKey) -> Result<Option<RegisterRecord>, StoreError>;
    /// The register with this identity, its device and whether the device is busy, in one
    /// consistent read (a POST's only read on the SQLite store).
    async fn route(&self, key: &RegisterKey) -> Result<Option<Route>, StoreError> {
        let Some(register) = self.register(key).await? else {
            return Ok(None);
        };
        let Some(device) = self.device(&register.device_id).await? else {
            return Ok(None);
        };
        let busy = self.active_transaction(&device.id).await?.is_some();
        Ok(Some(Route {
            register,
            device,
            busy,
        }))
    }
    /// The registers paired to a device.
    async fn registers_of(&self, device: &DeviceId) -> Result<Vec<RegisterRecord>, StoreError>;
    /// Unpairs one register of the device, or all of them; returns those removed.
    async fn unpair(
        &self,
        device: &DeviceId,
        register: Option<&RegisterKey>,
    ) -> Result<Vec<RegisterKey>, StoreError>;

    // Transactions.
    /// Stores a new transaction with its first timeline events; `DeviceBusy` if the device
    /// already has one in progress, `DuplicateReference` if the register used the reference.
    async fn insert_transaction(
        &self,
        tx: &TransactionRecord,
        events: &[TimelineEvent],
    ) -> Result<(), InsertError>;
    /// The register's transaction with this POS reference.
    async fn transaction_by_reference(
        &self,
        register: &RegisterKey,
        reference: &str,
    ) -> Result<Option<TransactionRecord>, StoreError>;
    /// One transaction.
    async fn transaction(
        &self,
        id: &TransactionId,
    ) -> Result<Option<TransactionRecord>, StoreError>;
    /// Moves a transaction from the phase `from` (compared by kind) to `to`, appending `events`
    /// in the same commit. False if it was no longer in phase `from`: someone else moved it
    /// first and the caller must re-read (nothing is written then).
    async fn transition(
        &self,
        id: &TransactionId,
        from: &Phase,
        to: &Phase,
        events: &[TimelineEvent],
    ) -> Result<bool, StoreError>;
    /// Appends timeline events.
    async fn append_events(
        &self,
        id: &TransactionId,
        events: &[TimelineEvent],
    ) -> Result<(), StoreError>;
    /// The timeline, oldest first.
    async fn events(&self, id: &TransactionId) -> Result<Vec<TimelineEvent>, StoreError>;
    /// Records the prompt the device shows (and a `prompt` event), while the transaction is
    /// the device's and not completed.
    async fn set_display_text(
        &self,
        id: &TransactionId,
        device: &DeviceId,
        text: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Deletes completed transactions created before `before` (with their timelines); returns
    /// how many. Transactions still running are never deleted.
    async fn purge_completed_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    // Callbacks. A transaction with a callback URL gets an outbox entry in the same commit
    // that completes it (`transition` or `insert_transaction` to a completed phase).
    /// Callbacks due at `now`, oldest first, at most `limit`.
    async fn due_callbacks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CallbackJob>, StoreError>;
    /// Takes the callbacks due at `now` for delivery by this node: their next attempt moves to
    /// `lease_until`, so other nodes leave them alone meanwhile, and a node that dies
    /// mid-delivery only delays them until the lease ends.
    async fn claim_callbacks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<CallbackJob>, StoreError>;
    /// The earliest time a pending callback is due.
    async fn next_callback_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Records an attempt: delivered, retry at `retry_at`, or given up (`retry_at` none and not
    /// delivered); appends the timeline event in the same commit.
    async fn record_callback_attempt(
        &self,
        id: &TransactionId,
        delivered: bool,
        retry_at: Option<DateTime<Utc>>,
        error: &str,
        event: &TimelineEvent,
    ) -> Result<(), StoreError>;
    /// Checks that the store answers (readiness probe).
    async fn ping(&self) -> Result<(), StoreError> {
        self.next_offer_deadline().await.map(|_| ())
    }
    /// Commits one small real write (a row of `secrets` overwritten with the time): tells a
    /// store that can be read but not written (a full disk) from a healthy one.
    async fn probe_write(&self) -> Result<(), StoreError>;
    /// The named secret, created with `generate` the first time.
    async fn secret(
        &self,
        name: &str,
        generate: &(dyn Fn() -> String + Send + Sync),
    ) -> Result<String, StoreError>;
    /// Transactions matching `q`, newest first (the operator dashboard's search).
    async fn query_transactions(
        &self,
        q: &TransactionQuery,
    ) -> Result<Vec<TransactionRecord>, StoreError>;
    /// The device's transaction in progress (offered or started), if any.
    async fn active_transaction(
        &self,
        device: &DeviceId,
    ) -> Result<Option<TransactionRecord>, StoreError>;
    /// Offers whose accept deadline is at or before `now`.
    async fn expired_offers(&self, now: DateTime<Utc>) -> Result<Vec<TransactionId>, StoreError>;
    /// The earliest accept deadline of any offer, to know how long the deadline loop may sleep.
    async fn next_offer_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
}

/// A search over transactions; every criterion is optional, text matches are case-insensitive
/// substrings.
#[derive(Debug, Clone, Default)]
pub struct TransactionQuery {
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    /// In the register id or name.
    pub register: Option<String>,
    /// In the device id.
    pub device: Option<String>,
    /// In the POS reference or the transaction id.
    pub reference: Option<String>,
    /// Only transactions not completed yet.
    pub pending_only: bool,
    /// At most this many.
    pub limit: u32,
}

impl TransactionQuery {
    /// A `LIKE` pattern for a substring, with `\` escaping the pattern's own wildcards.
    pub fn like(s: &str) -> String {
        let escaped = s
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    }
}

/// A callback to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackJob {
    pub transaction_id: TransactionId,
    pub url: String,
    /// Attempts made so far.
    pub attempts: u32,
}

/// Opens the store named by a URL, creating and migrating it as needed: `sqlite://path` for one
/// node, `postgres://...` (or `postgresql://...`) for a store shared by many nodes.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with_faults(url, None).await
}

/// Like [`open`]; with `faults` (tests), the SQLite store's commits fail when it says so (a
/// PostgreSQL store ignores it: its faults are real ones, a server stopped or cut off).
pub async fn open_with_faults(
    url: &str,
    faults: Option<Arc<StoreFaults>>,
) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(
            SqliteStore::open_with_faults(url, faults.unwrap_or_default()).await?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}
