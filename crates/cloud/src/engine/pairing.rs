//! Pairing: the device shows a short-lived single-use code, the POS sends it with the register's
//! identity, and the register is linked to that device (moving it if it was linked elsewhere).

use super::{Engine, EngineError};
use crate::store::{RegisterRecord, StoreError};
use protocol::device::CloudMessage;
use protocol::{DeviceId, PairingCode, RegisterInfo, RegisterKey};
use rand::Rng;
use std::collections::BTreeMap;
use std::time::Duration;

/// Why a pairing request was refused.
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    /// Unknown, used or expired code.
    #[error("{}", protocol::pos_api::INVALID_PAIRING_CODE)]
    InvalidCode,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How many random codes to try before giving up on finding a free one (10^8 codes, a handful
/// in use: a collision is already rare, three in a row means something else is wrong).
const CODE_ATTEMPTS: usize = 8;

impl Engine {
    /// Issues a new code for the device, invalidating its previous one.
    pub async fn issue_pairing_code(
        &self,
        device: &DeviceId,
    ) -> Result<(PairingCode, Duration), EngineError> {
        let ttl = self.settings().pairing_code_ttl;
        let expires_at = self.now() + ttl;
        for _ in 0..CODE_ATTEMPTS {
            let code = PairingCode::from_number(rand::thread_rng().gen_range(0..100_000_000));
            if self
                .store()
                .replace_pairing_code(device, &code, expires_at)
                .await?
            {
                return Ok((code, ttl));
            }
        }
        Err(StoreError::Corrupt("no free pairing code found".into()).into())
    }

    /// Pairs a register using a code (with `merchant`, only a code of that merchant's
    /// devices: a key of one merchant cannot pair to another's). Tells the device (and the previous device, if the register
    /// moved) when they are connected; pairing does not require the device to be online.
    pub async fn pair(
        &self,
        code: &PairingCode,
        register: RegisterInfo,
        contact: BTreeMap<String, String>,
        merchant: Option<&crate::domain::accounts::MerchantId>,
    ) -> Result<DeviceId, PairError> {
        let now = self.now();
        let device = self
            .store()
            .take_pairing_code(code, now, merchant)
            .await?
            .ok_or(PairError::InvalidCode)?;
        let record = RegisterRecord {
            info: register.clone(),
            device_id: device.clone(),
            contact,
            paired_at: now,
        };
        let previous = self.store().pair_register(&record).await?;
        self.events_logged().await;
        if let Some(previous) = previous {
            let _ = self
                .bus()
                .deliver(
                    &previous,
                    CloudMessage::Unpaired {
                        registers: vec![register.key.clone()],
                    },
                )
                .await;
        }
        // Offline devices learn their registers from `welcome` when they connect.
        let _ = self
            .bus()
            .deliver(&device, CloudMessage::Paired { register })
            .await;
        tracing::info!(device = %device, "register paired");
        Ok(device)
    }

    /// Unpairs one register of the device, or all of them (done on the device, or by the
    /// operator); recorded in the audit log when any register went.
    pub async fn unpair(
        &self,
        device: &DeviceId,
        register: Option<&RegisterKey>,
        actor: &super::accounts::Actor,
    ) -> Result<Vec<RegisterKey>, EngineError> {
        let mut audit = self.device_audit(actor, "device.unpaired", device).await?;
        audit.detail = serde_json::json!({
            "register": register.map(|k| k.to_string()).unwrap_or_else(|| "all".into()),
        })
        .to_string();
        let removed = self
            .store()
            .unpair(device, register, Some(&audit), self.now())
            .await?;
        if !removed.is_empty() {
            self.events_logged().await;
        }
        Ok(removed)
    }
}
