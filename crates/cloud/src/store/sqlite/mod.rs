//! The embedded default store: one SQLite file in WAL mode with `synchronous=FULL`, so a
//! commit that returned survives a power cut of the server.
//!
//! Writes go to one writer thread that commits them in groups ([`writer`]): SQLite has a single
//! writer anyway, and sharing a commit (and its fsync) between the writes that arrive during the
//! previous one is what lets many transactions per second be durable. Reads run on a small pool
//! of read-only connections, concurrently with the writer thanks to WAL. Point reads (one row
//! by key, from the page cache) take microseconds and run directly on the calling task; reads
//! that may scan many rows run on the blocking pool.
//!
//! The schema is migrated with sqlx's migrator (so `eftcloud migrate` and existing databases
//! keep one migration history); the statements themselves go through rusqlite, whose direct
//! calls avoid a thread hand-off per statement.

mod accounts;
mod config;
mod events;
mod orders;
mod people;
mod receipts;
mod reports;
mod updates;
mod writer;

use super::columns::{
    self, callback_status, from_ms, ms, parse_device_id, parse_transaction_id, phase_columns,
    phase_kind, tx_columns,
};
use super::{
    CallbackJob, DeviceRecord, DeviceStore, Housekeeping, InsertError, OutboxStore, PairingStore,
    RegisterRecord, Route, StoreError, StoreFaults, TimelineStore, TransactionQuery,
    TransactionRecord, TransactionStore, PROBE_NAME,
};

/// The probe's write: one row of `secrets` overwritten (see [`Housekeeping::probe_write`]).
const PROBE_SQL: &str = "INSERT OR REPLACE INTO secrets (name, value) VALUES (?1, ?2)";
use crate::domain::accounts::{AuditEntry, MerchantId};
use crate::domain::lifecycle::Phase;
use crate::domain::payments::PaymentRecord;
use crate::domain::timeline::{EventKind, TimelineEvent};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use protocol::{DeviceId, PairingCode, RegisterKey, TransactionId};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use writer::Writer;

/// How long a statement waits for a lock held by another process (a backup, `eftcloud device
/// add` against a running server) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;
/// Prepared statements kept per connection (the hot path uses about 20).
const STATEMENT_CACHE: usize = 64;

/// SQLite behind the [`Store`] trait.
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    path: PathBuf,
}

/// Read-only connections, taken for one read and put back.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(c) => c,
            None => open_connection(&self.path, false)?,
        };
        let r = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        r
    }
}

fn open_connection(path: &Path, write: bool) -> Result<Connection, StoreError> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if write {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )?;
    }
    Ok(conn)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database at `url` (`sqlite://path`).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with_faults(url, Arc::default()).await
    }

    /// Like [`Self::open`], with commits that fail when `faults` says so (tests).
    pub async fn open_with_faults(url: &str, faults: Arc<StoreFaults>) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open(format!("{url}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let path = options.get_filename().to_path_buf();
        let migrator = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open(format!("{url}: {e}")))?;
        sqlx::migrate!("./migrations/sqlite").run(&migrator).await?;
        migrator.close().await;
        let writer = Writer::start(open_connection(&path, true)?, faults)?;
        let readers = Arc::new(Readers {
            path: path.clone(),
            idle: Mutex::new(Vec::new()),
        });
        Ok(Self {
            writer,
            readers,
            path,
        })
    }

    /// Writes a consistent copy of the live database to `path` (`VACUUM INTO`): readers and the
    /// writer carry on meanwhile, and the copy is a complete database usable as is.
    pub async fn backup_to(&self, path: &Path) -> Result<(), StoreError> {
        if path.exists() {
            return Err(StoreError::Open(format!(
                "{} already exists; not overwriting it",
                path.display()
            )));
        }
        let source = self.path.clone();
        let target = path.display().to_string();
        // Its own connection: VACUUM cannot run inside the writer's batch transaction.
        blocking(move || {
            let conn = open_connection(&source, true)?;
            conn.execute("VACUUM INTO ?1", [target])?;
            Ok(())
        })
        .await
    }

    /// A point read, on the calling task.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.readers.read(f)
    }

    /// A read that may scan many rows, on the blocking pool.
    async fn scan<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        blocking(move || readers.read(f)).await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Open(format!("store task failed: {e}")))?
}

