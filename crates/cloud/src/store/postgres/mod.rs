//! The store for many nodes: PostgreSQL, shared by every cloud node behind a load balancer.
//!
//! Each method is one statement or one short transaction, safe to run from any number of nodes
//! at once: transitions are compare-and-set updates (a concurrent writer's commit is re-checked
//! by PostgreSQL before the row is updated, so no update is lost), idempotency and "one active
//! transaction per device" are unique indexes, and pairing codes are consumed by a single
//! `DELETE ... RETURNING`.

mod accounts;
mod config;
mod events;
mod orders;
mod people;
mod receipts;
mod reports;
mod updates;

use super::columns::{
    self, callback_status, from_ms, ms, parse_device_id, parse_transaction_id, phase_columns,
    phase_kind, TX_COLUMNS,
};
use super::{
    CallbackJob, DeviceRecord, DeviceStore, Housekeeping, InsertError, OutboxStore, PairingStore,
    RegisterRecord, Route, StoreError, TimelineStore, TransactionQuery, TransactionRecord,
    TransactionStore,
};
use crate::domain::accounts::{AuditEntry, MerchantId};
use crate::domain::lifecycle::Phase;
use crate::domain::payments::PaymentRecord;
use crate::domain::timeline::{EventKind, TimelineEvent};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use protocol::{DeviceId, PairingCode, RegisterKey, TransactionId};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row};
use std::str::FromStr;
use std::time::Duration;

/// Connections per node: enough for the POS API, the gateway and the background loops.
const POOL_SIZE: u32 = 16;
/// Rows deleted per statement by the retention sweep, so no purge holds locks for long.
const PURGE_BATCH: i64 = 1000;
/// The unique index that holds one transaction in progress per device.
const ONE_ACTIVE_PER_DEVICE: &str = "one_active_transaction_per_device";
/// The unique index on (register, POS reference).
const BY_REFERENCE: &str = "transactions_by_reference";

/// PostgreSQL behind the [`Store`] trait.
pub struct PostgresStore {
    pool: PgPool,
}

/// The name of the unique constraint an error violated, if it is a unique violation.
fn unique_violation(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => Some(d.constraint().unwrap_or("")),
        _ => None,
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://...`) and applies the migrations. Nodes starting together
    /// are safe: sqlx serialises migrations with an advisory lock.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        // Notices (`relation "_sqlx_migrations" already exists, skipping` on every start) are
        // the server talking to itself; warnings and errors still reach the log.
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open(format!("{e}")))?
            .options([("client_min_messages", "warning")]);
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open(format!("{e}")))?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    fn device_from_row(row: &PgRow) -> Result<DeviceRecord, StoreError> {
        columns::device(row)
    }

    fn register_from_row(row: &PgRow) -> Result<RegisterRecord, StoreError> {
        columns::register(row)
    }

    fn transaction_from_row(row: &PgRow) -> Result<TransactionRecord, StoreError> {
        columns::transaction(row)
    }
}

/// A payment with its follow-ups, as stored now; with `lock`, the original's row is locked
/// until the transaction ends (see [`PaymentRecord`]).
async fn payment_of(
    conn: &mut sqlx::PgConnection,
    id: &TransactionId,
    lock: bool,
) -> Result<Option<PaymentRecord>, StoreError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let Some(original) = sqlx::query(&format!(
        "SELECT {TX_COLUMNS} FROM transactions WHERE id = $1{lock}"
    ))
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(PostgresStore::transaction_from_row)
    .transpose()?
    else {
        return Ok(None);
    };
    let follow_ups = sqlx::query(&format!(
        "SELECT {TX_COLUMNS} FROM transactions WHERE original_id = $1 ORDER BY created_at, id"
    ))
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(PostgresStore::transaction_from_row)
    .collect::<Result<Vec<_>, _>>()?;
    let cutovers = match original.completed_at() {
        Some(after) => sqlx::query(&format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE device_id = $1
               AND function = 'Acquirer.Settlement.Cutover' AND state = 'completed' AND completed_at > $2"
        ))
        .bind(original.device_id.as_str())
        .bind(ms(after))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(PostgresStore::transaction_from_row)
        .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let max_tip_percent = sqlx::query("SELECT max_tip_percent FROM merchants WHERE id = $1")
        .bind(original.merchant_id.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| columns::Columns::count(&r, "max_tip_percent"))
        .transpose()?;
    Ok(Some(PaymentRecord::new(
        original,
        follow_ups,
        &cutovers,
        max_tip_percent,
    )))
}

