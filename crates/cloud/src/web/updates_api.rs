//! The admin API of software updates: release keys, artifacts and campaigns
//! (`/admin/release-keys`, `/admin/artifacts`, `/admin/campaigns`). The operator's credentials
//! only (a merchant's key cannot put software on devices): reading needs `devices:manage` or
//! `reports:read`, changing needs `admin`.

use super::accounts_api::AccountsApiError;
use super::dashboard::{rfc3339, Admin};
use super::WebState;
use crate::domain::accounts::Scope;
use crate::domain::campaigns::{
    ArtifactRecord, CampaignDevice, CampaignRecord, ReleaseKeyRecord, StepRecord, Window,
};
use crate::engine::campaigns::{
    CampaignAction, CampaignDetail, NewArtifact, NewCampaign, Target, UpdateError,
};
use crate::pos_api::error::ApiError;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

impl From<UpdateError> for ApiError {
    fn from(e: UpdateError) -> Self {
        match e {
            UpdateError::Invalid(m) => AccountsApiError::Invalid(m).into(),
            UpdateError::NotFound(m) => AccountsApiError::NotFound(m).into(),
            UpdateError::Conflict(m) => AccountsApiError::Conflict(m).into(),
            UpdateError::Engine(e) => e.into(),
        }
    }
}

fn operator(admin: &Admin, scope: &[Scope]) -> Result<(), ApiError> {
    admin.require_any(scope)?;
    if admin.merchant().is_some() {
        return Err(AccountsApiError::Forbidden(
            "software updates are the operator's: a merchant's credential cannot see or change them",
        )
        .into());
    }
    Ok(())
}

const READ: [Scope; 2] = [Scope::DevicesManage, Scope::ReportsRead];

fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| AccountsApiError::Body(e.to_string()).into())
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub key_id: String,
    pub name: String,
    pub public_key: String,
    pub created_at: String,
}

