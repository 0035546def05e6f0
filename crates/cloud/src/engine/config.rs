//! Configuration profiles: setting them (a new version each time, audited), computing each
//! device's effective settings, and pushing them to devices that declare `config`.
//!
//! A change recomputes the settings of every device it reaches and stores them with a version
//! that moves only when they changed; each changed device that is online is sent a `config`
//! frame through the bus, to whichever node holds its connection. That node's connection holds
//! the frame while the device runs a transaction and sends it after (the connection sees every
//! offer and its end, see `device_gateway::config_hold`), so settings never change under a
//! payment. A device that was offline is sent its settings when it connects, if it has not
//! acknowledged their version.

use super::accounts::{entry, Actor};
use super::{Engine, EngineError};
use crate::domain::accounts::{AuditEntry, MerchantId, Principal};
use crate::domain::config::{
    resolve, DeviceConfigState, Effective, Level, ProfileRecord, ProfileScope,
};
use crate::domain::DeviceRecord;
use crate::store::InsertError;
use protocol::config::{BadProfile, DeviceConfig, Profile, Settings};
use protocol::device::{capability, CloudMessage};
use protocol::{Currency, DeviceId};
use std::collections::HashMap;

/// How many versions of a profile the history shows at most.
pub const HISTORY_SHOWN: u32 = 50;

/// Why a profile could not be read or set.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Bad(#[from] BadProfile),
    /// The merchant, site or device does not exist (for this credential).
    #[error("no {0} {1}")]
    NotFound(Level, String),
    /// A merchant's credential setting the operator's profile.
    #[error("only the operator's credentials can set the operator's profile")]
    OperatorOnly,
    /// Versions kept being taken by concurrent changes.
    #[error("the profile is changing too fast, try again")]
    Contended,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for ConfigError {
    fn from(e: crate::store::StoreError) -> Self {
        ConfigError::Engine(e.into())
    }
}

/// A profile just set, and what it did to the devices below it.
#[derive(Debug, Clone)]
pub struct ProfileSet {
    pub record: ProfileRecord,
    /// Devices whose effective settings changed.
    pub devices_changed: usize,
    /// Of those, the ones a `config` frame went to now (online and declaring `config`).
    pub devices_sent: usize,
}

/// A device's configuration as the operator sees it.
#[derive(Debug, Clone)]
pub struct DeviceConfigView {
    pub device: DeviceRecord,
    pub effective: Effective,
    pub state: DeviceConfigState,
    /// The profiles that apply, from the top down (scopes with none are left out).
    pub profiles: Vec<ProfileRecord>,
}

/// Profiles and merchants read once for a batch of devices.
#[derive(Default)]
struct Cache {
    profiles: HashMap<ProfileScope, Option<ProfileRecord>>,
    currencies: HashMap<MerchantId, Currency>,
}

impl Engine {
    /// The scope's current profile, if `principal` sees the scope (`None`: never set).
    pub async fn profile(
        &self,
        principal: &Principal,
        scope: &ProfileScope,
    ) -> Result<Option<ProfileRecord>, ConfigError> {
        self.check_scope(principal, scope).await?;
        Ok(self.store().profile(scope).await?)
    }

    /// The scope's versions, newest first.
    pub async fn profile_history(
        &self,
        principal: &Principal,
        scope: &ProfileScope,
    ) -> Result<Vec<ProfileRecord>, ConfigError> {
        self.check_scope(principal, scope).await?;
        Ok(self.store().profile_history(scope, HISTORY_SHOWN).await?)
    }

