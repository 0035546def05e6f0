//! The cluster bus on NATS: a frame for a device goes to whichever node holds its connection.
//!
//! A node subscribes to `eftcloud.device.<id>` while it holds that device's connection; a
//! request to that subject reaches it, and NATS answers "no responders" when no node holds the
//! device — which is exactly "offline everywhere". Completions are announced on
//! `eftcloud.completed` so that a long-poll or a synchronous POST waiting on another node
//! wakes at once. NATS only carries messages: every state change is in the store first, so a
//! lost message is repaired from it (offers are re-sent on reconnect; waiters re-read).

use super::connections::Connections;
use super::{Announcements, Bus, Undeliverable};
use async_nats::client::RequestErrorKind;
use async_trait::async_trait;
use axum::body::Bytes;
use futures_util::StreamExt;
use protocol::device::{close, CloudMessage};
use protocol::{DeviceId, TerminalStatus, TransactionId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Subject of completion announcements.
const COMPLETED_SUBJECT: &str = "eftcloud.completed";
/// Where nodes announce that update campaigns moved.
const UPDATES_SUBJECT: &str = "eftcloud.updates";
/// Events were logged on a node (other than by a completion): its payload is empty.
const EVENTS_SUBJECT: &str = "eftcloud.events";
/// How long a request to another node may take before the device counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

fn device_subject(device: &DeviceId) -> String {
    format!("eftcloud.device.{device}")
}

/// What one node asks the node holding a device.
// Built, serialised and dropped at once: boxing the large variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    /// Queue this frame on the device's connection.
    Deliver { msg: CloudMessage },
    /// Is the device connected (any answer means yes)?
    Probe,
    /// What state did the device last report?
    Status,
    /// The device connected to another node: close the connection held here (the newer one
    /// wins across nodes as on one node; the old one is usually half-open).
    Takeover { node: String },
    /// The device's credentials were revoked: close its connection.
    Disconnect,
}

/// The holder's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
enum Reply {
    Ok,
    /// The connection went away (a subscription outlived it for a moment).
    Gone,
    Status {
        status: Option<TerminalStatus>,
    },
}

/// Why the bus could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to NATS at {url}: {reason}")]
pub struct NatsError {
    url: String,
    reason: String,
}

/// The NATS bus of one node.
pub struct NatsBus {
    client: async_nats::Client,
    /// This node's name (unique in the cluster).
    node: String,
    connections: Arc<Connections>,
    /// One forwarding task per device held here, aborted when the device leaves.
    subscriptions: Mutex<HashMap<DeviceId, JoinHandle<()>>>,
}

impl NatsBus {
    /// Connects to NATS.
    pub async fn connect(
        url: &str,
        node: &str,
        connections: Arc<Connections>,
    ) -> Result<Self, NatsError> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("eftcloud {node}"))
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| NatsError {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            client,
            node: node.to_string(),
            connections,
            subscriptions: Mutex::new(HashMap::new()),
        })
    }

    fn subscriptions(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, JoinHandle<()>>> {
        // Single map operations only: a poisoned lock leaves it consistent.
        self.subscriptions.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn ask(&self, device: &DeviceId, request: &Request) -> Result<Reply, Undeliverable> {
        let payload = serde_json::to_vec(request).map_err(|_| Undeliverable(device.clone()))?;
        match self
            .client
            .request(device_subject(device), Bytes::from(payload))
            .await
        {
            Ok(msg) => {
                serde_json::from_slice(&msg.payload).map_err(|_| Undeliverable(device.clone()))
            }
            Err(e) => {
                if e.kind() != RequestErrorKind::NoResponders {
                    tracing::warn!(device = %device, error = %e, "bus request failed");
                }
                Err(Undeliverable(device.clone()))
            }
        }
    }

    /// Hands every completion any node announces to `to` (the engine wakes its waiters),
    /// until shutdown.
    pub async fn run_completions(
        self: Arc<Self>,
        to: Arc<dyn Announcements>,
        shutdown: CancellationToken,
    ) {
        let mut sub = match self.client.subscribe(COMPLETED_SUBJECT).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot subscribe to completions; waiters fall back to their timeouts");
                return;
            }
        };
        // Without it, campaign loops still look again on their tick.
        let mut updates = match self.client.subscribe(UPDATES_SUBJECT).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to update announcements; campaigns move on their tick");
                None
            }
        };
        // Without it, event readers and webhook dispatchers look again every second.
        let mut events = match self.client.subscribe(EVENTS_SUBJECT).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to event announcements; readers look again every second");
                None
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = async {
                    match updates.as_mut() {
                        Some(s) => s.next().await,
                        None => std::future::pending().await,
                    }
                } => to.updates_elsewhere(),
                Some(_) = async {
                    match events.as_mut() {
                        Some(s) => s.next().await,
                        None => std::future::pending().await,
                    }
                } => to.events_elsewhere(),
                msg = sub.next() => match msg {
                    Some(msg) => {
                        if let Ok(id) = std::str::from_utf8(&msg.payload).unwrap_or_default().parse::<TransactionId>() {
                            to.completed_elsewhere(id);
                        }
                    }
                    None => break,
                },
            }
        }
        // Forwarding tasks die with the node.
        for (_, task) in self.subscriptions().drain() {
            task.abort();
        }
    }
}

