//! The event log and webhook endpoints on PostgreSQL. Many writers commit concurrently, so a
//! `seq` drawn early may commit after a later one: the log is read in (`epoch`, `seq`) order,
//! `epoch` being the writing transaction's id, and only below the oldest transaction still
//! running (`pg_snapshot_xmin`). A transaction that starts after another committed has a
//! higher id, so the order keeps cause before effect, and no commit can land behind a cursor a
//! reader was given.

use super::accounts::{insert_audit, inserted};
use super::PostgresStore;
use crate::domain::accounts::AuditEntry;
use crate::domain::events::{
    Audience, Cursor, Event, EventId, EventType, NewEvent, SCHEMA_VERSION,
};
use crate::domain::webhooks::{Attempt, Endpoint, EndpointId, Progress};
use crate::store::columns::{self, ms, signed};
use crate::store::{EventStore, InsertError, StoreError, WebhookStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Row};

/// Delivery log rows kept per endpoint.
const DELIVERIES_KEPT: i64 = 500;
/// Rows deleted per purge statement.
const PURGE_BATCH: i64 = 1000;

/// Events' columns as arrays, for one `unnest` insert however many there are.
pub(super) struct Rows {
    pub id: Vec<String>,
    pub kind: Vec<&'static str>,
    pub merchant: Vec<Option<String>>,
    pub vendor: Vec<Option<String>>,
    pub device: Vec<Option<String>>,
    pub at: Vec<i64>,
    pub data: Vec<String>,
}

impl Rows {
    pub fn of(events: &[NewEvent]) -> Self {
        Self {
            id: events.iter().map(|e| e.id.as_str().to_string()).collect(),
            kind: events.iter().map(|e| e.kind.as_str()).collect(),
            merchant: events
                .iter()
                .map(|e| e.merchant_id.as_ref().map(|m| m.as_str().to_string()))
                .collect(),
            vendor: events.iter().map(|e| e.vendor.clone()).collect(),
            device: events
                .iter()
                .map(|e| e.device_id.as_ref().map(|d| d.as_str().to_string()))
                .collect(),
            at: events.iter().map(|e| ms(e.at)).collect(),
            data: events.iter().map(|e| e.data.to_string()).collect(),
        }
    }
}

/// Appends events to the log in one statement, in the caller's transaction and in their
/// order. An event that names only its device takes the device's merchant.
pub(super) async fn log_events(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let rows = Rows::of(events);
    sqlx::query(
        "INSERT INTO events (id, type, merchant_id, vendor, device_id, created_at, schema_version, data)
         SELECT e.id, e.type, COALESCE(e.merchant, (SELECT merchant_id FROM devices WHERE id = e.device)),
           e.vendor, e.device, e.at, $8, e.data
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[])
           WITH ORDINALITY AS e(id, type, merchant, vendor, device, at, data, n)
         ORDER BY e.n",
    )
    .bind(rows.id)
    .bind(rows.kind)
    .bind(rows.merchant)
    .bind(rows.vendor)
    .bind(rows.device)
    .bind(rows.at)
    .bind(rows.data)
    .bind(i64::from(SCHEMA_VERSION))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const EVENT_COLUMNS: &str =
    "epoch, seq, id, type, merchant_id, vendor, device_id, created_at, schema_version, data";
/// Events no transaction still running can come before.
const SETTLED: &str = "epoch < pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