fn register_key_from_row(row: &PgRow) -> Result<RegisterKey, StoreError> {
    columns::register_key(row)
}

impl columns::Columns for PgRow {
    fn text(&self, name: &'static str) -> Result<String, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn opt_text(&self, name: &'static str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn int(&self, name: &'static str) -> Result<i64, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn opt_int(&self, name: &'static str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn flag(&self, name: &'static str) -> Result<bool, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn count(&self, name: &'static str) -> Result<u32, StoreError> {
        columns::count_of(i64::from(self.try_get::<i32, _>(name)?), name)
    }
}

/// Queues the completion callback of a transaction that has a callback URL (no-op otherwise).
async fn enqueue_callback(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    id: &TransactionId,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO callback_outbox (transaction_id, url, next_attempt_at)
         SELECT id, callback_url, completed_at FROM transactions
         WHERE id = $1 AND callback_url IS NOT NULL
         ON CONFLICT (transaction_id) DO NOTHING",
    )
    .bind(id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A timeline's columns as arrays, for one `unnest` insert however many events there are.
fn timeline_arrays(events: &[TimelineEvent]) -> (Vec<i64>, Vec<&'static str>, Vec<String>) {
    (
        events.iter().map(|e| ms(e.at)).collect(),
        events.iter().map(|e| e.kind.as_str()).collect(),
        events.iter().map(|e| e.detail.clone()).collect(),
    )
}

/// Appends timeline events in one statement (one round trip), in their order.
async fn insert_events(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    id: &TransactionId,
    events: &[TimelineEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let (at, kind, detail) = timeline_arrays(events);
    sqlx::query(
        "INSERT INTO transaction_events (transaction_id, at, kind, detail)
         SELECT $1, t.at, t.kind, t.detail
         FROM unnest($2::bigint[], $3::text[], $4::text[]) WITH ORDINALITY AS t(at, kind, detail, n)
         ORDER BY t.n",
    )
    .bind(id.to_string())
    .bind(at)
    .bind(kind)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl DeviceStore for PostgresStore {
    async fn insert_device(
        &self,
        d: &DeviceRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<(), InsertError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let r = sqlx::query(
            "INSERT INTO devices (id, secret_hash, vendor, model, merchant, merchant_id, created_at, self_enrolled, site_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(d.id.as_str())
        .bind(&d.secret_hash)
        .bind(&d.vendor)
        .bind(&d.model)
        .bind(&d.merchant)
        .bind(d.merchant_id.as_str())
        .bind(ms(d.created_at))
        .bind(d.self_enrolled)
        .bind(d.site_id.as_ref().map(|s| s.as_str()))
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => {}
            Err(e) if unique_violation(&e).is_some() => return Err(InsertError::AlreadyExists),
            Err(e) => return Err(StoreError::from(e).into()),
        }
        if let Some(a) = audit {
            accounts::insert_audit(&mut tx, a).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    async fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        sqlx::query("SELECT * FROM devices WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(Self::device_from_row)
            .transpose()
    }

    async fn set_secret_hash(
        &self,
        id: &DeviceId,
        secret_hash: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("UPDATE devices SET secret_hash = $1 WHERE id = $2")
            .bind(secret_hash)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let changed = r.rows_affected() == 1;
        if let (true, Some(a)) = (changed, audit) {
            accounts::insert_audit(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        sqlx::query("SELECT * FROM devices ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::device_from_row)
            .collect()
    }

    async fn set_device_connection(
        &self,
        id: &DeviceId,
        node: &str,
        connected: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // The change and its event in one statement: the event is logged only when a row
        // moved, with the device's merchant.
        let event = crate::domain::events::device_connection(id, node, connected, now);
        let moved = if connected {
            "UPDATE devices SET connected_at = $1, connected_node = $2, last_seen_at = $1
             WHERE id = $3 RETURNING merchant_id"
        } else {
            // Only the node that holds the connection may clear it: the device may already be
            // connected to another node.
            "UPDATE devices SET connected_at = NULL, connected_node = NULL, last_seen_at = $1
             WHERE id = $3 AND connected_node = $2 RETURNING merchant_id"
        };
        sqlx::query(&format!(
            "WITH moved AS ({moved})
             INSERT INTO events (id, type, merchant_id, vendor, device_id, created_at, schema_version, data)
             SELECT $4, $5, merchant_id, NULL, $3, $1, $6, $7 FROM moved"
        ))
        .bind(ms(now))
        .bind(node)
        .bind(id.as_str())
        .bind(event.id.as_str())
        .bind(event.kind.as_str())
        .bind(i64::from(crate::domain::events::SCHEMA_VERSION))
        .bind(event.data.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn set_device_capabilities(
        &self,
        id: &DeviceId,
        capabilities: &str,
        hardware: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE devices SET capabilities = $2, hardware = $3 WHERE id = $1")
            .bind(id.as_str())
            .bind(capabilities)
            .bind(hardware)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_display(
        &self,
        id: &DeviceId,
        display: Option<&str>,
    ) -> Result<Option<u64>, StoreError> {
        // One round trip: the update moves the version only when the display differs; the
        // select reads the version either way (the CTE's update is not visible to it, so the
        // new version comes from the update's RETURNING when there is one).
        let version: Option<i64> = sqlx::query_scalar(
            "WITH changed AS (
                 UPDATE devices SET display = $2, display_version = display_version + 1
                 WHERE id = $1 AND display IS DISTINCT FROM $2
                 RETURNING display_version
             )
             SELECT COALESCE((SELECT display_version FROM changed),
                             (SELECT display_version FROM devices WHERE id = $1))",
        )
        .bind(id.as_str())
        .bind(display)
        .fetch_one(&self.pool)
        .await?;
        Ok(version.map(|v| u64::try_from(v).unwrap_or(0)))
    }

    async fn record_health(
        &self,
        id: &DeviceId,
        at: DateTime<Utc>,
        health: &str,
        keep: u32,
    ) -> Result<(), StoreError> {
        // One round trip: the insert, and the delete of everything past the newest `keep`
        // (the CTE's insert is not visible to the delete, so it keeps one fewer old report).
        sqlx::query(
            "WITH added AS (
                 INSERT INTO device_health (device_id, reported_at, health) VALUES ($1, $2, $3)
             )
             DELETE FROM device_health WHERE device_id = $1 AND ctid NOT IN (
                 SELECT ctid FROM device_health WHERE device_id = $1
                 ORDER BY reported_at DESC LIMIT $4)",
        )
        .bind(id.as_str())
        .bind(ms(at))
        .bind(health)
        .bind(i64::from(keep.saturating_sub(1)))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn health_history(
        &self,
        id: &DeviceId,
        limit: u32,
    ) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT reported_at, health FROM device_health WHERE device_id = $1
             ORDER BY reported_at DESC LIMIT $2",
        )
        .bind(id.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(at, h)| Ok((from_ms(at)?, h)))
            .collect()
    }

    async fn latest_health(&self) -> Result<Vec<(DeviceId, DateTime<Utc>, String)>, StoreError> {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT DISTINCT ON (device_id) device_id, reported_at, health FROM device_health
             ORDER BY device_id, reported_at DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, at, h)| Ok((parse_device_id(id)?, from_ms(at)?, h)))
            .collect()
    }

    async fn display(&self, id: &DeviceId) -> Result<Option<(u64, Option<String>)>, StoreError> {
        let row: Option<(i64, Option<String>)> =
            sqlx::query_as("SELECT display_version, display FROM devices WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(v, d)| (u64::try_from(v).unwrap_or(0), d)))
    }

    async fn clear_connections(&self, node: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE devices SET connected_at = NULL, connected_node = NULL WHERE connected_node = $1",
        )
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn purge_unused_self_enrolled(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        // The conditions are repeated outside the batch's subquery: a row another node updated
        // meanwhile (the device connected) is re-checked against them before it is deleted.
        let mut total = 0;
        loop {
            let r = sqlx::query(
                "DELETE FROM devices d
                 WHERE d.id IN (SELECT id FROM devices
                                WHERE self_enrolled AND connected_at IS NULL
                                  AND COALESCE(last_seen_at, created_at) < $1
                                  AND NOT EXISTS (SELECT 1 FROM transactions t
                                                  WHERE t.device_id = devices.id
                                                    AND t.state <> 'completed')
                                LIMIT $2 FOR UPDATE SKIP LOCKED)
                   AND d.self_enrolled AND d.connected_at IS NULL
                   AND COALESCE(d.last_seen_at, d.created_at) < $1
                   AND NOT EXISTS (SELECT 1 FROM transactions t
                                   WHERE t.device_id = d.id AND t.state <> 'completed')",
            )
            .bind(ms(before))
            .bind(PURGE_BATCH)
            .execute(&self.pool)
            .await?;
            total += r.rows_affected();
            if r.rows_affected() < PURGE_BATCH.unsigned_abs() {
                return Ok(total);
            }
        }
    }
}

#[async_trait]
impl PairingStore for PostgresStore {
    // Three point reads in the pool's autocommit: each is consistent on its own, and a device
    // busy by the time of the insert is caught by the insert's own constraint.
    async fn route(&self, key: &RegisterKey) -> Result<Option<Route>, StoreError> {
        // One statement, one round trip (the tables share no column name but the merchant's,
        // which is renamed).
        sqlx::query(
            "SELECT r.*, d.*, COALESCE(m.currency, 'AUD') AS merchant_currency,
               EXISTS (SELECT 1 FROM transactions t WHERE t.device_id = d.id AND t.state <> 'completed') AS busy
             FROM registers r JOIN devices d ON d.id = r.device_id
             LEFT JOIN merchants m ON m.id = d.merchant_id
             WHERE r.register_id = $1 AND r.business_name = $2 AND r.vendor_name = $3",
        )
        .bind(&key.register_id)
        .bind(&key.business_name)
        .bind(&key.vendor_name)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| {
            Ok(Route {
                register: Self::register_from_row(&row)?,
                device: Self::device_from_row(&row)?,
                busy: row.try_get("busy")?,
                currency: columns::route_currency(&row.try_get::<String, _>("merchant_currency")?)?,
            })
        })
        .transpose()
    }

    async fn replace_pairing_code(
        &self,
        device: &DeviceId,
        code: &PairingCode,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Serialise code changes of one device (two nodes may serve it during a reconnect), so
        // the only unique violation left below is "the code belongs to another device".
        sqlx::query("SELECT 1 FROM devices WHERE id = $1 FOR UPDATE")
            .bind(device.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM pairing_codes WHERE device_id = $1 OR expires_at <= $2")
            .bind(device.as_str())
            .bind(ms(Utc::now()))
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query(
            "INSERT INTO pairing_codes (code, device_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(code.as_str())
        .bind(device.as_str())
        .bind(ms(expires_at))
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => {
                tx.commit().await?;
                Ok(true)
            }
            // Dropping the transaction rolls back: the device keeps its previous code.
            Err(e) if unique_violation(&e).is_some() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn take_pairing_code(
        &self,
        code: &PairingCode,
        now: DateTime<Utc>,
        merchant: Option<&MerchantId>,
    ) -> Result<Option<DeviceId>, StoreError> {
        // One statement consumes the code: of two POS racing with it, on any nodes, one gets
        // the row and the other nothing.
        let row = sqlx::query(
            "DELETE FROM pairing_codes WHERE code = $1
               AND ($2::TEXT IS NULL OR device_id IN (SELECT id FROM devices WHERE merchant_id = $2))
             RETURNING device_id, expires_at",
        )
        .bind(code.as_str())
        .bind(merchant.map(|m| m.as_str()))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let expires_at: i64 = row.try_get("expires_at")?;
        if expires_at <= ms(now) {
            return Ok(None);
        }
        Ok(Some(parse_device_id(row.try_get("device_id")?)?))
    }

    async fn pair_register(&self, r: &RegisterRecord) -> Result<Option<DeviceId>, StoreError> {
        let key = &r.info.key;
        let mut tx = self.pool.begin().await?;
        // Pairings of one register are serialised (a row lock cannot cover a register not yet
        // stored), so the device returned as "before" is exactly the one this pairing replaced.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!(
                "register\u{1f}{}\u{1f}{}\u{1f}{}",
                key.register_id, key.business_name, key.vendor_name
            ))
            .execute(&mut *tx)
            .await?;
        let previous: Option<String> = sqlx::query_scalar(
            "SELECT device_id FROM registers
             WHERE register_id = $1 AND business_name = $2 AND vendor_name = $3",
        )
        .bind(&key.register_id)
        .bind(&key.business_name)
        .bind(&key.vendor_name)
        .fetch_optional(&mut *tx)
        .await?;
        let contact =
            serde_json::to_string(&r.contact).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO registers (register_id, business_name, vendor_name, register_name, device_id, contact, paired_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (register_id, business_name, vendor_name) DO UPDATE SET
               register_name = excluded.register_name, device_id = excluded.device_id,
               contact = excluded.contact, paired_at = excluded.paired_at",
        )
        .bind(&key.register_id)
        .bind(&key.business_name)
        .bind(&key.vendor_name)
        .bind(&r.info.register_name)
        .bind(r.device_id.as_str())
        .bind(contact)
        .bind(ms(r.paired_at))
        .execute(&mut *tx)
        .await?;
        let previous = previous
            .filter(|p| p != r.device_id.as_str())
            .map(parse_device_id)
            .transpose()?;
        let mut logged = Vec::new();
        if let Some(p) = &previous {
            logged.push(crate::domain::events::unpaired(p, key, r.paired_at));
        }
        logged.push(crate::domain::events::paired(
            &r.device_id,
            key,
            &r.info.register_name,
            r.paired_at,
        ));
        events::log_events(&mut tx, &logged).await?;
        tx.commit().await?;
        Ok(previous)
    }

    async fn register(&self, key: &RegisterKey) -> Result<Option<RegisterRecord>, StoreError> {
        sqlx::query(
            "SELECT * FROM registers
             WHERE register_id = $1 AND business_name = $2 AND vendor_name = $3",
        )
        .bind(&key.register_id)
        .bind(&key.business_name)
        .bind(&key.vendor_name)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(Self::register_from_row)
        .transpose()
    }

    async fn registers_of(&self, device: &DeviceId) -> Result<Vec<RegisterRecord>, StoreError> {
        sqlx::query("SELECT * FROM registers WHERE device_id = $1 ORDER BY paired_at")
            .bind(device.as_str())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::register_from_row)
            .collect()
    }

    async fn unpair(
        &self,
        device: &DeviceId,
        register: Option<&RegisterKey>,
        audit: Option<&AuditEntry>,
        at: DateTime<Utc>,
    ) -> Result<Vec<RegisterKey>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows = match register {
            Some(k) => {
                sqlx::query(
                    "DELETE FROM registers
                     WHERE device_id = $1 AND register_id = $2 AND business_name = $3 AND vendor_name = $4
                     RETURNING register_id, business_name, vendor_name",
                )
                .bind(device.as_str())
                .bind(&k.register_id)
                .bind(&k.business_name)
                .bind(&k.vendor_name)
                .fetch_all(&mut *tx)
                .await?
            }
            None => {
                sqlx::query(
                    "DELETE FROM registers WHERE device_id = $1
                     RETURNING register_id, business_name, vendor_name",
                )
                .bind(device.as_str())
                .fetch_all(&mut *tx)
                .await?
            }
        };
        let removed: Vec<RegisterKey> = rows
            .iter()
            .map(register_key_from_row)
            .collect::<Result<_, _>>()?;
        if let (false, Some(a)) = (removed.is_empty(), audit) {
            accounts::insert_audit(&mut tx, a).await?;
        }
        let logged: Vec<_> = removed
            .iter()
            .map(|k| crate::domain::events::unpaired(device, k, at))
            .collect();
        events::log_events(&mut tx, &logged).await?;
        tx.commit().await?;
        Ok(removed)
    }
}

#[async_trait]
impl TransactionStore for PostgresStore {
    async fn insert_transaction(
        &self,
        t: &TransactionRecord,
        timeline: &[TimelineEvent],
        logged: &[crate::domain::events::NewEvent],
    ) -> Result<(), InsertError> {
        let (state, deadline, started, completed, completion) = phase_columns(&t.phase)?;
        let request =
            serde_json::to_string(&t.request).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        // A follow-up locks its original, so follow-ups of one payment (on any node) are
        // checked and inserted one after the other; each sees those committed before it.
        if let Some(original) = &t.request.original {
            let payment = payment_of(&mut tx, &original.transaction_id, true)
                .await?
                .ok_or(InsertError::UnknownOriginal)?;
            payment.admit(&t.request)?;
        }
        if let Some(order) = &t.request.order_id {
            // Another merchant's order does not exist for this tender.
            let sheet = orders::order_sheet(&mut tx, order, true)
                .await?
                .filter(|s| s.order.merchant_id == t.merchant_id)
                .ok_or(InsertError::UnknownOrder)?;
            crate::domain::orders::admit_tender(&sheet.order, &sheet.tenders, &t.request)?;
        }
        let r = sqlx::query(&format!(
            "INSERT INTO transactions ({TX_COLUMNS}) VALUES
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)"
        ))
        .bind(t.id.to_string())
        .bind(t.device_id.as_str())
        .bind(&t.register.key.register_id)
        .bind(&t.register.key.business_name)
        .bind(&t.register.key.vendor_name)
        .bind(&t.register.register_name)
        .bind(t.merchant_id.as_str())
        .bind(&t.merchant)
        .bind(request)
        .bind(&t.sale_data)
        .bind(&t.callback_url)
        .bind(&t.token)
        .bind(ms(t.token_expires_at))
        .bind(ms(t.created_at))
        .bind(state)
        .bind(deadline)
        .bind(started)
        .bind(completed)
        .bind(completion)
        .bind(&t.display_text)
        .bind(&t.pos_reference)
        .bind(&t.fingerprint)
        .bind(t.request.original.as_ref().map(|o| o.transaction_id.to_string()))
        .bind(&t.request.order_id)
        .bind(t.request.function.as_str())
        .bind(&t.request.transaction_reference)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => {}
            // A concurrent insert on another node waits for ours to commit, then fails here on
            // the same index: the constraint name says which rule refused it.
            Err(e) => {
                return Err(match unique_violation(&e) {
                    Some(BY_REFERENCE) => InsertError::DuplicateReference,
                    Some(ONE_ACTIVE_PER_DEVICE) => InsertError::DeviceBusy,
                    Some(_) => InsertError::AlreadyExists,
                    None => StoreError::from(e).into(),
                })
            }
        }
        insert_events(&mut tx, &t.id, timeline).await?;
        events::log_events(&mut tx, logged).await?;
        if state == "completed" {
            enqueue_callback(&mut tx, &t.id).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    async fn payment(&self, original: &TransactionId) -> Result<Option<PaymentRecord>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        payment_of(&mut conn, original, false).await
    }

    async fn transactions_by_merchant_reference(
        &self,
        merchant: &MerchantId,
        reference: &str,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE pos_reference = $1 AND merchant_id = $2 LIMIT 2"
        ))
        .bind(reference)
        .bind(merchant.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(Self::transaction_from_row)
        .collect()
    }

    async fn authorisations_by_reference(
        &self,
        merchant: &MerchantId,
        reference: &str,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE merchant_id = $1 AND transaction_reference = $2
               AND function = 'Card.Authorise' LIMIT 3"
        ))
        .bind(merchant.as_str())
        .bind(reference)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(Self::transaction_from_row)
        .collect()
    }

    async fn transaction_by_reference(
        &self,
        register: &RegisterKey,
        reference: &str,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TX_COLUMNS} FROM transactions
             WHERE register_id = $1 AND business_name = $2 AND vendor_name = $3 AND pos_reference = $4"
        ))
        .bind(&register.register_id)
        .bind(&register.business_name)
        .bind(&register.vendor_name)
        .bind(reference)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(Self::transaction_from_row)
        .transpose()
    }