/// A payment with its follow-ups, as stored now (see [`PaymentRecord`]).
fn payment_of(conn: &Connection, id: &TransactionId) -> Result<Option<PaymentRecord>, StoreError> {
    let Some(original) = one(
        conn,
        concat!("SELECT ", tx_columns!(), " FROM transactions WHERE id = ?1"),
        [id.to_string()],
        transaction_from_row,
    )?
    else {
        return Ok(None);
    };
    let follow_ups = all(
        conn,
        concat!(
            "SELECT ",
            tx_columns!(),
            " FROM transactions WHERE original_id = ?1 ORDER BY created_at, rowid"
        ),
        [id.to_string()],
        transaction_from_row,
    )?;
    let cutovers = match original.completed_at() {
        Some(after) => all(
            conn,
            concat!(
                "SELECT ",
                tx_columns!(),
                " FROM transactions WHERE device_id = ?1 AND function = 'Acquirer.Settlement.Cutover' \
                 AND state = 'completed' AND completed_at > ?2"
            ),
            params![original.device_id.as_str(), ms(after)],
            transaction_from_row,
        )?,
        None => Vec::new(),
    };
    let max_tip_percent = one(
        conn,
        "SELECT max_tip_percent FROM merchants WHERE id = ?1",
        [original.merchant_id.as_str()],
        |r| columns::Columns::count(r, "max_tip_percent"),
    )?;
    Ok(Some(PaymentRecord::new(
        original,
        follow_ups,
        &cutovers,
        max_tip_percent,
    )))
}

/// The first row of a query, decoded.
fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl FnOnce(&Row) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    match rows.next()? {
        Some(row) => decode(row).map(Some),
        None => Ok(None),
    }
}

/// Every row of a query, decoded.
fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// Rows a purge deletes per write (its statement's `LIMIT`).
const PURGE_BATCH: usize = 1000;

impl SqliteStore {
    /// Runs `sql` (a `DELETE ... LIMIT 1000` of rows older than `?1`) until a batch deletes
    /// fewer than [`PURGE_BATCH`]: each batch is its own write, so a large purge never holds the
    /// writer for long. Returns how many rows went.
    async fn delete_in_batches(
        &self,
        sql: &'static str,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = self
                .writer
                .write(move |conn| {
                    Ok::<_, StoreError>(conn.prepare_cached(sql)?.execute([ms(before)])?)
                })
                .await?;
            total += n as u64;
            if n < PURGE_BATCH {
                return Ok(total);
            }
        }
    }
}

impl super::columns::Columns for Row<'_> {
    fn text(&self, name: &'static str) -> Result<String, StoreError> {
        Ok(self.get(name)?)
    }
    fn opt_text(&self, name: &'static str) -> Result<Option<String>, StoreError> {
        Ok(self.get(name)?)
    }
    fn int(&self, name: &'static str) -> Result<i64, StoreError> {
        Ok(self.get(name)?)
    }
    fn opt_int(&self, name: &'static str) -> Result<Option<i64>, StoreError> {
        Ok(self.get(name)?)
    }
    fn flag(&self, name: &'static str) -> Result<bool, StoreError> {
        Ok(self.get::<_, i64>(name)? != 0)
    }
    fn count(&self, name: &'static str) -> Result<u32, StoreError> {
        super::columns::count_of(self.get(name)?, name)
    }
}

fn device_from_row(row: &Row) -> Result<DeviceRecord, StoreError> {
    columns::device(row)
}

fn register_from_row(row: &Row) -> Result<RegisterRecord, StoreError> {
    columns::register(row)
}

fn transaction_from_row(row: &Row) -> Result<TransactionRecord, StoreError> {
    columns::transaction(row)
}

fn callback_job(row: &Row) -> Result<CallbackJob, StoreError> {
    columns::callback_job(row)
}

/// Queues the completion callback of a transaction that has a callback URL (no-op otherwise).
fn enqueue_callback(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO callback_outbox (transaction_id, url, next_attempt_at)
         SELECT id, callback_url, completed_at FROM transactions WHERE id = ?1 AND callback_url IS NOT NULL",
    )?
    .execute([id])?;
    Ok(())
}

