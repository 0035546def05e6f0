//! What reports read on SQLite: settlements and a period's completed transactions with their
//! follow-ups. One statement each, absent criteria binding NULL (no SQL built from input), on
//! the blocking pool since a period may hold many rows.

use super::{all, transaction_from_row, SqliteStore};
use crate::store::columns::{ms, tx_columns};
use crate::store::{PeriodQuery, ReportStore, StoreError, TransactionRecord};
use async_trait::async_trait;
use rusqlite::params;

/// The criteria of a period query, as the statements bind them (?1 to ?5).
type Bound = (
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    i64,
);

fn bound(q: &PeriodQuery) -> Bound {
    (
        q.merchant.as_ref().map(|m| m.as_str().to_string()),
        q.device.as_ref().map(|d| d.as_str().to_string()),
        q.since.map(ms),
        q.until.map(ms),
        i64::from(q.limit),
    )
}

/// The period's completed transactions, as a condition on `t`.
macro_rules! in_period {
    () => {
        "t.state = 'completed'
         AND (?1 IS NULL OR t.merchant_id = ?1) AND (?2 IS NULL OR t.device_id = ?2)
         AND (?3 IS NULL OR t.completed_at >= ?3) AND (?4 IS NULL OR t.completed_at <= ?4)"
    };
}

impl SqliteStore {
    /// Runs one of the period statements below (`?1`–`?5` bound from `q`).
    async fn period(
        &self,
        q: &PeriodQuery,
        sql: &'static str,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        let (merchant, device, since, until, limit) = bound(q);
        self.scan(move |conn| {
            all(
                conn,
                sql,
                params![merchant, device, since, until, limit],
                transaction_from_row,
            )
        })
        .await
    }
}

#[async_trait]
impl ReportStore for SqliteStore {
    async fn settlements(&self, q: &PeriodQuery) -> Result<Vec<TransactionRecord>, StoreError> {
        self.period(
            q,
            concat!(
                "SELECT ",
                tx_columns!(),
                " FROM transactions t WHERE t.function = 'Acquirer.Settlement.Cutover' AND ",
                in_period!(),
                " ORDER BY t.completed_at DESC, t.id DESC LIMIT ?5"
            ),
        )
        .await
    }

    async fn completed_transactions(
        &self,
        q: &PeriodQuery,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        self.period(
            q,
            concat!(
                "SELECT ",
                tx_columns!(),
                " FROM transactions t WHERE ",
                in_period!(),
                " ORDER BY t.completed_at, t.id LIMIT ?5"
            ),
        )
        .await
    }

    async fn follow_ups_of_completed(
        &self,
        q: &PeriodQuery,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        self.period(
            q,
            concat!(
                "SELECT ",
                tx_columns!(),
                " FROM transactions WHERE original_id IN (SELECT t.id FROM transactions t WHERE ",
                in_period!(),
                " ORDER BY t.completed_at, t.id LIMIT ?5) ORDER BY created_at, rowid"
            ),
        )
        .await
    }
}
