//! One device connection: authenticate with `hello`, then relay frames between the socket and
//! the engine until either side goes away. The task owns the socket; nothing else writes to it.
//!
//! The socket is anything that is a stream and a sink of WebSocket messages ([`FrameSocket`]):
//! axum's `WebSocket` in the cloud, channels in this module's tests, which drive a connection
//! without a network (hello checks, heartbeats on paused time, frames kept during an outage).

use super::config_hold::ConfigHold;
use super::retries::{self, Full, Kept, Retries};
use super::Gateway;
use crate::bus::connections::Outbound;
use crate::engine::devices::AuthError;
use crate::engine::transactions::Applied;
use crate::engine::EngineError;
use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
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

/// What a connection reads frames from and writes frames to.
pub trait FrameSocket:
    Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin + Send
{
}

impl<T> FrameSocket for T where
    T: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Unpin
        + Send
{
}

/// Runs one connection to the end.
pub async fn run<S: FrameSocket>(mut socket: S, gw: Gateway, source: Option<IpAddr>) {
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

async fn read_hello<S: FrameSocket>(socket: &mut S, gw: &Gateway) -> Result<Hello, Closing> {
    let frame = tokio::time::timeout(gw.settings.hello_timeout, socket.next())
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
        Ok(record) => match gw
            .engine
            .declare_capabilities(&record, &hello.capabilities, hello.hardware.as_ref())
            .await
        {
            Ok(()) => Ok(hello),
            Err(e) => Err(Closing::new(
                close::TRY_AGAIN_LATER,
                format!("cloud storage unavailable, reconnect later: {e}"),
            )),
        },
        // Not the device's fault: it must not take this as a rejection of its credentials.
        Err(AuthError::Store(e)) => Err(Closing::new(
            close::TRY_AGAIN_LATER,
            format!("cloud storage unavailable, reconnect later: {e}"),
        )),
        Err(e) => Err(Closing::new(close::AUTH_FAILED, e.to_string())),
    }
}