/// Answers requests for one device held by this node.
async fn serve_device(
    mut sub: async_nats::Subscriber,
    client: async_nats::Client,
    device: DeviceId,
    connections: Arc<Connections>,
    node: String,
) {
    while let Some(msg) = sub.next().await {
        let Some(reply_to) = msg.reply.clone() else {
            continue;
        };
        let reply = match serde_json::from_slice::<Request>(&msg.payload) {
            Ok(Request::Deliver { msg }) => match connections.send(&device, msg) {
                Ok(()) => Reply::Ok,
                Err(_) => Reply::Gone,
            },
            Ok(Request::Probe) if connections.is_connected(&device) => Reply::Ok,
            Ok(Request::Probe) => Reply::Gone,
            Ok(Request::Status) => Reply::Status {
                status: connections.status(&device),
            },
            // A takeover announced by this very node is its own new connection.
            Ok(Request::Takeover { node: other }) if other != node => {
                connections.close(
                    &device,
                    close::REPLACED,
                    "the device connected to another node",
                );
                continue;
            }
            Ok(Request::Takeover { .. }) => continue,
            Ok(Request::Disconnect) => {
                connections.close(&device, close::AUTH_FAILED, "device credentials revoked");
                continue;
            }
            Err(e) => {
                tracing::warn!(device = %device, error = %e, "unreadable bus request");
                continue;
            }
        };
        if let Ok(payload) = serde_json::to_vec(&reply) {
            let _ = client.publish(reply_to, Bytes::from(payload)).await;
        }
    }
}

#[async_trait]
impl Bus for NatsBus {
    fn health(&self) -> Result<(), String> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            state => Err(format!("NATS connection {state}")),
        }
    }

    async fn deliver(&self, device: &DeviceId, msg: CloudMessage) -> Result<(), Undeliverable> {
        // Held here: no network hop.
        if self.connections.is_connected(device) {
            return self.connections.send(device, msg);
        }
        match self.ask(device, &Request::Deliver { msg }).await? {
            Reply::Ok => Ok(()),
            Reply::Gone | Reply::Status { .. } => Err(Undeliverable(device.clone())),
        }
    }

    async fn is_online(&self, device: &DeviceId) -> bool {
        if self.connections.is_connected(device) {
            return true;
        }
        matches!(self.ask(device, &Request::Probe).await, Ok(Reply::Ok))
    }

    async fn reported_status(&self, device: &DeviceId) -> Option<TerminalStatus> {
        if self.connections.is_connected(device) {
            return self.connections.status(device);
        }
        match self.ask(device, &Request::Status).await {
            Ok(Reply::Status { status }) => status,
            _ => None,
        }
    }

    async fn device_attached(&self, device: &DeviceId) {
        // Another node may still hold an older connection of this device: it closes it.
        let takeover = Request::Takeover {
            node: self.node.clone(),
        };
        if let Ok(payload) = serde_json::to_vec(&takeover) {
            let _ = self
                .client
                .publish(device_subject(device), Bytes::from(payload))
                .await;
        }
        let sub = match self.client.subscribe(device_subject(device)).await {
            Ok(s) => s,
            Err(e) => {
                // The device still works through this node for what arrives here; other nodes
                // will see it as offline until it reconnects.
                tracing::error!(device = %device, error = %e, "cannot subscribe for a device");
                return;
            }
        };
        // Make sure the server has the subscription before other nodes may look for it.
        let _ = self.client.flush().await;
        let task = tokio::spawn(serve_device(
            sub,
            self.client.clone(),
            device.clone(),
            self.connections.clone(),
            self.node.clone(),
        ));
        if let Some(old) = self.subscriptions().insert(device.clone(), task) {
            old.abort();
        }
    }

    async fn device_detached(&self, device: &DeviceId) {
        if let Some(task) = self.subscriptions().remove(device) {
            // Dropping the subscriber (with the task) unsubscribes.
            task.abort();
        }
    }

    async fn disconnect(&self, device: &DeviceId, reason: &'static str) {
        self.connections.close(device, close::AUTH_FAILED, reason);
        if let Ok(payload) = serde_json::to_vec(&Request::Disconnect) {
            let _ = self
                .client
                .publish(device_subject(device), Bytes::from(payload))
                .await;
        }
    }

    async fn announce_updates(&self) {
        if let Err(e) = self.client.publish(UPDATES_SUBJECT, Bytes::new()).await {
            tracing::debug!(error = %e, "could not announce an update campaign's move");
        }
    }

    async fn announce_events(&self) {
        if let Err(e) = self.client.publish(EVENTS_SUBJECT, Bytes::new()).await {
            tracing::debug!(error = %e, "could not announce logged events");
        }
    }

    async fn announce_completed(&self, id: TransactionId) {
        if let Err(e) = self
            .client
            .publish(COMPLETED_SUBJECT, Bytes::from(id.to_string()))
            .await
        {
            tracing::warn!(transaction = %id, error = %e, "could not announce a completion");
        }
    }
}
