//! What the edges read: the POS API's lookups, a register's status, a transaction's timeline,
//! the dashboard's device list and search, readiness. The engine is the only door to the store
//! and the bus; these are its read side.

use super::{Engine, EngineError};
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

impl Engine {
    /// The register's transaction with this POS reference.
    pub async fn transaction_by_reference(
        &self,
        register: &RegisterKey,
        reference: &str,
    ) -> Result<Option<TransactionRecord>, EngineError> {
        Ok(self
            .store()
            .transaction_by_reference(register, reference)
            .await?)
    }

    /// A transaction's timeline, oldest first.
    pub async fn timeline(&self, id: &TransactionId) -> Result<Vec<TimelineEvent>, EngineError> {
        Ok(self.store().events(id).await?)
    }

    /// A register's pairing and its device's state; none if the register is not paired.
    pub async fn register_overview(
        &self,
        key: &RegisterKey,
    ) -> Result<Option<RegisterOverview>, EngineError> {
        let store = self.store();
        let Some(register) = store.register(key).await? else {
            return Ok(None);
        };
        let device = store.device(&register.device_id).await?;
        let active = store.active_transaction(&register.device_id).await?;
        let online = self.bus().is_online(&register.device_id).await;
        Ok(Some(RegisterOverview {
            register,
            device,
            online,
            active,
        }))
    }

    /// Every device, by id, with its registers and state.
    pub async fn device_overviews(&self) -> Result<Vec<DeviceOverview>, EngineError> {
        let store = self.store();
        let devices = store.devices().await?;
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

    /// Transactions matching `q`, newest first (the dashboard's search).
    pub async fn search_transactions(
        &self,
        q: &TransactionQuery,
    ) -> Result<Vec<TransactionRecord>, EngineError> {
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
