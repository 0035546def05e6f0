//! People and their sessions on PostgreSQL. Changes to people and their audit entries are one
//! SQL transaction.

use super::accounts::insert_audit;
use super::{unique_violation, PostgresStore};
use crate::domain::accounts::{AuditEntry, MerchantId};
use crate::domain::people::{Email, SessionRecord, UserRecord};
use crate::store::columns::{self, ms};
use crate::store::{InsertError, PeopleStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Postgres;

async fn insert_user(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    u: &UserRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (id, email, password_hash, role, merchant_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&u.id)
    .bind(u.email.as_str())
    .bind(&u.password_hash)
    .bind(u.role.as_str())
    .bind(u.merchant_id.as_ref().map(|m| m.as_str()))
    .bind(ms(u.created_at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl PeopleStore for PostgresStore {
    async fn create_user(&self, u: &UserRecord, audit: &AuditEntry) -> Result<(), InsertError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        match insert_user(&mut tx, u).await {
            Ok(()) => {}
            Err(e) if unique_violation(&e).is_some() => return Err(InsertError::AlreadyExists),
            Err(e) => return Err(StoreError::from(e).into()),
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    async fn create_first_user(
        &self,
        u: &UserRecord,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Serialises first sign-ups across nodes: the lock is held until commit.
        sqlx::query("LOCK TABLE users IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let (any,): (i64,) = sqlx::query_as("SELECT count(*) FROM users")
            .fetch_one(&mut *tx)
            .await?;
        if any > 0 {
            return Ok(false);
        }
        insert_user(&mut tx, u).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| columns::user(&r))
            .transpose()
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| columns::user(&r))
            .transpose()
    }

    async fn users(&self, merchant: Option<&MerchantId>) -> Result<Vec<UserRecord>, StoreError> {
        sqlx::query("SELECT * FROM users WHERE $1::TEXT IS NULL OR merchant_id = $1 ORDER BY email")
            .bind(merchant.map(|m| m.as_str()))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(columns::user)
            .collect()
    }

    async fn delete_user(&self, id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("DELETE FROM users WHERE id = $1")
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

    async fn set_password(
        &self,
        id: &str,
        password_hash: &str,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE users SET password_hash = $1, failed_sign_ins = 0, locked_until = NULL WHERE id = $2",
        )
        .bind(password_hash)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn record_failed_sign_in(
        &self,
        id: &str,
        max: u32,
        lock_until: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE users SET failed_sign_ins = failed_sign_ins + 1,
               locked_until = CASE WHEN failed_sign_ins + 1 >= $2 THEN $3 ELSE locked_until END
             WHERE id = $1",
        )
        .bind(id)
        .bind(i32::try_from(max).unwrap_or(i32::MAX))
        .bind(ms(lock_until))
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_session(
        &self,
        s: &SessionRecord,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, csrf_token, created_at, last_seen_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.id)
        .bind(&s.user_id)
        .bind(&s.csrf_token)
        .bind(ms(s.created_at))
        .bind(ms(s.last_seen_at))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE users SET failed_sign_ins = 0, locked_until = NULL WHERE id = $1")
            .bind(&s.user_id)
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        sqlx::query("SELECT * FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| columns::session(&r))
            .transpose()
    }

    async fn touch_session(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2")
            .bind(ms(at))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    async fn purge_sessions(
        &self,
        idle_before: DateTime<Utc>,
        created_before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2")
                .bind(ms(idle_before))
                .bind(ms(created_before))
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}
