//! One device connection: authenticate with `hello`, then relay frames between the socket and
//! the engine until either side goes away. The task owns the socket; nothing else writes to it.

use super::retries::{self, Full, Kept, Retries};
use super::Gateway;
use crate::bus::connections::Outbound;
use crate::engine::devices::AuthError;
use crate::engine::transactions::Applied;
use crate::engine::EngineError;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
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
    gw.engine.device_attached(&device, &gw.settings.node).await;
    tracing::info!(device = %device, vendor = %hello.vendor, model = %hello.model, "device connected");
    // Boxed, like the handlers below: the task of an idle connection then holds only the
    // state it waits in (~4 KiB less per device than with everything inlined).
    let closing = Box::pin(serve(&mut socket, &gw, hello, outbound, conn_id)).await;
    tracing::info!(device = %device, code = closing.code, reason = %closing.reason, "device disconnected");
    close_socket(&mut socket, closing).await;
    if gw.connections.detach(&device, conn_id) {
        Box::pin(gw.engine.device_detached(&device, &gw.settings.node)).await;
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
    match gw
        .engine
        .authenticate(&hello.device_id, &hello.secret)
        .await
    {
        Ok(_) => Ok(hello),
        // Not the device's fault: it must not take this as a rejection of its credentials.
        Err(AuthError::Store(e)) => Err(Closing::new(
            close::TRY_AGAIN_LATER,
            format!("cloud storage unavailable, reconnect later: {e}"),
        )),
        Err(e) => Err(Closing::new(close::AUTH_FAILED, e.to_string())),
    }
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
    let registers = match engine.registers_of(&device).await {
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
    let mut retries = Retries::default();
    for result in hello.unacknowledged {
        let msg = DeviceMessage::Result(result);
        if let Err(c) = take_frame(socket, gw, &device, conn_id, msg, &mut retries).await {
            return c;
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
                if let Err(c) = take_frame(socket, gw, &device, conn_id, msg, &mut retries).await {
                    return c;
                }
            }
            _ = until(retries.due()) => {
                let Some(msg) = retries.take() else { continue };
                match Box::pin(handle(gw, &device, conn_id, msg.clone())).await {
                    Handled::Done(reply) => {
                        retries.applied(Instant::now());
                        tracing::info!(device = %device, waiting = retries.len(), "device frame applied after a storage outage");
                        if let Some(reply) = reply {
                            if send(socket, &reply).await.is_err() {
                                return Closing::new(close::GOING_AWAY, "send failed");
                            }
                        }
                    }
                    Handled::Retry(_) => retries.failed_again(msg, Instant::now()),
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

/// Handles a frame, or keeps it for later while earlier ones wait for the store (so frames
/// are applied in the order they came). `Err` closes the connection.
async fn take_frame(
    socket: &mut WebSocket,
    gw: &Gateway,
    device: &DeviceId,
    conn_id: u64,
    msg: DeviceMessage,
    retries: &mut Retries,
) -> Result<(), Closing> {
    let state_changing = retries::changes_state(&msg);
    if state_changing && !retries.is_empty() {
        return keep(socket, device, retries, msg, None).await;
    }
    // Kept only if the store refuses it; a frame that changes nothing is never retried.
    let copy = state_changing.then(|| msg.clone());
    // Boxed: the handler's state (an engine step) would otherwise be part of every idle
    // connection's task, ~4 KiB each.
    match Box::pin(handle(gw, device, conn_id, msg)).await {
        Handled::Done(reply) => {
            if let Some(reply) = reply {
                send(socket, &reply)
                    .await
                    .map_err(|()| Closing::new(close::GOING_AWAY, "send failed"))?;
            }
            Ok(())
        }
        Handled::Retry(why) => match copy {
            Some(msg) => keep(socket, device, retries, msg, Some(why)).await,
            None => Ok(()),
        },
    }
}

/// Keeps a frame the store could not take; tells the device once why its answer is late.
async fn keep(
    socket: &mut WebSocket,
    device: &DeviceId,
    retries: &mut Retries,
    msg: DeviceMessage,
    why: Option<String>,
) -> Result<(), Closing> {
    match retries.push(msg, Instant::now()) {
        Ok(Kept::New) => {
            tracing::debug!(device = %device, waiting = retries.len(), "device frame kept until the store recovers");
            if let Some(why) = why {
                let note = CloudMessage::Error {
                    message: format!(
                        "cloud storage unavailable ({why}): the cloud keeps this frame and \
                         applies it when storage recovers; its answer follows then"
                    ),
                };
                send(socket, &note)
                    .await
                    .map_err(|()| Closing::new(close::GOING_AWAY, "send failed"))?;
            }
            Ok(())
        }
        Ok(Kept::Merged) => Ok(()),
        // The device's journal keeps its results; they come back in the next hello.
        Err(Full) => Err(Closing::new(
            close::TRY_AGAIN_LATER,
            "cloud storage unavailable, reconnect later",
        )),
    }
}

/// Sleeps until `at`; forever when there is nothing to wait for.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What handling one device frame came to.
// Built and consumed at once, never stored: boxing the reply would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Handled {
    /// Applied, or refused for good; the direct reply, if any.
    Done(Option<CloudMessage>),
    /// The store could not take it now (unavailable, or a write kept losing a race): the
    /// frame is to be applied again later.
    Retry(String),
}

/// Whether an engine failure passes: the same frame applied later may succeed.
fn passes(e: &EngineError) -> bool {
    match e {
        EngineError::Store(e) => e.is_unavailable(),
        EngineError::Contended(_) => true,
        EngineError::DuplicateReference => false,
    }
}

/// Handles one frame from an authenticated device.
async fn handle(gw: &Gateway, device: &DeviceId, conn_id: u64, msg: DeviceMessage) -> Handled {
    let engine = &gw.engine;
    let outcome: Result<Option<CloudMessage>, EngineError> = match msg {
        DeviceMessage::Hello(_) => Ok(Some(CloudMessage::Error {
            message: "already authenticated: hello is only the first frame".into(),
        })),
        DeviceMessage::PairingCodeRequest => {
            // Answered, not closed: the connection (and any transaction on it) stays up, and
            // the last code stays valid until it expires.
            let now = std::time::Instant::now();
            if let Err(refused) = gw.pairing_code_guard.begin(Some(device.clone()), now) {
                return Handled::Done(Some(CloudMessage::Error {
                    message: format!(
                        "too many pairing code requests: the last code stays valid until it expires; ask again in {} s",
                        refused.retry_after_secs()
                    ),
                }));
            }
            engine.issue_pairing_code(device).await.map(|(code, ttl)| {
                Some(CloudMessage::PairingCode {
                    code,
                    expires_in_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
                })
            })
        }
        DeviceMessage::Unpair { register } => engine
            .unpair(device, register.as_ref())
            .await
            .map(|registers| Some(CloudMessage::Unpaired { registers })),
        DeviceMessage::Accept { transaction_id } => {
            match engine.on_accept(device, &transaction_id).await {
                // The engine already sent start/abort through the bus.
                Ok(Applied::Done { .. }) => Ok(None),
                // Never let a device run something the cloud does not know.
                Ok(Applied::Unknown) => Ok(Some(CloudMessage::Abort {
                    transaction_id,
                    reason: "unknown transaction".into(),
                })),
                Err(e) => Err(e),
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
        }
        DeviceMessage::Result(result) => {
            let id = result.transaction_id;
            match engine.on_result(device, result).await {
                Ok(Applied::Done { .. }) => Ok(None),
                // Not acknowledged: the device keeps the result in its journal, nothing is lost.
                Ok(Applied::Unknown) => Ok(Some(CloudMessage::Error {
                    message: format!("unknown transaction {id}: result kept unacknowledged"),
                })),
                Err(e) => Err(e),
            }
        }
        DeviceMessage::Status { status } => {
            tracing::info!(device = %device, status = %status, "device status");
            gw.connections.set_status(device, conn_id, status);
            Ok(None)
        }
        DeviceMessage::Pong { .. } => Ok(None),
    };
    match outcome {
        Ok(reply) => Handled::Done(reply),
        // Logged once per outage by the store's health, not per frame.
        Err(e) if passes(&e) => Handled::Retry(e.to_string()),
        Err(e) => {
            tracing::error!(device = %device, error = %e, "could not handle device frame");
            Handled::Done(Some(CloudMessage::Error {
                message: format!("cloud error: {e}"),
            }))
        }
    }
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