    async fn transaction(
        &self,
        id: &TransactionId,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(Self::transaction_from_row)
        .transpose()
    }

    async fn transition(
        &self,
        id: &TransactionId,
        from: &Phase,
        to: &Phase,
        timeline: &[TimelineEvent],
        logged: &[crate::domain::events::NewEvent],
    ) -> Result<bool, StoreError> {
        let (state, deadline, started, completed, completion) = phase_columns(to)?;
        // One statement, so one round trip and its own commit: the compare-and-set, the
        // timeline, the event log and (to a completed phase) the callback outbox. A concurrent
        // update of the row (from any node) makes the UPDATE wait, then re-check `state`
        // against the committed row, so exactly one mover wins; a loser's `moved` is empty and
        // so is everything it would have written.
        let (at, kind, detail) = timeline_arrays(timeline);
        let rows = events::Rows::of(logged);
        let moved: i64 = sqlx::query_scalar(
            "WITH moved AS (
               UPDATE transactions SET state = $1, accept_deadline = $2,
                 started_at = COALESCE($3, started_at), completed_at = $4, completion = $5,
                 display_text = CASE WHEN $1 = 'completed' THEN NULL ELSE display_text END
               WHERE id = $6 AND state = $7
               RETURNING id, merchant_id, callback_url, completed_at),
             timeline AS (
               INSERT INTO transaction_events (transaction_id, at, kind, detail)
               SELECT moved.id, t.at, t.kind, t.detail
               FROM moved, unnest($8::bigint[], $9::text[], $10::text[])
                 WITH ORDINALITY AS t(at, kind, detail, n)
               ORDER BY t.n),
             logged AS (
               INSERT INTO events (id, type, merchant_id, vendor, device_id, created_at, schema_version, data)
               SELECT e.id, e.type, COALESCE(e.merchant, moved.merchant_id), e.vendor, e.device, e.at, $18, e.data
               FROM moved, unnest($11::text[], $12::text[], $13::text[], $14::text[], $15::text[],
                   $16::bigint[], $17::text[])
                 WITH ORDINALITY AS e(id, type, merchant, vendor, device, at, data, n)
               ORDER BY e.n),
             outbox AS (
               INSERT INTO callback_outbox (transaction_id, url, next_attempt_at)
               SELECT id, callback_url, completed_at FROM moved
               WHERE $1 = 'completed' AND callback_url IS NOT NULL
               ON CONFLICT (transaction_id) DO NOTHING)
             SELECT count(*) FROM moved",
        )
        .bind(state)
        .bind(deadline)
        .bind(started)
        .bind(completed)
        .bind(completion)
        .bind(id.to_string())
        .bind(phase_kind(from))
        .bind(at)
        .bind(kind)
        .bind(detail)
        .bind(rows.id)
        .bind(rows.kind)
        .bind(rows.merchant)
        .bind(rows.vendor)
        .bind(rows.device)
        .bind(rows.at)
        .bind(rows.data)
        .bind(i64::from(crate::domain::events::SCHEMA_VERSION))
        .fetch_one(&self.pool)
        .await?;
        Ok(moved == 1)
    }

    async fn set_display_text(
        &self,
        id: &TransactionId,
        device: &DeviceId,
        text: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE transactions SET display_text = $1
             WHERE id = $2 AND device_id = $3 AND state <> 'completed'",
        )
        .bind(text)
        .bind(id.to_string())
        .bind(device.as_str())
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 1 {
            insert_events(
                &mut tx,
                id,
                &[TimelineEvent::new(at, EventKind::Prompt, text)],
            )
            .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    async fn purge_completed_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        // In batches, each its own short statement; SKIP LOCKED lets purges on several nodes
        // share the work instead of queueing behind each other.
        let mut total = 0;
        loop {
            let r = sqlx::query(
                "DELETE FROM transactions WHERE id IN (
                   SELECT id FROM transactions WHERE state = 'completed' AND created_at < $1
                   LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(ms(before))
            .bind(PURGE_BATCH)
            .execute(&self.pool)
            .await?;
            total += r.rows_affected();
            if r.rows_affected() < PURGE_BATCH.unsigned_abs() {
                return Ok(total);
            }
        }
    }

    async fn query_transactions(
        &self,
        q: &TransactionQuery,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        // Absent criteria bind NULL and drop out: one statement, no SQL built from input.
        let like = |o: &Option<String>| o.as_deref().map(TransactionQuery::like);
        sqlx::query(&format!(
            "SELECT {TX_COLUMNS} FROM transactions
             WHERE ($1::BIGINT IS NULL OR created_at >= $1) AND ($2::BIGINT IS NULL OR created_at < $2)
               AND ($3::TEXT IS NULL OR register_id ILIKE $3 OR register_name ILIKE $3)
               AND ($4::TEXT IS NULL OR device_id ILIKE $4)
               AND ($5::TEXT IS NULL OR pos_reference ILIKE $5 OR id ILIKE $5)
               AND (NOT $6 OR state <> 'completed')
               AND ($8::TEXT IS NULL OR merchant_id = $8)
             ORDER BY created_at DESC LIMIT $7"
        ))
        .bind(q.since.map(ms))
        .bind(q.until.map(ms))
        .bind(like(&q.register))
        .bind(like(&q.device))
        .bind(like(&q.reference))
        .bind(q.pending_only)
        .bind(i64::from(q.limit))
        .bind(q.merchant.as_ref().map(|m| m.as_str()))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(Self::transaction_from_row)
        .collect()
    }

    async fn active_transaction(
        &self,
        device: &DeviceId,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE device_id = $1 AND state <> 'completed'"
        ))
        .bind(device.as_str())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(Self::transaction_from_row)
        .transpose()
    }

    async fn expired_offers(&self, now: DateTime<Utc>) -> Result<Vec<TransactionId>, StoreError> {
        // A plain read: every node's deadline loop may see the same offer, and the engine's
        // compare-and-set `transition` lets exactly one of them end it.
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM transactions WHERE state = 'offered' AND accept_deadline <= $1
             ORDER BY accept_deadline LIMIT 500",
        )
        .bind(ms(now))
        .fetch_all(&self.pool)
        .await?;
        ids.iter().map(|s| parse_transaction_id(s)).collect()
    }

    async fn next_offer_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(accept_deadline) FROM transactions WHERE state = 'offered'",
        )
        .fetch_one(&self.pool)
        .await?;
        v.map(from_ms).transpose()
    }
}

