//! Software update campaigns: release keys and signed artifacts registered by the operator,
//! campaigns that roll an artifact out to a fleet, and the loop that moves them.
//!
//! Every node runs the loop and offers updates only to the devices connected to it, each
//! offer claimed in the store first (pending → offered, a compare-and-set), so two nodes never
//! offer the same device twice and a device that moves to another node is served there.
//! Everything a campaign knows is stored: a restarted node picks up where it was, and an
//! offer lost with a connection is made again when the device comes back.

use super::accounts::{entry, Actor};
use super::{Engine, EngineError};
use crate::bus::connections::Connections;
use crate::domain::accounts::AuditEntry;
use crate::domain::campaigns::{
    decide, waves, ArtifactRecord, CampaignDevice, CampaignRecord, CampaignState, Decision,
    DeviceUpdate, ReleaseKeyRecord, Row, StepRecord, Window, NO_WINDOW_INSTALL_WITHIN,
};
use crate::domain::DeviceRecord;
use crate::store::InsertError;
use protocol::device::{capability, CloudMessage};
use protocol::update::{Artifact, ReleaseKey, UpdateOffer, UpdateStep};
use protocol::DeviceId;
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How many reported steps a campaign's detail shows.
pub const STEPS_SHOWN: u32 = 500;
/// Largest stored artifact file.
pub const MAX_ARTIFACT_BYTES: usize = 256 * 1024 * 1024;

/// Why an update request was refused.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// 400: a value that does not parse or verify.
    #[error("{0}")]
    Invalid(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: the state does not allow it.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for UpdateError {
    fn from(e: crate::store::StoreError) -> Self {
        UpdateError::Engine(e.into())
    }
}

/// An artifact to register.
#[derive(Debug, Clone)]
pub struct NewArtifact {
    pub version: String,
    pub url: Option<String>,
    pub size: u64,
    pub sha256: String,
    pub signature: String,
    pub key_id: String,
}

/// Which devices a campaign reaches: each list narrows (a device must match every list given,
/// and any entry of a list); none given: every device that declares `update`.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub merchant_ids: Vec<String>,
    pub site_ids: Vec<String>,
    pub models: Vec<String>,
    /// Agent versions, as their latest health report says.
    pub versions: Vec<String>,
    pub device_ids: Vec<String>,
}

/// A campaign to create.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub name: String,
    pub artifact_id: String,
    pub target: Target,
    pub window: Option<Window>,
    pub canary: u32,
    pub wave_size: u32,
    pub failure_threshold: u32,
}

/// A campaign with its devices and the steps they reported.
#[derive(Debug, Clone)]
pub struct CampaignDetail {
    pub campaign: CampaignRecord,
    pub artifact: Option<ArtifactRecord>,
    pub devices: Vec<CampaignDevice>,
    pub steps: Vec<StepRecord>,
}

/// What an operator does to a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignAction {
    Pause,
    Resume,
    Cancel,
}

fn keys(records: &[ReleaseKeyRecord]) -> Vec<ReleaseKey> {
    records
        .iter()
        .filter_map(|k| ReleaseKey::parse(&k.public_key).ok())
        .collect()
}

impl Engine {
    /// Registers a release key (public half) that artifacts may be signed with.
    pub async fn add_release_key(
        &self,
        name: &str,
        public_key: &str,
        actor: &Actor,
    ) -> Result<ReleaseKeyRecord, UpdateError> {
        let name = crate::domain::accounts::parse_name(name)
            .map_err(|e| UpdateError::Invalid(e.to_string()))?;
        let key = ReleaseKey::parse(public_key).map_err(|e| UpdateError::Invalid(e.to_string()))?;
        let record = ReleaseKeyRecord {
            id: key.id(),
            name,
            public_key: key.to_hex(),
            created_at: self.now(),
        };
        let audit = AuditEntry {
            detail: serde_json::json!({"name": record.name, "publicKey": record.public_key})
                .to_string(),
            ..entry(actor, record.created_at, "release_key.added", &record.id)
        };
        match self.store().insert_release_key(&record, &audit).await {
            Ok(()) => Ok(record),
            Err(InsertError::Store(e)) => Err(e.into()),
            Err(_) => Err(UpdateError::Conflict(format!(
                "release key {} is registered already",
                record.id
            ))),
        }
    }

    pub async fn release_keys(&self) -> Result<Vec<ReleaseKeyRecord>, UpdateError> {
        Ok(self.store().release_keys().await?)
    }