fn insert_events(conn: &Connection, id: &str, events: &[TimelineEvent]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO transaction_events (transaction_id, at, kind, detail) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for e in events {
        stmt.execute(params![id, ms(e.at), e.kind.as_str(), e.detail])?;
    }
    Ok(())
}

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn insert_device(
        &self,
        d: &DeviceRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<(), InsertError> {
        let (d, audit) = (d.clone(), audit.cloned());
        self.writer
            .write(move |conn| {
                let r = conn
                    .prepare_cached(
                        "INSERT INTO devices (id, secret_hash, vendor, model, merchant, merchant_id, created_at, self_enrolled, site_id)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )
                    .map_err(StoreError::from)?
                    .execute(params![
                        d.id.as_str(),
                        d.secret_hash,
                        d.vendor,
                        d.model,
                        d.merchant,
                        d.merchant_id.as_str(),
                        ms(d.created_at),
                        i64::from(d.self_enrolled),
                        d.site_id.as_ref().map(|s| s.as_str())
                    ]);
                match r {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => return Err(InsertError::AlreadyExists),
                    Err(e) => return Err(StoreError::from(e).into()),
                }
                if let Some(a) = &audit {
                    accounts::insert_audit(conn, a)?;
                }
                Ok(())
            })
            .await
    }

    async fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                "SELECT * FROM devices WHERE id = ?1",
                [id.as_str()],
                device_from_row,
            )
        })
    }

    async fn set_secret_hash(
        &self,
        id: &DeviceId,
        secret_hash: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        let (id, hash, audit) = (id.clone(), secret_hash.to_string(), audit.cloned());
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached("UPDATE devices SET secret_hash = ?1 WHERE id = ?2")?
                    .execute([hash.as_str(), id.as_str()])?;
                if let (1, Some(a)) = (n, &audit) {
                    accounts::insert_audit(conn, a)?;
                }
                Ok(n == 1)
            })
            .await
    }

    async fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        self.scan(|conn| {
            all(
                conn,
                "SELECT * FROM devices ORDER BY id",
                [],
                device_from_row,
            )
        })
        .await
    }

    async fn set_device_connection(
        &self,
        id: &DeviceId,
        node: &str,
        connected: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (id, node) = (id.clone(), node.to_string());
        self.writer
            .write(move |conn| {
                let n = if connected {
                    conn.prepare_cached(
                        "UPDATE devices SET connected_at = ?1, connected_node = ?2, last_seen_at = ?1 WHERE id = ?3",
                    )?
                    .execute(params![ms(now), node, id.as_str()])?
                } else {
                    conn.prepare_cached(
                        "UPDATE devices SET connected_at = NULL, connected_node = NULL, last_seen_at = ?1
                         WHERE id = ?2 AND connected_node = ?3",
                    )?
                    .execute(params![ms(now), id.as_str(), node])?
                };
                if n == 1 {
                    let event = crate::domain::events::device_connection(&id, &node, connected, now);
                    events::log_event(conn, &event)?;
                }
                Ok(())
            })
            .await
    }

    async fn set_device_capabilities(
        &self,
        id: &DeviceId,
        capabilities: &str,
        hardware: Option<&str>,
    ) -> Result<(), StoreError> {
        let (id, capabilities) = (id.as_str().to_string(), capabilities.to_string());
        let hardware = hardware.map(str::to_string);
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE devices SET capabilities = ?2, hardware = ?3 WHERE id = ?1",
                )?
                .execute(params![id, capabilities, hardware])?;
                Ok(())
            })
            .await
    }

    async fn set_display(
        &self,
        id: &DeviceId,
        display: Option<&str>,
    ) -> Result<Option<u64>, StoreError> {
        let (id, display) = (id.as_str().to_string(), display.map(str::to_string));
        self.writer
            .write(move |conn| {
                // One statement: the version moves only when the display differs.
                conn.prepare_cached(
                    "UPDATE devices SET display = ?2, display_version = display_version + 1
                     WHERE id = ?1 AND display IS NOT ?2",
                )?
                .execute(params![id, display])?;
                let version: Option<i64> = conn
                    .prepare_cached("SELECT display_version FROM devices WHERE id = ?1")?
                    .query_row(params![id], |r| r.get(0))
                    .optional()?;
                Ok(version.map(|v| u64::try_from(v).unwrap_or(0)))
            })
            .await
    }

    async fn record_health(
        &self,
        id: &DeviceId,
        at: DateTime<Utc>,
        health: &str,
        keep: u32,
    ) -> Result<(), StoreError> {
        let (id, health) = (id.as_str().to_string(), health.to_string());
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO device_health (device_id, reported_at, health) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![id, ms(at), health])?;
                // The history stays bounded: everything past the newest `keep` goes.
                conn.prepare_cached(
                    "DELETE FROM device_health WHERE device_id = ?1 AND rowid NOT IN (
                         SELECT rowid FROM device_health WHERE device_id = ?1
                         ORDER BY reported_at DESC, rowid DESC LIMIT ?2)",
                )?
                .execute(params![id, i64::from(keep)])?;
                Ok(())
            })
            .await
    }

    async fn health_history(
        &self,
        id: &DeviceId,
        limit: u32,
    ) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT reported_at, health FROM device_health WHERE device_id = ?1
                 ORDER BY reported_at DESC, rowid DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![id.as_str(), i64::from(limit)], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (at, health) = row?;
                out.push((from_ms(at)?, health));
            }
            Ok(out)
        })
    }

    async fn latest_health(&self) -> Result<Vec<(DeviceId, DateTime<Utc>, String)>, StoreError> {
        self.read(|conn| {
            // SQLite's bare columns of a MAX() aggregate come from the row that has the max.
            let mut stmt = conn.prepare_cached(
                "SELECT device_id, MAX(reported_at), health FROM device_health GROUP BY device_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, at, health) = row?;
                out.push((parse_device_id(id)?, from_ms(at)?, health));
            }
            Ok(out)
        })
    }

    async fn display(&self, id: &DeviceId) -> Result<Option<(u64, Option<String>)>, StoreError> {
        self.read(|conn| {
            let row: Option<(i64, Option<String>)> = conn
                .prepare_cached("SELECT display_version, display FROM devices WHERE id = ?1")?
                .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            Ok(row.map(|(v, d)| (u64::try_from(v).unwrap_or(0), d)))
        })
    }

    async fn clear_connections(&self, node: &str) -> Result<(), StoreError> {
        let node = node.to_string();
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE devices SET connected_at = NULL, connected_node = NULL WHERE connected_node = ?1",
                )?
                .execute([node])?;
                Ok(())
            })
            .await
    }

    async fn purge_unused_self_enrolled(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        // The single writer runs each batch alone, so a device cannot connect between the
        // check and the delete.
        self.delete_in_batches(
            "DELETE FROM devices WHERE id IN (
               SELECT d.id FROM devices d
               WHERE d.self_enrolled = 1 AND d.connected_at IS NULL
                 AND COALESCE(d.last_seen_at, d.created_at) < ?1
                 AND NOT EXISTS (SELECT 1 FROM transactions t
                                 WHERE t.device_id = d.id AND t.state <> 'completed')
               LIMIT 1000)",
            before,
        )
        .await
    }
}

