//! One device connection: authenticate with `hello`, then relay frames between the socket and
//! the engine until either side goes away. The task owns the socket; nothing else writes to it.

use super::connections::Outbound;
use super::Gateway;
use crate::engine::transactions::Applied;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use chrono::Utc;
use protocol::device::{close, CloudMessage, DeviceMessage, Hello, PROTOCOL_VERSION};
use protocol::DeviceId;
use std::net::IpAddr;
use std::time::Duration;
use tokio::time::Instant;

/// Why the connection ended, as a close code and a reason for the device's log.
struct Closing {
    code: u16,
    reason: String,
}

impl Closing {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// Runs one connection to the end.
pub async fn run(mut socket: WebSocket, gw: Gateway, source: Option<IpAddr>) {
    // Only refused handshakes count, so a fleet reconnecting at once from one address is never
    // held back; past the budget the source is refused before its hello is even read.
    if let Some(refused) = gw
        .hello_guard
        .refusal(source.as_ref(), std::time::Instant::now())
    {
        let c = Closing::new(
            close::TOO_MANY_ATTEMPTS,
            format!(
                "too many refused hellos from this address; retry in {} s",
                refused.retry_after_secs()
            ),
        );
        tracing::debug!(source = ?source, code = c.code, "device refused");
        close_socket(&mut socket, c).await;
        return;
    }
    let hello = match Box::pin(read_hello(&mut socket, &gw)).await {
        Ok(h) => h,
        Err(c) => {
            // One line per source and window at info, the rest at debug (the guard warns when
            // the budget is spent): a flood of bad hellos does not flood the log.
            match gw.hello_guard.failed(source, std::time::Instant::now()) {
                Ok(1) => tracing::info!(
                    source = ?source, code = c.code, reason = %c.reason,
                    "device refused (further refusals from this source this minute at debug)"
                ),
                _ => {
                    tracing::debug!(source = ?source, code = c.code, reason = %c.reason, "device refused")
                }
            }
            close_socket(&mut socket, c).await;
            return;
        }
    };
    let device = hello.device_id.clone();
    let (conn_id, outbound) = gw.connections.attach(&device);
    gw.engine.bus().device_attached(&device).await;
    tracing::info!(device = %device, vendor = %hello.vendor, model = %hello.model, "device connected");
    // Boxed, like the handlers below: the task of an idle connection then holds only the
    // state it waits in (~4 KiB less per device than with everything inlined).
    let closing = Box::pin(serve(&mut socket, &gw, hello, outbound, conn_id)).await;
    tracing::info!(device = %device, code = closing.code, reason = %closing.reason, "device disconnected");
    close_socket(&mut socket, closing).await;
    if gw.connections.detach(&device, conn_id) {
        gw.engine.bus().device_detached(&device).await;
        if let Err(e) = gw
            .engine
            .store()
            .set_device_connection(&device, &gw.settings.node, false, Utc::now())
            .await
        {
            tracing::warn!(device = %device, error = %e, "could not record disconnect");
        }
        if let Err(e) = Box::pin(gw.engine.on_device_gone(&device)).await {
            tracing::error!(device = %device, error = %e, "could not end offers of a gone device");
        }
    }
}

async fn read_hello(socket: &mut WebSocket, gw: &Gateway) -> Result<Hello, Closing> {
    let frame = tokio::time::timeout(gw.settings.hello_timeout, socket.recv())
        .await
        .map_err(|_| Closing::new(close::HELLO_REQUIRED, "no hello received in time"))?;
    let text = match frame {
        Some(Ok(Message::Text(t))) => t,
        Some(Ok(_)) => {
            return Err(Closing::new(
                close::HELLO_REQUIRED,
                "first frame must be a JSON hello",
            ))
        }
        // An oversized hello is closed like any oversized frame (4009); other transport errors
        // before hello are protocol errors.
        Some(Err(e)) => {
            let c = receive_error(e);
            return Err(if c.code == close::FRAME_TOO_LARGE {
                c
            } else {
                Closing::new(close::PROTOCOL_ERROR, c.reason)
            });
        }
        None => return Err(Closing::new(close::GOING_AWAY, "closed before hello")),
    };
    let hello = match serde_json::from_str::<DeviceMessage>(text.as_str()) {
        Ok(DeviceMessage::Hello(h)) => h,
        Ok(_) => {
            return Err(Closing::new(
                close::HELLO_REQUIRED,
                "first frame must be hello",
            ))
        }
        Err(e) => {
            return Err(Closing::new(
                close::HELLO_REQUIRED,
                format!("invalid hello: {e}"),
            ))
        }
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(Closing::new(
            close::UNSUPPORTED_VERSION,
            format!(
                "protocol version {} not supported (this cloud speaks {PROTOCOL_VERSION})",
                hello.protocol_version
            ),
        ));
    }
    gw.engine
        .authenticate(&hello.device_id, &hello.secret)
        .await
        .map_err(|e| Closing::new(close::AUTH_FAILED, e.to_string()))?;
    Ok(hello)
}

async fn serve(
    socket: &mut WebSocket,
    gw: &Gateway,
    hello: Hello,
    mut outbound: tokio::sync::mpsc::Receiver<Outbound>,
    conn_id: u64,
) -> Closing {
    let device = hello.device_id.clone();
    let engine = &gw.engine;
    let store = engine.store();
    if let Err(e) = store
        .set_device_connection(&device, &gw.settings.node, true, Utc::now())
        .await
    {
        tracing::warn!(device = %device, error = %e, "could not record connect");
    }
    let registers = match store.registers_of(&device).await {
        Ok(r) => r.into_iter().map(|r| r.info).collect(),
        Err(e) => {
            return Closing::new(close::GOING_AWAY, format!("cloud storage unavailable: {e}"))
        }
    };
    let heartbeat = gw.settings.heartbeat_interval;
    let welcome = CloudMessage::Welcome {
        device_id: device.clone(),
        registers,
        heartbeat_ms: u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX),
    };
    if send(socket, &welcome).await.is_err() {
        return Closing::new(close::GOING_AWAY, "send failed");
    }
    // Results journaled while the device was away, then offers it may have missed.
    for result in hello.unacknowledged {
        if let Some(reply) =
            Box::pin(handle(gw, &device, conn_id, DeviceMessage::Result(result))).await
        {
            if send(socket, &reply).await.is_err() {
                return Closing::new(close::GOING_AWAY, "send failed");
            }
        }
    }
    if let Err(e) = Box::pin(engine.on_device_connected(&device, hello.in_progress)).await {
        tracing::error!(device = %device, error = %e, "could not re-offer pending transaction");
    }

