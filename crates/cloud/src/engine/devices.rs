//! Device enrollment and authentication. Secrets are 256 random bits shown once; only their
//! SHA-256 is stored (a slow password hash adds nothing for a secret with that much entropy).

use super::accounts::{entry, AccountsError, Actor};
use super::Engine;
use crate::store::{DeviceRecord, InsertError, StoreError};
use protocol::DeviceId;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Why enrollment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("device '{0}' is already enrolled")]
    AlreadyEnrolled(DeviceId),
    #[error("no device '{0}' is enrolled")]
    NotEnrolled(DeviceId),
    /// The merchant or site named is not one.
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a `hello` was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown id or wrong secret: deliberately one answer, so ids cannot be probed.
    #[error("authentication failed: unknown device or wrong secret")]
    BadCredentials,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an operator gives to enroll a device.
#[derive(Debug, Clone, Default)]
pub struct NewDevice {
    pub vendor: String,
    pub model: String,
    /// The merchant's id or name; a name no merchant has yet creates that merchant (empty:
    /// the merchant "Unnamed merchant").
    pub merchant: String,
    /// A site of that merchant, by id or name.
    pub site: Option<String>,
}

/// The stored "hash" of a revoked device: not hex, so no secret's SHA-256 ever equals it.
const REVOKED: &str = "revoked";

/// 256 random bits, hex.
fn new_secret() -> String {
    random_hex(32)
}