    /// Registers an artifact after checking its signature against the registered release
    /// keys: an artifact no registered key signed is refused, so no campaign can offer it.
    pub async fn add_artifact(
        &self,
        new: NewArtifact,
        actor: &Actor,
    ) -> Result<ArtifactRecord, UpdateError> {
        if let Some(url) = &new.url {
            let parsed =
                url::Url::parse(url).map_err(|e| UpdateError::Invalid(format!("url: {e}")))?;
            if !matches!(parsed.scheme(), "https" | "http") {
                return Err(UpdateError::Invalid(
                    "url: an http or https URL (or none, to upload the file)".into(),
                ));
            }
        }
        if new.size == 0 || new.size > MAX_ARTIFACT_BYTES as u64 {
            return Err(UpdateError::Invalid(format!(
                "size: 1 to {MAX_ARTIFACT_BYTES} bytes"
            )));
        }
        let artifact = Artifact {
            version: new.version.clone(),
            url: new.url.clone().unwrap_or_default(),
            size: new.size,
            sha256: new.sha256.to_ascii_lowercase(),
            signature: new.signature.to_ascii_lowercase(),
            key_id: new.key_id.clone(),
        };
        let trusted = keys(&self.store().release_keys().await?);
        artifact
            .check_signature(&trusted)
            .map_err(|e| UpdateError::Invalid(e.to_string()))?;
        let record = ArtifactRecord {
            id: uuid::Uuid::new_v4().to_string(),
            version: artifact.version,
            url: new.url,
            size: artifact.size,
            sha256: artifact.sha256,
            signature: artifact.signature,
            key_id: artifact.key_id,
            has_file: false,
            created_at: self.now(),
        };
        let audit = AuditEntry {
            detail: serde_json::json!({"version": record.version, "sha256": record.sha256,
                "keyId": record.key_id, "url": record.url})
            .to_string(),
            ..entry(actor, record.created_at, "artifact.added", &record.id)
        };
        match self.store().insert_artifact(&record, &audit).await {
            Ok(()) => Ok(record),
            Err(InsertError::Store(e)) => Err(e.into()),
            Err(e) => Err(UpdateError::Conflict(e.to_string())),
        }
    }

    pub async fn artifacts(&self) -> Result<Vec<ArtifactRecord>, UpdateError> {
        Ok(self.store().artifacts().await?)
    }

    /// Stores the file of an artifact registered without a URL: it must be the file signed.
    pub async fn upload_artifact_file(
        &self,
        id: &str,
        file: &[u8],
        actor: &Actor,
    ) -> Result<ArtifactRecord, UpdateError> {
        let artifact = self
            .store()
            .artifact(id)
            .await?
            .ok_or_else(|| UpdateError::NotFound(format!("no artifact {id}")))?;
        if artifact.url.is_some() {
            return Err(UpdateError::Conflict(format!(
                "artifact {id} is downloaded from its URL; it has no file to upload"
            )));
        }
        if artifact.has_file {
            return Err(UpdateError::Conflict(format!(
                "artifact {id} has its file already"
            )));
        }
        if file.len() as u64 != artifact.size {
            return Err(UpdateError::Invalid(format!(
                "the file is {} bytes, the artifact says {}",
                file.len(),
                artifact.size
            )));
        }
        let trusted = keys(&self.store().release_keys().await?);
        artifact
            .offer()
            .check_file(file, &trusted)
            .map_err(|e| UpdateError::Invalid(e.to_string()))?;
        let audit = AuditEntry {
            detail: serde_json::json!({"bytes": file.len()}).to_string(),
            ..entry(actor, self.now(), "artifact.uploaded", id)
        };
        if !self.store().store_artifact_file(id, file, &audit).await? {
            return Err(UpdateError::Conflict(format!(
                "artifact {id} has its file already"
            )));
        }
        Ok(ArtifactRecord {
            has_file: true,
            ..artifact
        })
    }