    let mut last_heard = Instant::now();
    let mut ticker = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    let mut nonce: u64 = 0;
    loop {
        tokio::select! {
            frame = socket.recv() => {
                last_heard = Instant::now();
                let msg = match frame {
                    None => return Closing::new(close::GOING_AWAY, "device closed the connection"),
                    Some(Err(e)) => return receive_error(e),
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<DeviceMessage>(t.as_str()) {
                        Ok(m) => m,
                        Err(e) => return Closing::new(close::PROTOCOL_ERROR, format!("invalid frame: {e}")),
                    },
                    Some(Ok(Message::Close(_))) => return Closing::new(close::GOING_AWAY, "device closed the connection"),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Binary(_))) => return Closing::new(close::PROTOCOL_ERROR, "binary frames are not part of the protocol"),
                };
                // Boxed: the handler's state (an engine step) would otherwise be part of every idle
                // connection's task, ~4 KiB each.
                if let Some(reply) = Box::pin(handle(gw, &device, conn_id, msg)).await {
                    if send(socket, &reply).await.is_err() {
                        return Closing::new(close::GOING_AWAY, "send failed");
                    }
                }
            }
            out = outbound.recv() => match out {
                Some(Outbound::Message(m)) => {
                    if send(socket, &m).await.is_err() {
                        return Closing::new(close::GOING_AWAY, "send failed");
                    }
                }
                Some(Outbound::Close { code, reason }) => return Closing::new(code, reason),
                None => return Closing::new(close::REPLACED, "replaced by a newer connection for this device"),
            },
            _ = ticker.tick() => {
                if last_heard.elapsed() > heartbeat * 3 {
                    return Closing::new(close::HEARTBEAT_TIMEOUT, "no frame from the device within three heartbeats");
                }
                nonce = nonce.wrapping_add(1);
                if send(socket, &CloudMessage::Ping { nonce }).await.is_err() {
                    return Closing::new(close::GOING_AWAY, "send failed");
                }
            }
            _ = gw.shutdown.cancelled() => return Closing::new(close::GOING_AWAY, "server shutting down"),
        }
    }
}

