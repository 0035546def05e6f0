//! The device gateway: the WebSocket endpoint `/device/v1`, one task per connected device.

pub mod artifacts;
pub mod config_hold;
pub mod connection;
pub mod retries;

use crate::bus::connections::Connections;
use crate::engine::Engine;
use crate::pos_api::pairing_guard::{ClientAddr, ForwardedFor, PairingGuard, PairingGuardSettings};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::response::Response;
use protocol::DeviceId;
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
    /// Refused handshakes (wrong secret, bad or missing `hello`) allowed per source address;
    /// past it the source's connections are closed at once with 4029 until the window ends.
    pub hello_failures: PairingGuardSettings,
    /// `pairing_code_request`s allowed per device; past it the device gets an `error` frame.
    pub pairing_code_requests: PairingGuardSettings,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        let minute = Duration::from_secs(60);
        Self {
            heartbeat_interval: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            node: "local".into(),
            // Generous: the terminals of a shop share one address, and a misconfigured one
            // retries every 10 s at most (the reference agent's backoff). No global budget:
            // it would let anyone stop every device from reconnecting.
            hello_failures: PairingGuardSettings {
                failures_per_source: 20,
                failures_global: 0,
                window: minute,
                trust_forwarded_for: false,
            },
            // A device asks once per code lifetime (2 min by default), a person clicking
            // "new code" a few times more.
            pairing_code_requests: PairingGuardSettings {
                failures_per_source: 5,
                failures_global: 0,
                window: minute,
                trust_forwarded_for: false,
            },
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
    /// Refused handshakes per source address.
    pub hello_guard: Arc<PairingGuard>,
    /// `pairing_code_request`s per device.
    pub pairing_code_guard: Arc<PairingGuard<DeviceId>>,
    /// Whether a connection's source is the last `X-Forwarded-For` entry of its upgrade request.
    pub trust_forwarded_for: bool,
}

impl Gateway {
    /// The gateway's shared state, its guards built from `settings`.
    pub fn new(
        engine: Engine,
        connections: Arc<Connections>,
        settings: GatewaySettings,
        trust_forwarded_for: bool,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        Self {
            hello_guard: Arc::new(PairingGuard::named(
                "device hello",
                settings.hello_failures.clone(),
            )),
            pairing_code_guard: Arc::new(PairingGuard::named(
                "pairing code request",
                settings.pairing_code_requests.clone(),
            )),
            engine,
            connections,
            settings,
            shutdown,
            tasks,
            trust_forwarded_for,
        }
    }
}

impl ForwardedFor for Gateway {
    fn trust_forwarded_for(&self) -> bool {
        self.trust_forwarded_for
    }
}

/// `GET /device/v1`: upgrades to a WebSocket and hands it to its own task.
pub async fn upgrade(
    State(gateway): State<Gateway>,
    ClientAddr(source): ClientAddr,
    ws: WebSocketUpgrade,
) -> Response {
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
            tasks.track_future(connection::run(socket, gateway, source))
        })
}
