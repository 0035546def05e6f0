//! What the edges read: the POS API's lookups, a register's status, a transaction's timeline,
//! the dashboard's device list and search, readiness. The engine is the only door to the store
//! and the bus; these are its read side. Each read of merchants' data takes the principal
//! asking and returns only what it may see ([`Principal::sees`]): another merchant's devices,
//! registers and transactions are not there for it.

use super::{Engine, EngineError};
use crate::domain::accounts::Principal;
use crate::domain::timeline::TimelineEvent;
use crate::domain::{DeviceRecord, RegisterRecord, TransactionRecord};
use crate::store::StoreError;

pub use crate::store::TransactionQuery;
use protocol::{DeviceId, RegisterKey, TransactionId};

/// A device as the operator sees it: the record, its registers, whether it is connected and
/// what it is running.
#[derive(Debug, Clone)]
pub struct DeviceOverview {
    pub device: DeviceRecord,
    pub registers: Vec<RegisterRecord>,
    pub online: bool,
    pub active: Option<TransactionRecord>,
}

/// A register as its POS sees it: its pairing and its device's state.
#[derive(Debug, Clone)]
pub struct RegisterOverview {
    pub register: RegisterRecord,
    pub device: Option<DeviceRecord>,
    pub online: bool,
    pub active: Option<TransactionRecord>,
}

/// Whether `principal` sees the transaction: its merchant's, or its register's vendor's.
pub(super) fn sees(principal: &Principal, t: &TransactionRecord) -> bool {
    principal.sees(&t.merchant_id, Some(&t.register.key.vendor_name))
}

impl Engine {
    /// The register's transaction with this POS reference, if `principal` sees it.
    pub async fn transaction_by_reference(
        &self,
        principal: &Principal,
        register: &RegisterKey,
        reference: &str,
    ) -> Result<Option<TransactionRecord>, EngineError> {
        Ok(self
            .store()
            .transaction_by_reference(register, reference)
            .await?
            .filter(|t| sees(principal, t)))
    }

    /// One transaction, if `principal` sees it.
    pub async fn transaction_as(
        &self,
        principal: &Principal,
        id: &TransactionId,
    ) -> Result<Option<TransactionRecord>, EngineError> {
        Ok(self.transaction(id).await?.filter(|t| sees(principal, t)))
    }

    /// A transaction's timeline, oldest first.
    pub async fn timeline(&self, id: &TransactionId) -> Result<Vec<TimelineEvent>, EngineError> {
        Ok(self.store().events(id).await?)
    }

    /// A register's pairing and its device's state; none if the register is not paired (or
    /// paired to a device `principal` does not see).
    pub async fn register_overview(
        &self,
        principal: &Principal,
        key: &RegisterKey,
    ) -> Result<Option<RegisterOverview>, EngineError> {
        let store = self.store();
        let Some(register) = store.register(key).await? else {
            return Ok(None);
        };
        let device = store.device(&register.device_id).await?;
        if !device
            .as_ref()
            .is_some_and(|d| principal.sees(&d.merchant_id, Some(&key.vendor_name)))
        {
            return Ok(None);
        }
        let active = store.active_transaction(&register.device_id).await?;
        let online = self.bus().is_online(&register.device_id).await;
        Ok(Some(RegisterOverview {
            register,
            device,
            online,
            active,
        }))
    }

    /// Every device `principal` sees, by id, with its registers and state.
    pub async fn device_overviews(
        &self,
        principal: &Principal,
    ) -> Result<Vec<DeviceOverview>, EngineError> {
        let store = self.store();
        let mut devices = store.devices().await?;
        devices.retain(|d| principal.merchant().is_none_or(|m| *m == d.merchant_id));
        let mut out = Vec::with_capacity(devices.len());
        for device in devices {
            let registers = store.registers_of(&device.id).await?;
            let active = store.active_transaction(&device.id).await?;
            let online = self.bus().is_online(&device.id).await;
            out.push(DeviceOverview {
                device,
                registers,
                online,
                active,
            });
        }
        Ok(out)
    }

    /// One device with its registers, connection and running transaction, if `principal`
    /// sees it (another merchant's device does not exist for its key).
    pub async fn device_overview(
        &self,
        principal: &Principal,
        id: &DeviceId,
    ) -> Result<Option<DeviceOverview>, EngineError> {
        let store = self.store();
        let Some(device) = store
            .device(id)
            .await?
            .filter(|d| principal.merchant().is_none_or(|m| *m == d.merchant_id))
        else {
            return Ok(None);
        };
        Ok(Some(DeviceOverview {
            registers: store.registers_of(&device.id).await?,
            active: store.active_transaction(&device.id).await?,
            online: self.bus().is_online(&device.id).await,
            device,
        }))
    }

    /// Transactions matching `q` that `principal` sees, newest first (the dashboard's search).
    pub async fn search_transactions(
        &self,
        principal: &Principal,
        q: &TransactionQuery,
    ) -> Result<Vec<TransactionRecord>, EngineError> {
        let confined;
        let q = match principal.merchant() {
            Some(m) => {
                confined = TransactionQuery {
                    merchant: Some(m.clone()),
                    ..q.clone()
                };
                &confined
            }
            None => q,
        };
        Ok(self.store().query_transactions(q).await?)
    }

    /// The registers paired with a device.
    pub async fn registers_of(
        &self,
        device: &DeviceId,
    ) -> Result<Vec<RegisterRecord>, EngineError> {
        Ok(self.store().registers_of(device).await?)
    }

    /// Whether the store answers and the bus is connected (`/readyz`); `Err` says which is not.
    pub async fn ready(&self) -> Result<(), Unready> {
        self.bus().health().map_err(Unready::Bus)?;
        self.store().ping().await.map_err(Unready::Store)
    }
}

/// Why the node is not ready.
#[derive(Debug, thiserror::Error)]
pub enum Unready {
    #[error("bus unavailable: {0}")]
    Bus(String),
    #[error("storage unavailable: {0}")]
    Store(StoreError),
}

impl Engine {
    /// Whether some node holds a connection for the device.
    pub async fn is_online(&self, device: &DeviceId) -> bool {
        self.bus().is_online(device).await
    }

    /// One device as enrolled.
    pub async fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, EngineError> {
        Ok(self.store().device(id).await?)
    }

    /// Every device, by id.
    pub async fn devices(&self) -> Result<Vec<DeviceRecord>, EngineError> {
        Ok(self.store().devices().await?)
    }

    /// A paired register.
    pub async fn register(&self, key: &RegisterKey) -> Result<Option<RegisterRecord>, EngineError> {
        Ok(self.store().register(key).await?)
    }
}
