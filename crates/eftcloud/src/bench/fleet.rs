//! A fleet of lightweight simulated devices: one small task each, speaking the device protocol
//! (`hello`, `pong`, `accept`, an immediate `result` after `start`) with no journal and no card
//! backend, so that tens of thousands fit in this process. Sockets are spread over several
//! 127.0.0.x source addresses: each source address has its own ~28,000 ephemeral ports.

use super::stats::Errors;
use futures_util::{SinkExt, StreamExt};
use protocol::device::{close, CloudMessage, DeviceMessage, DeviceResult, Hello, PROTOCOL_VERSION};
use protocol::{Cents, DeviceId, ResultCode, TransactionId, TransactionResult};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use terminal::backoff::Backoff;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Gives up on one connection attempt (TCP + WebSocket handshake) after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A device's id and secret.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub id: DeviceId,
    pub secret: String,
}

/// How the simulated devices behave.
#[derive(Debug, Clone)]
pub struct DeviceBehaviour {
    /// Ask for a pairing code after a `welcome` with no registers.
    pub request_pairing_code: bool,
    /// `progress` frames sent between `start` and `result` (a real terminal sends about three:
    /// present card, enter PIN, processing).
    pub prompts: u32,
}

/// Pairing as one device sees it.
#[derive(Debug, Clone, Default)]
pub struct PairingView {
    pub code: Option<String>,
    pub paired: bool,
}

/// One simulated device, as the workers see it.
pub struct SimDevice {
    pub credentials: Credentials,
    /// The last `transaction` frame received: its id and when it arrived.
    last_offer: Mutex<Option<(TransactionId, Instant)>>,
    pairing: watch::Sender<PairingView>,
}

impl SimDevice {
    /// When the device received the offer of `id`, if it did.
    pub fn offer_received(&self, id: &TransactionId) -> Option<Instant> {
        match *self.last_offer.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((seen, at)) if seen == *id => Some(at),
            _ => None,
        }
    }

    /// Follows the device's pairing state.
    pub fn pairing(&self) -> watch::Receiver<PairingView> {
        self.pairing.subscribe()
    }
}

/// Counters of the whole fleet.
#[derive(Debug, Default)]
pub struct FleetCounters {
    /// Devices holding a welcomed connection right now.
    pub connected: AtomicUsize,
    /// `welcome`s received in all (a reconnect adds one).
    pub welcomes: AtomicU64,
    /// Connections that ended while the fleet was running.
    pub disconnects: AtomicU64,
    /// Connection attempts that failed (refused, timed out, rejected handshake).
    pub connect_failures: AtomicU64,
    /// Devices the cloud refused for good (bad credentials, unsupported protocol): the fleet
    /// can never be whole, so waiting for it ends at once.
    pub refused: AtomicU64,
}

/// A running fleet.
pub struct Fleet {
    pub devices: Vec<Arc<SimDevice>>,
    pub counters: Arc<FleetCounters>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Fleet {
    /// Starts one task per device, device `i` against `servers[i % servers.len()]`
    /// (`/device/v1` on it). At most `parallel_connects` handshakes are in flight at once, as a
    /// fleet powering on would be spread out; later reconnects are paced only by each device's
    /// backoff.
    pub fn start(
        credentials: Vec<Credentials>,
        servers: &[SocketAddr],
        sources: &[Ipv4Addr],
        behaviour: DeviceBehaviour,
        parallel_connects: usize,
        errors: Arc<Errors>,
    ) -> Self {
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let counters = Arc::new(FleetCounters::default());
        let gate = Arc::new(Semaphore::new(parallel_connects.max(1)));
        let mut devices = Vec::with_capacity(credentials.len());
        for (i, credentials) in credentials.into_iter().enumerate() {
            let device = Arc::new(SimDevice {
                credentials,
                last_offer: Mutex::new(None),
                pairing: watch::Sender::new(PairingView::default()),
            });
            devices.push(device.clone());
            let source = sources
                .get(i % sources.len().max(1))
                .copied()
                .unwrap_or(Ipv4Addr::LOCALHOST);
            let Some(&server) = servers.get(i % servers.len().max(1)) else {
                errors.add("device: no server to connect to");
                continue;
            };
            let link = Link {
                url: format!("ws://{server}{}", protocol::device::PATH),
                server,
                source,
            };
            tasks.spawn(run_device(
                device,
                link,
                behaviour.clone(),
                counters.clone(),
                errors.clone(),
                gate.clone(),
                stop.clone(),
            ));
        }
        tasks.close();
        Self {
            devices,
            counters,
            stop,
            tasks,
        }
    }

    /// Devices connected right now.
    pub fn connected(&self) -> usize {
        self.counters.connected.load(Ordering::Relaxed)
    }

    /// Waits until `n` devices are connected; false if `timeout` passed first.
    pub async fn wait_connected(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, || self.connected() >= n).await
    }