#[async_trait]
impl PairingStore for SqliteStore {
    async fn replace_pairing_code(
        &self,
        device: &DeviceId,
        code: &PairingCode,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (device, code) = (device.clone(), code.clone());
        self.writer
            .write(move |conn| {
                // The single writer runs this alone, so checking first is race-free, and a code
                // taken by another device leaves this device's current code in place.
                let now = ms(Utc::now());
                let taken = one(
                    conn,
                    "SELECT 1 FROM pairing_codes WHERE code = ?1 AND device_id <> ?2 AND expires_at > ?3",
                    params![code.as_str(), device.as_str(), now],
                    |_| Ok(()),
                )?;
                if taken.is_some() {
                    return Ok(false);
                }
                conn.prepare_cached(
                    "DELETE FROM pairing_codes WHERE device_id = ?1 OR expires_at <= ?2",
                )?
                .execute(params![device.as_str(), now])?;
                conn.prepare_cached(
                    "INSERT INTO pairing_codes (code, device_id, expires_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![code.as_str(), device.as_str(), ms(expires_at)])?;
                Ok(true)
            })
            .await
    }

    async fn take_pairing_code(
        &self,
        code: &PairingCode,
        now: DateTime<Utc>,
        merchant: Option<&MerchantId>,
    ) -> Result<Option<DeviceId>, StoreError> {
        let code = code.clone();
        let merchant = merchant.map(|m| m.as_str().to_string());
        let taken = self
            .writer
            .write(move |conn| {
                // DELETE ... RETURNING consumes the code atomically: two POS racing with one
                // code cannot both pair.
                one(
                    conn,
                    "DELETE FROM pairing_codes WHERE code = ?1
                       AND (?2 IS NULL OR device_id IN (SELECT id FROM devices WHERE merchant_id = ?2))
                     RETURNING device_id, expires_at",
                    params![code.as_str(), merchant],
                    |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
                )
            })
            .await?;
        match taken {
            Some((device, expires_at)) if expires_at > ms(now) => {
                Ok(Some(parse_device_id(device)?))
            }
            _ => Ok(None),
        }
    }

    async fn pair_register(&self, r: &RegisterRecord) -> Result<Option<DeviceId>, StoreError> {
        let r = r.clone();
        let contact =
            serde_json::to_string(&r.contact).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let previous = self
            .writer
            .write(move |conn| {
                let key = &r.info.key;
                let previous: Option<String> = conn
                    .prepare_cached(
                        "SELECT device_id FROM registers WHERE register_id = ?1 AND business_name = ?2 AND vendor_name = ?3",
                    )?
                    .query_row(
                        [&key.register_id, &key.business_name, &key.vendor_name],
                        |row| row.get(0),
                    )
                    .optional()?;
                conn.prepare_cached(
                    "INSERT INTO registers (register_id, business_name, vendor_name, register_name, device_id, contact, paired_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (register_id, business_name, vendor_name) DO UPDATE SET
                       register_name = excluded.register_name, device_id = excluded.device_id,
                       contact = excluded.contact, paired_at = excluded.paired_at",
                )?
                .execute(params![
                    key.register_id,
                    key.business_name,
                    key.vendor_name,
                    r.info.register_name,
                    r.device_id.as_str(),
                    contact,
                    ms(r.paired_at)
                ])?;
                let mut logged = Vec::new();
                let previous = previous.filter(|p| p != r.device_id.as_str());
                if let Some(p) = previous.as_ref().and_then(|p| DeviceId::parse(p).ok()) {
                    logged.push(crate::domain::events::unpaired(&p, key, r.paired_at));
                }
                logged.push(crate::domain::events::paired(
                    &r.device_id,
                    key,
                    &r.info.register_name,
                    r.paired_at,
                ));
                events::log_events(conn, &events::rows(&logged))?;
                Ok::<_, StoreError>(previous)
            })
            .await?;
        previous.map(parse_device_id).transpose()
    }

    async fn register(&self, key: &RegisterKey) -> Result<Option<RegisterRecord>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                "SELECT * FROM registers WHERE register_id = ?1 AND business_name = ?2 AND vendor_name = ?3",
                [&key.register_id, &key.business_name, &key.vendor_name],
                register_from_row,
            )
        })
    }

    async fn route(&self, key: &RegisterKey) -> Result<Option<Route>, StoreError> {
        // One statement, so one snapshot: the two tables share no column name, and the busy
        // check is the one-active-transaction index.
        self.read(|conn| {
            one(
                conn,
                "SELECT r.*, d.*, COALESCE(m.currency, 'AUD') AS merchant_currency,
                   EXISTS (SELECT 1 FROM transactions t WHERE t.device_id = d.id AND t.state <> 'completed') AS busy
                 FROM registers r JOIN devices d ON d.id = r.device_id
                 LEFT JOIN merchants m ON m.id = d.merchant_id
                 WHERE r.register_id = ?1 AND r.business_name = ?2 AND r.vendor_name = ?3",
                [&key.register_id, &key.business_name, &key.vendor_name],
                |row| {
                    Ok(Route {
                        register: register_from_row(row)?,
                        device: device_from_row(row)?,
                        busy: row.get("busy")?,
                        currency: columns::route_currency(&row.get::<_, String>("merchant_currency")?)?,
                    })
                },
            )
        })
    }

    async fn registers_of(&self, device: &DeviceId) -> Result<Vec<RegisterRecord>, StoreError> {
        self.read(|conn| {
            all(
                conn,
                "SELECT * FROM registers WHERE device_id = ?1 ORDER BY paired_at",
                [device.as_str()],
                register_from_row,
            )
        })
    }

    async fn unpair(
        &self,
        device: &DeviceId,
        register: Option<&RegisterKey>,
        audit: Option<&AuditEntry>,
        at: DateTime<Utc>,
    ) -> Result<Vec<RegisterKey>, StoreError> {
        let (device, register, audit) = (device.clone(), register.cloned(), audit.cloned());
        self.writer
            .write(move |conn| {
                let key = |row: &Row| {
                    Ok(RegisterKey {
                        register_id: row.get(0)?,
                        business_name: row.get(1)?,
                        vendor_name: row.get(2)?,
                    })
                };
                let removed = match &register {
                    Some(k) => all(
                        conn,
                        "DELETE FROM registers WHERE device_id = ?1 AND register_id = ?2 AND business_name = ?3 AND vendor_name = ?4
                         RETURNING register_id, business_name, vendor_name",
                        [device.as_str(), &k.register_id, &k.business_name, &k.vendor_name],
                        key,
                    ),
                    None => all(
                        conn,
                        "DELETE FROM registers WHERE device_id = ?1 RETURNING register_id, business_name, vendor_name",
                        [device.as_str()],
                        key,
                    ),
                }?;
                if let (false, Some(a)) = (removed.is_empty(), &audit) {
                    accounts::insert_audit(conn, a)?;
                }
                let logged: Vec<_> = removed
                    .iter()
                    .map(|k| crate::domain::events::unpaired(&device, k, at))
                    .collect();
                events::log_events(conn, &events::rows(&logged))?;
                Ok(removed)
            })
            .await
    }
}

