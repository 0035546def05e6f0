//! Orders on SQLite. A tender is checked against its order by `insert_transaction` with
//! [`order_sheet`], in the writer's commit, so nothing comes between the check and the insert.

use super::{all, is_unique_violation, one, transaction_from_row, SqliteStore};
use crate::domain::accounts::MerchantId;
use crate::domain::orders::{OrderId, OrderRecord, OrderSheet};
use crate::store::columns::{self, ms, tx_columns};
use crate::store::{InsertError, OrderStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

/// An order with its tenders, as stored now.
pub(super) fn order_sheet(conn: &Connection, id: &str) -> Result<Option<OrderSheet>, StoreError> {
    let Some(order) = one(conn, "SELECT * FROM orders WHERE id = ?1", [id], |r| {
        columns::order(r)
    })?
    else {
        return Ok(None);
    };
    let tenders = all(
        conn,
        concat!(
            "SELECT ",
            tx_columns!(),
            " FROM transactions WHERE order_id = ?1 ORDER BY created_at, rowid"
        ),
        [id],
        transaction_from_row,
    )?;
    Ok(Some(OrderSheet { order, tenders }))
}

#[async_trait]
impl OrderStore for SqliteStore {
    async fn insert_order(&self, o: &OrderRecord) -> Result<(), InsertError> {
        let o = o.clone();
        self.writer
            .write(move |conn| {
                let r = conn
                    .prepare_cached(
                        "INSERT INTO orders (id, merchant_id, amount_total, currency, pos_reference, state, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6)",
                    )
                    .map_err(StoreError::from)?
                    .execute(params![
                        o.id.as_str(),
                        o.merchant_id.as_str(),
                        i64::try_from(o.amount_total).unwrap_or(i64::MAX),
                        o.currency.code(),
                        o.pos_reference,
                        ms(o.created_at)
                    ]);
                match r {
                    Ok(_) => Ok(()),
                    // The id is a fresh UUID: what clashes is the merchant's reference.
                    Err(e) if is_unique_violation(&e) => Err(InsertError::DuplicateReference),
                    Err(e) => Err(StoreError::from(e).into()),
                }
            })
            .await
    }

    async fn order(&self, id: &OrderId) -> Result<Option<OrderSheet>, StoreError> {
        let id = id.as_str().to_string();
        self.scan(move |conn| order_sheet(conn, &id)).await
    }

    async fn order_by_reference(
        &self,
        merchant: &MerchantId,
        reference: &str,
    ) -> Result<Option<OrderRecord>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                "SELECT * FROM orders WHERE merchant_id = ?1 AND pos_reference = ?2",
                [merchant.as_str(), reference],
                |r| columns::order(r),
            )
        })
    }

    async fn cancel_order(&self, id: &OrderId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let id = id.as_str().to_string();
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE orders SET state = 'cancelled', closed_at = ?2 WHERE id = ?1 AND state <> 'cancelled'",
                    )?
                    .execute(params![id, ms(at)])?;
                Ok(n == 1)
            })
            .await
    }
}