/// Handles one frame from an authenticated device; returns the direct reply, if any.
async fn handle(
    gw: &Gateway,
    device: &DeviceId,
    conn_id: u64,
    msg: DeviceMessage,
) -> Option<CloudMessage> {
    let engine = &gw.engine;
    let outcome: Result<Option<CloudMessage>, String> = match msg {
        DeviceMessage::Hello(_) => Ok(Some(CloudMessage::Error {
            message: "already authenticated: hello is only the first frame".into(),
        })),
        DeviceMessage::PairingCodeRequest => {
            // Answered, not closed: the connection (and any transaction on it) stays up, and
            // the last code stays valid until it expires.
            let now = std::time::Instant::now();
            if let Err(refused) = gw.pairing_code_guard.begin(Some(device.clone()), now) {
                return Some(CloudMessage::Error {
                    message: format!(
                        "too many pairing code requests: the last code stays valid until it expires; ask again in {} s",
                        refused.retry_after_secs()
                    ),
                });
            }
            match engine.issue_pairing_code(device).await {
                Ok((code, ttl)) => Ok(Some(CloudMessage::PairingCode {
                    code,
                    expires_in_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
                })),
                Err(e) => Err(e.to_string()),
            }
        }
        DeviceMessage::Unpair { register } => {
            match engine.unpair(device, register.as_ref()).await {
                Ok(registers) => Ok(Some(CloudMessage::Unpaired { registers })),
                Err(e) => Err(e.to_string()),
            }
        }
        DeviceMessage::Accept { transaction_id } => {
            match engine.on_accept(device, &transaction_id).await {
                // The engine already sent start/abort through the bus.
                Ok(Applied::Done { .. }) => Ok(None),
                // Never let a device run something the cloud does not know.
                Ok(Applied::Unknown) => Ok(Some(CloudMessage::Abort {
                    transaction_id,
                    reason: "unknown transaction".into(),
                })),
                Err(e) => Err(e.to_string()),
            }
        }
        DeviceMessage::Progress {
            transaction_id,
            prompt,
            text,
        } => {
            let shown = if text.trim().is_empty() { prompt } else { text };
            let shown: String = shown.chars().take(200).collect();
            engine
                .on_progress(device, &transaction_id, &shown)
                .await
                .map(|()| None)
                .map_err(|e| e.to_string())
        }
        DeviceMessage::Result(result) => {
            let id = result.transaction_id;
            match engine.on_result(device, result).await {
                Ok(Applied::Done { .. }) => Ok(None),
                // Not acknowledged: the device keeps the result in its journal, nothing is lost.
                Ok(Applied::Unknown) => Ok(Some(CloudMessage::Error {
                    message: format!("unknown transaction {id}: result kept unacknowledged"),
                })),
                Err(e) => Err(e.to_string()),
            }
        }
        DeviceMessage::Status { status } => {
            tracing::info!(device = %device, status = %status, "device status");
            gw.connections.set_status(device, conn_id, status);
            Ok(None)
        }
        DeviceMessage::Pong { .. } => Ok(None),
    };
    outcome.unwrap_or_else(|e| {
        tracing::error!(device = %device, error = %e, "could not handle device frame");
        Some(CloudMessage::Error {
            message: format!("cloud error, retry later: {e}"),
        })
    })
}

/// Names a receive error. An oversized frame gets its own close code so the device knows not
/// to send it again as is. axum does not expose the error's kind, so its message is matched
/// (tungstenite's wording: "Space limit exceeded: Message too long").
fn receive_error(e: axum::Error) -> Closing {
    let text = e.to_string();
    if text.contains("too long") || text.contains("Space limit") {
        Closing::new(
            close::FRAME_TOO_LARGE,
            format!(
                "frame larger than {} bytes",
                protocol::device::MAX_FRAME_BYTES
            ),
        )
    } else {
        Closing::new(close::GOING_AWAY, format!("receive error: {text}"))
    }
}

async fn send(socket: &mut WebSocket, msg: &CloudMessage) -> Result<(), ()> {
    let text = serde_json::to_string(msg).map_err(|_| ())?;
    tokio::time::timeout(
        Duration::from_secs(10),
        socket.send(Message::Text(text.into())),
    )
    .await
    .map_err(|_| ())?
    .map_err(|_| ())
}

async fn close_socket(socket: &mut WebSocket, c: Closing) {
    // A close reason may be at most 123 bytes; cut on a character boundary.
    let mut reason = c.reason;
    while reason.len() > 123 {
        reason.pop();
    }
    let frame = CloseFrame {
        code: c.code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        socket.send(Message::Close(Some(frame))),
    )
    .await;
}