#[async_trait]
impl TransactionStore for SqliteStore {
    async fn insert_transaction(
        &self,
        t: &TransactionRecord,
        events: &[TimelineEvent],
        logged: &[crate::domain::events::NewEvent],
    ) -> Result<(), InsertError> {
        let (state, deadline, started, completed, completion) = phase_columns(&t.phase)?;
        let request =
            serde_json::to_string(&t.request).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let t = t.clone();
        let (events, logged) = (events.to_vec(), events::rows(logged));
        self.writer
            .write(move |conn| {
                let id = t.id.to_string();
                // Which rule a unique violation broke is told by asking first, not by reading
                // the error's message: this thread is the only writer, so nothing can come
                // between the check and the insert.
                if let Some(reference) = &t.pos_reference {
                    let key = &t.register.key;
                    let used = conn
                        .prepare_cached(
                            "SELECT 1 FROM transactions WHERE register_id = ?1 AND business_name = ?2 \
                             AND vendor_name = ?3 AND pos_reference = ?4",
                        )
                        .and_then(|mut q| {
                            q.exists(params![
                                key.register_id,
                                key.business_name,
                                key.vendor_name,
                                reference
                            ])
                        })
                        .map_err(StoreError::from)?;
                    if used {
                        return Err(InsertError::DuplicateReference);
                    }
                }
                // A follow-up is checked against its original and every earlier follow-up here,
                // in the commit that stores it: nothing can come between.
                if let Some(original) = &t.request.original {
                    let payment = payment_of(conn, &original.transaction_id)?
                        .ok_or(InsertError::UnknownOriginal)?;
                    payment.admit(&t.request)?;
                }
                if let Some(order) = &t.request.order_id {
                    let sheet = orders::order_sheet(conn, order)?
                        .filter(|s| s.order.merchant_id == t.merchant_id)
                        .ok_or(InsertError::UnknownOrder)?;
                    crate::domain::orders::admit_tender(&sheet.order, &sheet.tenders, &t.request)?;
                }
                let r = conn
                    .prepare_cached(concat!(
                        "INSERT INTO transactions (",
                        tx_columns!(),
                        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)"
                    ))
                    .map_err(StoreError::from)?
                    .execute(params![
                        id,
                        t.device_id.as_str(),
                        t.register.key.register_id,
                        t.register.key.business_name,
                        t.register.key.vendor_name,
                        t.register.register_name,
                        t.merchant_id.as_str(),
                        t.merchant,
                        request,
                        t.sale_data,
                        t.callback_url,
                        t.token,
                        ms(t.token_expires_at),
                        ms(t.created_at),
                        state,
                        deadline,
                        started,
                        completed,
                        completion,
                        t.display_text,
                        t.pos_reference,
                        t.fingerprint,
                        t.request.original.as_ref().map(|o| o.transaction_id.to_string()),
                        t.request.order_id,
                        t.request.function.as_str(),
                        t.request.transaction_reference,
                    ]);
                match r {
                    Ok(_) => {}
                    // The primary key is a fresh UUID and the reference was checked above: what
                    // is left is the one-transaction-in-progress-per-device index.
                    Err(e) if is_unique_violation(&e) => return Err(InsertError::DeviceBusy),
                    Err(e) => return Err(StoreError::from(e).into()),
                }
                insert_events(conn, &id, &events)?;
                events::log_events(conn, &logged)?;
                if state == "completed" {
                    enqueue_callback(conn, &id)?;
                }
                Ok(())
            })
            .await
    }

    async fn payment(&self, original: &TransactionId) -> Result<Option<PaymentRecord>, StoreError> {
        let id = *original;
        self.scan(move |conn| payment_of(conn, &id)).await
    }

    async fn transactions_by_merchant_reference(
        &self,
        merchant: &MerchantId,
        reference: &str,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        let (merchant, reference) = (merchant.as_str().to_string(), reference.to_string());
        self.scan(move |conn| {
            all(
                conn,
                concat!(
                    "SELECT ",
                    tx_columns!(),
                    " FROM transactions WHERE pos_reference = ?1 AND merchant_id = ?2 LIMIT 2"
                ),
                params![reference, merchant],
                transaction_from_row,
            )
        })
        .await
    }

    async fn authorisations_by_reference(
        &self,
        merchant: &MerchantId,
        reference: &str,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        let (merchant, reference) = (merchant.as_str().to_string(), reference.to_string());
        self.scan(move |conn| {
            all(
                conn,
                concat!(
                    "SELECT ",
                    tx_columns!(),
                    " FROM transactions WHERE merchant_id = ?1 AND transaction_reference = ?2 \
                     AND function = 'Card.Authorise' LIMIT 3"
                ),
                params![merchant, reference],
                transaction_from_row,
            )
        })
        .await
    }

    async fn transaction_by_reference(
        &self,
        register: &RegisterKey,
        reference: &str,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                concat!(
                    "SELECT ",
                    tx_columns!(),
                    " FROM transactions
                     WHERE register_id = ?1 AND business_name = ?2 AND vendor_name = ?3 AND pos_reference = ?4"
                ),
                [
                    &register.register_id,
                    &register.business_name,
                    &register.vendor_name,
                    reference,
                ],
                transaction_from_row,
            )
        })
    }

    async fn purge_completed_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.delete_in_batches(
            "DELETE FROM transactions WHERE id IN (
               SELECT id FROM transactions WHERE state = 'completed' AND created_at < ?1 LIMIT 1000)",
            before,
        )
        .await
    }

    async fn transaction(
        &self,
        id: &TransactionId,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                concat!("SELECT ", tx_columns!(), " FROM transactions WHERE id = ?1"),
                [id.to_string()],
                transaction_from_row,
            )
        })
    }

    async fn transition(
        &self,
        id: &TransactionId,
        from: &Phase,
        to: &Phase,
        events: &[TimelineEvent],
        logged: &[crate::domain::events::NewEvent],
    ) -> Result<bool, StoreError> {
        let (state, deadline, started, completed, completion) = phase_columns(to)?;
        let from = phase_kind(from);
        let (id, events, logged) = (id.to_string(), events.to_vec(), events::rows(logged));
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE transactions SET state = ?1, accept_deadline = ?2,
                           started_at = COALESCE(?3, started_at), completed_at = ?4, completion = ?5,
                           display_text = CASE WHEN ?1 = 'completed' THEN NULL ELSE display_text END
                         WHERE id = ?6 AND state = ?7",
                    )?
                    .execute(params![state, deadline, started, completed, completion, id, from])?;
                if n != 1 {
                    return Ok(false);
                }
                insert_events(conn, &id, &events)?;
                events::log_events(conn, &logged)?;
                if state == "completed" {
                    enqueue_callback(conn, &id)?;
                }
                Ok(true)
            })
            .await
    }

    async fn set_display_text(
        &self,
        id: &TransactionId,
        device: &DeviceId,
        text: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (id, device, text) = (id.to_string(), device.clone(), text.to_string());
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE transactions SET display_text = ?1
                         WHERE id = ?2 AND device_id = ?3 AND state <> 'completed'",
                    )?
                    .execute([&text, &id, device.as_str()])?;
                if n == 1 {
                    insert_events(
                        conn,
                        &id,
                        &[TimelineEvent::new(at, EventKind::Prompt, text)],
                    )?;
                }
                Ok(())
            })
            .await
    }

    async fn query_transactions(
        &self,
        q: &TransactionQuery,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        // Absent criteria bind NULL and drop out (`? IS NULL OR ...`): one statement, no SQL
        // built from input. LIKE is case-insensitive for ASCII in SQLite.
        let like = |o: &Option<String>| o.as_deref().map(TransactionQuery::like);
        let (since, until) = (q.since.map(ms), q.until.map(ms));
        let (register, device, reference) =
            (like(&q.register), like(&q.device), like(&q.reference));
        let (pending_only, limit) = (q.pending_only, i64::from(q.limit));
        let merchant = q.merchant.as_ref().map(|m| m.as_str().to_string());
        self.scan(move |conn| {
            all(
                conn,
                concat!(
                    "SELECT ",
                    tx_columns!(),
                    " FROM transactions
                     WHERE (?1 IS NULL OR created_at >= ?1) AND (?2 IS NULL OR created_at < ?2)
                       AND (?3 IS NULL OR register_id LIKE ?3 ESCAPE '\\' OR register_name LIKE ?3 ESCAPE '\\')
                       AND (?4 IS NULL OR device_id LIKE ?4 ESCAPE '\\')
                       AND (?5 IS NULL OR pos_reference LIKE ?5 ESCAPE '\\' OR id LIKE ?5 ESCAPE '\\')
                       AND (?6 = 0 OR state <> 'completed')
                       AND (?8 IS NULL OR merchant_id = ?8)
                     ORDER BY created_at DESC LIMIT ?7"
                ),
                params![since, until, register, device, reference, pending_only, limit, merchant],
                transaction_from_row,
            )
        })
        .await
    }

    async fn active_transaction(
        &self,
        device: &DeviceId,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                concat!(
                    "SELECT ",
                    tx_columns!(),
                    " FROM transactions WHERE device_id = ?1 AND state <> 'completed'"
                ),
                [device.as_str()],
                transaction_from_row,
            )
        })
    }

    async fn expired_offers(&self, now: DateTime<Utc>) -> Result<Vec<TransactionId>, StoreError> {
        self.read(|conn| {
            all(
                conn,
                "SELECT id FROM transactions WHERE state = 'offered' AND accept_deadline <= ?1
                 ORDER BY accept_deadline LIMIT 500",
                [ms(now)],
                |row| parse_transaction_id(row.get_ref(0)?.as_str()?),
            )
        })
    }

    async fn next_offer_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(|conn| {
            let v: Option<i64> = conn
                .prepare_cached(
                    "SELECT MIN(accept_deadline) FROM transactions WHERE state = 'offered'",
                )?
                .query_row([], |row| row.get(0))?;
            v.map(from_ms).transpose()
        })
    }
}

