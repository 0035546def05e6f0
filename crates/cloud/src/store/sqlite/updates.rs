//! Software updates on SQLite: release keys, artifacts (their files as blobs), campaigns, each
//! device's progress and the steps devices report. A change and its audit entry (or step) are
//! written by one closure of the writer, so they commit together.

use super::accounts::{insert_audit, inserted};
use super::{all, one, SqliteStore};
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
use rusqlite::{params, Connection, OptionalExtension};

const ARTIFACT_COLUMNS: &str = "id, version, url, size, sha256, signature, key_id, \
     (file IS NOT NULL) AS has_file, created_at";

fn insert_step(conn: &Connection, campaign: &str, s: &StepRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO update_steps (campaign_id, device_id, at, version, step, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        campaign,
        s.device_id.as_str(),
        ms(s.at),
        s.version,
        s.step.as_str(),
        s.reason
    ])?;
    super::events::log_event(conn, &crate::domain::events::update_step(campaign, s))
}

#[async_trait]
impl UpdateStore for SqliteStore {
    async fn insert_release_key(
        &self,
        key: &ReleaseKeyRecord,
        audit: &AuditEntry,
    ) -> Result<(), InsertError> {
        let (k, audit) = (key.clone(), audit.clone());
        self.writer
            .write(move |conn| {
                inserted(
                    conn.prepare_cached(
                        "INSERT INTO release_keys (id, name, public_key, created_at) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .map_err(StoreError::from)?
                    .execute(params![k.id, k.name, k.public_key, ms(k.created_at)]),
                )?;
                insert_audit(conn, &audit)?;
                Ok(())
            })
            .await
    }

    async fn release_keys(&self) -> Result<Vec<ReleaseKeyRecord>, StoreError> {
        self.read(|conn| {
            all(
                conn,
                "SELECT * FROM release_keys ORDER BY created_at, id",
                [],
                |r| columns::release_key(r),
            )
        })
    }

    async fn insert_artifact(
        &self,
        a: &ArtifactRecord,
        audit: &AuditEntry,
    ) -> Result<(), InsertError> {
        let (a, audit) = (a.clone(), audit.clone());
        self.writer
            .write(move |conn| {
                inserted(
                    conn.prepare_cached(
                        "INSERT INTO artifacts (id, version, url, size, sha256, signature, key_id, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )
                    .map_err(StoreError::from)?
                    .execute(params![
                        a.id,
                        a.version,
                        a.url,
                        signed(a.size),
                        a.sha256,
                        a.signature,
                        a.key_id,
                        ms(a.created_at)
                    ]),
                )?;
                insert_audit(conn, &audit)?;
                Ok(())
            })
            .await
    }

    async fn artifact(&self, id: &str) -> Result<Option<ArtifactRecord>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                &format!("SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE id = ?1"),
                params![id],
                |r| columns::artifact(r),
            )
        })
    }

    async fn artifacts(&self) -> Result<Vec<ArtifactRecord>, StoreError> {
        self.read(|conn| {
            all(
                conn,
                &format!("SELECT {ARTIFACT_COLUMNS} FROM artifacts ORDER BY created_at DESC, id"),
                [],
                |r| columns::artifact(r),
            )
        })
    }

    async fn store_artifact_file(
        &self,
        id: &str,
        file: &[u8],
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let (id, file, audit) = (id.to_string(), file.to_vec(), audit.clone());
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE artifacts SET file = ?2 WHERE id = ?1 AND url IS NULL AND file IS NULL",
                    )?
                    .execute(params![id, file])?;
                if n == 1 {
                    insert_audit(conn, &audit)?;
                }
                Ok(n == 1)
            })
            .await
    }

    async fn artifact_file(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT file FROM artifacts WHERE id = ?1")?
                .query_row(params![id], |r| r.get::<_, Option<Vec<u8>>>(0))
                .optional()?
                .flatten())
        })
    }

    async fn insert_campaign(
        &self,
        c: &CampaignRecord,
        devices: &[CampaignDevice],
        audit: &AuditEntry,
    ) -> Result<(), InsertError> {
        let (c, devices, audit) = (c.clone(), devices.to_vec(), audit.clone());
        self.writer
            .write(move |conn| {
                inserted(
                    conn.prepare_cached(
                        "INSERT INTO campaigns (id, name, artifact_id, rollback_artifact_id, state, canary,
                           wave_size, failure_threshold, window_start, window_end, created_at, created_by)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    )
                    .map_err(StoreError::from)?
                    .execute(params![
                        c.id,
                        c.name,
                        c.artifact_id,
                        c.rollback_artifact_id,
                        c.state.as_str(),
                        c.canary,
                        c.wave_size,
                        c.failure_threshold,
                        c.window.map(|w| w.start),
                        c.window.map(|w| w.end),
                        ms(c.created_at),
                        c.created_by
                    ]),
                )?;
                for d in &devices {
                    conn.prepare_cached(
                        "INSERT INTO campaign_devices (campaign_id, device_id, wave, position, state, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .map_err(StoreError::from)?
                    .execute(params![
                        c.id,
                        d.device_id.as_str(),
                        d.wave,
                        d.position,
                        d.state.as_str(),
                        ms(d.updated_at)
                    ])
                    .map_err(StoreError::from)?;
                }
                insert_audit(conn, &audit)?;
                Ok(())
            })
            .await
    }

    async fn campaign(&self, id: &str) -> Result<Option<CampaignRecord>, StoreError> {
        self.read(|conn| {
            one(
                conn,
                "SELECT * FROM campaigns WHERE id = ?1",
                params![id],
                |r| columns::campaign(r),
            )
        })
    }

    async fn campaigns(&self) -> Result<Vec<CampaignRecord>, StoreError> {
        self.read(|conn| {
            all(
                conn,
                "SELECT * FROM campaigns ORDER BY created_at DESC, id",
                [],
                |r| columns::campaign(r),
            )
        })
    }

    async fn campaign_devices(&self, id: &str) -> Result<Vec<CampaignDevice>, StoreError> {
        self.read(|conn| {
            all(
                conn,
                "SELECT * FROM campaign_devices WHERE campaign_id = ?1 ORDER BY position",
                params![id],
                |r| columns::campaign_device(r),
            )
        })
    }

    async fn set_campaign_state(
        &self,
        id: &str,
        from: CampaignState,
        to: CampaignState,
        rollback_artifact: Option<&str>,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        let (id, rollback, audit) = (
            id.to_string(),
            rollback_artifact.map(str::to_string),
            audit.cloned(),
        );
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE campaigns SET state = ?3,
                           rollback_artifact_id = COALESCE(?4, rollback_artifact_id)
                         WHERE id = ?1 AND state = ?2",
                    )?
                    .execute(params![id, from.as_str(), to.as_str(), rollback])?;
                if n == 1 && to == CampaignState::RollingBack {
                    conn.prepare_cached(
                        "UPDATE campaign_devices SET state = 'rollback_pending'
                         WHERE campaign_id = ?1 AND state IN ('offered', 'installed')",
                    )?
                    .execute(params![id])?;
                }
                if n == 1 {
                    if let Some(audit) = &audit {
                        insert_audit(conn, audit)?;
                    }
                }
                Ok(n == 1)
            })
            .await
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
        let (campaign, device, step) = (campaign.to_string(), device.clone(), step.cloned());
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE campaign_devices SET state = ?4, updated_at = ?5,
                           step = COALESCE(?6, step),
                           reason = CASE WHEN ?6 IS NULL THEN reason ELSE ?7 END
                         WHERE campaign_id = ?1 AND device_id = ?2 AND state = ?3",
                    )?
                    .execute(params![
                        campaign,
                        device.as_str(),
                        from.as_str(),
                        to.as_str(),
                        ms(at),
                        step.as_ref().map(|s| s.step.as_str()),
                        step.as_ref().and_then(|s| s.reason.clone())
                    ])?;
                if n == 1 {
                    if let Some(s) = &step {
                        insert_step(conn, &campaign, s)?;
                    }
                }
                Ok(n == 1)
            })
            .await
    }

    async fn record_update_step(
        &self,
        campaign: &str,
        step: &StepRecord,
    ) -> Result<(), StoreError> {
        let (campaign, s) = (campaign.to_string(), step.clone());
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE campaign_devices SET step = ?3, reason = ?4, updated_at = ?5
                     WHERE campaign_id = ?1 AND device_id = ?2",
                )?
                .execute(params![
                    campaign,
                    s.device_id.as_str(),
                    s.step.as_str(),
                    s.reason,
                    ms(s.at)
                ])?;
                insert_step(conn, &campaign, &s)
            })
            .await
    }

    async fn update_steps(
        &self,
        campaign: &str,
        limit: u32,
    ) -> Result<Vec<StepRecord>, StoreError> {
        self.read(|conn| {
            all(
                conn,
                "SELECT * FROM (SELECT * FROM update_steps WHERE campaign_id = ?1
                                ORDER BY seq DESC LIMIT ?2) ORDER BY seq",
                params![campaign, i64::from(limit)],
                |r| columns::update_step(r),
            )
        })
    }
}