    /// Sets the scope's profile (replacing it: a field left out is inherited again) as a new
    /// version, audited; then recomputes and pushes the settings of every device below it.
    pub async fn set_profile(
        &self,
        principal: &Principal,
        scope: &ProfileScope,
        profile: Profile,
        actor: &Actor,
    ) -> Result<ProfileSet, ConfigError> {
        profile.check()?;
        if *scope == ProfileScope::Operator && principal.merchant().is_some() {
            return Err(ConfigError::OperatorOnly);
        }
        let merchant = self.check_scope(principal, scope).await?;
        let mut record = None;
        // A version taken between the read and the insert is another change that won: read
        // again and come after it.
        for _ in 0..5 {
            let version = self
                .store()
                .profile(scope)
                .await?
                .map_or(1, |p| p.version + 1);
            let candidate = ProfileRecord {
                scope: scope.clone(),
                version,
                profile: profile.clone(),
                set_at: self.now(),
                actor: actor.name.clone(),
            };
            let audit = AuditEntry {
                merchant_id: merchant.clone(),
                detail: serde_json::json!({ "version": version, "profile": &profile }).to_string(),
                ..entry(actor, candidate.set_at, "config.set", &scope.to_string())
            };
            match self.store().insert_profile(&candidate, &audit).await {
                Ok(()) => {
                    record = Some(candidate);
                    break;
                }
                Err(InsertError::AlreadyExists) => continue,
                Err(InsertError::Store(e)) => return Err(e.into()),
                Err(e) => {
                    return Err(ConfigError::Engine(EngineError::Store(
                        crate::store::StoreError::Corrupt(e.to_string()),
                    )))
                }
            }
        }
        let record = record.ok_or(ConfigError::Contended)?;
        let devices = self.devices_below(scope).await?;
        let (mut changed, mut sent) = (0, 0);
        let mut cache = Cache::default();
        for device in &devices {
            let before = self.store().device_config(&device.id).await?;
            let Some(state) = self.refresh_config(device, &mut cache).await? else {
                continue;
            };
            if before.is_some_and(|b| b.version == state.version) {
                continue;
            }
            changed += 1;
            if let Some(frame) = config_frame(device, &state) {
                if self.bus().deliver(&device.id, frame).await.is_ok() {
                    sent += 1;
                }
            }
        }
        tracing::info!(scope = %scope, version = record.version, devices_changed = changed, devices_sent = sent, "configuration profile set");
        Ok(ProfileSet {
            record,
            devices_changed: changed,
            devices_sent: sent,
        })
    }

    /// The `config` frame a device that just connected should be sent: its settings,
    /// recomputed (a profile may have changed, or the device moved, while it was away), if it
    /// declares `config` and either has not acknowledged their version or says in `hello` that
    /// it runs another (`running`: it lost them, or never had any).
    pub async fn config_on_connect(
        &self,
        device: &DeviceId,
        running: Option<u64>,
    ) -> Result<Option<CloudMessage>, EngineError> {
        let Some(device) = self.store().device(device).await? else {
            return Ok(None);
        };
        if !device.can(capability::CONFIG) {
            return Ok(None);
        }
        let Some(state) = self.refresh_config(&device, &mut Cache::default()).await? else {
            return Ok(None);
        };
        if !state.pending() && running == Some(state.version) {
            return Ok(None);
        }
        Ok(settings_frame(&state))
    }

    /// The input timeout of the device paired with `register`, as its settings say (none:
    /// not paired, or its settings were never computed), for an input that sets none.
    pub async fn configured_input_timeout(
        &self,
        register: &protocol::RegisterKey,
    ) -> Result<Option<u32>, EngineError> {
        let Some(route) = self.store().route(register).await? else {
            return Ok(None);
        };
        let Some(state) = self.store().device_config(&route.device.id).await? else {
            return Ok(None);
        };
        Ok(state
            .settings
            .and_then(|json| serde_json::from_str::<Settings>(&json).ok())
            .map(|s| s.input_timeout_secs))
    }

    /// The device applied `version` of its settings.
    pub async fn on_config_ack(&self, device: &DeviceId, version: u64) -> Result<(), EngineError> {
        if self.store().ack_config(device, version, self.now()).await? {
            tracing::info!(device = %device, version, "device applied its configuration");
        } else {
            // A repeated ack, or one of a version never sent: nothing to record.
            tracing::debug!(device = %device, version, "configuration ack changed nothing");
        }
        Ok(())
    }

    /// A device's effective settings, where each field comes from, and what it applied.
    pub async fn device_config(
        &self,
        principal: &Principal,
        id: &DeviceId,
    ) -> Result<DeviceConfigView, ConfigError> {
        let scope = ProfileScope::Device(id.clone());
        self.check_scope(principal, &scope).await?;
        let device = self
            .store()
            .device(id)
            .await?
            .ok_or_else(|| ConfigError::NotFound(Level::Device, id.to_string()))?;
        let mut cache = Cache::default();
        let (effective, profiles) = self.effective(&device, &mut cache).await?;
        let state = self
            .store()
            .device_config(id)
            .await?
            .ok_or_else(|| ConfigError::NotFound(Level::Device, id.to_string()))?;
        Ok(DeviceConfigView {
            device,
            effective,
            state,
            profiles,
        })
    }

