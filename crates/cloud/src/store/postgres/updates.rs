//! Software updates on PostgreSQL: release keys, artifacts (their files as `bytea`), campaigns,
//! each device's progress and the steps devices report; a change and its audit entry (or step)
//! in one transaction.

use super::accounts::{insert_audit, inserted};
use super::PostgresStore;
use crate::domain::accounts::AuditEntry;
use crate::domain::campaigns::{
    ArtifactRecord, CampaignDevice, CampaignRecord, CampaignState, DeviceUpdate, ReleaseKeyRecord,
    StepRecord,
};
use crate::store::columns::{self, ms, signed};
use crate::store::{InsertError, StoreError, UpdateStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use protocol::DeviceId;
use sqlx::{Postgres, Row};

const ARTIFACT_COLUMNS: &str = "id, version, url, size, sha256, signature, key_id, \
     (file IS NOT NULL) AS has_file, created_at";

async fn insert_step(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    campaign: &str,
    s: &StepRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO update_steps (campaign_id, device_id, at, version, step, reason)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(campaign)
    .bind(s.device_id.as_str())
    .bind(ms(s.at))
    .bind(&s.version)
    .bind(s.step.as_str())
    .bind(&s.reason)
    .execute(&mut **tx)
    .await?;
    super::events::log_events(tx, &[crate::domain::events::update_step(campaign, s)]).await
}

#[async_trait]
impl UpdateStore for PostgresStore {
    async fn insert_release_key(
        &self,
        k: &ReleaseKeyRecord,
        audit: &AuditEntry,
    ) -> Result<(), InsertError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        inserted(
            sqlx::query(
                "INSERT INTO release_keys (id, name, public_key, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&k.id)
            .bind(&k.name)
            .bind(&k.public_key)
            .bind(ms(k.created_at))
            .execute(&mut *tx)
            .await,
        )?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    async fn release_keys(&self) -> Result<Vec<ReleaseKeyRecord>, StoreError> {
        sqlx::query("SELECT * FROM release_keys ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(columns::release_key)
            .collect()
    }

    async fn insert_artifact(
        &self,
        a: &ArtifactRecord,
        audit: &AuditEntry,
    ) -> Result<(), InsertError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        inserted(
            sqlx::query(
                "INSERT INTO artifacts (id, version, url, size, sha256, signature, key_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&a.id)
            .bind(&a.version)
            .bind(&a.url)
            .bind(signed(a.size))
            .bind(&a.sha256)
            .bind(&a.signature)
            .bind(&a.key_id)
            .bind(ms(a.created_at))
            .execute(&mut *tx)
            .await,
        )?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    async fn artifact(&self, id: &str) -> Result<Option<ArtifactRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| columns::artifact(&r))
        .transpose()
    }

    async fn artifacts(&self) -> Result<Vec<ArtifactRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ARTIFACT_COLUMNS} FROM artifacts ORDER BY created_at DESC, id"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(columns::artifact)
        .collect()
    }

    async fn store_artifact_file(
        &self,
        id: &str,
        file: &[u8],
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE artifacts SET file = $2 WHERE id = $1 AND url IS NULL AND file IS NULL",
        )
        .bind(id)
        .bind(file)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn artifact_file(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query("SELECT file FROM artifacts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get::<Option<Vec<u8>>, _>("file"))
            .transpose()?
            .flatten())
    }

    async fn insert_campaign(
        &self,
        c: &CampaignRecord,
        devices: &[CampaignDevice],
        audit: &AuditEntry,
    ) -> Result<(), InsertError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        inserted(
            sqlx::query(
                "INSERT INTO campaigns (id, name, artifact_id, rollback_artifact_id, state, canary,
                   wave_size, failure_threshold, window_start, window_end, created_at, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&c.id)
            .bind(&c.name)
            .bind(&c.artifact_id)
            .bind(&c.rollback_artifact_id)
            .bind(c.state.as_str())
            .bind(i64::from(c.canary))
            .bind(i64::from(c.wave_size))
            .bind(i64::from(c.failure_threshold))
            .bind(c.window.map(|w| i64::from(w.start)))
            .bind(c.window.map(|w| i64::from(w.end)))
            .bind(ms(c.created_at))
            .bind(&c.created_by)
            .execute(&mut *tx)
            .await,
        )?;
        for d in devices {
            sqlx::query(
                "INSERT INTO campaign_devices (campaign_id, device_id, wave, position, state, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&c.id)
            .bind(d.device_id.as_str())
            .bind(i64::from(d.wave))
            .bind(i64::from(d.position))
            .bind(d.state.as_str())
            .bind(ms(d.updated_at))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    async fn campaign(&self, id: &str) -> Result<Option<CampaignRecord>, StoreError> {
        sqlx::query("SELECT * FROM campaigns WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| columns::campaign(&r))
            .transpose()
    }

    async fn campaigns(&self) -> Result<Vec<CampaignRecord>, StoreError> {
        sqlx::query("SELECT * FROM campaigns ORDER BY created_at DESC, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(columns::campaign)
            .collect()
    }

    async fn campaign_devices(&self, id: &str) -> Result<Vec<CampaignDevice>, StoreError> {
        sqlx::query("SELECT * FROM campaign_devices WHERE campaign_id = $1 ORDER BY position")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(columns::campaign_device)
            .collect()
    }

    async fn set_campaign_state(
        &self,
        id: &str,
        from: CampaignState,
        to: CampaignState,
        rollback_artifact: Option<&str>,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE campaigns SET state = $3,
               rollback_artifact_id = COALESCE($4, rollback_artifact_id)
             WHERE id = $1 AND state = $2",
        )
        .bind(id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(rollback_artifact)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 && to == CampaignState::RollingBack {
            sqlx::query(
                "UPDATE campaign_devices SET state = 'rollback_pending'
                 WHERE campaign_id = $1 AND state IN ('offered', 'installed')",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        if n == 1 {
            if let Some(audit) = audit {
                insert_audit(&mut tx, audit).await?;
            }
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn move_campaign_device(
        &self,
        campaign: &str,
        device: &DeviceId,
        from: DeviceUpdate,
        to: DeviceUpdate,
        step: Option<&StepRecord>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE campaign_devices SET state = $4, updated_at = $5,
               step = COALESCE($6, step),
               reason = CASE WHEN $6::TEXT IS NULL THEN reason ELSE $7 END
             WHERE campaign_id = $1 AND device_id = $2 AND state = $3",
        )
        .bind(campaign)
        .bind(device.as_str())
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(ms(at))
        .bind(step.map(|s| s.step.as_str()))
        .bind(step.and_then(|s| s.reason.clone()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            if let Some(s) = step {
                insert_step(&mut tx, campaign, s).await?;
            }
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn record_update_step(&self, campaign: &str, s: &StepRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE campaign_devices SET step = $3, reason = $4, updated_at = $5
             WHERE campaign_id = $1 AND device_id = $2",
        )
        .bind(campaign)
        .bind(s.device_id.as_str())
        .bind(s.step.as_str())
        .bind(&s.reason)
        .bind(ms(s.at))
        .execute(&mut *tx)
        .await?;
        insert_step(&mut tx, campaign, s).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_steps(
        &self,
        campaign: &str,
        limit: u32,
    ) -> Result<Vec<StepRecord>, StoreError> {
        sqlx::query(
            "SELECT * FROM (SELECT * FROM update_steps WHERE campaign_id = $1
                            ORDER BY seq DESC LIMIT $2) newest ORDER BY seq",
        )
        .bind(campaign)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(columns::update_step)
        .collect()
    }
}
