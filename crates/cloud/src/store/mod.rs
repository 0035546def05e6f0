//! Durable state behind small per-aggregate traits of domain-level methods ([`Store`] is all of
//! them). Every method is one atomic step; conditional writes say whether they applied. The
//! backend is chosen from the database URL at startup; the engine only ever sees
//! `Arc<dyn Store>`.

mod aggregates;
mod columns;
pub mod faults;
pub mod observed;
mod postgres;
mod receipt_columns;
mod sqlite;

pub use aggregates::ReportStore;
pub use aggregates::{
    AccountStore, DeviceStore, Housekeeping, OrderStore, OutboxStore, PairingStore, PeopleStore,
    Store, TimelineStore, TransactionStore, OPERATIONS,
};
pub use aggregates::{ConfigStore, EventStore, ReceiptStore, UpdateStore, WebhookStore};

pub use crate::domain::records::{DeviceRecord, RegisterRecord, TransactionRecord};
pub use columns::capabilities_column;
pub use faults::StoreFaults;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// The row of `secrets` that [`Housekeeping::probe_write`] overwrites; never read as a secret.
const PROBE_NAME: &str = "store-probe";

use chrono::{DateTime, Utc};
use protocol::{DeviceId, TransactionId};
use std::str::FromStr;
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
    /// A follow-up does not fit its original (checked in the insert's own commit).
    #[error(transparent)]
    Refused(#[from] crate::domain::payments::Refusal),
    /// A tender does not fit its order (checked in the insert's own commit).
    #[error(transparent)]
    OrderRefused(#[from] crate::domain::orders::OrderRefusal),
    /// The order a tender names is not stored.
    #[error("the order is not stored")]
    UnknownOrder,
    /// The original a follow-up names is not stored (any more).
    #[error("the original transaction is not stored")]
    UnknownOriginal,
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
    /// The default currency of the device's merchant.
    pub currency: protocol::Currency,
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
    /// Only this merchant's (a merchant's own view).
    pub merchant: Option<crate::domain::accounts::MerchantId>,
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

/// Completed transactions of a period, for settlements, reconciliation and exports: by the
/// time they completed, each bound inclusive (the store keeps milliseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodQuery {
    /// Only this merchant's.
    pub merchant: Option<crate::domain::accounts::MerchantId>,
    /// Only this device's (exactly).
    pub device: Option<DeviceId>,
    /// Completed at or after.
    pub since: Option<DateTime<Utc>>,
    /// Completed at or before.
    pub until: Option<DateTime<Utc>>,
    /// At most this many.
    pub limit: u32,
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

/// The newest migration applied to the database at `url`, without changing it: `None` for a
/// database that has none yet (or a SQLite file that does not exist), so `eftcloud migrate` can
/// say what it did.
pub async fn schema_version(url: &str) -> Result<Option<i64>, StoreError> {
    use sqlx::Connection;
    const SQL: &str = "SELECT MAX(version) FROM _sqlx_migrations";
    if url.starts_with("sqlite:") {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open(format!("{url}: {e}")))?;
        if !options.get_filename().exists() {
            return Ok(None);
        }
        let mut conn = sqlx::SqliteConnection::connect_with(&options.read_only(true)).await?;
        let version: Option<(Option<i64>,)> = sqlx::query_as(SQL)
            .fetch_optional(&mut conn)
            .await
            .ok()
            .flatten();
        conn.close().await?;
        Ok(version.and_then(|(v,)| v))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open(format!("{e}")))?
            .options([("client_min_messages", "warning")]);
        let mut conn = sqlx::PgConnection::connect_with(&options).await?;
        // No table yet: an empty database.
        let version: Option<(Option<i64>,)> = sqlx::query_as(SQL)
            .fetch_optional(&mut conn)
            .await
            .ok()
            .flatten();
        conn.close().await?;
        Ok(version.and_then(|(v,)| v))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}
