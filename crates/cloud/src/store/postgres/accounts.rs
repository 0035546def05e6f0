//! Merchants, sites, API keys and the audit log on PostgreSQL. A change and its audit entry
//! are one SQL transaction.

use super::{unique_violation, PostgresStore};
use crate::domain::accounts::{
    ApiKeyRecord, AuditEntry, AuditQuery, MerchantId, MerchantRecord, SiteId, SiteRecord,
};
use crate::store::columns::{self, ms};
use crate::store::{AccountStore, InsertError, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Postgres;

pub(super) async fn insert_audit(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    e: &AuditEntry,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, source, action, target, merchant_id, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(ms(e.at))
    .bind(&e.actor)
    .bind(&e.source)
    .bind(&e.action)
    .bind(&e.target)
    .bind(e.merchant_id.as_ref().map(|m| m.as_str()))
    .bind(&e.detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The result of an insert that may clash with a unique key.
pub(super) fn inserted<T>(r: Result<T, sqlx::Error>) -> Result<(), InsertError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if unique_violation(&e).is_some() => Err(InsertError::AlreadyExists),
        Err(e) => Err(StoreError::from(e).into()),
    }
}

#[async_trait]
impl AccountStore for PostgresStore {
    async fn create_merchant(
        &self,
        m: &MerchantRecord,
        audit: &AuditEntry,
    ) -> Result<(), InsertError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        inserted(
            sqlx::query("INSERT INTO merchants (id, name, created_at, currency, max_tip_percent) VALUES ($1, $2, $3, $4, $5)")
                .bind(m.id.as_str())
                .bind(&m.name)
                .bind(ms(m.created_at))
                .bind(m.currency.code())
                .bind(i32::try_from(m.max_tip_percent).unwrap_or(i32::MAX))
                .execute(&mut *tx)
                .await,
        )?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    async fn set_merchant_terms(
        &self,
        id: &MerchantId,
        currency: protocol::Currency,
        max_tip_percent: u32,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n =
            sqlx::query("UPDATE merchants SET currency = $2, max_tip_percent = $3 WHERE id = $1")
                .bind(id.as_str())
                .bind(currency.code())
                .bind(i32::try_from(max_tip_percent).unwrap_or(i32::MAX))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if n == 1 {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn merchant(&self, id: &MerchantId) -> Result<Option<MerchantRecord>, StoreError> {
        sqlx::query("SELECT * FROM merchants WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| columns::merchant(&r))
            .transpose()
    }

    async fn merchant_named(&self, name: &str) -> Result<Option<MerchantRecord>, StoreError> {
        sqlx::query("SELECT * FROM merchants WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| columns::merchant(&r))
            .transpose()
    }

    async fn merchants(&self) -> Result<Vec<MerchantRecord>, StoreError> {
        sqlx::query("SELECT * FROM merchants ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(columns::merchant)
            .collect()
    }

    async fn set_site_time_zone(
        &self,
        id: &SiteId,
        time_zone: &str,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("UPDATE sites SET time_zone = $2 WHERE id = $1")
            .bind(id.as_str())
            .bind(time_zone)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 1 {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn create_site(&self, s: &SiteRecord, audit: &AuditEntry) -> Result<(), InsertError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        inserted(
            sqlx::query(
                "INSERT INTO sites (id, merchant_id, name, created_at, time_zone) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(s.id.as_str())
            .bind(s.merchant_id.as_str())
            .bind(&s.name)
            .bind(ms(s.created_at))
            .bind(&s.time_zone)
            .execute(&mut *tx)
            .await,
        )?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    async fn site(&self, id: &SiteId) -> Result<Option<SiteRecord>, StoreError> {
        sqlx::query("SELECT * FROM sites WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| columns::site(&r))
            .transpose()
    }

    async fn sites(&self, merchant: Option<&MerchantId>) -> Result<Vec<SiteRecord>, StoreError> {
        sqlx::query(
            "SELECT * FROM sites WHERE $1::TEXT IS NULL OR merchant_id = $1 ORDER BY merchant_id, name",
        )
        .bind(merchant.map(|m| m.as_str()))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(columns::site)
        .collect()
    }

    async fn insert_api_key(
        &self,
        k: &ApiKeyRecord,
        audit: &AuditEntry,
    ) -> Result<(), InsertError> {
        let (owner, merchant, vendor) = columns::key_owner_columns(&k.owner);
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        inserted(
            sqlx::query(
                "INSERT INTO api_keys (id, secret_hash, owner, merchant_id, vendor, scopes, label, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&k.id)
            .bind(&k.secret_hash)
            .bind(owner)
            .bind(merchant)
            .bind(vendor)
            .bind(k.scopes.to_string())
            .bind(&k.label)
            .bind(ms(k.created_at))
            .bind(k.expires_at.map(ms))
            .execute(&mut *tx)
            .await,
        )?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        sqlx::query("SELECT * FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| columns::api_key(&r))
            .transpose()
    }

    async fn api_keys(
        &self,
        merchant: Option<&MerchantId>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        sqlx::query(
            "SELECT * FROM api_keys WHERE $1::TEXT IS NULL OR merchant_id = $1
             ORDER BY created_at DESC, id",
        )
        .bind(merchant.map(|m| m.as_str()))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(columns::api_key)
        .collect()
    }

    async fn revoke_api_key(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(ms(at))
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if n == 1 {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn touch_api_key(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(ms(at))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_audit(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        sqlx::query(
            "SELECT * FROM audit_log
             WHERE ($1::TEXT IS NULL OR merchant_id = $1)
               AND ($2::TEXT IS NULL OR starts_with(action, $2))
               AND ($3::TEXT IS NULL OR actor = $3)
               AND ($4::BIGINT IS NULL OR seq < $4)
             ORDER BY seq DESC LIMIT $5",
        )
        .bind(q.merchant.as_ref().map(|m| m.as_str()))
        .bind(&q.action)
        .bind(&q.actor)
        .bind(q.before)
        .bind(i64::from(q.limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(columns::audit_entry)
        .collect()
    }
}
