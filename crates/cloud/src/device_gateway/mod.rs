//! The device gateway: the WebSocket endpoint `/device/v1`, one task per connected device.

pub mod connection;
pub mod connections;
pub mod retries;

use crate::engine::Engine;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::response::Response;
use connections::Connections;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Timing rules of device connections.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// How often the cloud pings; a device silent for three intervals is disconnected.
    pub heartbeat_interval: Duration,
    /// How long a new connection has to send `hello`.
    pub hello_timeout: Duration,
    /// This node's name, recorded with the devices it holds.
    pub node: String,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            node: "local".into(),
        }
    }
}

/// What every connection task shares.
#[derive(Clone)]
pub struct Gateway {
    pub engine: Engine,
    pub connections: Arc<Connections>,
    pub settings: GatewaySettings,
    /// Cancelled on shutdown: each connection closes with "going away".
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them.
    pub tasks: TaskTracker,
}

/// `GET /device/v1`: upgrades to a WebSocket and hands it to its own task.
pub async fn upgrade(State(gateway): State<Gateway>, ws: WebSocketUpgrade) -> Response {
    let max = protocol::device::MAX_FRAME_BYTES;
    // Device frames are small: a 4 KiB read buffer (it grows for a larger frame, up to `max`)
    // instead of tungstenite's 128 KiB default, which made an idle connection cost ~146 KiB of
    // server memory (`eftcloud bench load --idle-devices`; ~15 KiB with this). Each send is
    // flushed at once anyway, so no write buffering either.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| {
            let tasks = gateway.tasks.clone();
            tasks.track_future(connection::run(socket, gateway))
        })
}
