//! People and their sessions on SQLite. Changes to people carry their audit entry in the same
//! closure of the writer, so both commit or neither.

use super::accounts::insert_audit;
use super::{all, is_unique_violation, one, SqliteStore};
use crate::domain::accounts::{AuditEntry, MerchantId};
use crate::domain::people::{Email, SessionRecord, UserRecord};
use crate::store::columns::{self, ms};
use crate::store::{InsertError, PeopleStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, Row};

const INSERT_USER: &str =
    "INSERT INTO users (id, email, password_hash, role, merchant_id, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

fn insert_user(conn: &Connection, u: &UserRecord) -> rusqlite::Result<usize> {
    conn.prepare_cached(INSERT_USER)?.execute(params![
        u.id,
        u.email.as_str(),
        u.password_hash,
        u.role.as_str(),
        u.merchant_id.as_ref().map(|m| m.as_str()),
        ms(u.created_at)
    ])
}

#[async_trait]
impl PeopleStore for SqliteStore {
    async fn create_user(&self, u: &UserRecord, audit: &AuditEntry) -> Result<(), InsertError> {
        let (u, audit) = (u.clone(), audit.clone());
        self.writer
            .write(move |conn| {
                match insert_user(conn, &u) {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => return Err(InsertError::AlreadyExists),
                    Err(e) => return Err(StoreError::from(e).into()),
                }
                insert_audit(conn, &audit)?;
                Ok(())
            })
            .await
    }

    async fn create_first_user(
        &self,
        u: &UserRecord,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let (u, audit) = (u.clone(), audit.clone());
        self.writer
            .write(move |conn| {
                // The single writer runs this closure alone: nobody signs up in between.
                let any: i64 = conn
                    .prepare_cached("SELECT count(*) FROM users")?
                    .query_row([], |r| r.get(0))?;
                if any > 0 {
                    return Ok(false);
                }
                insert_user(conn, &u)?;
                insert_audit(conn, &audit)?;
                Ok(true)
            })
            .await
    }

    async fn user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                "SELECT * FROM users WHERE id = ?1",
                [id],
                |r: &Row| columns::user(r),
            )
        })
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<UserRecord>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                "SELECT * FROM users WHERE email = ?1",
                [email.as_str()],
                |r: &Row| columns::user(r),
            )
        })
    }

    async fn users(&self, merchant: Option<&MerchantId>) -> Result<Vec<UserRecord>, StoreError> {
        let merchant = merchant.map(|m| m.as_str().to_string());
        self.scan(move |conn| {
            all(
                conn,
                "SELECT * FROM users WHERE ?1 IS NULL OR merchant_id = ?1 ORDER BY email",
                [merchant],
                |r: &Row| columns::user(r),
            )
        })
        .await
    }

    async fn delete_user(&self, id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        let (id, audit) = (id.to_string(), audit.clone());
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached("DELETE FROM users WHERE id = ?1")?
                    .execute([&id])?;
                if n == 1 {
                    insert_audit(conn, &audit)?;
                }
                Ok(n == 1)
            })
            .await
    }

    async fn set_password(
        &self,
        id: &str,
        password_hash: &str,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let (id, hash, audit) = (id.to_string(), password_hash.to_string(), audit.clone());
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE users SET password_hash = ?1, failed_sign_ins = 0, locked_until = NULL
                         WHERE id = ?2",
                    )?
                    .execute(params![hash, id])?;
                if n == 1 {
                    conn.prepare_cached("DELETE FROM sessions WHERE user_id = ?1")?
                        .execute([&id])?;
                    insert_audit(conn, &audit)?;
                }
                Ok(n == 1)
            })
            .await
    }

    async fn record_failed_sign_in(
        &self,
        id: &str,
        max: u32,
        lock_until: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let (id, audit) = (id.to_string(), audit.clone());
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE users SET failed_sign_ins = failed_sign_ins + 1,
                       locked_until = CASE WHEN failed_sign_ins + 1 >= ?2 THEN ?3 ELSE locked_until END
                     WHERE id = ?1",
                )?
                .execute(params![id, i64::from(max), ms(lock_until)])?;
                insert_audit(conn, &audit)?;
                Ok(())
            })
            .await
    }

    async fn insert_session(
        &self,
        s: &SessionRecord,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let (s, audit) = (s.clone(), audit.clone());
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO sessions (id, user_id, csrf_token, created_at, last_seen_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    s.id,
                    s.user_id,
                    s.csrf_token,
                    ms(s.created_at),
                    ms(s.last_seen_at)
                ])?;
                conn.prepare_cached(
                    "UPDATE users SET failed_sign_ins = 0, locked_until = NULL WHERE id = ?1",
                )?
                .execute([&s.user_id])?;
                insert_audit(conn, &audit)?;
                Ok(())
            })
            .await
    }

    async fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                "SELECT * FROM sessions WHERE id = ?1",
                [id],
                |r: &Row| columns::session(r),
            )
        })
    }

    async fn touch_session(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let id = id.to_string();
        self.writer
            .write(move |conn| {
                conn.prepare_cached("UPDATE sessions SET last_seen_at = ?1 WHERE id = ?2")?
                    .execute(params![ms(at), id])?;
                Ok(())
            })
            .await
    }

    async fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached("DELETE FROM sessions WHERE id = ?1")?
                    .execute([id])?;
                Ok(n == 1)
            })
            .await
    }

    async fn purge_sessions(
        &self,
        idle_before: DateTime<Utc>,
        created_before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "DELETE FROM sessions WHERE last_seen_at < ?1 OR created_at < ?2",
                    )?
                    .execute(params![ms(idle_before), ms(created_before)])?;
                Ok(n as u64)
            })
            .await
    }
}