#[async_trait]
impl EventStore for PostgresStore {
    async fn log_after(
        &self,
        after: &Cursor,
        audience: &Audience,
        types: &[EventType],
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let (merchant, vendor) = columns::audience_params(audience);
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE (epoch, seq) > ($1, $2) AND {SETTLED}
               AND ($3::text IS NULL OR merchant_id = $3) AND ($4::text IS NULL OR vendor = $4)
               AND ($5 = '' OR position(',' || type || ',' in $5) > 0)
             ORDER BY epoch, seq LIMIT $6"
        ))
        .bind(signed(after.epoch))
        .bind(signed(after.seq))
        .bind(merchant)
        .bind(vendor)
        .bind(columns::types_param(types))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(columns::logged_event).collect()
    }

    async fn logged_event(&self, id: &EventId) -> Result<Option<Event>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 AND {SETTLED}"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(columns::logged_event).transpose()
    }

    async fn log_head(&self) -> Result<Cursor, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT epoch, seq FROM events WHERE {SETTLED} ORDER BY epoch DESC, seq DESC LIMIT 1"
        ))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Cursor::START);
        };
        let unsigned = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(Cursor {
            epoch: unsigned(row.try_get("epoch")?),
            seq: unsigned(row.try_get("seq")?),
        })
    }

    async fn purge_events_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let r = sqlx::query(
                "DELETE FROM events WHERE seq IN (
                   SELECT seq FROM events WHERE created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
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
impl WebhookStore for PostgresStore {
    async fn insert_webhook(&self, e: &Endpoint, audit: &AuditEntry) -> Result<(), InsertError> {
        let (merchant, vendor) = columns::webhook_owner_columns(&e.owner);
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let r = sqlx::query(
            "INSERT INTO webhook_endpoints (id, merchant_id, vendor, url, event_types, description,
               secret, previous_secret, previous_secret_until, enabled, created_at, cursor_epoch,
               cursor_seq, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(e.id.as_str())
        .bind(merchant)
        .bind(vendor)
        .bind(e.url.as_str())
        .bind(columns::event_types_column(&e.types))
        .bind(&e.description)
        .bind(&e.secret)
        .bind(e.previous_secret.as_ref().map(|(s, _)| s.as_str()))
        .bind(e.previous_secret.as_ref().map(|(_, until)| ms(*until)))
        .bind(e.enabled)
        .bind(ms(e.created_at))
        .bind(signed(e.cursor.epoch))
        .bind(signed(e.cursor.seq))
        .bind(ms(e.next_attempt_at))
        .execute(&mut *tx)
        .await;
        inserted(r)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    async fn webhook(&self, id: &EndpointId) -> Result<Option<Endpoint>, StoreError> {
        let row = sqlx::query("SELECT * FROM webhook_endpoints WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(columns::webhook_endpoint).transpose()
    }

    async fn webhooks(&self) -> Result<Vec<Endpoint>, StoreError> {
        let rows = sqlx::query("SELECT * FROM webhook_endpoints ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(columns::webhook_endpoint).collect()
    }

    async fn update_webhook(&self, e: &Endpoint, audit: &AuditEntry) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE webhook_endpoints SET url = $2, event_types = $3, description = $4, secret = $5,
               previous_secret = $6, previous_secret_until = $7, disabled_reason = $9,
               attempts = CASE WHEN $8 AND NOT enabled THEN 0 ELSE attempts END,
               failing_since = CASE WHEN $8 AND NOT enabled THEN NULL ELSE failing_since END,
               next_attempt_at = CASE WHEN $8 AND NOT enabled THEN 0 ELSE next_attempt_at END,
               enabled = $8
             WHERE id = $1",
        )
        .bind(e.id.as_str())
        .bind(e.url.as_str())
        .bind(columns::event_types_column(&e.types))
        .bind(&e.description)
        .bind(&e.secret)
        .bind(e.previous_secret.as_ref().map(|(s, _)| s.as_str()))
        .bind(e.previous_secret.as_ref().map(|(_, until)| ms(*until)))
        .bind(e.enabled)
        .bind(&e.disabled_reason)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn delete_webhook(
        &self,
        id: &EndpointId,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 1 {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn lease_webhook(
        &self,
        id: &EndpointId,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Endpoint>, StoreError> {
        let row = sqlx::query(
            "UPDATE webhook_endpoints SET lease_owner = $2, lease_until = $4
             WHERE id = $1 AND enabled AND next_attempt_at <= $3
               AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until <= $3)
             RETURNING *",
        )
        .bind(id.as_str())
        .bind(owner)
        .bind(ms(now))
        .bind(ms(until))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(columns::webhook_endpoint).transpose()
    }

    async fn record_webhook_attempt(
        &self,
        id: &EndpointId,
        owner: &str,
        a: &Attempt,
        progress: &Progress,
        until: DateTime<Utc>,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let held = sqlx::query(
            "UPDATE webhook_endpoints SET lease_until = $3 WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id.as_str())
        .bind(owner)
        .bind(ms(until))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if held != 1 {
            return Ok(false);
        }
        match progress {
            Progress::Advance(c) => {
                sqlx::query(
                    "UPDATE webhook_endpoints SET cursor_epoch = $2, cursor_seq = $3, attempts = 0,
                       failing_since = NULL, next_attempt_at = 0 WHERE id = $1",
                )
                .bind(id.as_str())
                .bind(signed(c.epoch))
                .bind(signed(c.seq))
                .execute(&mut *tx)
                .await?;
            }
            Progress::Redelivered(event) => {
                sqlx::query(
                    "DELETE FROM webhook_redeliveries WHERE endpoint_id = $1 AND event_id = $2",
                )
                .bind(id.as_str())
                .bind(event.as_str())
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE webhook_endpoints SET attempts = 0, failing_since = NULL,
                       next_attempt_at = 0 WHERE id = $1",
                )
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            }
            Progress::Failed(f) => {
                sqlx::query(
                    "UPDATE webhook_endpoints SET attempts = $2, failing_since = $3, next_attempt_at = $4,
                       enabled = $5, disabled_reason = COALESCE($6, disabled_reason) WHERE id = $1",
                )
                .bind(id.as_str())
                .bind(i64::from(f.attempts))
                .bind(ms(f.failing_since))
                .bind(ms(f.next_attempt_at))
                .bind(f.disable.is_none())
                .bind(&f.disable)
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query(
            "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, attempt, delivered,
               response_code, error, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id.as_str())
        .bind(a.event_id.as_str())
        .bind(&a.event_type)
        .bind(i64::from(a.attempt))
        .bind(a.delivered)
        .bind(a.response_code.map(i64::from))
        .bind(&a.error)
        .bind(ms(a.at))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM webhook_deliveries WHERE endpoint_id = $1 AND id <= (
               SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
        )
        .bind(id.as_str())
        .bind(DELIVERIES_KEPT)
        .execute(&mut *tx)
        .await?;
        if let Some(audit) = audit {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn release_webhook(&self, id: &EndpointId, owner: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_endpoints SET lease_owner = NULL, lease_until = NULL
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id.as_str())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn webhook_deliveries(
        &self,
        id: &EndpointId,
        limit: u32,
    ) -> Result<Vec<Attempt>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(id.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(columns::webhook_attempt).collect()
    }

    async fn queue_redelivery(
        &self,
        id: &EndpointId,
        event: &EventId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Due now, whatever the backoff said: someone asked.
        let exists = sqlx::query("UPDATE webhook_endpoints SET next_attempt_at = 0 WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if exists {
            sqlx::query(
                "INSERT INTO webhook_redeliveries (endpoint_id, event_id, requested_at)
                 VALUES ($1, $2, $3) ON CONFLICT (endpoint_id, event_id) DO NOTHING",
            )
            .bind(id.as_str())
            .bind(event.as_str())
            .bind(ms(at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(exists)
    }

    async fn redeliveries(&self, id: &EndpointId) -> Result<Vec<EventId>, StoreError> {
        let rows = sqlx::query(
            "SELECT event_id FROM webhook_redeliveries WHERE endpoint_id = $1 ORDER BY requested_at, event_id",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(EventId::from_stored(r.try_get("event_id")?)))
            .collect()
    }
}