    /// Recomputes and stores a device's settings; its state after (none: the device is gone).
    async fn refresh_config(
        &self,
        device: &DeviceRecord,
        cache: &mut Cache,
    ) -> Result<Option<DeviceConfigState>, EngineError> {
        let (effective, _) = self.effective(device, cache).await?;
        // Settings are strings and numbers: serialising them cannot fail.
        let json = serde_json::to_string(&effective.settings).unwrap_or_default();
        Ok(self.store().set_device_config(&device.id, &json).await?)
    }

    async fn effective(
        &self,
        device: &DeviceRecord,
        cache: &mut Cache,
    ) -> Result<(Effective, Vec<ProfileRecord>), EngineError> {
        let currency = match cache.currencies.get(&device.merchant_id) {
            Some(c) => *c,
            None => {
                let c = self
                    .store()
                    .merchant(&device.merchant_id)
                    .await?
                    .map_or(Currency::AUD, |m| m.currency);
                cache.currencies.insert(device.merchant_id.clone(), c);
                c
            }
        };
        let mut profiles = Vec::new();
        for scope in ProfileScope::chain(&device.merchant_id, device.site_id.as_ref(), &device.id) {
            let record = match cache.profiles.get(&scope) {
                Some(r) => r.clone(),
                None => {
                    let r = self.store().profile(&scope).await?;
                    cache.profiles.insert(scope, r.clone());
                    r
                }
            };
            profiles.extend(record);
        }
        let layers: Vec<(Level, &Profile)> = profiles
            .iter()
            .map(|p| (p.scope.level(), &p.profile))
            .collect();
        Ok((resolve(currency, &layers), profiles))
    }

    /// The devices a profile at `scope` reaches.
    async fn devices_below(&self, scope: &ProfileScope) -> Result<Vec<DeviceRecord>, EngineError> {
        if let ProfileScope::Device(id) = scope {
            return Ok(self.store().device(id).await?.into_iter().collect());
        }
        let mut devices = self.store().devices().await?;
        devices.retain(|d| match scope {
            ProfileScope::Operator => true,
            ProfileScope::Merchant(m) => d.merchant_id == *m,
            ProfileScope::Site(s) => d.site_id.as_ref() == Some(s),
            ProfileScope::Device(id) => d.id == *id,
        });
        Ok(devices)
    }

    /// Checks that the scope exists for `principal`; the merchant it concerns, if one.
    async fn check_scope(
        &self,
        principal: &Principal,
        scope: &ProfileScope,
    ) -> Result<Option<MerchantId>, ConfigError> {
        let not_found = || ConfigError::NotFound(scope.level(), scope.target().to_string());
        let merchant = match scope {
            ProfileScope::Operator => return Ok(None),
            ProfileScope::Merchant(m) => self.store().merchant(m).await?.map(|m| m.id),
            ProfileScope::Site(s) => self.store().site(s).await?.map(|s| s.merchant_id),
            ProfileScope::Device(d) => self.store().device(d).await?.map(|d| d.merchant_id),
        }
        .ok_or_else(not_found)?;
        if !principal.sees(&merchant, None) {
            return Err(not_found());
        }
        Ok(Some(merchant))
    }
}

/// The `config` frame for a device's stored state: only for a device that declares `config`,
/// and only while it has a version to acknowledge.
fn config_frame(device: &DeviceRecord, state: &DeviceConfigState) -> Option<CloudMessage> {
    if !device.can(capability::CONFIG) || !state.pending() {
        return None;
    }
    settings_frame(state)
}

/// The `config` frame of a stored state (none before settings were computed).
fn settings_frame(state: &DeviceConfigState) -> Option<CloudMessage> {
    let settings: Settings = serde_json::from_str(state.settings.as_deref()?).ok()?;
    Some(CloudMessage::Config(DeviceConfig {
        version: state.version,
        settings,
    }))
}