async fn serve<S: FrameSocket>(
    socket: &mut S,
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
        accepts: vec![protocol::device::accepts::HEALTH.to_string()],
    };
    if send(socket, &welcome).await.is_err() {
        return Closing::new(close::GOING_AWAY, "send failed");
    }
    // Settings wait while the device runs a transaction, the one it says it runs included.
    let mut hold = ConfigHold::new(hello.in_progress);
    // Results journaled while the device was away, then offers it may have missed.
    let mut retries = Retries::default();
    for result in hello.unacknowledged {
        let msg = DeviceMessage::Result(result);
        if let Err(c) = take_frame(socket, gw, &device, conn_id, msg, &mut retries, &mut hold).await
        {
            return c;
        }
    }
    if let Err(e) = Box::pin(engine.on_device_connected(&device, hello.in_progress)).await {
        tracing::error!(device = %device, error = %e, "could not re-offer pending transaction");
    }
    // What the customer's screen should show, in case a display was set while it was away.
    let displays = hello
        .capabilities
        .iter()
        .any(|c| c == protocol::device::capability::DISPLAY);
    if displays {
        match engine.display_frame(&device).await {
            Ok(Some(display)) => {
                if send(socket, &CloudMessage::Display(display)).await.is_err() {
                    return Closing::new(close::GOING_AWAY, "send failed");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(device = %device, error = %e, "could not read the display"),
        }
    }
    // Its settings, if they changed while it was away (or it never acknowledged them, or it
    // runs others).
    match Box::pin(engine.config_on_connect(&device, hello.config_version)).await {
        Ok(Some(frame)) => {
            if send_held(socket, &mut hold, frame).await.is_err() {
                return Closing::new(close::GOING_AWAY, "send failed");
            }
        }
        Ok(None) => {}
        // Sent on the next change or connection; the device runs its last settings meanwhile.
        Err(e) => {
            tracing::warn!(device = %device, error = %e, "could not compute the device's configuration")
        }
    }
    // Update offers it was made and has not finished (lost with a connection, or made on
    // another node).
    let updates = hello
        .capabilities
        .iter()
        .any(|c| c == protocol::device::capability::UPDATE);
    if updates {
        match Box::pin(engine.update_offers_on_connect(&device, &hello.agent_version)).await {
            Ok(frames) => {
                for frame in frames {
                    if send_held(socket, &mut hold, frame).await.is_err() {
                        return Closing::new(close::GOING_AWAY, "send failed");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(device = %device, error = %e, "could not read the device's update offers")
            }
        }
    }

    let mut last_heard = Instant::now();
    let mut ticker = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    let mut nonce: u64 = 0;
    loop {
        tokio::select! {
            frame = socket.next() => {
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
                if let Err(c) = take_frame(socket, gw, &device, conn_id, msg, &mut retries, &mut hold).await {
                    return c;
                }
            }
            _ = until(retries.due()) => {
                let Some(msg) = retries.take() else { continue };
                match Box::pin(handle(gw, &device, conn_id, msg.clone())).await {
                    Handled::Done(replies) => {
                        retries.applied(Instant::now());
                        tracing::info!(device = %device, waiting = retries.len(), "device frame applied after a storage outage");
                        for reply in replies {
                            if send_held(socket, &mut hold, reply).await.is_err() {
                                return Closing::new(close::GOING_AWAY, "send failed");
                            }
                        }
                    }
                    Handled::Retry(_) => retries.failed_again(msg, Instant::now()),
                }
            }
            out = outbound.recv() => match out {
                Some(Outbound::Message(m)) => {
                    if send_held(socket, &mut hold, *m).await.is_err() {
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
async fn take_frame<S: FrameSocket>(
    socket: &mut S,
    gw: &Gateway,
    device: &DeviceId,
    conn_id: u64,
    msg: DeviceMessage,
    retries: &mut Retries,
    hold: &mut ConfigHold,
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
        Handled::Done(replies) => {
            for reply in replies {
                send_held(socket, hold, reply)
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
async fn keep<S: FrameSocket>(
    socket: &mut S,
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

/// Sends a frame through the connection's [`ConfigHold`]: a `config` frame may wait, and a
/// frame that ends the device's transaction may release one.
async fn send_held<S: FrameSocket>(
    socket: &mut S,
    hold: &mut ConfigHold,
    msg: CloudMessage,
) -> Result<(), ()> {
    let (now, released) = hold.outbound(msg);
    for m in now.iter().chain(released.iter()) {
        send(socket, m).await?;
    }
    Ok(())
}

/// Sleeps until `at`; forever when there is nothing to wait for.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What handling one device frame came to.
enum Handled {
    /// Applied, or refused for good; the direct replies, in order.
    Done(Vec<CloudMessage>),
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
    let outcome: Result<Vec<CloudMessage>, EngineError> = match msg {
        DeviceMessage::Hello(_) => Ok(vec![CloudMessage::Error {
            message: "already authenticated: hello is only the first frame".into(),
        }]),
        DeviceMessage::PairingCodeRequest => {
            // Answered, not closed: the connection (and any transaction on it) stays up, and
            // the last code stays valid until it expires.
            let now = std::time::Instant::now();
            if let Err(refused) = gw.pairing_code_guard.begin(Some(device.clone()), now) {
                return Handled::Done(vec![CloudMessage::Error {
                    message: format!(
                        "too many pairing code requests: the last code stays valid until it expires; ask again in {} s",
                        refused.retry_after_secs()
                    ),
                }]);
            }
            engine.issue_pairing_code(device).await.map(|(code, ttl)| {
                vec![CloudMessage::PairingCode {
                    code,
                    expires_in_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
                }]
            })
        }
        DeviceMessage::Unpair { register } => engine
            .unpair(
                device,
                register.as_ref(),
                &crate::engine::accounts::Actor {
                    name: format!("device:{device}"),
                    source: None,
                },
            )
            .await
            .map(|registers| vec![CloudMessage::Unpaired { registers }]),
        DeviceMessage::Accept { transaction_id } => {
            match engine.on_accept(device, &transaction_id).await {
                // `start`, or `abort` for an accept too late.
                Ok(Applied::Done { replies, .. }) => Ok(replies),
                // Never let a device run something the cloud does not know.
                Ok(Applied::Unknown) => Ok(vec![CloudMessage::Abort {
                    transaction_id,
                    reason: "unknown transaction".into(),
                }]),
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
                .map(|()| Vec::new())
        }
        DeviceMessage::Result(result) => {
            let id = result.transaction_id;
            match engine.on_result(device, result).await {
                // `result_ack`, or `error` for a result that cannot be stored as it is.
                Ok(Applied::Done { replies, .. }) => Ok(replies),
                // Not acknowledged: the device keeps the result in its journal, nothing is lost.
                Ok(Applied::Unknown) => Ok(vec![CloudMessage::Error {
                    message: format!("unknown transaction {id}: result kept unacknowledged"),
                }]),
                Err(e) => Err(e),
            }
        }
        DeviceMessage::Status { status } => {
            tracing::info!(device = %device, status = %status, "device status");
            gw.connections.set_status(device, conn_id, status);
            Ok(Vec::new())
        }
        DeviceMessage::Pong { .. } => Ok(Vec::new()),
        DeviceMessage::UpdateStatus {
            campaign_id,
            version,
            step,
            reason,
        } => engine
            .on_update_status(device, &campaign_id, &version, step, reason)
            .await
            .map(|()| Vec::new()),
        DeviceMessage::ConfigAck { version } => engine
            .on_config_ack(device, version)
            .await
            .map(|()| Vec::new()),
        DeviceMessage::Health(health) => match engine.on_health(device, health).await {
            Ok(Ok(())) => Ok(Vec::new()),
            // Not closed: the device keeps working, its figures are what need fixing.
            Ok(Err(bad)) => Ok(vec![CloudMessage::Error {
                message: bad.to_string(),
            }]),
            Err(e) => Err(e),
        },
    };
    match outcome {
        Ok(reply) => Handled::Done(reply),
        // Logged once per outage by the store's health, not per frame.
        Err(e) if passes(&e) => Handled::Retry(e.to_string()),
        Err(e) => {
            tracing::error!(device = %device, error = %e, "could not handle device frame");
            Handled::Done(vec![CloudMessage::Error {
                message: format!("cloud error: {e}"),
            }])
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

async fn send<S: FrameSocket>(socket: &mut S, msg: &CloudMessage) -> Result<(), ()> {
    let text = serde_json::to_string(msg).map_err(|_| ())?;
    tokio::time::timeout(
        Duration::from_secs(10),
        socket.send(Message::Text(text.into())),
    )
    .await
    .map_err(|_| ())?
    .map_err(|_| ())
}

async fn close_socket<S: FrameSocket>(socket: &mut S, c: Closing) {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    //! A connection driven through channels: the real engine on a real SQLite file, no
    //! network. Timing tests use short configured intervals (paused tokio time would jump
    //! ahead while the SQLite threads answer) and assert lower bounds only.

    use super::*;
    use crate::bus::connections::Connections;
    use crate::bus::LocalBus;
    use crate::device_gateway::GatewaySettings;
    use crate::engine::devices::NewDevice;
    use crate::engine::{Engine, EngineSettings};
    use crate::store::{SqliteStore, StoreFaults};
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;
    use tokio_util::sync::PollSender;
    use tokio_util::task::TaskTracker;

    /// The cloud's end of a test connection: frames from the test in, frames to it out.
    struct Duplex {
        incoming: mpsc::Receiver<Result<Message, axum::Error>>,
        outgoing: PollSender<Message>,
    }

    impl Stream for Duplex {
        type Item = Result<Message, axum::Error>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.incoming.poll_recv(cx)
        }
    }

    impl Sink<Message> for Duplex {
        type Error = axum::Error;
        fn poll_ready(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.outgoing)
                .poll_ready(cx)
                .map_err(axum::Error::new)
        }
        fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            Pin::new(&mut self.outgoing)
                .start_send(item)
                .map_err(axum::Error::new)
        }
        fn poll_flush(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.outgoing)
                .poll_flush(cx)
                .map_err(axum::Error::new)
        }
        fn poll_close(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.outgoing)
                .poll_close(cx)
                .map_err(axum::Error::new)
        }
    }

    /// The test's end: what a device sends and receives.
    struct Device {
        to_cloud: mpsc::Sender<Result<Message, axum::Error>>,
        from_cloud: mpsc::Receiver<Message>,
    }

    impl Device {
        async fn send(&mut self, m: &DeviceMessage) {
            let text = serde_json::to_string(m).unwrap();
            self.to_cloud
                .send(Ok(Message::Text(text.into())))
                .await
                .unwrap();
        }

        async fn recv(&mut self) -> Message {
            tokio::time::timeout(Duration::from_secs(30), self.from_cloud.recv())
                .await
                .expect("a frame in time")
                .expect("the connection is open")
        }

        async fn frame(&mut self) -> CloudMessage {
            match self.recv().await {
                Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
                other => panic!("expected a frame, got {other:?}"),
            }
        }

        async fn closed(&mut self) -> (u16, String) {
            match self.recv().await {
                Message::Close(Some(f)) => (f.code, f.reason.to_string()),
                other => panic!("expected a close, got {other:?}"),
            }
        }
    }

    struct Rig {
        gw: Gateway,
        faults: Arc<StoreFaults>,
        secret: String,
        _dir: tempfile::TempDir,
    }

    async fn rig(settings: GatewaySettings) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let faults = Arc::new(StoreFaults::default());
        let store = Arc::new(
            SqliteStore::open_with_faults(&url, faults.clone())
                .await
                .unwrap(),
        );
        let connections = Arc::new(Connections::default());
        let bus = Arc::new(LocalBus::new(connections.clone()));
        let engine = Engine::new(store, bus, EngineSettings::default());
        let secret = engine
            .enroll_device(&DeviceId::parse("dev-1").unwrap(), &NewDevice::default())
            .await
            .unwrap();
        let gw = Gateway::new(
            engine,
            connections,
            settings,
            false,
            CancellationToken::new(),
            TaskTracker::new(),
        );
        Rig {
            gw,
            faults,
            secret,
            _dir: dir,
        }
    }

    fn connect(rig: &Rig) -> (Device, tokio::task::JoinHandle<()>) {
        let (to_cloud, incoming) = mpsc::channel(16);
        let (outgoing, from_cloud) = mpsc::channel(16);
        let task = tokio::spawn(run(
            Duplex {
                incoming,
                outgoing: PollSender::new(outgoing),
            },
            rig.gw.clone(),
            Some(IpAddr::from([192, 0, 2, 1])),
        ));
        (
            Device {
                to_cloud,
                from_cloud,
            },
            task,
        )
    }

    fn hello(secret: &str) -> DeviceMessage {
        DeviceMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            device_id: DeviceId::parse("dev-1").unwrap(),
            secret: secret.into(),
            vendor: String::new(),
            model: String::new(),
            agent_version: String::new(),
            unacknowledged: Vec::new(),
            in_progress: None,
            capabilities: Vec::new(),
            hardware: None,
            config_version: None,
        })
    }

    #[tokio::test]
    async fn a_wrong_secret_is_closed_with_its_code_and_reason() {
        let rig = rig(GatewaySettings::default()).await;
        let (mut d, task) = connect(&rig);
        d.send(&hello("not-the-secret")).await;
        let (code, reason) = d.closed().await;
        assert_eq!(code, close::AUTH_FAILED);
        assert!(reason.contains("authentication failed"), "{reason}");
        task.await.unwrap();
    }

    #[tokio::test]
    async fn the_first_frame_must_be_hello() {
        let rig = rig(GatewaySettings::default()).await;
        let (mut d, task) = connect(&rig);
        d.send(&DeviceMessage::PairingCodeRequest).await;
        assert_eq!(d.closed().await.0, close::HELLO_REQUIRED);
        task.await.unwrap();
    }

    fn quick() -> GatewaySettings {
        GatewaySettings {
            heartbeat_interval: Duration::from_millis(40),
            hello_timeout: Duration::from_millis(40),
            ..GatewaySettings::default()
        }
    }

    #[tokio::test]
    async fn no_hello_in_time_is_closed() {
        let rig = rig(quick()).await;
        let (mut d, task) = connect(&rig);
        let begun = Instant::now();
        let (code, reason) = d.closed().await;
        assert!(begun.elapsed() >= quick().hello_timeout);
        assert_eq!(code, close::HELLO_REQUIRED);
        assert_eq!(reason, "no hello received in time");
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_silent_device_is_pinged_then_dropped_after_three_heartbeats() {
        let rig = rig(quick()).await;
        let (mut d, task) = connect(&rig);
        d.send(&hello(&rig.secret)).await;
        assert!(matches!(d.frame().await, CloudMessage::Welcome { .. }));
        let begun = Instant::now();
        let mut pings = 0;
        let (code, _) = loop {
            match d.recv().await {
                Message::Text(t) => {
                    let m: CloudMessage = serde_json::from_str(t.as_str()).unwrap();
                    assert!(matches!(m, CloudMessage::Ping { .. }), "{m:?}");
                    pings += 1;
                }
                Message::Close(Some(f)) => break (f.code, f.reason.to_string()),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(code, close::HEARTBEAT_TIMEOUT);
        // Pinged at each heartbeat until the device has been silent for three of them.
        assert!(pings >= 2, "{pings}");
        let waited = begun.elapsed();
        assert!(waited > quick().heartbeat_interval * 3, "{waited:?}");
        task.await.unwrap();
    }

    #[tokio::test]
    async fn an_answered_ping_keeps_the_connection() {
        let rig = rig(quick()).await;
        let (mut d, task) = connect(&rig);
        d.send(&hello(&rig.secret)).await;
        assert!(matches!(d.frame().await, CloudMessage::Welcome { .. }));
        // Six heartbeats, twice the silence that drops a connection.
        for _ in 0..6 {
            let CloudMessage::Ping { nonce } = d.frame().await else {
                panic!("expected a ping")
            };
            d.send(&DeviceMessage::Pong { nonce }).await;
        }
        rig.gw.shutdown.cancel();
        let (code, reason) = d.closed().await;
        assert_eq!(
            (code, reason.as_str()),
            (close::GOING_AWAY, "server shutting down")
        );
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_pairing_request_refused_by_the_store_is_answered_once_it_recovers() {
        let rig = rig(GatewaySettings::default()).await;
        let (mut d, task) = connect(&rig);
        d.send(&hello(&rig.secret)).await;
        assert!(matches!(d.frame().await, CloudMessage::Welcome { .. }));
        rig.faults.fail_commits();
        d.send(&DeviceMessage::PairingCodeRequest).await;
        let CloudMessage::Error { message } = d.frame().await else {
            panic!("expected the note")
        };
        assert!(
            message.starts_with("cloud storage unavailable"),
            "{message}"
        );
        rig.faults.heal();
        assert!(matches!(d.frame().await, CloudMessage::PairingCode { .. }));
        drop(d);
        task.await.unwrap();
    }
}