#[async_trait]
impl TimelineStore for PostgresStore {
    async fn append_events(
        &self,
        id: &TransactionId,
        events: &[TimelineEvent],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        insert_events(&mut tx, id, events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn events(&self, id: &TransactionId) -> Result<Vec<TimelineEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, kind, detail FROM transaction_events WHERE transaction_id = $1 ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                Ok(TimelineEvent {
                    at: from_ms(row.try_get("at")?)?,
                    kind: EventKind::parse(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("event kind {kind}")))?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn due_callbacks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CallbackJob>, StoreError> {
        let rows = sqlx::query(
            "SELECT transaction_id, url, attempts FROM callback_outbox
             WHERE status = 'pending' AND next_attempt_at <= $1
             ORDER BY next_attempt_at LIMIT $2",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(callback_job).collect()
    }

    async fn claim_callbacks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<CallbackJob>, StoreError> {
        // SKIP LOCKED: nodes claiming at the same moment take disjoint rows instead of waiting.
        let rows = sqlx::query(
            "UPDATE callback_outbox SET next_attempt_at = $1
             WHERE transaction_id IN (
               SELECT transaction_id FROM callback_outbox
               WHERE status = 'pending' AND next_attempt_at <= $2
               ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING transaction_id, url, attempts",
        )
        .bind(ms(lease_until))
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(callback_job).collect()
    }

    async fn next_callback_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM callback_outbox WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        v.map(from_ms).transpose()
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE callback_outbox SET attempts = attempts + 1, status = $1, last_error = $2,
               next_attempt_at = COALESCE($3, next_attempt_at)
             WHERE transaction_id = $4 AND status = 'pending'",
        )
        .bind(status)
        .bind(error)
        .bind(retry_at.map(ms))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        insert_events(&mut tx, id, std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Housekeeping for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(super::PROBE_NAME)
        .bind(Utc::now().timestamp_millis().to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn secret(
        &self,
        name: &str,
        generate: &(dyn Fn() -> String + Send + Sync),
    ) -> Result<String, StoreError> {
        // Insert-if-absent then read: nodes starting together all end up with the first value.
        sqlx::query(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(generate())
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

fn callback_job(row: &PgRow) -> Result<CallbackJob, StoreError> {
    columns::callback_job(row)
}
