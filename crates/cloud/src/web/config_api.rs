//! The admin API of configuration profiles (`/admin/config/...`) and of a device's effective
//! configuration (`/admin/devices/{id}/config`). Reading needs `devices:manage` or
//! `reports:read`, setting needs `devices:manage`; a merchant's credential reaches its own
//! merchant, sites and devices (and reads the operator's profile, which applies to them).

use super::accounts_api::AccountsApiError;
use super::dashboard::{rfc3339, Admin};
use super::WebState;
use crate::domain::accounts::{MerchantId, Scope, SiteId};
use crate::domain::config::{ProfileRecord, ProfileScope};
use crate::engine::config::{ConfigError, DeviceConfigView, ProfileSet};
use crate::pos_api::error::ApiError;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use protocol::config::Profile;
use serde::Serialize;
use std::collections::BTreeMap;

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::Bad(_) => AccountsApiError::Invalid(e.to_string()).into(),
            ConfigError::NotFound(..) => AccountsApiError::NotFound(e.to_string()).into(),
            ConfigError::OperatorOnly => AccountsApiError::Forbidden(
                "only the operator's credentials can set the operator's profile",
            )
            .into(),
            ConfigError::Contended => AccountsApiError::Conflict(e.to_string()).into(),
            ConfigError::Engine(e) => e.into(),
        }
    }
}

/// A scope's profile as the API shows it; version 0 and an empty profile when never set.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileView {
    pub level: &'static str,
    /// The merchant's, site's or device's id; absent for the operator's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub version: u64,
    pub profile: Profile,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_by: Option<String>,
}

impl ProfileView {
    fn of(scope: &ProfileScope, record: Option<ProfileRecord>) -> Self {
        let target = (!scope.target().is_empty()).then(|| scope.target().to_string());
        match record {
            Some(r) => Self {
                level: scope.level().as_str(),
                target,
                version: r.version,
                profile: r.profile,
                set_at: Some(rfc3339(r.set_at)),
                set_by: Some(r.actor),
            },
            None => Self {
                level: scope.level().as_str(),
                target,
                version: 0,
                profile: Profile::default(),
                set_at: None,
                set_by: None,
            },
        }
    }
}

/// The answer to a change: the new version, and what it did to the devices below it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SetView {
    #[serde(flatten)]
    pub profile: ProfileView,
    /// Devices whose effective settings changed.
    pub devices_changed: usize,
    /// Of those, the ones sent their settings now (the others get them when they connect;
    /// a device running a transaction applies them after it).
    pub devices_sent: usize,
}

impl From<ProfileSet> for SetView {
    fn from(s: ProfileSet) -> Self {
        let scope = s.record.scope.clone();
        Self {
            profile: ProfileView::of(&scope, Some(s.record)),
            devices_changed: s.devices_changed,
            devices_sent: s.devices_sent,
        }
    }
}

/// A device's effective configuration.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveView {
    pub device_id: String,
    /// The version of the settings below (0: never computed, the device never connected).
    pub version: u64,
    /// The newest version the device acknowledged applying.
    pub acknowledged_version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<String>,
    /// Whether the device has settings it has not applied yet.
    pub pending: bool,
    /// Whether the device declares `config` (a device that does not is left alone).
    pub supported: bool,
    /// Every field, resolved.
    pub settings: Profile,
    /// The level each field comes from (`default` when no profile sets it).
    pub sources: BTreeMap<&'static str, &'static str>,
    /// The profiles that apply, from the top down.
    pub profiles: Vec<ProfileView>,
}

impl From<DeviceConfigView> for EffectiveView {
    fn from(v: DeviceConfigView) -> Self {
        let settings = v.effective.settings.as_profile();
        let mut sources: BTreeMap<&'static str, &'static str> = settings
            .fields_set()
            .into_iter()
            .map(|f| (f, "default"))
            .collect();
        for (field, level) in &v.effective.sources {
            sources.insert(field, level.as_str());
        }
        Self {
            device_id: v.device.id.to_string(),
            version: v.state.version,
            acknowledged_version: v.state.acked,
            acknowledged_at: v.state.acked_at.map(rfc3339),
            pending: v.state.pending(),
            supported: v.device.can(protocol::device::capability::CONFIG),
            settings,
            sources,
            profiles: v
                .profiles
                .into_iter()
                .map(|p| {
                    let scope = p.scope.clone();
                    ProfileView::of(&scope, Some(p))
                })
                .collect(),
        }
    }
}

