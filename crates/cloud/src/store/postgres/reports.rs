//! What reports read on PostgreSQL: settlements and a period's completed transactions with
//! their follow-ups. One statement each, absent criteria binding NULL (no SQL built from
//! input).

use super::{PostgresStore, TX_COLUMNS};
use crate::store::columns::ms;
use crate::store::{PeriodQuery, ReportStore, StoreError, TransactionRecord};
use async_trait::async_trait;

/// The period's completed transactions, as a condition on `t` ($1 to $4).
const IN_PERIOD: &str = "t.state = 'completed'
     AND ($1::TEXT IS NULL OR t.merchant_id = $1) AND ($2::TEXT IS NULL OR t.device_id = $2)
     AND ($3::BIGINT IS NULL OR t.completed_at >= $3) AND ($4::BIGINT IS NULL OR t.completed_at <= $4)";

impl PostgresStore {
    /// Runs a period query's statement, binding `q`'s criteria and limit ($5).
    async fn period(
        &self,
        sql: &str,
        q: &PeriodQuery,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        sqlx::query(sql)
            .bind(q.merchant.as_ref().map(|m| m.as_str()))
            .bind(q.device.as_ref().map(|d| d.as_str()))
            .bind(q.since.map(ms))
            .bind(q.until.map(ms))
            .bind(i64::from(q.limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::transaction_from_row)
            .collect()
    }
}

#[async_trait]
impl ReportStore for PostgresStore {
    async fn settlements(&self, q: &PeriodQuery) -> Result<Vec<TransactionRecord>, StoreError> {
        let sql = format!(
            "SELECT {TX_COLUMNS} FROM transactions t
             WHERE t.function = 'Acquirer.Settlement.Cutover' AND {IN_PERIOD}
             ORDER BY t.completed_at DESC, t.id DESC LIMIT $5"
        );
        self.period(&sql, q).await
    }

    async fn completed_transactions(
        &self,
        q: &PeriodQuery,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        let sql = format!(
            "SELECT {TX_COLUMNS} FROM transactions t WHERE {IN_PERIOD}
             ORDER BY t.completed_at, t.id LIMIT $5"
        );
        self.period(&sql, q).await
    }

    async fn follow_ups_of_completed(
        &self,
        q: &PeriodQuery,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        let sql = format!(
            "SELECT {TX_COLUMNS} FROM transactions WHERE original_id IN (
                 SELECT t.id FROM transactions t WHERE {IN_PERIOD}
                 ORDER BY t.completed_at, t.id LIMIT $5)
             ORDER BY created_at, id"
        );
        self.period(&sql, q).await
    }
}
