//! The embedded default store: one SQLite file in WAL mode with `synchronous=FULL`, so a
//! commit that returned survives a power cut of the server.

use super::columns::{from_ms, ms, parse_device_id, phase_columns, phase_kind, TX_COLUMNS};
use super::{
    CallbackJob, DeviceRecord, InsertError, RegisterRecord, Store, StoreError, TransactionQuery,
    TransactionRecord,
};
use crate::engine::lifecycle::{Completion, Phase};
use crate::engine::timeline::{EventKind, TimelineEvent};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use protocol::{
    DeviceId, PairingCode, RegisterInfo, RegisterKey, TransactionId, TransactionRequest,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;
use std::str::FromStr;
use std::time::Duration;

/// SQLite behind the [`Store`] trait.
///
/// Writes go through a pool of one connection: SQLite has a single writer anyway, and queueing
/// in the pool avoids `SQLITE_BUSY` upgrade failures that deferred transactions would hit.
/// Reads use their own pool and run concurrently with the writer thanks to WAL.
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database at `url` (`sqlite://path`).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open(format!("{url}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Open(format!("{url}: {e}")))?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| StoreError::Open(format!("{url}: {e}")))?;
        Ok(Self { writer, reader })
    }

    /// Writes a consistent copy of the live database to `path` (`VACUUM INTO`): readers and the
    /// writer carry on meanwhile, and the copy is a complete database usable as is.
    pub async fn backup_to(&self, path: &std::path::Path) -> Result<(), StoreError> {
        if path.exists() {
            return Err(StoreError::Open(format!(
                "{} already exists; not overwriting it",
                path.display()
            )));
        }
        sqlx::query("VACUUM INTO ?")
            .bind(path.display().to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    fn device_from_row(row: &SqliteRow) -> Result<DeviceRecord, StoreError> {
        Ok(DeviceRecord {
            id: parse_device_id(row.try_get("id")?)?,
            secret_hash: row.try_get("secret_hash")?,
            vendor: row.try_get("vendor")?,
            model: row.try_get("model")?,
            merchant: row.try_get("merchant")?,
            merchant_id: row.try_get("merchant_id")?,
            created_at: from_ms(row.try_get("created_at")?),
            connected_at: row.try_get::<Option<i64>, _>("connected_at")?.map(from_ms),
            last_seen_at: row.try_get::<Option<i64>, _>("last_seen_at")?.map(from_ms),
        })
    }

    fn register_from_row(row: &SqliteRow) -> Result<RegisterRecord, StoreError> {
        let contact: String = row.try_get("contact")?;
        Ok(RegisterRecord {
            info: RegisterInfo {
                key: RegisterKey {
                    register_id: row.try_get("register_id")?,
                    business_name: row.try_get("business_name")?,
                    vendor_name: row.try_get("vendor_name")?,
                },
                register_name: row.try_get("register_name")?,
            },
            device_id: parse_device_id(row.try_get("device_id")?)?,
            contact: serde_json::from_str(&contact)
                .map_err(|e| StoreError::Corrupt(format!("register contact: {e}")))?,
            paired_at: from_ms(row.try_get("paired_at")?),
        })
    }

    fn transaction_from_row(row: &SqliteRow) -> Result<TransactionRecord, StoreError> {
        let id: String = row.try_get("id")?;
        let id = TransactionId::from_str(&id)
            .map_err(|e| StoreError::Corrupt(format!("transaction id {id}: {e}")))?;
        let request: String = row.try_get("request")?;
        let request: TransactionRequest = serde_json::from_str(&request)
            .map_err(|e| StoreError::Corrupt(format!("transaction {id} request: {e}")))?;
        let state: String = row.try_get("state")?;
        let phase = match state.as_str() {
            "offered" => Phase::Offered {
                accept_deadline: from_ms(
                    row.try_get::<Option<i64>, _>("accept_deadline")?
                        .unwrap_or(0),
                ),
            },
            "started" => Phase::Started {
                started_at: from_ms(row.try_get::<Option<i64>, _>("started_at")?.unwrap_or(0)),
            },
            "completed" => {
                let c: Option<String> = row.try_get("completion")?;
                let c = c.ok_or_else(|| {
                    StoreError::Corrupt(format!("transaction {id} has no completion"))
                })?;
                Phase::Completed(serde_json::from_str::<Completion>(&c).map_err(|e| {
                    StoreError::Corrupt(format!("transaction {id} completion: {e}"))
                })?)
            }
            other => {
                return Err(StoreError::Corrupt(format!(
                    "transaction {id} state {other}"
                )))
            }
        };
        Ok(TransactionRecord {
            id,
            device_id: parse_device_id(row.try_get("device_id")?)?,
            register: RegisterInfo {
                key: RegisterKey {
                    register_id: row.try_get("register_id")?,
                    business_name: row.try_get("business_name")?,
                    vendor_name: row.try_get("vendor_name")?,
                },
                register_name: row.try_get("register_name")?,
            },
            merchant_id: row.try_get("merchant_id")?,
            merchant: row.try_get("merchant")?,
            request,
            sale_data: row.try_get("sale_data")?,
            callback_url: row.try_get("callback_url")?,
            pos_reference: row.try_get("pos_reference")?,
            fingerprint: row.try_get("fingerprint")?,
            token: row.try_get("token")?,
            token_expires_at: from_ms(row.try_get("token_expires_at")?),
            created_at: from_ms(row.try_get("created_at")?),
            phase,
            display_text: row.try_get("display_text")?,
        })
    }
}

/// Queues the completion callback of a transaction that has a callback URL (no-op otherwise).
async fn enqueue_callback(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: &TransactionId,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT OR IGNORE INTO callback_outbox (transaction_id, url, next_attempt_at)
         SELECT id, callback_url, completed_at FROM transactions WHERE id = ? AND callback_url IS NOT NULL",
    )
    .bind(id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: &TransactionId,
    events: &[TimelineEvent],
) -> Result<(), StoreError> {
    for e in events {
        sqlx::query(
            "INSERT INTO transaction_events (transaction_id, at, kind, detail) VALUES (?, ?, ?, ?)",
        )
        .bind(id.to_string())
        .bind(ms(e.at))
        .bind(e.kind.as_str())
        .bind(&e.detail)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_device(&self, d: &DeviceRecord) -> Result<(), InsertError> {
        let r = sqlx::query(
            "INSERT INTO devices (id, secret_hash, vendor, model, merchant, merchant_id, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(d.id.as_str())
        .bind(&d.secret_hash)
        .bind(&d.vendor)
        .bind(&d.model)
        .bind(&d.merchant)
        .bind(&d.merchant_id)
        .bind(ms(d.created_at))
        .execute(&self.writer)
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(InsertError::AlreadyExists),
            Err(e) => Err(StoreError::from(e).into()),
        }
    }

    async fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        sqlx::query("SELECT * FROM devices WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(Self::device_from_row)
            .transpose()
    }

    async fn set_secret_hash(&self, id: &DeviceId, secret_hash: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE devices SET secret_hash = ? WHERE id = ?")
            .bind(secret_hash)
            .bind(id.as_str())
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        sqlx::query("SELECT * FROM devices ORDER BY id")
            .fetch_all(&self.reader)
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
        if connected {
            sqlx::query(
                "UPDATE devices SET connected_at = ?, connected_node = ?, last_seen_at = ? WHERE id = ?",
            )
            .bind(ms(now))
            .bind(node)
            .bind(ms(now))
            .bind(id.as_str())
            .execute(&self.writer)
            .await?;
        } else {
            sqlx::query(
                "UPDATE devices SET connected_at = NULL, connected_node = NULL, last_seen_at = ?
                 WHERE id = ? AND connected_node = ?",
            )
            .bind(ms(now))
            .bind(id.as_str())
            .bind(node)
            .execute(&self.writer)
            .await?;
        }
        Ok(())
    }

    async fn clear_connections(&self, node: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE devices SET connected_at = NULL, connected_node = NULL WHERE connected_node = ?")
            .bind(node)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn replace_pairing_code(
        &self,
        device: &DeviceId,
        code: &PairingCode,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM pairing_codes WHERE device_id = ? OR expires_at <= ?")
            .bind(device.as_str())
            .bind(ms(Utc::now()))
            .execute(&mut *tx)
            .await?;
        let r =
            sqlx::query("INSERT INTO pairing_codes (code, device_id, expires_at) VALUES (?, ?, ?)")
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
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn take_pairing_code(
        &self,
        code: &PairingCode,
        now: DateTime<Utc>,
    ) -> Result<Option<DeviceId>, StoreError> {
        // DELETE ... RETURNING consumes the code atomically: two POS racing with one code
        // cannot both pair.
        let row =
            sqlx::query("DELETE FROM pairing_codes WHERE code = ? RETURNING device_id, expires_at")
                .bind(code.as_str())
                .fetch_optional(&self.writer)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let expires_at: i64 = row.try_get("expires_at")?;
        if expires_at <= ms(now) {
            return Ok(None);
        }
        Ok(Some(parse_device_id(row.try_get("device_id")?)?))
    }

    async fn pair_register(&self, r: &RegisterRecord) -> Result<Option<DeviceId>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let previous: Option<String> = sqlx::query_scalar(
            "SELECT device_id FROM registers WHERE register_id = ? AND business_name = ? AND vendor_name = ?",
        )
        .bind(&r.info.key.register_id)
        .bind(&r.info.key.business_name)
        .bind(&r.info.key.vendor_name)
        .fetch_optional(&mut *tx)
        .await?;
        let contact =
            serde_json::to_string(&r.contact).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO registers (register_id, business_name, vendor_name, register_name, device_id, contact, paired_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (register_id, business_name, vendor_name) DO UPDATE SET
               register_name = excluded.register_name, device_id = excluded.device_id,
               contact = excluded.contact, paired_at = excluded.paired_at",
        )
        .bind(&r.info.key.register_id)
        .bind(&r.info.key.business_name)
        .bind(&r.info.key.vendor_name)
        .bind(&r.info.register_name)
        .bind(r.device_id.as_str())
        .bind(contact)
        .bind(ms(r.paired_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        previous
            .filter(|p| p != r.device_id.as_str())
            .map(parse_device_id)
            .transpose()
    }

    async fn register(&self, key: &RegisterKey) -> Result<Option<RegisterRecord>, StoreError> {
        sqlx::query(
            "SELECT * FROM registers WHERE register_id = ? AND business_name = ? AND vendor_name = ?",
        )
        .bind(&key.register_id)
        .bind(&key.business_name)
        .bind(&key.vendor_name)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(Self::register_from_row)
        .transpose()
    }

    async fn registers_of(&self, device: &DeviceId) -> Result<Vec<RegisterRecord>, StoreError> {
        sqlx::query("SELECT * FROM registers WHERE device_id = ? ORDER BY paired_at")
            .bind(device.as_str())
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(Self::register_from_row)
            .collect()
    }

    async fn unpair(
        &self,
        device: &DeviceId,
        register: Option<&RegisterKey>,
    ) -> Result<Vec<RegisterKey>, StoreError> {
        let rows = match register {
            Some(k) => {
                sqlx::query(
                    "DELETE FROM registers WHERE device_id = ? AND register_id = ? AND business_name = ? AND vendor_name = ?
                     RETURNING register_id, business_name, vendor_name",
                )
                .bind(device.as_str())
                .bind(&k.register_id)
                .bind(&k.business_name)
                .bind(&k.vendor_name)
                .fetch_all(&self.writer)
                .await?
            }
            None => {
                sqlx::query(
                    "DELETE FROM registers WHERE device_id = ? RETURNING register_id, business_name, vendor_name",
                )
                .bind(device.as_str())
                .fetch_all(&self.writer)
                .await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok(RegisterKey {
                    register_id: row.try_get("register_id")?,
                    business_name: row.try_get("business_name")?,
                    vendor_name: row.try_get("vendor_name")?,
                })
            })
            .collect()
    }

    async fn insert_transaction(
        &self,
        t: &TransactionRecord,
        events: &[TimelineEvent],
    ) -> Result<(), InsertError> {
        let (state, deadline, started, completed, completion) = phase_columns(&t.phase)?;
        let request =
            serde_json::to_string(&t.request).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.writer.begin().await.map_err(StoreError::from)?;
        let r = sqlx::query(&format!(
            "INSERT INTO transactions ({TX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(t.id.to_string())
        .bind(t.device_id.as_str())
        .bind(&t.register.key.register_id)
        .bind(&t.register.key.business_name)
        .bind(&t.register.key.vendor_name)
        .bind(&t.register.register_name)
        .bind(&t.merchant_id)
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
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                // The primary key is a fresh UUID, so the violation is either the reference
                // index or the one-active-transaction-per-device index; the message names the
                // columns of the one that failed.
                let reference = e.to_string().contains("pos_reference");
                return Err(if reference {
                    InsertError::DuplicateReference
                } else {
                    InsertError::DeviceBusy
                });
            }
            Err(e) => return Err(StoreError::from(e).into()),
        }
        insert_events(&mut tx, &t.id, events).await?;
        if state == "completed" {
            enqueue_callback(&mut tx, &t.id).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    async fn transaction_by_reference(
        &self,
        register: &RegisterKey,
        reference: &str,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TX_COLUMNS} FROM transactions
             WHERE register_id = ? AND business_name = ? AND vendor_name = ? AND pos_reference = ?"
        ))
        .bind(&register.register_id)
        .bind(&register.business_name)
        .bind(&register.vendor_name)
        .bind(reference)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(Self::transaction_from_row)
        .transpose()
    }

    async fn append_events(
        &self,
        id: &TransactionId,
        events: &[TimelineEvent],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        insert_events(&mut tx, id, events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn events(&self, id: &TransactionId) -> Result<Vec<TimelineEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, kind, detail FROM transaction_events WHERE transaction_id = ? ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                Ok(TimelineEvent {
                    at: from_ms(row.try_get("at")?),
                    kind: EventKind::parse(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("event kind {kind}")))?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }

    async fn due_callbacks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CallbackJob>, StoreError> {
        let rows = sqlx::query(
            "SELECT transaction_id, url, attempts FROM callback_outbox
             WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(callback_job).collect()
    }

    async fn claim_callbacks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<CallbackJob>, StoreError> {
        // One statement on the single writer: atomic.
        let rows = sqlx::query(
            "UPDATE callback_outbox SET next_attempt_at = ?
             WHERE transaction_id IN (
               SELECT transaction_id FROM callback_outbox
               WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?)
             RETURNING transaction_id, url, attempts",
        )
        .bind(ms(lease_until))
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(callback_job).collect()
    }

    async fn next_callback_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM callback_outbox WHERE status = 'pending'",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(v.map(from_ms))
    }

    async fn record_callback_attempt(
        &self,
        id: &TransactionId,
        delivered: bool,
        retry_at: Option<DateTime<Utc>>,
        error: &str,
        event: &TimelineEvent,
    ) -> Result<(), StoreError> {
        let status = match (delivered, retry_at) {
            (true, _) => "delivered",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        };
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "UPDATE callback_outbox SET attempts = attempts + 1, status = ?, last_error = ?,
               next_attempt_at = COALESCE(?, next_attempt_at)
             WHERE transaction_id = ? AND status = 'pending'",
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

    async fn secret(
        &self,
        name: &str,
        generate: &(dyn Fn() -> String + Send + Sync),
    ) -> Result<String, StoreError> {
        // INSERT OR IGNORE then read: concurrent first starts agree on one value.
        sqlx::query("INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)")
            .bind(name)
            .bind(generate())
            .execute(&self.writer)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM secrets WHERE name = ?")
                .bind(name)
                .fetch_one(&self.writer)
                .await?,
        )
    }

    async fn purge_completed_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        // In batches, so a large purge never holds the single writer for long.
        let mut total = 0;
        loop {
            let r = sqlx::query(
                "DELETE FROM transactions WHERE id IN (
                   SELECT id FROM transactions WHERE state = 'completed' AND created_at < ? LIMIT 1000)",
            )
            .bind(ms(before))
            .execute(&self.writer)
            .await?;
            total += r.rows_affected();
            if r.rows_affected() < 1000 {
                return Ok(total);
            }
        }
    }

    async fn transaction(
        &self,
        id: &TransactionId,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.reader)
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
        events: &[TimelineEvent],
    ) -> Result<bool, StoreError> {
        let (state, deadline, started, completed, completion) = phase_columns(to)?;
        let mut tx = self.writer.begin().await?;
        let r = sqlx::query(
            "UPDATE transactions SET state = ?, accept_deadline = ?, started_at = COALESCE(?, started_at),
               completed_at = ?, completion = ?,
               display_text = CASE WHEN ? = 'completed' THEN NULL ELSE display_text END
             WHERE id = ? AND state = ?",
        )
        .bind(state)
        .bind(deadline)
        .bind(started)
        .bind(completed)
        .bind(completion)
        .bind(state)
        .bind(id.to_string())
        .bind(phase_kind(from))
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        insert_events(&mut tx, id, events).await?;
        if state == "completed" {
            enqueue_callback(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn set_display_text(
        &self,
        id: &TransactionId,
        device: &DeviceId,
        text: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        let r = sqlx::query(
            "UPDATE transactions SET display_text = ? WHERE id = ? AND device_id = ? AND state <> 'completed'",
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

    async fn query_transactions(
        &self,
        q: &TransactionQuery,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        // Absent criteria bind NULL and drop out (`? IS NULL OR ...`): one statement, no SQL
        // built from input. LIKE is case-insensitive for ASCII in SQLite.
        let like = |o: &Option<String>| o.as_deref().map(TransactionQuery::like);
        sqlx::query(&format!(
            "SELECT {TX_COLUMNS} FROM transactions
             WHERE (?1 IS NULL OR created_at >= ?1) AND (?2 IS NULL OR created_at < ?2)
               AND (?3 IS NULL OR register_id LIKE ?3 ESCAPE '\\' OR register_name LIKE ?3 ESCAPE '\\')
               AND (?4 IS NULL OR device_id LIKE ?4 ESCAPE '\\')
               AND (?5 IS NULL OR pos_reference LIKE ?5 ESCAPE '\\' OR id LIKE ?5 ESCAPE '\\')
               AND (?6 = 0 OR state <> 'completed')
             ORDER BY created_at DESC LIMIT ?7"
        ))
        .bind(q.since.map(ms))
        .bind(q.until.map(ms))
        .bind(like(&q.register))
        .bind(like(&q.device))
        .bind(like(&q.reference))
        .bind(q.pending_only)
        .bind(i64::from(q.limit))
        .fetch_all(&self.reader)
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
            "SELECT {TX_COLUMNS} FROM transactions WHERE device_id = ? AND state <> 'completed'"
        ))
        .bind(device.as_str())
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(Self::transaction_from_row)
        .transpose()
    }

    async fn expired_offers(&self, now: DateTime<Utc>) -> Result<Vec<TransactionId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM transactions WHERE state = 'offered' AND accept_deadline <= ? ORDER BY accept_deadline LIMIT 500",
        )
        .bind(ms(now))
        .fetch_all(&self.reader)
        .await?;
        ids.iter()
            .map(|s| {
                TransactionId::from_str(s).map_err(|e| StoreError::Corrupt(format!("{s}: {e}")))
            })
            .collect()
    }

    async fn next_offer_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(accept_deadline) FROM transactions WHERE state = 'offered'",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(v.map(from_ms))
    }
}

fn callback_job(row: &SqliteRow) -> Result<CallbackJob, StoreError> {
    let id: String = row.try_get("transaction_id")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(CallbackJob {
        transaction_id: TransactionId::from_str(&id)
            .map_err(|e| StoreError::Corrupt(format!("{id}: {e}")))?,
        url: row.try_get("url")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
    })
}
