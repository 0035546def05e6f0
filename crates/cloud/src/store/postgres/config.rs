//! Configuration profiles and devices' effective settings on PostgreSQL.

use super::accounts::{insert_audit, inserted};
use super::PostgresStore;
use crate::domain::accounts::AuditEntry;
use crate::domain::config::{DeviceConfigState, ProfileRecord, ProfileScope};
use crate::store::columns::{self, ms, signed};
use crate::store::{ConfigStore, InsertError, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use protocol::DeviceId;

const DEVICE_CONFIG: &str =
    "SELECT config, config_version, config_acked, config_acked_at FROM devices WHERE id = $1";

#[async_trait]
impl ConfigStore for PostgresStore {
    async fn insert_profile(
        &self,
        r: &ProfileRecord,
        audit: &AuditEntry,
    ) -> Result<(), InsertError> {
        // A profile is a handful of typed fields: serialising it cannot fail.
        let profile = serde_json::to_string(&r.profile).unwrap_or_default();
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let inserted_row = sqlx::query(
            "INSERT INTO config_profiles (level, target, version, profile, set_at, actor)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(r.scope.level().as_str())
        .bind(r.scope.target())
        .bind(signed(r.version))
        .bind(profile)
        .bind(ms(r.set_at))
        .bind(&r.actor)
        .execute(&mut *tx)
        .await;
        inserted(inserted_row)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    async fn profile(&self, scope: &ProfileScope) -> Result<Option<ProfileRecord>, StoreError> {
        sqlx::query(
            "SELECT * FROM config_profiles WHERE level = $1 AND target = $2
             ORDER BY version DESC LIMIT 1",
        )
        .bind(scope.level().as_str())
        .bind(scope.target())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| columns::profile_record(&r))
        .transpose()
    }

    async fn profile_history(
        &self,
        scope: &ProfileScope,
        limit: u32,
    ) -> Result<Vec<ProfileRecord>, StoreError> {
        sqlx::query(
            "SELECT * FROM config_profiles WHERE level = $1 AND target = $2
             ORDER BY version DESC LIMIT $3",
        )
        .bind(scope.level().as_str())
        .bind(scope.target())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(columns::profile_record)
        .collect()
    }

    async fn set_device_config(
        &self,
        id: &DeviceId,
        settings: &str,
    ) -> Result<Option<DeviceConfigState>, StoreError> {
        // One round trip, as `set_display`: the update moves the version only when the
        // settings differ; its RETURNING gives the new row, else the row is read as it is.
        sqlx::query(
            "WITH changed AS (
                 UPDATE devices SET config = $2, config_version = config_version + 1
                 WHERE id = $1 AND config IS DISTINCT FROM $2
                 RETURNING config, config_version, config_acked, config_acked_at
             )
             SELECT * FROM changed
             UNION ALL
             SELECT config, config_version, config_acked, config_acked_at FROM devices
             WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM changed)",
        )
        .bind(id.as_str())
        .bind(settings)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| columns::device_config_state(&r))
        .transpose()
    }

    async fn device_config(&self, id: &DeviceId) -> Result<Option<DeviceConfigState>, StoreError> {
        sqlx::query(DEVICE_CONFIG)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| columns::device_config_state(&r))
            .transpose()
    }

    async fn ack_config(
        &self,
        id: &DeviceId,
        version: u64,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // The acknowledgement and its event in one statement: logged only when it moved.
        let event = crate::domain::events::config_applied(id, version, at);
        let moved: Option<i64> = sqlx::query_scalar(
            "WITH moved AS (
               UPDATE devices SET config_acked = $2, config_acked_at = $3
               WHERE id = $1 AND config_acked < $2 AND config_version >= $2 RETURNING merchant_id)
             INSERT INTO events (id, type, merchant_id, vendor, device_id, created_at, schema_version, data)
             SELECT $4, $5, merchant_id, NULL, $1, $3, $6, $7 FROM moved RETURNING seq",
        )
        .bind(id.as_str())
        .bind(signed(version))
        .bind(ms(at))
        .bind(event.id.as_str())
        .bind(event.kind.as_str())
        .bind(i64::from(crate::domain::events::SCHEMA_VERSION))
        .bind(event.data.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(moved.is_some())
    }
}