/// `{kind}` of `/admin/config/{kind}/{id}` and its id, as a scope.
fn scope_of(kind: &str, id: &str) -> Result<ProfileScope, ApiError> {
    let invalid = |e: String| -> ApiError { AccountsApiError::Invalid(e).into() };
    match kind {
        "merchants" => MerchantId::parse(id)
            .map(ProfileScope::Merchant)
            .map_err(|e| invalid(e.to_string())),
        "sites" => SiteId::parse(id)
            .map(ProfileScope::Site)
            .map_err(|e| invalid(e.to_string())),
        "devices" => protocol::DeviceId::parse(id)
            .map(ProfileScope::Device)
            .map_err(|e| invalid(format!("'{id}' is not a device id: {e}"))),
        other => Err(AccountsApiError::NotFound(format!(
            "no configuration level '{other}': use operator, merchants/{{id}}, sites/{{id}} or devices/{{id}}"
        ))
        .into()),
    }
}

fn read_profile(bytes: &Bytes) -> Result<Profile, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| AccountsApiError::Body(e.to_string()).into())
}

async fn get(
    state: &WebState,
    admin: &Admin,
    scope: ProfileScope,
) -> Result<Json<ProfileView>, ApiError> {
    admin.require_any(&[Scope::DevicesManage, Scope::ReportsRead])?;
    let record = state.engine.profile(&admin.principal, &scope).await?;
    Ok(Json(ProfileView::of(&scope, record)))
}

async fn put(
    state: &WebState,
    admin: &Admin,
    scope: ProfileScope,
    bytes: &Bytes,
) -> Result<Json<SetView>, ApiError> {
    admin.require(Scope::DevicesManage)?;
    let profile = read_profile(bytes)?;
    let set = state
        .engine
        .set_profile(&admin.principal, &scope, profile, &admin.actor)
        .await?;
    Ok(Json(set.into()))
}

async fn history(
    state: &WebState,
    admin: &Admin,
    scope: ProfileScope,
) -> Result<Json<Vec<ProfileView>>, ApiError> {
    admin.require_any(&[Scope::DevicesManage, Scope::ReportsRead])?;
    let records = state
        .engine
        .profile_history(&admin.principal, &scope)
        .await?;
    Ok(Json(
        records
            .into_iter()
            .map(|r| ProfileView::of(&scope, Some(r)))
            .collect(),
    ))
}

/// `GET /admin/config/operator`.
pub async fn get_operator(
    State(state): State<WebState>,
    admin: Admin,
) -> Result<Json<ProfileView>, ApiError> {
    get(&state, &admin, ProfileScope::Operator).await
}

/// `PUT /admin/config/operator` with a profile: replaces the operator's profile.
pub async fn put_operator(
    State(state): State<WebState>,
    admin: Admin,
    bytes: Bytes,
) -> Result<Json<SetView>, ApiError> {
    put(&state, &admin, ProfileScope::Operator, &bytes).await
}

/// `GET /admin/config/operator/history`.
pub async fn operator_history(
    State(state): State<WebState>,
    admin: Admin,
) -> Result<Json<Vec<ProfileView>>, ApiError> {
    history(&state, &admin, ProfileScope::Operator).await
}

/// `GET /admin/config/{kind}/{id}`.
pub async fn get_scoped(
    State(state): State<WebState>,
    admin: Admin,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<ProfileView>, ApiError> {
    let scope = scope_of(&kind, &id)?;
    get(&state, &admin, scope).await
}

/// `PUT /admin/config/{kind}/{id}` with a profile: replaces that level's profile.
pub async fn put_scoped(
    State(state): State<WebState>,
    admin: Admin,
    Path((kind, id)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Json<SetView>, ApiError> {
    let scope = scope_of(&kind, &id)?;
    put(&state, &admin, scope, &bytes).await
}

/// `GET /admin/config/{kind}/{id}/history`.
pub async fn scoped_history(
    State(state): State<WebState>,
    admin: Admin,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<Vec<ProfileView>>, ApiError> {
    let scope = scope_of(&kind, &id)?;
    history(&state, &admin, scope).await
}

/// `GET /admin/devices/{id}/config`: the device's effective settings and where each comes from.
pub async fn device_config(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<EffectiveView>, ApiError> {
    admin.require_any(&[Scope::DevicesManage, Scope::ReportsRead])?;
    let Ok(ProfileScope::Device(device)) = scope_of("devices", &id) else {
        return Err(AccountsApiError::Invalid(format!("'{id}' is not a device id")).into());
    };
    let view = state
        .engine
        .device_config(&admin.principal, &device)
        .await?;
    Ok(Json(view.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::config::Level;

    #[test]
    fn paths_name_their_level() {
        let m = MerchantId::new();
        assert_eq!(
            scope_of("merchants", m.as_str()).ok(),
            Some(ProfileScope::Merchant(m))
        );
        assert!(scope_of("merchants", "nope").is_err());
        assert!(scope_of("planets", "x").is_err());
        let d = protocol::DeviceId::parse("cfg-1").unwrap_or_else(|_| unreachable!());
        assert_eq!(
            scope_of("devices", d.as_str()).ok().map(|s| s.level()),
            Some(Level::Device)
        );
    }
}
