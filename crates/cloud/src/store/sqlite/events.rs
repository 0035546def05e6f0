//! The event log and webhook endpoints on SQLite. The single writer commits in `seq` order, so
//! the log is read by `seq` alone (every cursor's epoch is 0 here).

use super::accounts::{insert_audit, inserted};
use super::{all, one, SqliteStore};
use crate::domain::accounts::AuditEntry;
use crate::domain::events::{
    Audience, Cursor, Event, EventId, EventType, NewEvent, SCHEMA_VERSION,
};
use crate::domain::webhooks::{Attempt, Endpoint, EndpointId, Progress};
use crate::store::columns::{self, ms, signed};
use crate::store::{EventStore, InsertError, StoreError, WebhookStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

/// Delivery log rows kept per endpoint.
const DELIVERIES_KEPT: i64 = 500;

/// An event as its row is written: serialised before it reaches the writer thread, which
/// every commit shares.
pub(super) struct EventRow {
    id: String,
    kind: &'static str,
    merchant: Option<String>,
    vendor: Option<String>,
    device: Option<String>,
    at: i64,
    data: String,
}

/// The rows of `events`, made on the calling task.
pub(super) fn rows(events: &[NewEvent]) -> Vec<EventRow> {
    events
        .iter()
        .map(|e| EventRow {
            id: e.id.as_str().to_string(),
            kind: e.kind.as_str(),
            merchant: e.merchant_id.as_ref().map(|m| m.as_str().to_string()),
            vendor: e.vendor.clone(),
            device: e.device_id.as_ref().map(|d| d.as_str().to_string()),
            at: ms(e.at),
            data: e.data.to_string(),
        })
        .collect()
}

/// Appends events to the log, in the caller's commit. An event that names only its device
/// takes the device's merchant.
pub(super) fn log_events(conn: &Connection, events: &[EventRow]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events (id, type, merchant_id, vendor, device_id, created_at, schema_version, data)
         VALUES (?1, ?2, COALESCE(?3, (SELECT merchant_id FROM devices WHERE id = ?5)), ?4, ?5, ?6, ?7, ?8)",
    )?;
    for e in events {
        stmt.execute(params![
            e.id,
            e.kind,
            e.merchant,
            e.vendor,
            e.device,
            e.at,
            i64::from(SCHEMA_VERSION),
            e.data,
        ])?;
    }
    Ok(())
}

/// Logs one event built on the writer thread (rare changes: a connection, an acknowledgement).
pub(super) fn log_event(conn: &Connection, event: &NewEvent) -> Result<(), StoreError> {
    log_events(conn, &rows(std::slice::from_ref(event)))
}

const EVENT_COLUMNS: &str =
    "0 AS epoch, seq, id, type, merchant_id, vendor, device_id, created_at, schema_version, data";

#[async_trait]
impl EventStore for SqliteStore {
    async fn log_after(
        &self,
        after: &Cursor,
        audience: &Audience,
        types: &[EventType],
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let (merchant, vendor) = columns::audience_params(audience);
        let types = columns::types_param(types);
        let (after, limit) = (signed(after.seq), i64::from(limit));
        self.scan(move |conn| {
            all(
                conn,
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events
                     WHERE seq > ?1 AND (?2 IS NULL OR merchant_id = ?2) AND (?3 IS NULL OR vendor = ?3)
                       AND (?4 = '' OR instr(?4, ',' || type || ',') > 0)
                     ORDER BY seq LIMIT ?5"
                ),
                params![after, merchant, vendor, types, limit],
                |r| columns::logged_event(r),
            )
        })
        .await
    }

    async fn logged_event(&self, id: &EventId) -> Result<Option<Event>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"),
                [id.as_str()],
                |r| columns::logged_event(r),
            )
        })
    }

    async fn log_head(&self) -> Result<Cursor, StoreError> {
        self.read(|conn| {
            let seq: Option<i64> = conn
                .prepare_cached("SELECT MAX(seq) FROM events")?
                .query_row([], |r| r.get(0))?;
            Ok(Cursor {
                epoch: 0,
                seq: seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            })
        })
    }

    async fn purge_events_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        // No index on the time (each would cost every commit): the log is in time order but
        // for commits racing by milliseconds, so the oldest events are the first by `seq`.
        // Batches of the first thousand go while the first is older than the cut.
        let cut = ms(before);
        let mut total = 0;
        loop {
            let n = self
                .writer
                .write(move |conn| {
                    Ok::<_, StoreError>(
                        conn.prepare_cached(
                            "DELETE FROM events WHERE seq IN (
                               SELECT seq FROM events ORDER BY seq LIMIT 1000) AND created_at < ?1",
                        )?
                        .execute([cut])?,
                    )
                })
                .await?;
            total += n as u64;
            if n == 0 {
                return Ok(total);
            }
        }
    }
}