    /// A stored artifact's file, for a device that authenticated.
    pub async fn artifact_file(&self, id: &str) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.store().artifact_file(id).await?)
    }

    /// Creates a campaign over the devices `target` reaches that declare `update` (the others
    /// are left alone), in a stable order: the canary group first, then waves.
    pub async fn create_campaign(
        &self,
        new: NewCampaign,
        actor: &Actor,
    ) -> Result<CampaignDetail, UpdateError> {
        let name = crate::domain::accounts::parse_name(&new.name)
            .map_err(|e| UpdateError::Invalid(e.to_string()))?;
        let artifact = self
            .store()
            .artifact(&new.artifact_id)
            .await?
            .ok_or_else(|| UpdateError::NotFound(format!("no artifact {}", new.artifact_id)))?;
        if artifact.url.is_none() && !artifact.has_file {
            return Err(UpdateError::Conflict(format!(
                "artifact {} has no URL and no uploaded file yet",
                artifact.id
            )));
        }
        if new.wave_size == 0 {
            return Err(UpdateError::Invalid("waveSize: at least 1".into()));
        }
        let devices = self.targeted(&new.target).await?;
        if devices.is_empty() {
            return Err(UpdateError::Invalid(
                "the target reaches no device that declares the capability 'update'".into(),
            ));
        }
        let now = self.now();
        let plan = waves(devices.len(), new.canary as usize, new.wave_size as usize);
        let campaign = CampaignRecord {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            artifact_id: artifact.id.clone(),
            rollback_artifact_id: None,
            state: CampaignState::Running,
            canary: new.canary,
            wave_size: new.wave_size,
            failure_threshold: new.failure_threshold,
            window: new.window,
            created_at: now,
            created_by: actor.name.clone(),
        };
        let rows: Vec<CampaignDevice> = devices
            .iter()
            .zip(plan)
            .enumerate()
            .map(|(i, (d, wave))| CampaignDevice {
                campaign_id: campaign.id.clone(),
                device_id: d.id.clone(),
                wave,
                position: u32::try_from(i).unwrap_or(u32::MAX),
                state: DeviceUpdate::Pending,
                step: None,
                reason: None,
                updated_at: now,
            })
            .collect();
        let audit = AuditEntry {
            detail: serde_json::json!({
                "name": campaign.name, "artifactId": artifact.id, "version": artifact.version,
                "devices": rows.len(), "canary": campaign.canary, "waveSize": campaign.wave_size,
                "failureThreshold": campaign.failure_threshold,
                "window": campaign.window.map(|w| w.describe()),
            })
            .to_string(),
            ..entry(actor, now, "campaign.created", &campaign.id)
        };
        match self.store().insert_campaign(&campaign, &rows, &audit).await {
            Ok(()) => {}
            Err(InsertError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(UpdateError::Conflict(e.to_string())),
        }
        tracing::info!(campaign = %campaign.id, version = %artifact.version, devices = rows.len(), "update campaign created");
        self.updates_due().await;
        Ok(CampaignDetail {
            campaign,
            artifact: Some(artifact),
            devices: rows,
            steps: Vec::new(),
        })
    }

    async fn targeted(&self, target: &Target) -> Result<Vec<DeviceRecord>, EngineError> {
        let versions: HashMap<DeviceId, String> = if target.versions.is_empty() {
            HashMap::new()
        } else {
            self.latest_health()
                .await?
                .into_iter()
                .map(|(id, h)| (id, h.health.agent_version))
                .collect()
        };
        let listed =
            |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        let mut devices: Vec<DeviceRecord> = self
            .store()
            .devices()
            .await?
            .into_iter()
            .filter(|d| d.can(capability::UPDATE))
            .filter(|d| listed(&target.merchant_ids, d.merchant_id.as_str()))
            .filter(|d| {
                target.site_ids.is_empty()
                    || d.site_id
                        .as_ref()
                        .is_some_and(|s| listed(&target.site_ids, s.as_str()))
            })
            .filter(|d| listed(&target.models, &d.model))
            .filter(|d| {
                target.versions.is_empty()
                    || versions
                        .get(&d.id)
                        .is_some_and(|v| listed(&target.versions, v))
            })
            .filter(|d| listed(&target.device_ids, d.id.as_str()))
            .collect();
        // The order the operator listed devices in, else by id: the canary is predictable.
        if target.device_ids.is_empty() {
            devices.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        } else {
            devices.sort_by_key(|d| {
                target
                    .device_ids
                    .iter()
                    .position(|x| x == d.id.as_str())
                    .unwrap_or(usize::MAX)
            });
        }
        Ok(devices)
    }

    pub async fn campaigns(&self) -> Result<Vec<CampaignRecord>, UpdateError> {
        Ok(self.store().campaigns().await?)
    }

    pub async fn campaign_detail(&self, id: &str) -> Result<CampaignDetail, UpdateError> {
        let campaign = self
            .store()
            .campaign(id)
            .await?
            .ok_or_else(|| UpdateError::NotFound(format!("no campaign {id}")))?;
        Ok(CampaignDetail {
            artifact: self.store().artifact(&campaign.artifact_id).await?,
            devices: self.store().campaign_devices(id).await?,
            steps: self.store().update_steps(id, STEPS_SHOWN).await?,
            campaign,
        })
    }

    /// Pauses, resumes or cancels a campaign.
    pub async fn act_on_campaign(
        &self,
        id: &str,
        action: CampaignAction,
        actor: &Actor,
    ) -> Result<CampaignDetail, UpdateError> {
        let c = self.campaign_detail(id).await?.campaign;
        let (from, to, name) = match (action, c.state) {
            (CampaignAction::Pause, CampaignState::Running) => {
                (c.state, CampaignState::Paused, "campaign.paused")
            }
            (CampaignAction::Resume, CampaignState::Paused) => {
                (c.state, CampaignState::Running, "campaign.resumed")
            }
            (
                CampaignAction::Cancel,
                CampaignState::Running | CampaignState::Paused | CampaignState::RollingBack,
            ) => (c.state, CampaignState::Cancelled, "campaign.cancelled"),
            (a, s) => {
                return Err(UpdateError::Conflict(format!(
                    "cannot {} a campaign that is {s}",
                    match a {
                        CampaignAction::Pause => "pause",
                        CampaignAction::Resume => "resume",
                        CampaignAction::Cancel => "cancel",
                    }
                )))
            }
        };
        let audit = entry(actor, self.now(), name, id);
        if !self
            .store()
            .set_campaign_state(id, from, to, None, Some(&audit))
            .await?
        {
            return Err(UpdateError::Conflict(
                "the campaign changed meanwhile; look again".into(),
            ));
        }
        self.updates_due().await;
        self.campaign_detail(id).await
    }

    /// Rolls a campaign back: every device that was offered or installed its artifact is
    /// offered `artifact_id` (the version to return to), at once, inside the window.
    pub async fn roll_back_campaign(
        &self,
        id: &str,
        artifact_id: &str,
        actor: &Actor,
    ) -> Result<CampaignDetail, UpdateError> {
        let c = self.campaign_detail(id).await?.campaign;
        if !matches!(
            c.state,
            CampaignState::Running | CampaignState::Paused | CampaignState::Completed
        ) {
            return Err(UpdateError::Conflict(format!(
                "cannot roll back a campaign that is {}",
                c.state
            )));
        }
        let back = self
            .store()
            .artifact(artifact_id)
            .await?
            .ok_or_else(|| UpdateError::NotFound(format!("no artifact {artifact_id}")))?;
        if back.url.is_none() && !back.has_file {
            return Err(UpdateError::Conflict(format!(
                "artifact {artifact_id} has no URL and no uploaded file yet"
            )));
        }
        let audit = AuditEntry {
            detail: serde_json::json!({"artifactId": back.id, "version": back.version}).to_string(),
            ..entry(actor, self.now(), "campaign.rolled_back", id)
        };
        if !self
            .store()
            .set_campaign_state(
                id,
                c.state,
                CampaignState::RollingBack,
                Some(&back.id),
                Some(&audit),
            )
            .await?
        {
            return Err(UpdateError::Conflict(
                "the campaign changed meanwhile; look again".into(),
            ));
        }
        self.updates_due().await;
        self.campaign_detail(id).await
    }

    /// A step a device reported. A step of another version than the phase's (a late report)
    /// is recorded but moves nothing; one for a campaign the device is not in is ignored.
    pub async fn on_update_status(
        &self,
        device: &DeviceId,
        campaign_id: &str,
        version: &str,
        step: UpdateStep,
        reason: Option<String>,
    ) -> Result<(), EngineError> {
        let Some(campaign) = self.store().campaign(campaign_id).await? else {
            tracing::debug!(device = %device, campaign = campaign_id, "update status of an unknown campaign");
            return Ok(());
        };
        let rows = self.store().campaign_devices(campaign_id).await?;
        let Some(row) = rows.into_iter().find(|r| r.device_id == *device) else {
            tracing::debug!(device = %device, campaign = campaign_id, "update status of a device not in the campaign");
            return Ok(());
        };
        let rollback = matches!(
            row.state,
            DeviceUpdate::RollbackPending
                | DeviceUpdate::RollbackOffered
                | DeviceUpdate::RolledBack
                | DeviceUpdate::RollbackFailed
        );
        let expected_artifact = if rollback {
            campaign.rollback_artifact_id.clone()
        } else {
            Some(campaign.artifact_id.clone())
        };
        let expected = match expected_artifact {
            Some(a) => self.store().artifact(&a).await?.map(|a| a.version),
            None => None,
        };
        let record = StepRecord {
            device_id: device.clone(),
            at: self.now(),
            version: version.to_string(),
            step,
            reason: reason.map(|r| r.chars().take(500).collect()),
        };
        // A device repeating the step that ended its part (an ack lost with a connection) adds
        // nothing to the record.
        if row.state.is_final() && row.step == Some(step) && step.is_final() {
            tracing::debug!(device = %device, campaign = campaign_id, step = step.as_str(), "repeated update step");
            return Ok(());
        }
        tracing::info!(device = %device, campaign = campaign_id, version, step = step.as_str(), reason = ?record.reason, "update step");
        let moves = (expected.as_deref() == Some(version))
            .then(|| row.state.after(step))
            .flatten()
            .filter(|_| {
                matches!(
                    row.state,
                    DeviceUpdate::Offered
                        | DeviceUpdate::RollbackOffered
                        | DeviceUpdate::Pending
                        | DeviceUpdate::RollbackPending
                )
            });
        match moves {
            Some(to) => {
                let moved = self
                    .store()
                    .move_campaign_device(
                        campaign_id,
                        device,
                        row.state,
                        to,
                        Some(&record),
                        record.at,
                    )
                    .await?;
                if !moved {
                    self.store()
                        .record_update_step(campaign_id, &record)
                        .await?;
                }
                self.updates_due().await;
            }
            None => {
                self.store()
                    .record_update_step(campaign_id, &record)
                    .await?
            }
        }
        Ok(())
    }

    /// The `update` frames a device that just connected should be sent again: the offers it
    /// was made that it has not finished (lost with a connection, or made by another node),
    /// but for the version it says it runs (`agent_version`): that one it has just installed,
    /// and reports so itself.
    pub async fn update_offers_on_connect(
        &self,
        device: &DeviceId,
        agent_version: &str,
    ) -> Result<Vec<CloudMessage>, EngineError> {
        let mut out = Vec::new();
        for c in self.store().campaigns().await? {
            if !c.state.is_active() {
                continue;
            }
            let rows = self.store().campaign_devices(&c.id).await?;
            let Some(row) = rows.iter().find(|r| r.device_id == *device) else {
                continue;
            };
            if !matches!(
                row.state,
                DeviceUpdate::Offered | DeviceUpdate::RollbackOffered
            ) {
                continue;
            }
            let Some(record) = self.store().device(device).await? else {
                continue;
            };
            if let Some(frame) = self
                .offer_frame(&c, row.state, &record, &mut HashMap::new())
                .await?
            {
                if matches!(&frame, CloudMessage::Update(u) if u.artifact.version == agent_version)
                {
                    continue;
                }
                out.push(frame);
            }
        }
        self.updates_due_here();
        Ok(out)
    }

    /// Wakes the campaign loops of this node and the others (a campaign or a device moved).
    pub(crate) async fn updates_due(&self) {
        self.updates_due_here();
        self.bus().announce_updates().await;
    }

    /// Wakes this node's campaign loop only (a device connected here).
    fn updates_due_here(&self) {
        self.inner.updates_due.notify_one();
    }

    /// The campaign loop of this node: on every wake-up and every `tick`, moves each active
    /// campaign one step for the devices connected here.
    pub async fn run_campaigns(
        self,
        connections: std::sync::Arc<Connections>,
        tick: Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            if let Err(e) = self.drive_campaigns(&connections).await {
                tracing::warn!(error = %e, "update campaigns: could not move on (retried)");
            }
            tokio::select! {
                _ = self.inner.updates_due.notified() => {}
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One pass over the active campaigns.
    pub async fn drive_campaigns(&self, connections: &Connections) -> Result<(), EngineError> {
        let mut zones = HashMap::new();
        for c in self.store().campaigns().await? {
            if !c.state.is_active() {
                continue;
            }
            let rows = self.store().campaign_devices(&c.id).await?;
            let compact: Vec<Row> = rows
                .iter()
                .map(|r| Row {
                    wave: r.wave,
                    state: r.state,
                })
                .collect();
            let system = Actor {
                name: "campaign".into(),
                source: None,
            };
            match decide(c.state, c.failure_threshold, &compact) {
                Decision::Pause { failed } => {
                    let audit = AuditEntry {
                        detail:
                            serde_json::json!({"failed": failed, "threshold": c.failure_threshold})
                                .to_string(),
                        ..entry(&system, self.now(), "campaign.paused", &c.id)
                    };
                    if self
                        .store()
                        .set_campaign_state(
                            &c.id,
                            c.state,
                            CampaignState::Paused,
                            None,
                            Some(&audit),
                        )
                        .await?
                    {
                        tracing::warn!(campaign = %c.id, failed, "update campaign paused: failures reached its threshold");
                    }
                }
                Decision::Complete => {
                    let to = if c.state == CampaignState::RollingBack {
                        CampaignState::RolledBack
                    } else {
                        CampaignState::Completed
                    };
                    let audit = entry(&system, self.now(), &format!("campaign.{to}"), &c.id);
                    if self
                        .store()
                        .set_campaign_state(&c.id, c.state, to, None, Some(&audit))
                        .await?
                    {
                        tracing::info!(campaign = %c.id, state = %to, "update campaign over");
                    }
                }
                Decision::Wait => {}
                Decision::Offer(indexes) => {
                    for i in indexes {
                        let Some(row) = rows.get(i) else { continue };
                        if !connections.is_connected(&row.device_id) {
                            continue;
                        }
                        self.offer(&c, row, connections, &mut zones).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Claims and sends one offer, if the device's window is open.
    async fn offer(
        &self,
        c: &CampaignRecord,
        row: &CampaignDevice,
        connections: &Connections,
        zones: &mut HashMap<DeviceId, chrono_tz::Tz>,
    ) -> Result<(), EngineError> {
        let Some(device) = self.store().device(&row.device_id).await? else {
            return Ok(());
        };
        let offered = match row.state {
            DeviceUpdate::Pending => DeviceUpdate::Offered,
            DeviceUpdate::RollbackPending => DeviceUpdate::RollbackOffered,
            _ => return Ok(()),
        };
        let Some(frame) = self.offer_frame(c, offered, &device, zones).await? else {
            return Ok(());
        };
        if !self
            .store()
            .move_campaign_device(&c.id, &row.device_id, row.state, offered, None, self.now())
            .await?
        {
            // Another node claimed it, or the device moved meanwhile.
            return Ok(());
        }
        if connections.send(&row.device_id, frame).is_err() {
            // Made again when the device reconnects.
            tracing::debug!(device = %row.device_id, campaign = %c.id, "update offer not delivered");
        } else {
            tracing::info!(device = %row.device_id, campaign = %c.id, "update offered");
        }
        Ok(())
    }

    /// The `update` frame of a campaign's phase for a device, none while its window is shut.
    async fn offer_frame(
        &self,
        c: &CampaignRecord,
        state: DeviceUpdate,
        device: &DeviceRecord,
        zones: &mut HashMap<DeviceId, chrono_tz::Tz>,
    ) -> Result<Option<CloudMessage>, EngineError> {
        let artifact_id = match state {
            DeviceUpdate::RollbackPending | DeviceUpdate::RollbackOffered => {
                match &c.rollback_artifact_id {
                    Some(a) => a.clone(),
                    None => return Ok(None),
                }
            }
            _ => c.artifact_id.clone(),
        };
        let Some(artifact) = self.store().artifact(&artifact_id).await? else {
            return Ok(None);
        };
        let now = self.now();
        let install_before = match c.window {
            None => now + NO_WINDOW_INSTALL_WITHIN,
            Some(w) => {
                let tz = match zones.get(&device.id) {
                    Some(tz) => *tz,
                    None => {
                        let tz = match &device.site_id {
                            Some(s) => self
                                .store()
                                .site(s)
                                .await?
                                .and_then(|s| s.time_zone.parse::<chrono_tz::Tz>().ok())
                                .unwrap_or(chrono_tz::UTC),
                            None => chrono_tz::UTC,
                        };
                        zones.insert(device.id.clone(), tz);
                        tz
                    }
                };
                match w.open_until(now, tz) {
                    Some(closes) => closes,
                    None => return Ok(None),
                }
            }
        };
        Ok(Some(CloudMessage::Update(UpdateOffer {
            campaign_id: c.id.clone(),
            artifact: artifact.offer(),
            install_before: install_before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })))
    }
}
