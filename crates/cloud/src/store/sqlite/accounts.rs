//! Merchants, sites, API keys and the audit log on SQLite. A change and its audit entry are
//! written by one closure of the writer, so they commit (or roll back) together.

use super::{all, is_unique_violation, one, SqliteStore};
use crate::domain::accounts::{
    ApiKeyRecord, AuditEntry, AuditQuery, MerchantId, MerchantRecord, SiteId, SiteRecord,
};
use crate::store::columns::{self, ms};
use crate::store::{AccountStore, InsertError, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, Row};

pub(super) fn insert_audit(conn: &Connection, e: &AuditEntry) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO audit_log (at, actor, source, action, target, merchant_id, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        ms(e.at),
        e.actor,
        e.source,
        e.action,
        e.target,
        e.merchant_id.as_ref().map(|m| m.as_str()),
        e.detail
    ])?;
    Ok(())
}

/// The result of an insert that may clash with a unique key.
pub(super) fn inserted(r: rusqlite::Result<usize>) -> Result<(), InsertError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(InsertError::AlreadyExists),
        Err(e) => Err(StoreError::from(e).into()),
    }
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn set_merchant_terms(
        &self,
        id: &MerchantId,
        currency: protocol::Currency,
        max_tip_percent: u32,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let (id, audit) = (id.as_str().to_string(), audit.clone());
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE merchants SET currency = ?2, max_tip_percent = ?3 WHERE id = ?1",
                    )?
                    .execute(params![id, currency.code(), max_tip_percent])?;
                if n == 1 {
                    insert_audit(conn, &audit)?;
                }
                Ok(n == 1)
            })
            .await
    }

    async fn set_site_time_zone(
        &self,
        id: &SiteId,
        time_zone: &str,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let (id, tz, audit) = (
            id.as_str().to_string(),
            time_zone.to_string(),
            audit.clone(),
        );
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached("UPDATE sites SET time_zone = ?2 WHERE id = ?1")?
                    .execute(params![id, tz])?;
                if n == 1 {
                    insert_audit(conn, &audit)?;
                }
                Ok(n == 1)
            })
            .await
    }

    async fn create_merchant(
        &self,
        m: &MerchantRecord,
        audit: &AuditEntry,
    ) -> Result<(), InsertError> {
        let (m, audit) = (m.clone(), audit.clone());
        self.writer
            .write(move |conn| {
                inserted(
                    conn.prepare_cached(
                        "INSERT INTO merchants (id, name, created_at, currency, max_tip_percent) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .map_err(StoreError::from)?
                    .execute(params![m.id.as_str(), m.name, ms(m.created_at), m.currency.code(), m.max_tip_percent]),
                )?;
                insert_audit(conn, &audit)?;
                Ok(())
            })
            .await
    }

    async fn merchant(&self, id: &MerchantId) -> Result<Option<MerchantRecord>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                "SELECT * FROM merchants WHERE id = ?1",
                [id.as_str()],
                |r: &Row| columns::merchant(r),
            )
        })
    }

    async fn merchant_named(&self, name: &str) -> Result<Option<MerchantRecord>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                "SELECT * FROM merchants WHERE name = ?1",
                [name],
                |r: &Row| columns::merchant(r),
            )
        })
    }

    async fn merchants(&self) -> Result<Vec<MerchantRecord>, StoreError> {
        self.scan(|conn| {
            all(
                conn,
                "SELECT * FROM merchants ORDER BY name",
                [],
                |r: &Row| columns::merchant(r),
            )
        })
        .await
    }

    async fn create_site(&self, s: &SiteRecord, audit: &AuditEntry) -> Result<(), InsertError> {
        let (s, audit) = (s.clone(), audit.clone());
        self.writer
            .write(move |conn| {
                inserted(
                    conn.prepare_cached(
                        "INSERT INTO sites (id, merchant_id, name, created_at, time_zone) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .map_err(StoreError::from)?
                    .execute(params![
                        s.id.as_str(),
                        s.merchant_id.as_str(),
                        s.name,
                        ms(s.created_at),
                        s.time_zone
                    ]),
                )?;
                insert_audit(conn, &audit)?;
                Ok(())
            })
            .await
    }

    async fn site(&self, id: &SiteId) -> Result<Option<SiteRecord>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                "SELECT * FROM sites WHERE id = ?1",
                [id.as_str()],
                |r: &Row| columns::site(r),
            )
        })
    }

    async fn sites(&self, merchant: Option<&MerchantId>) -> Result<Vec<SiteRecord>, StoreError> {
        let merchant = merchant.map(|m| m.as_str().to_string());
        self.scan(move |conn| {
            all(
                conn,
                "SELECT * FROM sites WHERE ?1 IS NULL OR merchant_id = ?1 ORDER BY merchant_id, name",
                [merchant],
                |r: &Row| columns::site(r),
            )
        })
        .await
    }

    async fn insert_api_key(
        &self,
        k: &ApiKeyRecord,
        audit: &AuditEntry,
    ) -> Result<(), InsertError> {
        let (k, audit) = (k.clone(), audit.clone());
        self.writer
            .write(move |conn| {
                let (owner, merchant, vendor) = columns::key_owner_columns(&k.owner);
                inserted(
                    conn.prepare_cached(
                        "INSERT INTO api_keys (id, secret_hash, owner, merchant_id, vendor, scopes, label, created_at, expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )
                    .map_err(StoreError::from)?
                    .execute(params![
                        k.id,
                        k.secret_hash,
                        owner,
                        merchant,
                        vendor,
                        k.scopes.to_string(),
                        k.label,
                        ms(k.created_at),
                        k.expires_at.map(ms)
                    ]),
                )?;
                insert_audit(conn, &audit)?;
                Ok(())
            })
            .await
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                "SELECT * FROM api_keys WHERE id = ?1",
                [id],
                |r: &Row| columns::api_key(r),
            )
        })
    }

    async fn api_keys(
        &self,
        merchant: Option<&MerchantId>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let merchant = merchant.map(|m| m.as_str().to_string());
        self.scan(move |conn| {
            all(
                conn,
                "SELECT * FROM api_keys WHERE ?1 IS NULL OR merchant_id = ?1
                 ORDER BY created_at DESC, id",
                [merchant],
                |r: &Row| columns::api_key(r),
            )
        })
        .await
    }

    async fn revoke_api_key(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let (id, audit) = (id.to_string(), audit.clone());
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
                    )?
                    .execute(params![ms(at), id])?;
                if n == 1 {
                    insert_audit(conn, &audit)?;
                }
                Ok(n == 1)
            })
            .await
    }

    async fn touch_api_key(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let id = id.to_string();
        self.writer
            .write(move |conn| {
                conn.prepare_cached("UPDATE api_keys SET last_used_at = ?1 WHERE id = ?2")?
                    .execute(params![ms(at), id])?;
                Ok(())
            })
            .await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let entry = entry.clone();
        self.writer
            .write(move |conn| insert_audit(conn, &entry))
            .await
    }

    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let q = q.clone();
        self.scan(move |conn| {
            all(
                conn,
                "SELECT * FROM audit_log
                 WHERE (?1 IS NULL OR merchant_id = ?1)
                   AND (?2 IS NULL OR substr(action, 1, length(?2)) = ?2)
                   AND (?3 IS NULL OR actor = ?3)
                   AND (?4 IS NULL OR seq < ?4)
                 ORDER BY seq DESC LIMIT ?5",
                params![
                    q.merchant.as_ref().map(|m| m.as_str()),
                    q.action,
                    q.actor,
                    q.before,
                    i64::from(q.limit)
                ],
                |r: &Row| columns::audit_entry(r),
            )
        })
        .await
    }
}
