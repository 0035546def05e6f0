//! Configuration profiles and devices' effective settings on SQLite.

use super::accounts::{insert_audit, inserted};
use super::{all, one, SqliteStore};
use crate::domain::accounts::AuditEntry;
use crate::domain::config::{DeviceConfigState, ProfileRecord, ProfileScope};
use crate::store::columns::{self, ms, signed};
use crate::store::{ConfigStore, InsertError, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use protocol::DeviceId;
use rusqlite::params;

const DEVICE_CONFIG: &str =
    "SELECT config, config_version, config_acked, config_acked_at FROM devices WHERE id = ?1";

/// A profile is a handful of typed fields: serialising it cannot fail.
fn json(record: &ProfileRecord) -> String {
    serde_json::to_string(&record.profile).unwrap_or_default()
}

#[async_trait]
impl ConfigStore for SqliteStore {
    async fn insert_profile(
        &self,
        record: &ProfileRecord,
        audit: &AuditEntry,
    ) -> Result<(), InsertError> {
        let (r, audit, profile) = (record.clone(), audit.clone(), json(record));
        self.writer
            .write(move |conn| {
                let inserted_row = conn
                    .prepare_cached(
                        "INSERT INTO config_profiles (level, target, version, profile, set_at, actor)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .map_err(StoreError::from)?
                    .execute(params![
                        r.scope.level().as_str(),
                        r.scope.target(),
                        signed(r.version),
                        profile,
                        ms(r.set_at),
                        r.actor
                    ]);
                inserted(inserted_row)?;
                insert_audit(conn, &audit)?;
                Ok(())
            })
            .await
    }

    async fn profile(&self, scope: &ProfileScope) -> Result<Option<ProfileRecord>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                "SELECT * FROM config_profiles WHERE level = ?1 AND target = ?2
                 ORDER BY version DESC LIMIT 1",
                params![scope.level().as_str(), scope.target()],
                |r| columns::profile_record(r),
            )
        })
    }

    async fn profile_history(
        &self,
        scope: &ProfileScope,
        limit: u32,
    ) -> Result<Vec<ProfileRecord>, StoreError> {
        self.read(|conn| {
            all(
                conn,
                "SELECT * FROM config_profiles WHERE level = ?1 AND target = ?2
                 ORDER BY version DESC LIMIT ?3",
                params![scope.level().as_str(), scope.target(), i64::from(limit)],
                |r| columns::profile_record(r),
            )
        })
    }

    async fn set_device_config(
        &self,
        id: &DeviceId,
        settings: &str,
    ) -> Result<Option<DeviceConfigState>, StoreError> {
        let (id, settings) = (id.as_str().to_string(), settings.to_string());
        self.writer
            .write(move |conn| {
                // The version moves only when the settings differ, so recomputing them for
                // every device after a change disturbs only those it changed.
                conn.prepare_cached(
                    "UPDATE devices SET config = ?2, config_version = config_version + 1
                     WHERE id = ?1 AND config IS NOT ?2",
                )?
                .execute(params![id, settings])?;
                one(conn, DEVICE_CONFIG, params![id], |r| {
                    columns::device_config_state(r)
                })
            })
            .await
    }

    async fn device_config(&self, id: &DeviceId) -> Result<Option<DeviceConfigState>, StoreError> {
        self.read(|conn| {
            one(conn, DEVICE_CONFIG, params![id.as_str()], |r| {
                columns::device_config_state(r)
            })
        })
    }

    async fn ack_config(
        &self,
        id: &DeviceId,
        version: u64,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let id = id.clone();
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE devices SET config_acked = ?2, config_acked_at = ?3
                         WHERE id = ?1 AND config_acked < ?2 AND config_version >= ?2",
                    )?
                    .execute(params![id.as_str(), signed(version), ms(at)])?;
                if n == 1 {
                    let event = crate::domain::events::config_applied(&id, version, at);
                    super::events::log_event(conn, &event)?;
                }
                Ok(n == 1)
            })
            .await
    }
}