impl From<ReleaseKeyRecord> for KeyView {
    fn from(k: ReleaseKeyRecord) -> Self {
        Self {
            key_id: k.id,
            name: k.name,
            public_key: k.public_key,
            created_at: rfc3339(k.created_at),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KeyBody {
    name: String,
    public_key: String,
}

/// `GET /admin/release-keys`.
pub async fn release_keys(
    State(state): State<WebState>,
    admin: Admin,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    operator(&admin, &READ)?;
    let keys = state.engine.release_keys().await?;
    Ok(Json(keys.into_iter().map(KeyView::from).collect()))
}

/// `POST /admin/release-keys` `{"name", "publicKey"}`: a key artifacts may be signed with.
pub async fn add_release_key(
    State(state): State<WebState>,
    admin: Admin,
    bytes: Bytes,
) -> Result<(StatusCode, Json<KeyView>), ApiError> {
    operator(&admin, &[Scope::Admin])?;
    let KeyBody { name, public_key } = body(&bytes)?;
    let key = state
        .engine
        .add_release_key(&name, &public_key, &admin.actor)
        .await?;
    Ok((StatusCode::CREATED, Json(key.into())))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactView {
    pub artifact_id: String,
    pub version: String,
    /// Where devices download it (the cloud's own path for a stored file).
    pub url: String,
    pub stored: bool,
    /// Whether devices can be offered it (a stored artifact once its file is uploaded).
    pub ready: bool,
    pub size: u64,
    pub sha256: String,
    pub signature: String,
    pub key_id: String,
    pub created_at: String,
}

impl From<ArtifactRecord> for ArtifactView {
    fn from(a: ArtifactRecord) -> Self {
        let offer = a.offer();
        Self {
            ready: a.url.is_some() || a.has_file,
            stored: a.url.is_none(),
            artifact_id: a.id,
            version: a.version,
            url: offer.url,
            size: a.size,
            sha256: a.sha256,
            signature: a.signature,
            key_id: a.key_id,
            created_at: rfc3339(a.created_at),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ArtifactBody {
    version: String,
    #[serde(default)]
    url: Option<String>,
    size: u64,
    sha256: String,
    signature: String,
    key_id: String,
}

/// `GET /admin/artifacts`, newest first.
pub async fn artifacts(
    State(state): State<WebState>,
    admin: Admin,
) -> Result<Json<Vec<ArtifactView>>, ApiError> {
    operator(&admin, &READ)?;
    let list = state.engine.artifacts().await?;
    Ok(Json(list.into_iter().map(ArtifactView::from).collect()))
}

/// `POST /admin/artifacts` `{"version", "size", "sha256", "signature", "keyId", "url"?}`
/// (what `eftcloud release-key sign` prints): refused unless a registered key signed it.
pub async fn add_artifact(
    State(state): State<WebState>,
    admin: Admin,
    bytes: Bytes,
) -> Result<(StatusCode, Json<ArtifactView>), ApiError> {
    operator(&admin, &[Scope::Admin])?;
    let b: ArtifactBody = body(&bytes)?;
    let artifact = state
        .engine
        .add_artifact(
            NewArtifact {
                version: b.version,
                url: b.url,
                size: b.size,
                sha256: b.sha256,
                signature: b.signature,
                key_id: b.key_id,
            },
            &admin.actor,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(artifact.into())))
}

/// `PUT /admin/artifacts/{id}/file` with the file as the body: stored for devices to download.
pub async fn upload_artifact(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<ArtifactView>, ApiError> {
    operator(&admin, &[Scope::Admin])?;
    let artifact = state
        .engine
        .upload_artifact_file(&id, &bytes, &admin.actor)
        .await?;
    Ok(Json(artifact.into()))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceProgress {
    pub device_id: String,
    pub wave: u32,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub updated_at: String,
}

impl From<CampaignDevice> for DeviceProgress {
    fn from(d: CampaignDevice) -> Self {
        Self {
            device_id: d.device_id.to_string(),
            wave: d.wave,
            state: d.state.as_str(),
            step: d.step.map(|s| s.as_str()),
            reason: d.reason,
            updated_at: rfc3339(d.updated_at),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepView {
    pub device_id: String,
    pub at: String,
    pub version: String,
    pub step: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<StepRecord> for StepView {
    fn from(s: StepRecord) -> Self {
        Self {
            device_id: s.device_id.to_string(),
            at: rfc3339(s.at),
            version: s.version,
            step: s.step.as_str(),
            reason: s.reason,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CampaignView {
    pub campaign_id: String,
    pub name: String,
    pub artifact_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_artifact_id: Option<String>,
    pub state: &'static str,
    pub canary: u32,
    pub wave_size: u32,
    pub failure_threshold: u32,
    /// `HH:MM-HH:MM` in each site's time zone; absent: any time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    pub created_at: String,
    pub created_by: String,
    /// How many devices are in each state.
    pub counts: std::collections::BTreeMap<&'static str, usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<DeviceProgress>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepView>>,
}

fn view(c: CampaignRecord, version: Option<String>, devices: &[CampaignDevice]) -> CampaignView {
    let mut counts = std::collections::BTreeMap::new();
    for d in devices {
        *counts.entry(d.state.as_str()).or_insert(0) += 1;
    }
    CampaignView {
        campaign_id: c.id,
        name: c.name,
        artifact_id: c.artifact_id,
        version,
        rollback_artifact_id: c.rollback_artifact_id,
        state: c.state.as_str(),
        canary: c.canary,
        wave_size: c.wave_size,
        failure_threshold: c.failure_threshold,
        window: c.window.map(|w| w.describe()),
        created_at: rfc3339(c.created_at),
        created_by: c.created_by,
        counts,
        devices: None,
        steps: None,
    }
}

impl From<CampaignDetail> for CampaignView {
    fn from(d: CampaignDetail) -> Self {
        let mut v = view(d.campaign, d.artifact.map(|a| a.version), &d.devices);
        v.devices = Some(d.devices.into_iter().map(DeviceProgress::from).collect());
        v.steps = Some(d.steps.into_iter().map(StepView::from).collect());
        v
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TargetBody {
    #[serde(default)]
    merchant_ids: Vec<String>,
    #[serde(default)]
    site_ids: Vec<String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    device_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WindowBody {
    start: String,
    end: String,
}

fn default_canary() -> u32 {
    1
}
fn default_wave() -> u32 {
    10
}
fn default_threshold() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CampaignBody {
    name: String,
    artifact_id: String,
    #[serde(default)]
    target: TargetBody,
    #[serde(default)]
    window: Option<WindowBody>,
    #[serde(default = "default_canary")]
    canary: u32,
    #[serde(default = "default_wave")]
    wave_size: u32,
    #[serde(default = "default_threshold")]
    failure_threshold: u32,
}

/// `GET /admin/campaigns`, newest first, with their devices counted by state.
pub async fn campaigns(
    State(state): State<WebState>,
    admin: Admin,
) -> Result<Json<Vec<CampaignView>>, ApiError> {
    operator(&admin, &READ)?;
    let mut out = Vec::new();
    for c in state.engine.campaigns().await? {
        let detail = state.engine.campaign_detail(&c.id).await?;
        out.push(view(
            detail.campaign,
            detail.artifact.map(|a| a.version),
            &detail.devices,
        ));
    }
    Ok(Json(out))
}

/// `POST /admin/campaigns`: starts rolling an artifact out.
pub async fn create_campaign(
    State(state): State<WebState>,
    admin: Admin,
    bytes: Bytes,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    operator(&admin, &[Scope::Admin])?;
    let b: CampaignBody = body(&bytes)?;
    let window = match b.window {
        None => None,
        Some(w) => {
            let start = Window::minutes(&w.start).map_err(AccountsApiError::Invalid)?;
            let end = Window::minutes(&w.end).map_err(AccountsApiError::Invalid)?;
            Some(Window::new(start, end).map_err(AccountsApiError::Invalid)?)
        }
    };
    let detail = state
        .engine
        .create_campaign(
            NewCampaign {
                name: b.name,
                artifact_id: b.artifact_id,
                target: Target {
                    merchant_ids: b.target.merchant_ids,
                    site_ids: b.target.site_ids,
                    models: b.target.models,
                    versions: b.target.versions,
                    device_ids: b.target.device_ids,
                },
                window,
                canary: b.canary,
                wave_size: b.wave_size,
                failure_threshold: b.failure_threshold,
            },
            &admin.actor,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(detail.into())))
}

/// `GET /admin/campaigns/{id}`: with every device's progress and the steps they reported.
pub async fn campaign(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<CampaignView>, ApiError> {
    operator(&admin, &READ)?;
    Ok(Json(state.engine.campaign_detail(&id).await?.into()))
}

/// `POST /admin/campaigns/{id}/{pause|resume|cancel}`.
pub async fn act(
    State(state): State<WebState>,
    admin: Admin,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<CampaignView>, ApiError> {
    operator(&admin, &[Scope::Admin])?;
    let action = match action.as_str() {
        "pause" => CampaignAction::Pause,
        "resume" => CampaignAction::Resume,
        "cancel" => CampaignAction::Cancel,
        other => {
            return Err(AccountsApiError::NotFound(format!(
                "no campaign action '{other}': pause, resume, cancel or rollback"
            ))
            .into())
        }
    };
    let detail = state
        .engine
        .act_on_campaign(&id, action, &admin.actor)
        .await?;
    Ok(Json(detail.into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RollbackBody {
    artifact_id: String,
}

/// `POST /admin/campaigns/{id}/rollback` `{"artifactId"}`: the version to return to.
pub async fn rollback(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<CampaignView>, ApiError> {
    operator(&admin, &[Scope::Admin])?;
    let RollbackBody { artifact_id } = body(&bytes)?;
    let detail = state
        .engine
        .roll_back_campaign(&id, &artifact_id, &admin.actor)
        .await?;
    Ok(Json(detail.into()))
}
