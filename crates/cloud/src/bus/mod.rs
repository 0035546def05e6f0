//! How a message for a device reaches the node that holds the device's connection.
//!
//! On one node that is a lookup in this process's connection table ([`LocalBus`]); across
//! nodes a NATS implementation of the same trait publishes to the device's subject. The bus
//! only carries messages: the store stays the source of truth, so a lost message is repaired
//! from it (offers are re-sent when a device reconnects, deadlines are rows).

pub mod connections;
mod local;
pub mod nats;

pub use local::LocalBus;
pub use nats::NatsBus;

use async_trait::async_trait;
use protocol::device::CloudMessage;
use protocol::{DeviceId, TerminalStatus, TransactionId};

/// The device is not connected anywhere, or its connection cannot take more frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device {0} is not reachable")]
pub struct Undeliverable(pub DeviceId);

/// Where a cluster bus hands what other nodes announce: the engine implements it, so the bus
/// needs nothing of the engine.
pub trait Announcements: Send + Sync + 'static {
    /// Another node completed `id`: wake the waiters for it on this node.
    fn completed_elsewhere(&self, id: TransactionId);
    /// A campaign or a device's update moved on another node: look at the campaigns again.
    fn updates_elsewhere(&self) {}
    /// Another node logged events: wake this node's event readers and webhook dispatcher.
    fn events_elsewhere(&self) {}
}

/// Routes frames to devices.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Hands a frame to the device's connection, wherever it is held.
    async fn deliver(&self, device: &DeviceId, msg: CloudMessage) -> Result<(), Undeliverable>;
    /// Whether some node holds a connection for the device.
    async fn is_online(&self, device: &DeviceId) -> bool;
    /// The state the device last reported (`status` frame), where the bus knows it.
    async fn reported_status(&self, _device: &DeviceId) -> Option<TerminalStatus> {
        None
    }
    /// This node now holds the device's connection (a cluster bus starts routing to it).
    async fn device_attached(&self, _device: &DeviceId) {}
    /// This node no longer holds the device's connection.
    async fn device_detached(&self, _device: &DeviceId) {}
    /// A transaction completed here: wake waiters on other nodes.
    async fn announce_completed(&self, _id: TransactionId) {}
    /// A campaign or a device's update moved here: wake the campaign loops of other nodes (the
    /// next wave's devices may be connected there).
    async fn announce_updates(&self) {}
    /// Events were logged here (besides a completion, which `announce_completed` stands for):
    /// wake event readers and webhook dispatchers on other nodes.
    async fn announce_events(&self) {}
    /// Whether this node is the only one: every device frame arrives here, so what the engine
    /// keeps in memory about a device is complete (true for the single-node bus).
    fn single_node(&self) -> bool {
        false
    }
    /// Whether the bus can carry frames to other nodes now; `Err` says why not (for `/readyz`).
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
    /// Closes the device's connection wherever it is held (its credentials were revoked).
    async fn disconnect(&self, device: &DeviceId, reason: &'static str);
}