/// The columns an owner may change, as bound by both insert and update.
fn settings(e: &Endpoint) -> (String, String, Option<String>, Option<i64>) {
    (
        e.url.to_string(),
        columns::event_types_column(&e.types),
        e.previous_secret.as_ref().map(|(s, _)| s.clone()),
        e.previous_secret.as_ref().map(|(_, until)| ms(*until)),
    )
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn insert_webhook(&self, e: &Endpoint, audit: &AuditEntry) -> Result<(), InsertError> {
        let (e, audit) = (e.clone(), audit.clone());
        self.writer
            .write(move |conn| {
                let (url, types, previous, previous_until) = settings(&e);
                let (merchant, vendor) = columns::webhook_owner_columns(&e.owner);
                let r = conn
                    .prepare_cached(
                        "INSERT INTO webhook_endpoints (id, merchant_id, vendor, url, event_types, description,
                           secret, previous_secret, previous_secret_until, enabled, created_at, cursor_epoch,
                           cursor_seq, next_attempt_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                    )
                    .map_err(StoreError::from)?
                    .execute(params![
                        e.id.as_str(),
                        merchant,
                        vendor,
                        url,
                        types,
                        e.description,
                        e.secret,
                        previous,
                        previous_until,
                        e.enabled,
                        ms(e.created_at),
                        signed(e.cursor.epoch),
                        signed(e.cursor.seq),
                        ms(e.next_attempt_at),
                    ]);
                inserted(r)?;
                insert_audit(conn, &audit)?;
                Ok(())
            })
            .await
    }

    async fn webhook(&self, id: &EndpointId) -> Result<Option<Endpoint>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                "SELECT * FROM webhook_endpoints WHERE id = ?1",
                [id.as_str()],
                |r| columns::webhook_endpoint(r),
            )
        })
    }

    async fn webhooks(&self) -> Result<Vec<Endpoint>, StoreError> {
        self.scan(|conn| {
            all(
                conn,
                "SELECT * FROM webhook_endpoints ORDER BY created_at, id",
                [],
                |r| columns::webhook_endpoint(r),
            )
        })
        .await
    }

    async fn update_webhook(&self, e: &Endpoint, audit: &AuditEntry) -> Result<bool, StoreError> {
        let (e, audit) = (e.clone(), audit.clone());
        self.writer
            .write(move |conn| {
                let (url, types, previous, previous_until) = settings(&e);
                let n = conn
                    .prepare_cached(
                        "UPDATE webhook_endpoints SET url = ?2, event_types = ?3, description = ?4, secret = ?5,
                           previous_secret = ?6, previous_secret_until = ?7, disabled_reason = ?9,
                           attempts = CASE WHEN ?8 AND NOT enabled THEN 0 ELSE attempts END,
                           failing_since = CASE WHEN ?8 AND NOT enabled THEN NULL ELSE failing_since END,
                           next_attempt_at = CASE WHEN ?8 AND NOT enabled THEN 0 ELSE next_attempt_at END,
                           enabled = ?8
                         WHERE id = ?1",
                    )?
                    .execute(params![
                        e.id.as_str(),
                        url,
                        types,
                        e.description,
                        e.secret,
                        previous,
                        previous_until,
                        e.enabled,
                        e.disabled_reason,
                    ])?;
                if n == 1 {
                    insert_audit(conn, &audit)?;
                }
                Ok(n == 1)
            })
            .await
    }

    async fn delete_webhook(
        &self,
        id: &EndpointId,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let (id, audit) = (id.clone(), audit.clone());
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached("DELETE FROM webhook_endpoints WHERE id = ?1")?
                    .execute([id.as_str()])?;
                if n == 1 {
                    insert_audit(conn, &audit)?;
                }
                Ok(n == 1)
            })
            .await
    }

    async fn lease_webhook(
        &self,
        id: &EndpointId,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Endpoint>, StoreError> {
        let (id, owner) = (id.clone(), owner.to_string());
        self.writer
            .write(move |conn| {
                one(
                    conn,
                    "UPDATE webhook_endpoints SET lease_owner = ?2, lease_until = ?4
                     WHERE id = ?1 AND enabled AND next_attempt_at <= ?3
                       AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until <= ?3)
                     RETURNING *",
                    params![id.as_str(), owner, ms(now), ms(until)],
                    |r| columns::webhook_endpoint(r),
                )
            })
            .await
    }

    async fn record_webhook_attempt(
        &self,
        id: &EndpointId,
        owner: &str,
        attempt: &Attempt,
        progress: &Progress,
        until: DateTime<Utc>,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        let (id, owner, a, progress, audit) = (
            id.clone(),
            owner.to_string(),
            attempt.clone(),
            progress.clone(),
            audit.cloned(),
        );
        self.writer
            .write(move |conn| {
                let held = conn
                    .prepare_cached(
                        "UPDATE webhook_endpoints SET lease_until = ?3 WHERE id = ?1 AND lease_owner = ?2",
                    )?
                    .execute(params![id.as_str(), owner, ms(until)])?;
                if held != 1 {
                    return Ok(false);
                }
                match &progress {
                    Progress::Advance(c) => {
                        conn.prepare_cached(
                            "UPDATE webhook_endpoints SET cursor_epoch = ?2, cursor_seq = ?3, attempts = 0,
                               failing_since = NULL, next_attempt_at = 0 WHERE id = ?1",
                        )?
                        .execute(params![id.as_str(), signed(c.epoch), signed(c.seq)])?;
                    }
                    Progress::Redelivered(event) => {
                        conn.prepare_cached(
                            "DELETE FROM webhook_redeliveries WHERE endpoint_id = ?1 AND event_id = ?2",
                        )?
                        .execute([id.as_str(), event.as_str()])?;
                        conn.prepare_cached(
                            "UPDATE webhook_endpoints SET attempts = 0, failing_since = NULL,
                               next_attempt_at = 0 WHERE id = ?1",
                        )?
                        .execute([id.as_str()])?;
                    }
                    Progress::Failed(f) => {
                        conn.prepare_cached(
                            "UPDATE webhook_endpoints SET attempts = ?2, failing_since = ?3, next_attempt_at = ?4,
                               enabled = ?5, disabled_reason = COALESCE(?6, disabled_reason) WHERE id = ?1",
                        )?
                        .execute(params![
                            id.as_str(),
                            i64::from(f.attempts),
                            ms(f.failing_since),
                            ms(f.next_attempt_at),
                            f.disable.is_none(),
                            f.disable,
                        ])?;
                    }
                }
                conn.prepare_cached(
                    "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, attempt, delivered,
                       response_code, error, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    id.as_str(),
                    a.event_id.as_str(),
                    a.event_type,
                    i64::from(a.attempt),
                    a.delivered,
                    a.response_code.map(i64::from),
                    a.error,
                    ms(a.at),
                ])?;
                conn.prepare_cached(
                    "DELETE FROM webhook_deliveries WHERE endpoint_id = ?1 AND id <= (
                       SELECT id FROM webhook_deliveries WHERE endpoint_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                )?
                .execute(params![id.as_str(), DELIVERIES_KEPT])?;
                if let Some(audit) = &audit {
                    insert_audit(conn, audit)?;
                }
                Ok(true)
            })
            .await
    }

    async fn release_webhook(&self, id: &EndpointId, owner: &str) -> Result<(), StoreError> {
        let (id, owner) = (id.clone(), owner.to_string());
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE webhook_endpoints SET lease_owner = NULL, lease_until = NULL
                     WHERE id = ?1 AND lease_owner = ?2",
                )?
                .execute([id.as_str(), owner.as_str()])?;
                Ok(())
            })
            .await
    }

    async fn webhook_deliveries(
        &self,
        id: &EndpointId,
        limit: u32,
    ) -> Result<Vec<Attempt>, StoreError> {
        self.read(|conn| {
            all(
                conn,
                "SELECT * FROM webhook_deliveries WHERE endpoint_id = ?1 ORDER BY id DESC LIMIT ?2",
                params![id.as_str(), i64::from(limit)],
                |r| columns::webhook_attempt(r),
            )
        })
    }

    async fn queue_redelivery(
        &self,
        id: &EndpointId,
        event: &EventId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (id, event) = (id.clone(), event.clone());
        self.writer
            .write(move |conn| {
                // Due now, whatever the backoff said: someone asked.
                let exists = conn
                    .prepare_cached(
                        "UPDATE webhook_endpoints SET next_attempt_at = 0 WHERE id = ?1",
                    )?
                    .execute([id.as_str()])?
                    == 1;
                if exists {
                    conn.prepare_cached(
                        "INSERT INTO webhook_redeliveries (endpoint_id, event_id, requested_at)
                         VALUES (?1, ?2, ?3) ON CONFLICT (endpoint_id, event_id) DO NOTHING",
                    )?
                    .execute(params![id.as_str(), event.as_str(), ms(at)])?;
                }
                Ok(exists)
            })
            .await
    }

    async fn redeliveries(&self, id: &EndpointId) -> Result<Vec<EventId>, StoreError> {
        self.read(|conn| {
            all(
                conn,
                "SELECT event_id FROM webhook_redeliveries WHERE endpoint_id = ?1 ORDER BY requested_at, event_id",
                [id.as_str()],
                |r| Ok(EventId::from_stored(r.get(0)?)),
            )
        })
    }
}