    /// Waits until the fleet has received `n` welcomes in all.
    pub async fn wait_welcomes(&self, n: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, || {
            self.counters.welcomes.load(Ordering::Relaxed) >= n
        })
        .await
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done() {
            if Instant::now() >= deadline || self.counters.refused.load(Ordering::Relaxed) > 0 {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Closes every connection and waits for the tasks to end.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.tasks.wait()).await;
    }
}

/// Where a device connects, and from which source address.
struct Link {
    url: String,
    server: SocketAddr,
    source: Ipv4Addr,
}

type Socket = WebSocketStream<TcpStream>;

async fn connect(link: &Link) -> anyhow::Result<Socket> {
    let socket = TcpSocket::new_v4()?;
    // Binding the source address first is what lifts the ~28k loopback connection ceiling:
    // the ephemeral port range is per source address.
    socket.bind(SocketAddr::new(link.source.into(), 0))?;
    let stream = socket.connect(link.server).await?;
    stream.set_nodelay(true)?;
    // Device frames are small; the 128 KiB defaults would cost this process gigabytes for a
    // large fleet. Writes go out at once (each send flushes anyway).
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(link.url.as_str(), stream, Some(config))
            .await?;
    Ok(ws)
}

async fn run_device(
    device: Arc<SimDevice>,
    link: Link,
    behaviour: DeviceBehaviour,
    counters: Arc<FleetCounters>,
    errors: Arc<Errors>,
    gate: Arc<Semaphore>,
    stop: CancellationToken,
) {
    // The reference agent's reconnect policy: 200 ms doubling to 10 s, with jitter.
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut first = true;
    while !stop.is_cancelled() {
        let attempt = async {
            // Only the first connection of each device waits for the gate.
            let _permit = if first {
                gate.acquire().await.ok()
            } else {
                None
            };
            tokio::time::timeout(CONNECT_TIMEOUT, connect(&link)).await
        };
        let ws = tokio::select! {
            _ = stop.cancelled() => return,
            r = attempt => r,
        };
        first = false;
        match ws {
            Ok(Ok(mut ws)) => {
                let welcomed =
                    session(&mut ws, &device, &behaviour, &counters, &errors, &stop).await;
                if welcomed {
                    backoff.reset();
                    counters.connected.fetch_sub(1, Ordering::Relaxed);
                    if !stop.is_cancelled() {
                        counters.disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            _ => {
                counters.connect_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Close codes that retrying cannot change: the credentials are wrong (or revoked), or the
/// cloud does not speak this protocol version.
const DEFINITE_REFUSALS: [u16; 2] = [close::AUTH_FAILED, close::UNSUPPORTED_VERSION];

/// One connection: `hello`, then answer the cloud until the connection ends or the fleet
/// stops. Returns whether a `welcome` arrived (and so `connected` was counted up).
async fn session(
    ws: &mut Socket,
    device: &SimDevice,
    behaviour: &DeviceBehaviour,
    counters: &FleetCounters,
    errors: &Errors,
    stop: &CancellationToken,
) -> bool {
    let hello = DeviceMessage::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        device_id: device.credentials.id.clone(),
        secret: device.credentials.secret.clone(),
        vendor: "eftcloud-bench".into(),
        model: "sim".into(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        unacknowledged: Vec::new(),
        in_progress: None,
        capabilities: Vec::new(),
        hardware: None,
        config_version: None,
    });
    let mut welcomed = false;
    if send(ws, &hello).await.is_err() {
        return welcomed;
    }
    // The offer being run: its id and amount.
    let mut current: Option<(TransactionId, Option<Cents>)> = None;
    let mut terminal_ref: u64 = 0;
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => {
                let _ = ws.close(None).await;
                return welcomed;
            }
            f = ws.next() => f,
        };
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(Some(c))))
                if !welcomed && DEFINITE_REFUSALS.contains(&u16::from(c.code)) =>
            {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                errors.add(format!(
                    "device {} refused: {} ({})",
                    device.credentials.id,
                    c.reason,
                    u16::from(c.code)
                ));
                return welcomed;
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return welcomed,
            Some(Ok(_)) => continue,
        };
        let Ok(msg) = serde_json::from_str::<CloudMessage>(text.as_str()) else {
            errors.add("device: unparsable cloud frame");
            continue;
        };
        let reply = match msg {
            CloudMessage::Welcome { registers, .. } => {
                if !welcomed {
                    welcomed = true;
                    counters.connected.fetch_add(1, Ordering::Relaxed);
                    counters.welcomes.fetch_add(1, Ordering::Relaxed);
                }
                let paired = !registers.is_empty();
                device.pairing.send_modify(|v| v.paired = paired);
                (!paired && behaviour.request_pairing_code)
                    .then_some(DeviceMessage::PairingCodeRequest)
            }
            CloudMessage::PairingCode { code, .. } => {
                device
                    .pairing
                    .send_modify(|v| v.code = Some(code.as_str().to_string()));
                None
            }
            CloudMessage::Paired { .. } => {
                device.pairing.send_modify(|v| v.paired = true);
                None
            }
            // A benchmark device has no customer screen, and declares neither `config` nor `update`.
            CloudMessage::Display(_) | CloudMessage::Config(_) | CloudMessage::Update(_) => None,
            CloudMessage::Transaction(offer) => {
                let id = offer.transaction_id;
                *device.last_offer.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((id, Instant::now()));
                current = Some((id, offer.request.amount_total));
                Some(DeviceMessage::Accept { transaction_id: id })
            }
            CloudMessage::Start { transaction_id } => {
                for (prompt, text) in PROMPTS.iter().cycle().take(behaviour.prompts as usize) {
                    let p = DeviceMessage::Progress {
                        transaction_id,
                        prompt: (*prompt).into(),
                        text: (*text).into(),
                    };
                    if send(ws, &p).await.is_err() {
                        return welcomed;
                    }
                }
                terminal_ref += 1;
                let amount = match current {
                    Some((id, amount)) if id == transaction_id => amount,
                    _ => None,
                };
                Some(DeviceMessage::Result(approved(
                    transaction_id,
                    amount,
                    &device.credentials.id,
                    terminal_ref,
                )))
            }
            CloudMessage::Abort { reason, .. } => {
                errors.add(format!("device: abort ({reason})"));
                None
            }
            CloudMessage::Error { .. } => {
                errors.add("device: error frame");
                None
            }
            CloudMessage::Ping { nonce } => Some(DeviceMessage::Pong { nonce }),
            CloudMessage::Cancel { .. }
            | CloudMessage::ResultAck { .. }
            | CloudMessage::Unpaired { .. } => None,
        };
        if let Some(reply) = reply {
            if send(ws, &reply).await.is_err() {
                return welcomed;
            }
        }
    }
}

const PROMPTS: [(&str, &str); 3] = [
    (protocol::device::prompt::PRESENT_CARD, "Present card"),
    (protocol::device::prompt::ENTER_PIN, "Enter PIN"),
    (protocol::device::prompt::PROCESSING, "Processing"),
];

async fn send(ws: &mut Socket, msg: &DeviceMessage) -> Result<(), ()> {
    let text = serde_json::to_string(msg).map_err(|_| ())?;
    ws.send(Message::Text(text.into())).await.map_err(|_| ())
}

/// An approval with the fields a real terminal reports (about 700 bytes on the wire).
fn approved(
    id: TransactionId,
    amount: Option<Cents>,
    device: &DeviceId,
    terminal_ref: u64,
) -> DeviceResult {
    let cents = amount.map(|a| a.get()).unwrap_or(0);
    let amount = format!("{}.{:02}", cents / 100, cents % 100);
    let now = chrono_free_timestamp();
    let auth_id = format!("{:06}", terminal_ref % 1_000_000);
    let receipt = format!(
        "      EFTCLOUD BENCH\nTERMINAL ID  {device}\n------------------------------\n           PURCHASE\nCARD             VISA ....0138\nACCOUNT                 CREDIT\nPURCHASE         AUD {amount:>9}\nTOTAL            AUD {amount:>9}\nAUTH ID                 {auth_id}\n------------------------------\n           APPROVED"
    );
    let fields: BTreeMap<String, String> = [
        ("AccountType", "CREDIT".to_string()),
        ("AcquirerRef", format!("{terminal_ref:012}")),
        ("AmountSurcharge", "0".into()),
        ("AmountTip", "0".into()),
        ("AmountTotal", cents.to_string()),
        ("AuthId", auth_id),
        ("CardPan", "....0138".into()),
        ("CardType", "VISA".into()),
        ("Receipt", receipt),
        ("TerminalRef", format!("{:06}", terminal_ref % 1_000_000)),
        ("Timestamp", now),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    DeviceResult {
        transaction_id: id,
        transaction_result: Some(TransactionResult::Accepted),
        result: ResultCode::Ok,
        result_text: "APPROVED".into(),
        fields,
        receipts: None,
        settlement: None,
    }
}

/// Seconds since the epoch as a fixed-width string (the content does not matter to the
/// cloud; the size does).
fn chrono_free_timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs:014}")
}
