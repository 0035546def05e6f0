//! Orders on PostgreSQL. A tender locks its order's row in `insert_transaction`
//! ([`order_sheet`] with `lock`), so tenders of one order, on any node, are checked and
//! inserted one after the other, and a cancel waits for (or is seen by) them.

use super::{PostgresStore, TX_COLUMNS};
use crate::domain::accounts::MerchantId;
use crate::domain::orders::{OrderId, OrderRecord, OrderSheet};
use crate::store::columns::{self, ms};
use crate::store::{InsertError, OrderStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// An order with its tenders, as stored now; with `lock`, its row stays locked until the
/// transaction ends.
pub(super) async fn order_sheet(
    conn: &mut sqlx::PgConnection,
    id: &str,
    lock: bool,
) -> Result<Option<OrderSheet>, StoreError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let Some(order) = sqlx::query(&format!("SELECT * FROM orders WHERE id = $1{lock}"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(columns::order)
        .transpose()?
    else {
        return Ok(None);
    };
    let tenders = sqlx::query(&format!(
        "SELECT {TX_COLUMNS} FROM transactions WHERE order_id = $1 ORDER BY created_at, id"
    ))
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(PostgresStore::transaction_from_row)
    .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(OrderSheet { order, tenders }))
}

#[async_trait]
impl OrderStore for PostgresStore {
    async fn insert_order(&self, o: &OrderRecord) -> Result<(), InsertError> {
        let r = sqlx::query(
            "INSERT INTO orders (id, merchant_id, amount_total, currency, pos_reference, state, created_at)
             VALUES ($1, $2, $3, $4, $5, 'open', $6)",
        )
        .bind(o.id.as_str())
        .bind(o.merchant_id.as_str())
        .bind(i64::try_from(o.amount_total).unwrap_or(i64::MAX))
        .bind(o.currency.code())
        .bind(&o.pos_reference)
        .bind(ms(o.created_at))
        .execute(&self.pool)
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                Err(InsertError::DuplicateReference)
            }
            Err(e) => Err(StoreError::from(e).into()),
        }
    }

    async fn order(&self, id: &OrderId) -> Result<Option<OrderSheet>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        order_sheet(&mut conn, id.as_str(), false).await
    }

    async fn order_by_reference(
        &self,
        merchant: &MerchantId,
        reference: &str,
    ) -> Result<Option<OrderRecord>, StoreError> {
        sqlx::query("SELECT * FROM orders WHERE merchant_id = $1 AND pos_reference = $2")
            .bind(merchant.as_str())
            .bind(reference)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(columns::order)
            .transpose()
    }

    async fn cancel_order(&self, id: &OrderId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE orders SET state = 'cancelled', closed_at = $2 WHERE id = $1 AND state <> 'cancelled'",
        )
        .bind(id.as_str())
        .bind(ms(at))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}