#[async_trait]
impl TimelineStore for SqliteStore {
    async fn append_events(
        &self,
        id: &TransactionId,
        events: &[TimelineEvent],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let (id, events) = (id.to_string(), events.to_vec());
        self.writer
            .write(move |conn| insert_events(conn, &id, &events))
            .await
    }

    async fn events(&self, id: &TransactionId) -> Result<Vec<TimelineEvent>, StoreError> {
        self.read(|conn| {
            all(
                conn,
                "SELECT at, kind, detail FROM transaction_events WHERE transaction_id = ?1 ORDER BY seq",
                [id.to_string()],
                |row| {
                    let kind = row.get_ref(1)?.as_str()?;
                    Ok(TimelineEvent {
                        at: from_ms(row.get(0)?)?,
                        kind: EventKind::parse(kind)
                            .ok_or_else(|| StoreError::Corrupt(format!("event kind {kind}")))?,
                        detail: row.get(2)?,
                    })
                },
            )
        })
    }
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn due_callbacks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CallbackJob>, StoreError> {
        self.read(|conn| {
            all(
                conn,
                "SELECT transaction_id, url, attempts FROM callback_outbox
                 WHERE status = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2",
                [ms(now), i64::from(limit)],
                callback_job,
            )
        })
    }

    async fn claim_callbacks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<CallbackJob>, StoreError> {
        self.writer
            .write(move |conn| {
                all(
                    conn,
                    "UPDATE callback_outbox SET next_attempt_at = ?1
                     WHERE transaction_id IN (
                       SELECT transaction_id FROM callback_outbox
                       WHERE status = 'pending' AND next_attempt_at <= ?2 ORDER BY next_attempt_at LIMIT ?3)
                     RETURNING transaction_id, url, attempts",
                    [ms(lease_until), ms(now), i64::from(limit)],
                    callback_job,
                )
            })
            .await
    }

