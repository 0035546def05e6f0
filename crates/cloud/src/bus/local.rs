//! The single-node bus: frames go straight to this process's connection table.

use super::connections::Connections;
use super::{Bus, Undeliverable};
use async_trait::async_trait;
use protocol::device::CloudMessage;
use protocol::{DeviceId, TerminalStatus};
use std::sync::Arc;

/// Delivers to connections held by this process.
#[derive(Clone)]
pub struct LocalBus {
    connections: Arc<Connections>,
}

impl LocalBus {
    /// A bus over this node's connection table.
    pub fn new(connections: Arc<Connections>) -> Self {
        Self { connections }
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn deliver(&self, device: &DeviceId, msg: CloudMessage) -> Result<(), Undeliverable> {
        self.connections.send(device, msg)
    }

    async fn is_online(&self, device: &DeviceId) -> bool {
        self.connections.is_connected(device)
    }

    async fn reported_status(&self, device: &DeviceId) -> Option<TerminalStatus> {
        self.connections.status(device)
    }

    fn single_node(&self) -> bool {
        true
    }

    async fn disconnect(&self, device: &DeviceId, reason: &'static str) {
        self.connections
            .close(device, protocol::device::close::AUTH_FAILED, reason);
    }
}
