//! The receipt outbox on PostgreSQL. Two nodes queueing the same receipt at once meet at the
//! unique index of live deliveries: one inserts, the other finds that row (its insert waits
//! for the first commit, then does nothing), so one email leaves. Claims skip rows another
//! node has locked.

use super::{insert_events, PostgresStore};
use crate::domain::receipts::{AttemptOutcome, Channels, DeliveryId, Queued, ReceiptDelivery};
use crate::domain::timeline::TimelineEvent;
use crate::store::columns::{from_ms, ms};
use crate::store::receipt_columns::{attempt_columns, delivery};
use crate::store::{ReceiptStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use protocol::TransactionId;
use sqlx::Postgres;

/// Inserts `d` unless a live delivery of the same transaction, address and copy exists: the
/// delivery as stored, and whether it is that other one.
async fn insert_or_find(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    d: &ReceiptDelivery,
) -> Result<(ReceiptDelivery, bool), StoreError> {
    // The live twin may turn `failed` between the insert that met it and the look-up (its
    // last attempt was recorded): then the insert goes through on the next round.
    for _ in 0..3 {
        let inserted = sqlx::query(
            "INSERT INTO receipt_deliveries (id, transaction_id, channel, address, receipt_copy,
               state, attempts, next_attempt_at, last_error, created_at, sent_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (transaction_id, channel, address, receipt_copy) WHERE state <> 'failed'
             DO NOTHING
             RETURNING *",
        )
        .bind(d.id.as_str())
        .bind(d.transaction_id.to_string())
        .bind(d.channel().as_str())
        .bind(d.address.as_str())
        .bind(d.copy.as_str())
        .bind(d.state.as_str())
        .bind(i32::try_from(d.attempts).unwrap_or(i32::MAX))
        .bind(ms(d.next_attempt_at))
        .bind(&d.last_error)
        .bind(ms(d.created_at))
        .bind(d.sent_at.map(ms))
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(row) = inserted {
            return Ok((delivery(&row)?, false));
        }
        let twin = sqlx::query(
            "SELECT * FROM receipt_deliveries
             WHERE transaction_id = $1 AND channel = $2 AND address = $3 AND receipt_copy = $4
               AND state <> 'failed'",
        )
        .bind(d.transaction_id.to_string())
        .bind(d.channel().as_str())
        .bind(d.address.as_str())
        .bind(d.copy.as_str())
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(row) = twin {
            return Ok((delivery(&row)?, true));
        }
    }
    Err(StoreError::Commit(
        "a receipt delivery kept changing while it was queued".into(),
    ))
}

#[async_trait]
impl ReceiptStore for PostgresStore {
    async fn queue_receipts(
        &self,
        deliveries: &[(ReceiptDelivery, TimelineEvent)],
    ) -> Result<Vec<Queued>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::with_capacity(deliveries.len());
        for (d, event) in deliveries {
            let (delivery, replayed) = insert_or_find(&mut tx, d).await?;
            if !replayed {
                insert_events(&mut tx, &d.transaction_id, std::slice::from_ref(event)).await?;
            }
            out.push(Queued { delivery, replayed });
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn receipt_deliveries(
        &self,
        transaction: &TransactionId,
    ) -> Result<Vec<ReceiptDelivery>, StoreError> {
        sqlx::query(
            "SELECT * FROM receipt_deliveries WHERE transaction_id = $1 ORDER BY created_at, id",
        )
        .bind(transaction.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(delivery)
        .collect()
    }

    async fn claim_receipts(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
        channels: Channels,
    ) -> Result<Vec<ReceiptDelivery>, StoreError> {
        // SKIP LOCKED: nodes claiming at the same moment take disjoint rows instead of waiting.
        sqlx::query(
            "UPDATE receipt_deliveries SET next_attempt_at = $1
             WHERE id IN (
               SELECT id FROM receipt_deliveries
               WHERE state = 'pending' AND next_attempt_at <= $2
                 AND ((channel = 'email' AND $4) OR (channel = 'sms' AND $5))
               ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING *",
        )
        .bind(ms(lease_until))
        .bind(ms(now))
        .bind(i64::from(limit))
        .bind(channels.email)
        .bind(channels.sms)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(delivery)
        .collect()
    }

    async fn next_receipt_at(
        &self,
        channels: Channels,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM receipt_deliveries
             WHERE state = 'pending' AND ((channel = 'email' AND $1) OR (channel = 'sms' AND $2))",
        )
        .bind(channels.email)
        .bind(channels.sms)
        .fetch_one(&self.pool)
        .await?;
        v.map(from_ms).transpose()
    }

    async fn record_receipt_attempt(
        &self,
        id: &DeliveryId,
        outcome: &AttemptOutcome,
        event: &TimelineEvent,
    ) -> Result<bool, StoreError> {
        let (state, error, next, sent) = attempt_columns(outcome);
        let mut tx = self.pool.begin().await?;
        let transaction: Option<String> = sqlx::query_scalar(
            "UPDATE receipt_deliveries SET attempts = attempts + 1, state = $1,
               last_error = COALESCE($2, last_error),
               next_attempt_at = COALESCE($3, next_attempt_at), sent_at = $4
             WHERE id = $5 AND state = 'pending'
             RETURNING transaction_id",
        )
        .bind(state)
        .bind(error)
        .bind(next)
        .bind(sent)
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(transaction) = transaction else {
            return Ok(false);
        };
        let transaction = crate::store::columns::parse_transaction_id(&transaction)?;
        insert_events(&mut tx, &transaction, std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(true)
    }
}