    async fn next_callback_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(|conn| {
            let v: Option<i64> = conn
                .prepare_cached(
                    "SELECT MIN(next_attempt_at) FROM callback_outbox WHERE status = 'pending'",
                )?
                .query_row([], |row| row.get(0))?;
            v.map(from_ms).transpose()
        })
    }

    async fn record_callback_attempt(
        &self,
        id: &TransactionId,
        delivered: bool,
        retry_at: Option<DateTime<Utc>>,
        error: &str,
        event: &TimelineEvent,
    ) -> Result<(), StoreError> {
        let status = callback_status(delivered, retry_at.is_some());
        let (id, error, event) = (id.to_string(), error.to_string(), event.clone());
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE callback_outbox SET attempts = attempts + 1, status = ?1, last_error = ?2,
                       next_attempt_at = COALESCE(?3, next_attempt_at)
                     WHERE transaction_id = ?4 AND status = 'pending'",
                )?
                .execute(params![status, error, retry_at.map(ms), id])?;
                insert_events(conn, &id, std::slice::from_ref(&event))
            })
            .await
    }
}

#[async_trait]
impl Housekeeping for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.next_offer_deadline().await.map(|_| ())
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        let now = ms(Utc::now()).to_string();
        self.writer
            .write(move |conn| {
                conn.prepare_cached(PROBE_SQL)?
                    .execute([PROBE_NAME, now.as_str()])?;
                Ok(())
            })
            .await
    }

    async fn secret(
        &self,
        name: &str,
        generate: &(dyn Fn() -> String + Send + Sync),
    ) -> Result<String, StoreError> {
        let (name, candidate) = (name.to_string(), generate());
        self.writer
            .write(move |conn| {
                // INSERT OR IGNORE then read: concurrent first starts agree on one value.
                conn.prepare_cached("INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)")?
                    .execute([&name, &candidate])?;
                Ok(conn
                    .prepare_cached("SELECT value FROM secrets WHERE name = ?1")?
                    .query_row([&name], |row| row.get(0))?)
            })
            .await
    }
}
