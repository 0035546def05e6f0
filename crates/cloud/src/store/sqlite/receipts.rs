//! The receipt outbox on SQLite. The writer is the only writer, so "is there a live delivery
//! for this address already?" and the insert cannot be raced.

use super::{all, insert_events, one, SqliteStore};
use crate::domain::receipts::{AttemptOutcome, Channels, DeliveryId, Queued, ReceiptDelivery};
use crate::domain::timeline::TimelineEvent;
use crate::store::columns::{from_ms, ms};
use crate::store::receipt_columns::{attempt_columns, delivery};
use crate::store::{ReceiptStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use protocol::TransactionId;
use rusqlite::{params, Connection};

/// The live (pending or sent) delivery of the same transaction, address and copy.
fn live_twin(
    conn: &Connection,
    d: &ReceiptDelivery,
) -> Result<Option<ReceiptDelivery>, StoreError> {
    one(
        conn,
        "SELECT * FROM receipt_deliveries
         WHERE transaction_id = ?1 AND channel = ?2 AND address = ?3 AND receipt_copy = ?4
           AND state <> 'failed'",
        params![
            d.transaction_id.to_string(),
            d.channel().as_str(),
            d.address.as_str(),
            d.copy.as_str()
        ],
        |r| delivery(r),
    )
}

fn insert(conn: &Connection, d: &ReceiptDelivery) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO receipt_deliveries (id, transaction_id, channel, address, receipt_copy, state,
           attempts, next_attempt_at, last_error, created_at, sent_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        d.id.as_str(),
        d.transaction_id.to_string(),
        d.channel().as_str(),
        d.address.as_str(),
        d.copy.as_str(),
        d.state.as_str(),
        i64::from(d.attempts),
        ms(d.next_attempt_at),
        d.last_error,
        ms(d.created_at),
        d.sent_at.map(ms),
    ])?;
    Ok(())
}

#[async_trait]
impl ReceiptStore for SqliteStore {
    async fn queue_receipts(
        &self,
        deliveries: &[(ReceiptDelivery, TimelineEvent)],
    ) -> Result<Vec<Queued>, StoreError> {
        let deliveries = deliveries.to_vec();
        self.writer
            .write(move |conn| {
                let mut out = Vec::with_capacity(deliveries.len());
                for (d, event) in deliveries {
                    if let Some(existing) = live_twin(conn, &d)? {
                        out.push(Queued {
                            delivery: existing,
                            replayed: true,
                        });
                        continue;
                    }
                    insert(conn, &d)?;
                    insert_events(
                        conn,
                        &d.transaction_id.to_string(),
                        std::slice::from_ref(&event),
                    )?;
                    out.push(Queued {
                        delivery: d,
                        replayed: false,
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn receipt_deliveries(
        &self,
        transaction: &TransactionId,
    ) -> Result<Vec<ReceiptDelivery>, StoreError> {
        self.read(|conn| {
            all(
                conn,
                "SELECT * FROM receipt_deliveries WHERE transaction_id = ?1 ORDER BY created_at, id",
                [transaction.to_string()],
                |r| delivery(r),
            )
        })
    }

    async fn claim_receipts(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
        channels: Channels,
    ) -> Result<Vec<ReceiptDelivery>, StoreError> {
        self.writer
            .write(move |conn| {
                all(
                    conn,
                    "UPDATE receipt_deliveries SET next_attempt_at = ?1
                     WHERE id IN (
                       SELECT id FROM receipt_deliveries
                       WHERE state = 'pending' AND next_attempt_at <= ?2
                         AND ((channel = 'email' AND ?4) OR (channel = 'sms' AND ?5))
                       ORDER BY next_attempt_at LIMIT ?3)
                     RETURNING *",
                    params![
                        ms(lease_until),
                        ms(now),
                        i64::from(limit),
                        channels.email,
                        channels.sms
                    ],
                    |r| delivery(r),
                )
            })
            .await
    }

    async fn next_receipt_at(
        &self,
        channels: Channels,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(|conn| {
            let v: Option<i64> = conn
                .prepare_cached(
                    "SELECT MIN(next_attempt_at) FROM receipt_deliveries
                     WHERE state = 'pending'
                       AND ((channel = 'email' AND ?1) OR (channel = 'sms' AND ?2))",
                )?
                .query_row(params![channels.email, channels.sms], |row| row.get(0))?;
            v.map(from_ms).transpose()
        })
    }

    async fn record_receipt_attempt(
        &self,
        id: &DeliveryId,
        outcome: &AttemptOutcome,
        event: &TimelineEvent,
    ) -> Result<bool, StoreError> {
        let (id, outcome, event) = (id.clone(), outcome.clone(), event.clone());
        self.writer
            .write(move |conn| {
                let (state, error, next, sent) = attempt_columns(&outcome);
                let transaction: Option<String> = one(
                    conn,
                    "UPDATE receipt_deliveries SET attempts = attempts + 1, state = ?1,
                       last_error = COALESCE(?2, last_error),
                       next_attempt_at = COALESCE(?3, next_attempt_at), sent_at = ?4
                     WHERE id = ?5 AND state = 'pending'
                     RETURNING transaction_id",
                    params![state, error, next, sent, id.as_str()],
                    |r| Ok(r.get(0)?),
                )?;
                let Some(transaction) = transaction else {
                    return Ok(false);
                };
                insert_events(conn, &transaction, std::slice::from_ref(&event))?;
                Ok(true)
            })
            .await
    }
}