/// `bytes` random bytes from the operating system's CSPRNG, hex: device secrets, API keys,
/// session and CSRF tokens, the setup link.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The SHA-256 of a high-entropy secret, hex: what the store keeps of device secrets, API keys
/// and session tokens (a slow hash adds nothing at 256 bits).
pub(crate) fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares secrets in time independent of where they differ (`subtle`; unequal lengths are
/// unequal at once, and the length of a hash or token is no secret).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

impl Engine {
    /// Enrolls a device and returns its secret, which is not stored and cannot be shown again.
    pub async fn enroll_device(&self, id: &DeviceId, d: &NewDevice) -> Result<String, EnrollError> {
        self.enroll(id, d, false, &Actor::cli()).await
    }

    /// Like [`Engine::enroll_device`], recording `actor` in the audit log.
    pub async fn enroll_device_as(
        &self,
        id: &DeviceId,
        d: &NewDevice,
        actor: &Actor,
    ) -> Result<String, EnrollError> {
        self.enroll(id, d, false, actor).await
    }

    /// Enrolls a device the virtual terminal page asked for (no operator involved): like
    /// [`Engine::enroll_device`], but marked so that the retention sweep removes it once it is
    /// unused for `virtual_terminal_ttl`.
    pub async fn enroll_virtual_device(
        &self,
        id: &DeviceId,
        d: &NewDevice,
    ) -> Result<String, EnrollError> {
        let actor = Actor {
            name: "virtual-terminal".into(),
            source: None,
        };
        self.enroll(id, d, true, &actor).await
    }

    async fn enroll(
        &self,
        id: &DeviceId,
        d: &NewDevice,
        self_enrolled: bool,
        actor: &Actor,
    ) -> Result<String, EnrollError> {
        let merchant = self.merchant_for_device(&d.merchant, actor).await?;
        let site = match &d.site {
            Some(s) => Some(self.find_site(&merchant.id, s).await?.id),
            None => None,
        };
        // The POS is told the name it was enrolled with, as before merchants existed (empty
        // stays empty); enrolled by merchant id, the merchant's name.
        let merchant_name = if crate::domain::accounts::MerchantId::parse(&d.merchant)
            .is_ok_and(|id| id == merchant.id)
        {
            merchant.name.clone()
        } else {
            d.merchant.trim().to_string()
        };
        let secret = new_secret();
        let record = DeviceRecord {
            id: id.clone(),
            secret_hash: hash_secret(&secret),
            vendor: d.vendor.clone(),
            model: d.model.clone(),
            merchant: merchant_name,
            merchant_id: merchant.id.clone(),
            site_id: site.clone(),
            created_at: self.now(),
            connected_at: None,
            last_seen_at: None,
            self_enrolled,
            capabilities: Vec::new(),
            hardware: None,
        };
        let audit = crate::domain::accounts::AuditEntry {
            merchant_id: Some(merchant.id.clone()),
            detail: serde_json::json!({
                "vendor": d.vendor, "model": d.model, "merchant": merchant.name,
                "site": site.map(|s| s.to_string()), "selfEnrolled": self_enrolled,
            })
            .to_string(),
            ..entry(actor, record.created_at, "device.enrolled", id.as_str())
        };
        match self.store().insert_device(&record, Some(&audit)).await {
            Ok(()) => Ok(secret),
            Err(InsertError::AlreadyExists) => Err(EnrollError::AlreadyEnrolled(id.clone())),
            Err(
                InsertError::DeviceBusy
                | InsertError::DuplicateReference
                | InsertError::Refused(_)
                | InsertError::UnknownOriginal
                | InsertError::OrderRefused(_)
                | InsertError::UnknownOrder,
            ) => Err(EnrollError::AlreadyEnrolled(id.clone())),
            Err(InsertError::Store(e)) => Err(e.into()),
        }
    }

    /// Gives a device a new secret (shown once); the old one stops working at once and a
    /// connection made with it is closed.
    pub async fn rotate_secret(&self, id: &DeviceId, actor: &Actor) -> Result<String, EnrollError> {
        let secret = new_secret();
        let audit = self
            .device_audit(actor, "device.secret_rotated", id)
            .await?;
        if !self
            .store()
            .set_secret_hash(id, &hash_secret(&secret), Some(&audit))
            .await?
        {
            return Err(EnrollError::NotEnrolled(id.clone()));
        }
        self.bus().disconnect(id, "device secret rotated").await;
        Ok(secret)
    }

    /// Revokes a device: no secret opens it any more (the stored hash matches none) and its
    /// connection is closed at once; rotating its secret later brings it back.
    pub async fn revoke(&self, id: &DeviceId, actor: &Actor) -> Result<(), EnrollError> {
        let audit = self.device_audit(actor, "device.revoked", id).await?;
        if !self
            .store()
            .set_secret_hash(id, REVOKED, Some(&audit))
            .await?
        {
            return Err(EnrollError::NotEnrolled(id.clone()));
        }
        self.bus()
            .disconnect(id, "device credentials revoked")
            .await;
        Ok(())
    }

    /// The audit entry of an action on a device, under the device's merchant; written by the
    /// store in the same commit as the change.
    pub(crate) async fn device_audit(
        &self,
        actor: &Actor,
        action: &str,
        id: &DeviceId,
    ) -> Result<crate::domain::accounts::AuditEntry, StoreError> {
        let merchant = self.store().device(id).await?.map(|d| d.merchant_id);
        Ok(crate::domain::accounts::AuditEntry {
            merchant_id: merchant,
            ..entry(actor, self.now(), action, id.as_str())
        })
    }

    /// Checks a device's credentials.
    pub async fn authenticate(
        &self,
        id: &DeviceId,
        secret: &str,
    ) -> Result<DeviceRecord, AuthError> {
        let device = self.store().device(id).await?;
        let presented = hash_secret(secret);
        match device {
            Some(d) if constant_time_eq(d.secret_hash.as_bytes(), presented.as_bytes()) => Ok(d),
            _ => Err(AuthError::BadCredentials),
        }
    }
}

impl Engine {
    /// Stores what the device declared in its `hello` (when it changed), before the device is
    /// served: a POS request on any node then knows what the device can run.
    pub async fn declare_capabilities(
        &self,
        device: &DeviceRecord,
        declared: &[String],
        hardware: Option<&protocol::device::Hardware>,
    ) -> Result<(), crate::store::StoreError> {
        let column = crate::store::capabilities_column(declared);
        if column == device.capabilities.join(" ") && hardware == device.hardware.as_ref() {
            return Ok(());
        }
        let hardware = hardware.and_then(|h| serde_json::to_string(h).ok());
        self.store()
            .set_device_capabilities(&device.id, &column, hardware.as_deref())
            .await
    }

    /// This node now holds the device's connection: the bus routes its frames here and the
    /// store records it (a failure to record is logged: the connection works without it).
    pub async fn device_attached(&self, device: &DeviceId, node: &str) {
        self.bus().device_attached(device).await;
        if let Err(e) = self
            .store()
            .set_device_connection(device, node, true, self.now())
            .await
        {
            tracing::warn!(device = %device, error = %e, "could not record connect");
        }
        self.events_logged().await;
    }

    /// This node no longer holds the device's connection (and no newer one replaced it here):
    /// routing stops, the store records it, and an offer it had not accepted ends now.
    pub async fn device_detached(&self, device: &DeviceId, node: &str) {
        self.bus().device_detached(device).await;
        self.metrics().fleet.forget(device);
        if let Err(e) = self
            .store()
            .set_device_connection(device, node, false, self.now())
            .await
        {
            tracing::warn!(device = %device, error = %e, "could not record disconnect");
        }
        self.events_logged().await;
        if let Err(e) = Box::pin(self.on_device_gone(device)).await {
            tracing::error!(device = %device, error = %e, "could not end offers of a gone device");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        // Two differences that a XOR-fold would cancel out still differ.
        assert!(!constant_time_eq(b"ab", b"ba"));
    }

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(hash_secret("").len(), 64);
        assert_ne!(hash_secret("a"), hash_secret("b"));
    }
}
