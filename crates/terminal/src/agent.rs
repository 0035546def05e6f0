//! The connection loop: connects out to the cloud, authenticates, pairs, and runs transactions
//! through the card backend with the journal as the source of truth.
//!
//! One task owns the socket, the journal and the agent's state; the backend runs in a task of
//! its own (owned by a `JoinSet`) so the socket keeps answering pings and `cancel` while a card
//! is being processed. A running transaction outlives its connection: if the link drops, the
//! backend finishes, the result is journaled, and it is handed over in the next `hello`.

use crate::backend::{BackendOutcome, BackendTransaction, CardBackend, Note, ProgressSink};
use crate::backoff::Backoff;
use crate::config::TerminalConfig;
use crate::display::CustomerScreen;
use crate::error::TerminalError;
use crate::journal::Journal;
use crate::settings::{AppliedSettings, Received};
use crate::update::{self as updater, InstallMarker, Installer, UpdateFailure, VerifiedUpdate};
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use protocol::action::Cart;
use protocol::config::{DeviceConfig, Settings};
use protocol::device::{
    accepts, close, CloudMessage, DeviceMessage, DeviceResult, Hello, TransactionOffer,
    MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use protocol::update::{UpdateOffer, UpdateStep};
use protocol::{
    Cents, Function, PairingCode, RegisterInfo, RegisterKey, ResultCode, TerminalStatus,
    TransactionId, TransactionResult,
};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// How long to wait for the TCP + WebSocket handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for `welcome` after `hello`.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// A send that takes longer than this means the link is dead.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A `welcome` promises a ping every heartbeat; silence for this many intervals means the
/// connection is dead even if TCP has not noticed.
const HEARTBEAT_MISSES: u32 = 3;
/// An accepted transaction the cloud neither started nor aborted within this time no longer
/// blocks new offers (the cloud's accept deadline is far shorter).
const ACCEPT_HOLD: Duration = Duration::from_secs(60);
/// Commands typed while offline, sent after the next `welcome`.
const MAX_QUEUED_COMMANDS: usize = 8;
/// On a graceful shutdown, how long a running transaction gets to end after being cancelled.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Longest heartbeat or code lifetime taken from the cloud (a day): keeps timers sane.
const MAX_TIMER: Duration = Duration::from_secs(24 * 60 * 60);
/// Text of the result journaled for a transaction cut short by a power failure.
pub const REVERSED_TEXT: &str = "Transaction reversed after power failure";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why the agent stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The shutdown token was cancelled.
    Shutdown,
    /// The (simulated) power failed: the agent dropped everything at once; the caller should
    /// end the process without any further clean-up.
    PowerFailure,
}

/// A connection error, with what to do when the cause is plain: a `ws://` URL to a server that
/// speaks TLS gets a TLS alert where an HTTP answer should be, which the HTTP parser reports as
/// "invalid HTTP version".
fn explained(e: &tokio_tungstenite::tungstenite::Error, url: &url::Url) -> String {
    let text = e.to_string();
    if url.scheme() == "ws" && (text.contains("invalid HTTP version") || text.contains("HTTP/0.9"))
    {
        format!("{text} (this server speaks TLS: use https:// or wss:// for --cloud)")
    } else {
        text
    }
}

/// What the agent reports to its user interface.
#[derive(Debug, Clone, PartialEq)]
pub enum TerminalEvent {
    /// Authenticated with the cloud (`welcome`) at `url` (after a failover, the fallback
    /// actually connected to), with the registers paired so far.
    Connected {
        url: String,
        registers: Vec<RegisterInfo>,
    },
    /// Not connected (any more); the agent retries by itself.
    Disconnected { reason: String },
    /// The cloud refused this device (unknown device, wrong secret, unsupported version):
    /// nothing will work until the configuration is fixed; retried at the longest backoff.
    Rejected { code: u16, reason: String },
    /// A new pairing code to show.
    PairingCode {
        code: PairingCode,
        expires_in: Duration,
    },
    /// A register completed pairing.
    Paired { register_name: String },
    /// Registers no longer paired with this device.
    Unpaired { registers: Vec<RegisterKey> },
    /// A transaction was offered (and accepted).
    TransactionReceived {
        transaction_id: TransactionId,
        function: Function,
        amount: Option<Cents>,
        at: Instant,
        /// The payment's basket (from the POS's `SaleData`), to show with it; in the
        /// request's currency when the basket names none.
        cart: Option<Cart>,
    },
    /// The customer's screen changed (`display` frame of a newer version): the cart to show
    /// between payments, or `None` to clear it. Never emitted while a transaction runs: a
    /// display that arrives meanwhile is emitted after its `Completed`.
    Display { version: u64, cart: Option<Cart> },
    /// A prompt is on screen.
    Prompt {
        transaction_id: TransactionId,
        prompt: String,
        text: String,
    },
    /// A slip came out of the printer (`Terminal.Print`), rendered as text.
    Printed {
        transaction_id: TransactionId,
        slip: String,
    },
    /// A result was journaled (and is being reported).
    Completed { result: DeviceResult },
    /// The cloud's configuration of this `version` was applied (and is being acknowledged):
    /// the next transaction runs with `settings`, and the idle screen shows their `idle_text`.
    /// Never emitted while a transaction runs: a `config` that arrives meanwhile is applied
    /// after its `Completed`.
    ConfigApplied { version: u64, settings: Settings },
    /// At start-up, the configuration applied before the agent stopped, which it runs with
    /// until the cloud sends a newer one.
    ConfigRestored { version: u64, settings: Settings },
    /// The cloud stored a result.
    Acknowledged { transaction_id: TransactionId },
    /// A step of a software update, as reported to the cloud (`update_status`): downloading,
    /// verified, installing (the agent restarts into the new version next, when it replaces
    /// itself), installed, failed with a `reason`, or postponed to the next window.
    Update {
        campaign_id: String,
        version: String,
        step: UpdateStep,
        reason: Option<String>,
    },
}

/// What the user interface can ask of the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminalCommand {
    /// Show a new pairing code.
    RequestPairingCode,
    /// Unpair one register, or all of them with `None`.
    Unpair(Option<RegisterKey>),
}

/// Runs the terminal agent until `shutdown` is cancelled or the backend reports a power
/// failure. Fails only if the journal cannot be read or written at startup, or the cloud URL
/// is unusable: every network problem is retried.
pub async fn run(
    config: TerminalConfig,
    backend: Arc<dyn CardBackend>,
    events: mpsc::Sender<TerminalEvent>,
    mut commands: mpsc::Receiver<TerminalCommand>,
    shutdown: CancellationToken,
) -> Result<Exit, TerminalError> {
    let urls = config.device_urls()?;
    let tls = crate::tls::client_config(config.ca_cert.as_deref())?;
    let journal = Journal::open(&config.journal_path)?;
    let settings = AppliedSettings::open(config.settings_path())?;
    // Downloads trust what the WebSocket trusts: the public roots and `--ca-cert`.
    let http = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(updater::READ_TIMEOUT)
        .user_agent(format!("eftcloud-terminal/{}", crate::AGENT_VERSION))
        .build()
        .map_err(|e| TerminalError::InvalidArgument(format!("HTTP client set-up: {e}")))?;
    let marker_path = config.update_marker_path();
    let installed = match updater::read_marker(&marker_path) {
        Ok(marker) => marker,
        Err(e) => {
            // Only a report is lost; the version that runs says the rest in `hello`.
            tracing::warn!(error = %e, "cannot read the record of the last installation; removing it");
            let _ = std::fs::remove_file(&marker_path);
            None
        }
    };
    let (progress_tx, progress_rx) = mpsc::channel(32);
    let mut agent = Agent {
        config,
        backend,
        events,
        journal,
        settings,
        registers: Vec::new(),
        url: String::new(),
        accepted: None,
        running: None,
        tasks: JoinSet::new(),
        progress_tx,
        progress_rx,
        queued: Vec::new(),
        commands_open: true,
        reversals_due: Vec::new(),
        screen: CustomerScreen::default(),
        screen_held: false,
        started: Instant::now(),
        http,
        update: None,
        update_seq: 0,
        downloads: JoinSet::new(),
        installed,
    };
    if let Some(version) = agent.settings.version() {
        tracing::info!(version, path = %agent.settings.path().display(), "running the configuration applied before the restart");
        agent.emit(TerminalEvent::ConfigRestored {
            version,
            settings: agent.settings.settings().clone(),
        });
    }
    // Without a simulated acquirer delay the reversal happens at once; otherwise it waits for
    // the connection (see `Session::reversal_at`).
    if agent.config.reversal_delay.is_zero() {
        agent.reverse_interrupted().await?;
    } else {
        agent.reversals_due = agent
            .journal
            .interrupted()
            .iter()
            .map(|o| o.transaction_id)
            .collect();
    }
    let exit = agent
        .connect_loop(&urls, &tls, &mut commands, &shutdown)
        .await;
    if exit == Exit::Shutdown {
        agent.wind_down().await;
    }
    // Dropping the JoinSet aborts anything still running; after a power failure that is the
    // point (the journal's `Started` entry makes the next start reverse it).
    Ok(exit)
}

/// Stops the current activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Shutdown,
    PowerFailure,
}

impl From<Stop> for Exit {
    fn from(s: Stop) -> Exit {
        match s {
            Stop::Shutdown => Exit::Shutdown,
            Stop::PowerFailure => Exit::PowerFailure,
        }
    }
}

/// How a connection ended.
#[derive(Debug)]
enum SessionEnd {
    Stop(Stop),
    Lost {
        reason: String,
        welcomed: bool,
        /// The cloud refused us; retrying quickly cannot help.
        rejected: bool,
    },
}

/// Per-connection state.
#[derive(Debug, Default)]
struct Session {
    welcomed: bool,
    heartbeat: Option<Duration>,
    pairing_refresh_at: Option<tokio::time::Instant>,
    /// When the outstanding reversal of an interrupted payment completes (the device reports
    /// `REVERSAL_PENDING` until then).
    reversal_at: Option<tokio::time::Instant>,
    /// When the results the cloud has not acknowledged are sent again (a result frame is
    /// "repeated until `result_ack`", also on a connection that stays up).
    resend_at: Option<tokio::time::Instant>,
    /// The wait before the next re-send; doubles each time, back to the minimum on an ack.
    resend_wait: Duration,
    /// When the next health report is due, on a connection to a cloud that accepts them.
    health_at: Option<tokio::time::Instant>,
}

/// The running transaction.
#[derive(Debug)]
struct Running {
    id: TransactionId,
    cancel: CancellationToken,
}

/// The agent's state, owned by its one task.
struct Agent {
    config: TerminalConfig,
    backend: Arc<dyn CardBackend>,
    events: mpsc::Sender<TerminalEvent>,
    journal: Journal,
    /// The cloud's configuration: what runs, and what waits for the transaction in progress.
    settings: AppliedSettings,
    registers: Vec<RegisterInfo>,
    /// The cloud URL of the connection being made or held.
    url: String,
    /// Accepted but not started: nothing journaled yet, because nothing touched a card.
    accepted: Option<(TransactionOffer, Instant)>,
    running: Option<Running>,
    tasks: JoinSet<(TransactionId, BackendOutcome)>,
    progress_tx: mpsc::Sender<(TransactionId, Note)>,
    progress_rx: mpsc::Receiver<(TransactionId, Note)>,
    queued: Vec<DeviceMessage>,
    commands_open: bool,
    /// Payments interrupted by a power failure, to reverse once connected.
    reversals_due: Vec<TransactionId>,
    /// The customer's screen between payments.
    screen: CustomerScreen,
    /// A display arrived while a transaction ran: shown when it ends.
    screen_held: bool,
    /// When the agent started: its uptime where the OS does not say the machine's.
    started: Instant,
    /// Downloads updates.
    http: reqwest::Client,
    /// The update being downloaded, or verified and waiting for the terminal to be idle.
    update: Option<UpdateJob>,
    /// Numbers update jobs, so a download is never taken for a later job's.
    update_seq: u64,
    /// The download of `update` (at most one): aborted when another update replaces it, and
    /// with the agent.
    downloads: JoinSet<(u64, Result<Vec<u8>, UpdateFailure>)>,
    /// An installation recorded before this start, reported after the next `welcome`.
    installed: Option<InstallMarker>,
}

/// An update the agent is working on.
struct UpdateJob {
    seq: u64,
    offer: UpdateOffer,
    /// The end of its window (`install_before`).
    install_before: DateTime<Utc>,
    /// `None` while downloading; the checked file once verified.
    verified: Option<Vec<u8>>,
}

/// Unacknowledged results carried in `hello` (each up to a few KiB with its receipt); more
/// would risk the 64 KiB frame limit, so the rest are sent as `result` frames after `welcome`.
const HELLO_RESULTS: usize = 8;

/// What woke the agent while offline.
enum OfflineWake {
    Progress((TransactionId, Note)),
    Done(Result<(TransactionId, BackendOutcome), JoinError>),
    Command(Option<TerminalCommand>),
    Downloaded(Result<(u64, Result<Vec<u8>, UpdateFailure>), JoinError>),
}

/// What woke the agent while connected.
enum Wake {
    Shutdown,
    Frame(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Progress((TransactionId, Note)),
    Done(Result<(TransactionId, BackendOutcome), JoinError>),
    Command(Option<TerminalCommand>),
    Watchdog,
    RefreshPairing,
    Reversal,
    Resend,
    Health,
    Downloaded(Result<(u64, Result<Vec<u8>, UpdateFailure>), JoinError>),
    /// The window of an update waiting for the terminal to be idle has ended.
    UpdateWindow,
}

impl Agent {
    /// The `health` frame as of now.
    fn health(&self) -> DeviceMessage {
        DeviceMessage::Health(crate::health::measure(&self.config, self.started))
    }

    /// Events go to a user interface, which must never hold up a payment: `try_send`, and a
    /// full channel drops the event (with a log line) instead of blocking the agent.
    fn emit(&self, event: TerminalEvent) {
        if let Err(mpsc::error::TrySendError::Full(ev)) = self.events.try_send(event) {
            tracing::debug!(?ev, "event channel full; event dropped");
        }
    }

    fn wants_pairing(&self) -> bool {
        self.registers.is_empty() || self.config.keep_pairing
    }

    /// Reverses the payments found interrupted at start-up, once the acquirer is reachable;
    /// returns the result frames. (Only those: a transaction started since is running, not
    /// interrupted.)
    async fn reverse_interrupted_now(&mut self) -> Result<Vec<DeviceMessage>, TerminalError> {
        let mut out = Vec::new();
        for offer in self.journal.interrupted() {
            if !self.reversals_due.contains(&offer.transaction_id) {
                continue;
            }
            tracing::warn!(transaction_id = %offer.transaction_id, "reversing a payment cut short by a power failure");
            let result = reversal(&offer, REVERSED_TEXT);
            self.journal.record_completed(result.clone()).await?;
            self.emit(TerminalEvent::Completed {
                result: result.clone(),
            });
            out.push(DeviceMessage::Result(result));
        }
        self.reversals_due.clear();
        Ok(out)
    }

    /// A `Started` entry without a result at startup means the power failed mid-transaction.
    /// The card may or may not have been charged, so the payment is reversed and reported.
    async fn reverse_interrupted(&mut self) -> Result<(), TerminalError> {
        for offer in self.journal.interrupted() {
            let transaction_id = offer.transaction_id;
            tracing::warn!(%transaction_id, "reversing a transaction cut short by a power failure");
            let result = reversal(&offer, REVERSED_TEXT);
            self.journal.record_completed(result.clone()).await?;
            self.emit(TerminalEvent::Completed { result });
        }
        Ok(())
    }

    /// Connects, runs a session, and reconnects with backoff, until stopped.
    async fn connect_loop(
        &mut self,
        urls: &[url::Url],
        tls: &Arc<rustls::ClientConfig>,
        commands: &mut mpsc::Receiver<TerminalCommand>,
        shutdown: &CancellationToken,
    ) -> Exit {
        let mut backoff = Backoff::new(self.config.reconnect_min, self.config.reconnect_max);
        // After each failure or loss the next URL is tried: with several cloud nodes, a device
        // whose node died moves to another one.
        for attempt in 0usize.. {
            let Some(url) = urls.get(attempt % urls.len().max(1)) else {
                return Exit::Shutdown;
            };
            let ws_config = WebSocketConfig::default()
                .max_message_size(Some(MAX_FRAME_BYTES))
                .max_frame_size(Some(MAX_FRAME_BYTES));
            let connect = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_tungstenite::connect_async_tls_with_config(
                    url.as_str(),
                    Some(ws_config),
                    true,
                    // The server certificate is checked against the public roots and `ca_cert`.
                    Some(tokio_tungstenite::Connector::Rustls(tls.clone())),
                ),
            );
            self.url = url.to_string();
            let reason = match self.offline(connect, commands, shutdown).await {
                Err(stop) => return stop.into(),
                Ok(Ok(Ok((socket, _response)))) => {
                    match self.session(socket, commands, shutdown).await {
                        SessionEnd::Stop(stop) => return stop.into(),
                        SessionEnd::Lost {
                            reason,
                            welcomed,
                            rejected,
                        } => {
                            if welcomed {
                                backoff.reset();
                            }
                            if rejected {
                                backoff.to_max();
                            }
                            reason
                        }
                    }
                }
                Ok(Ok(Err(e))) => format!("cannot connect to {url}: {}", explained(&e, url)),
                Ok(Err(_)) => format!("cannot connect to {url}: timed out"),
            };
            tracing::info!(%reason, "disconnected");
            self.emit(TerminalEvent::Disconnected { reason });
            let delay = backoff.next_delay();
            if let Err(stop) = self
                .offline(tokio::time::sleep(delay), commands, shutdown)
                .await
            {
                return stop.into();
            }
        }
        // The range above does not end.
        Exit::Shutdown
    }

    /// Waits for `fut` while keeping the agent's duties that need no connection: journaling a
    /// finishing transaction, showing its prompts, taking commands.
    async fn offline<F: Future>(
        &mut self,
        fut: F,
        commands: &mut mpsc::Receiver<TerminalCommand>,
        shutdown: &CancellationToken,
    ) -> Result<F::Output, Stop> {
        tokio::pin!(fut);
        loop {
            let wake = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Err(Stop::Shutdown),
                // Prompts before completion, so a result never overtakes its own prompts.
                Some(p) = self.progress_rx.recv() => OfflineWake::Progress(p),
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    OfflineWake::Done(done)
                }
                cmd = commands.recv(), if self.commands_open => OfflineWake::Command(cmd),
                Some(done) = self.downloads.join_next(), if !self.downloads.is_empty() => {
                    OfflineWake::Downloaded(done)
                }
                out = &mut fut => return Ok(out),
            };
            match wake {
                // Offline there is nobody to send to: results travel in the next `hello`,
                // prompts are stale by then, and a configuration applied after the result is
                // acknowledged again when the cloud re-sends it on the next connection.
                OfflineWake::Progress(p) => drop(self.on_progress(p)),
                OfflineWake::Done(done) => drop(self.on_backend_done(done).await?),
                OfflineWake::Command(cmd) => {
                    let out = self.on_command(cmd);
                    self.queue(out);
                }
                // The step is sent after the next `welcome`; a verified update waits for a
                // connection to be installed, so that `installing` reaches the cloud.
                OfflineWake::Downloaded(done) => {
                    let out = self.on_downloaded(done);
                    self.queue(out);
                }
            }
        }
    }

    /// Keeps frames made while offline for the next `welcome` (the oldest go first when full).
    fn queue(&mut self, out: Vec<DeviceMessage>) {
        for m in out {
            if self.queued.len() >= MAX_QUEUED_COMMANDS {
                self.queued.remove(0);
            }
            self.queued.push(m);
        }
    }

    /// One connection: `hello`, then frames until it ends.
    async fn session(
        &mut self,
        mut socket: Socket,
        commands: &mut mpsc::Receiver<TerminalCommand>,
        shutdown: &CancellationToken,
    ) -> SessionEnd {
        let mut session = Session {
            resend_wait: self.config.result_resend_min,
            ..Session::default()
        };
        let lost = |reason: String, session: &Session| SessionEnd::Lost {
            reason,
            welcomed: session.welcomed,
            rejected: false,
        };
        let mut hello_results = self.journal.unacknowledged();
        let later_results: Vec<DeviceMessage> = if hello_results.len() > HELLO_RESULTS {
            hello_results
                .split_off(HELLO_RESULTS)
                .into_iter()
                .map(DeviceMessage::Result)
                .collect()
        } else {
            Vec::new()
        };
        let mut later_results = Some(later_results);
        let hello = DeviceMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            device_id: self.config.device_id.clone(),
            secret: self.config.secret.clone(),
            vendor: self.config.vendor.clone(),
            model: self.config.model.clone(),
            agent_version: crate::AGENT_VERSION.to_string(),
            // A bounded number in hello, so it stays far below the frame limit; the rest follow
            // as `result` frames once welcomed.
            unacknowledged: hello_results,
            in_progress: self.journal.in_progress(),
            capabilities: self.config.capabilities(),
            hardware: Some(self.config.hardware()),
            // So a cloud whose settings differ (or that thinks we have some we lost) resends.
            config_version: self.settings.version(),
        });
        let hello_has_results =
            matches!(&hello, DeviceMessage::Hello(h) if !h.unacknowledged.is_empty());
        if let Err(e) = send_all(&mut socket, vec![hello]).await {
            return lost(e, &session);
        }
        if hello_has_results {
            session.resend_at = Some(tokio::time::Instant::now() + session.resend_wait);
        }
        let mut deadline = tokio::time::Instant::now() + WELCOME_TIMEOUT;
        loop {
            let refresh_at = session.pairing_refresh_at;
            let reversal_at = session.reversal_at;
            let resend_at = session.resend_at;
            let health_at = session.health_at;
            // Only once welcomed: before that nothing can be installed, and a window already
            // over would wake the loop at once, again and again.
            let window_at = self.update_window_end().filter(|_| session.welcomed);
            let mut reports_install = false;
            let wake = tokio::select! {
                biased;
                _ = shutdown.cancelled() => Wake::Shutdown,
                Some(p) = self.progress_rx.recv() => Wake::Progress(p),
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => Wake::Done(done),
                frame = socket.next() => Wake::Frame(frame),
                cmd = commands.recv(), if self.commands_open => Wake::Command(cmd),
                _ = tokio::time::sleep_until(deadline) => Wake::Watchdog,
                _ = sleep_until_opt(refresh_at) => Wake::RefreshPairing,
                _ = sleep_until_opt(reversal_at) => Wake::Reversal,
                _ = sleep_until_opt(resend_at) => Wake::Resend,
                _ = sleep_until_opt(health_at) => Wake::Health,
                Some(done) = self.downloads.join_next(), if !self.downloads.is_empty() => {
                    Wake::Downloaded(done)
                }
                _ = sleep_until_opt(window_at) => Wake::UpdateWindow,
            };
            let out = match wake {
                Wake::Shutdown => {
                    // Best effort: tell the cloud we are leaving on purpose.
                    let frame = CloseFrame {
                        code: CloseCode::from(close::GOING_AWAY),
                        reason: "terminal shutting down".into(),
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(Some(frame)))
                        .await;
                    return SessionEnd::Stop(Stop::Shutdown);
                }
                Wake::Watchdog => {
                    let reason = if session.welcomed {
                        "no frame from the cloud within three heartbeats".to_string()
                    } else {
                        "no welcome from the cloud in time".to_string()
                    };
                    return lost(reason, &session);
                }
                Wake::Reversal => {
                    session.reversal_at = None;
                    match self.reverse_interrupted_now().await {
                        Ok(mut out) => {
                            out.push(DeviceMessage::Status {
                                status: TerminalStatus::Ready,
                            });
                            out
                        }
                        Err(e) => {
                            // Retried on the next connection; the entry stays `Started`.
                            tracing::error!(error = %e, "could not journal a reversal");
                            Vec::new()
                        }
                    }
                }
                Wake::Resend => {
                    let unacknowledged = self.journal.unacknowledged();
                    if unacknowledged.is_empty() {
                        session.resend_at = None;
                        Vec::new()
                    } else {
                        tracing::info!(
                            results = unacknowledged.len(),
                            "sending results the cloud has not acknowledged again"
                        );
                        session.resend_wait =
                            (session.resend_wait * 2).min(self.config.result_resend_max);
                        session.resend_at = Some(tokio::time::Instant::now() + session.resend_wait);
                        unacknowledged
                            .into_iter()
                            .take(HELLO_RESULTS)
                            .map(DeviceMessage::Result)
                            .collect()
                    }
                }
                Wake::Health => {
                    session.health_at =
                        Some(tokio::time::Instant::now() + self.config.health_interval);
                    vec![self.health()]
                }
                Wake::RefreshPairing => {
                    session.pairing_refresh_at = None;
                    if self.wants_pairing() {
                        vec![DeviceMessage::PairingCodeRequest]
                    } else {
                        Vec::new()
                    }
                }
                Wake::Progress(p) => self.on_progress(p),
                Wake::Done(done) => match self.on_backend_done(done).await {
                    Ok(out) => out,
                    // Power cut: drop the socket without a word, as unplugging would.
                    Err(stop) => return SessionEnd::Stop(stop),
                },
                Wake::Command(cmd) => self.on_command(cmd),
                Wake::Downloaded(done) => self.on_downloaded(done),
                // Postponed below, where every wake-up looks at the update waiting.
                Wake::UpdateWindow => Vec::new(),
                Wake::Frame(None) => {
                    return lost("the cloud closed the connection".into(), &session)
                }
                Wake::Frame(Some(Err(e))) => {
                    return lost(format!("connection error: {e}"), &session)
                }
                Wake::Frame(Some(Ok(msg))) => {
                    // Any frame at all proves the link is alive.
                    if let Some(hb) = session.heartbeat {
                        deadline = tokio::time::Instant::now() + hb * HEARTBEAT_MISSES;
                    }
                    match msg {
                        Message::Text(text) => {
                            if text.len() > MAX_FRAME_BYTES {
                                return lost("frame over the size limit".into(), &session);
                            }
                            match serde_json::from_str::<CloudMessage>(text.as_str()) {
                                Ok(CloudMessage::Welcome {
                                    registers,
                                    heartbeat_ms,
                                    accepts,
                                    ..
                                }) => {
                                    // Bounded both ways: a garbled value must neither spin
                                    // the watchdog nor overflow the clock.
                                    let hb = Duration::from_millis(heartbeat_ms)
                                        .clamp(Duration::from_millis(10), MAX_TIMER);
                                    session.welcomed = true;
                                    session.heartbeat = Some(hb);
                                    deadline = tokio::time::Instant::now() + hb * HEARTBEAT_MISSES;
                                    let mut out = self.on_welcome(registers);
                                    out.extend(later_results.take().unwrap_or_default());
                                    // Health only to a cloud that says it reads it: an older
                                    // one would close on a frame it does not know.
                                    if accepts.iter().any(|a| a == accepts::HEALTH) {
                                        out.push(self.health());
                                        session.health_at = Some(
                                            tokio::time::Instant::now()
                                                + self.config.health_interval,
                                        );
                                    }
                                    if let Some(marker) = &self.installed {
                                        out.push(self.install_report(marker));
                                        reports_install = true;
                                    }
                                    if !self.reversals_due.is_empty() {
                                        session.reversal_at = Some(
                                            tokio::time::Instant::now()
                                                + self.config.reversal_delay,
                                        );
                                        out.push(DeviceMessage::Status {
                                            status: TerminalStatus::ReversalPending,
                                        });
                                    }
                                    out
                                }
                                Ok(m) => self.on_message(m, &mut session).await,
                                Err(e) => {
                                    tracing::warn!(error = %e, "ignoring an unreadable frame");
                                    Vec::new()
                                }
                            }
                        }
                        Message::Close(frame) => {
                            let (code, reason) = frame
                                .map(|f| (u16::from(f.code), f.reason.to_string()))
                                .unwrap_or((1005, String::new()));
                            return self.closed_by_cloud(code, reason, &session);
                        }
                        Message::Binary(_) => {
                            tracing::warn!("ignoring a binary frame");
                            Vec::new()
                        }
                        // Pings are answered by the WebSocket layer itself.
                        _ => Vec::new(),
                    }
                }
            };
            let sends_result = out.iter().any(|m| matches!(m, DeviceMessage::Result(_)));
            if let Err(e) = send_all(&mut socket, out).await {
                return lost(e, &session);
            }
            if sends_result && session.resend_at.is_none() {
                session.resend_at = Some(tokio::time::Instant::now() + session.resend_wait);
            }
            if reports_install {
                // Reported: the next start has nothing to say about it.
                self.installed = None;
                if let Err(e) = updater::remove_marker(&self.config.update_marker_path()).await {
                    tracing::warn!(error = %e, "cannot remove the record of the installation");
                }
            }
            // Whatever woke us may have ended the transaction an update waited for, or its
            // window; installing replaces this process (or returns what to report).
            if session.welcomed {
                let out = self.install_if_due(&mut socket).await;
                if let Err(e) = send_all(&mut socket, out).await {
                    return lost(e, &session);
                }
            }
        }
    }

    fn closed_by_cloud(&self, code: u16, reason: String, session: &Session) -> SessionEnd {
        let meaning = match code {
            close::AUTH_FAILED => "authentication failed: check the device id and secret",
            close::HELLO_REQUIRED => "the cloud did not accept our hello",
            close::UNSUPPORTED_VERSION => "the cloud does not speak this protocol version",
            close::REPLACED => "another connection for this device id took over",
            close::PROTOCOL_ERROR => "the cloud reported a protocol error",
            close::HEARTBEAT_TIMEOUT => "the cloud heard nothing from us in time",
            close::FRAME_TOO_LARGE => "the cloud refused a frame as too large",
            close::TOO_MANY_ATTEMPTS => "too many refused connections from this address",
            close::GOING_AWAY => "the cloud is going away",
            _ => "the cloud closed the connection",
        };
        let rejected = matches!(
            code,
            close::AUTH_FAILED
                | close::HELLO_REQUIRED
                | close::UNSUPPORTED_VERSION
                | close::REPLACED
                | close::TOO_MANY_ATTEMPTS
        );
        let reason = if reason.is_empty() {
            format!("{meaning} (close code {code})")
        } else {
            format!("{meaning} (close code {code}: {reason})")
        };
        if rejected {
            tracing::error!(code, %reason, "the cloud rejected this device");
            self.emit(TerminalEvent::Rejected {
                code,
                reason: reason.clone(),
            });
        }
        SessionEnd::Lost {
            reason,
            welcomed: session.welcomed,
            rejected,
        }
    }

    fn on_welcome(&mut self, registers: Vec<RegisterInfo>) -> Vec<DeviceMessage> {
        tracing::info!(registers = registers.len(), "connected");
        self.registers = registers;
        self.emit(TerminalEvent::Connected {
            url: self.url.clone(),
            registers: self.registers.clone(),
        });
        let mut out: Vec<DeviceMessage> = std::mem::take(&mut self.queued);
        if self.wants_pairing() && !out.contains(&DeviceMessage::PairingCodeRequest) {
            out.push(DeviceMessage::PairingCodeRequest);
        }
        out
    }

    /// Handles one frame from the cloud (other than `welcome`); returns the frames to send.
    async fn on_message(&mut self, msg: CloudMessage, session: &mut Session) -> Vec<DeviceMessage> {
        match msg {
            CloudMessage::Welcome { registers, .. } => self.on_welcome(registers),
            CloudMessage::PairingCode {
                code,
                expires_in_ms,
            } => {
                let expires_in = Duration::from_millis(expires_in_ms).min(MAX_TIMER);
                self.emit(TerminalEvent::PairingCode { code, expires_in });
                if self.wants_pairing() {
                    // Ask again before it expires so the screen never shows a dead code.
                    let refresh = (expires_in * 4 / 5).max(Duration::from_millis(50));
                    session.pairing_refresh_at = Some(tokio::time::Instant::now() + refresh);
                }
                Vec::new()
            }
            CloudMessage::Paired { register } => {
                let name = register.register_name.clone();
                self.registers.retain(|r| r.key != register.key);
                self.registers.push(register);
                self.emit(TerminalEvent::Paired {
                    register_name: name,
                });
                if !self.config.keep_pairing {
                    session.pairing_refresh_at = None;
                }
                Vec::new()
            }
            CloudMessage::Unpaired { registers } => {
                self.registers.retain(|r| !registers.contains(&r.key));
                self.emit(TerminalEvent::Unpaired { registers });
                if self.registers.is_empty() {
                    vec![DeviceMessage::PairingCodeRequest]
                } else {
                    Vec::new()
                }
            }
            CloudMessage::Transaction(offer) => self.on_offer(offer).await,
            CloudMessage::Config(frame) => self.on_config(frame).await,
            CloudMessage::Update(offer) => self.on_update(offer),
            CloudMessage::Start { transaction_id } => self.on_start(transaction_id).await,
            CloudMessage::Abort {
                transaction_id,
                reason,
            } => {
                if self.is_accepted(transaction_id) {
                    tracing::info!(%transaction_id, %reason, "transaction aborted before start");
                    self.accepted = None;
                    // Nothing is in progress any more: a configuration that waited runs now.
                    self.apply_pending_config().await
                } else {
                    tracing::debug!(%transaction_id, %reason, "abort of nothing waiting to start");
                    Vec::new()
                }
            }
            CloudMessage::Cancel { transaction_id } => {
                if let Some(r) = self.running.as_ref().filter(|r| r.id == transaction_id) {
                    tracing::info!(%transaction_id, "the POS asked to cancel");
                    r.cancel.cancel();
                } else if self.is_accepted(transaction_id) {
                    // Not started: forget it; a late `start` gets a definite CANCELLED.
                    self.accepted = None;
                }
                Vec::new()
            }
            CloudMessage::ResultAck { transaction_id } => {
                match self.journal.record_acknowledged(transaction_id).await {
                    Ok(true) => self.emit(TerminalEvent::Acknowledged { transaction_id }),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "could not journal an acknowledgement"),
                }
                // The cloud stores again: the next re-send, if any is needed, waits the least.
                session.resend_wait = self.config.result_resend_min;
                if self.journal.unacknowledged().is_empty() {
                    session.resend_at = None;
                }
                Vec::new()
            }
            CloudMessage::Ping { nonce } => vec![DeviceMessage::Pong { nonce }],
            CloudMessage::Display(frame) => {
                let version = frame.version;
                if !self.screen.update(frame) {
                    tracing::debug!(version, "ignoring a stale or repeated display");
                } else if self.running.is_some() {
                    // Never over a running payment: shown once it ends.
                    self.screen_held = true;
                } else {
                    self.show_screen();
                }
                Vec::new()
            }
            CloudMessage::Error { message } => {
                tracing::warn!(%message, "the cloud refused a frame");
                Vec::new()
            }
        }
    }

    fn show_screen(&mut self) {
        self.screen_held = false;
        if let Some(version) = self.screen.version() {
            self.emit(TerminalEvent::Display {
                version,
                cart: self.screen.cart().cloned(),
            });
        }
    }

    fn is_accepted(&self, id: TransactionId) -> bool {
        self.accepted
            .as_ref()
            .is_some_and(|(o, _)| o.transaction_id == id)
    }

    /// Every answer is idempotent: a repeated offer gets the same answer as the first.
    async fn on_offer(&mut self, offer: TransactionOffer) -> Vec<DeviceMessage> {
        let id = offer.transaction_id;
        if self.is_accepted(id) {
            return vec![DeviceMessage::Accept { transaction_id: id }];
        }
        if let Some(entry) = self.journal.get(id) {
            // Started: the result will follow. Completed: send it again.
            return entry
                .result()
                .map(|r| DeviceMessage::Result(r.clone()))
                .into_iter()
                .collect();
        }
        if let Some(r) = &self.running {
            tracing::info!(offered = %id, running = %r.id, "busy; not accepting");
            return Vec::new();
        }
        if let Some((other, since)) = &self.accepted {
            if since.elapsed() < ACCEPT_HOLD {
                let accepted = other.transaction_id;
                tracing::info!(offered = %id, %accepted, "busy; not accepting");
                return Vec::new();
            }
            let stale = other.transaction_id;
            tracing::warn!(%stale, "dropping an accepted transaction that never started");
        }
        // Between the dropped transaction and this one: the moment for a configuration that
        // waited for the dropped one.
        self.accepted = None;
        let mut out = self.apply_pending_config().await;
        self.emit(TerminalEvent::TransactionReceived {
            transaction_id: id,
            function: offer.function(),
            amount: offer.request.headline_amount(),
            at: Instant::now(),
            cart: offer.request.cart.clone().map(|mut c| {
                c.currency = c.currency.or(offer.request.currency);
                c
            }),
        });
        self.accepted = Some((offer, Instant::now()));
        out.push(DeviceMessage::Accept { transaction_id: id });
        out
    }

    /// A transaction is accepted or running: a configuration must wait for it.
    fn in_transaction(&self) -> bool {
        self.accepted.is_some() || self.running.is_some()
    }

    /// A `config` frame: applied now when idle, after the transaction in progress otherwise,
    /// acknowledged again when it is not newer than what runs.
    async fn on_config(&mut self, frame: DeviceConfig) -> Vec<DeviceMessage> {
        match self.settings.receive(frame, self.in_transaction()) {
            Received::Apply(config) => self.apply_config(config).await,
            Received::AckAgain { version } => {
                tracing::debug!(version, applied = ?self.settings.version(), "configuration not newer than the one applied; acknowledged again");
                vec![DeviceMessage::ConfigAck { version }]
            }
            Received::Deferred { version } => {
                tracing::info!(
                    version,
                    "configuration received during a transaction; applied when it ends"
                );
                Vec::new()
            }
            Received::Superseded { version } => {
                tracing::debug!(version, pending = ?self.settings.pending(), "configuration older than the one waiting; dropped");
                Vec::new()
            }
            Received::Refused { version, reason } => {
                tracing::warn!(version, error = %reason, "ignoring a configuration beyond the protocol's limits");
                Vec::new()
            }
        }
    }

    /// Keeps and runs `config`, then acknowledges it. If it cannot be kept it is neither run
    /// nor acknowledged: the cloud sends it again on the next connection.
    async fn apply_config(&mut self, config: DeviceConfig) -> Vec<DeviceMessage> {
        let version = config.version;
        if let Err(e) = self.settings.apply(config).await {
            tracing::error!(version, error = %e, "cannot keep the configuration; not applied");
            return Vec::new();
        }
        let settings = self.settings.settings();
        tracing::info!(
            version,
            tipping = settings.tipping,
            surcharge_rules = settings.surcharges.len(),
            currency = %settings.currency,
            language = %settings.language,
            card_timeout_secs = settings.card_timeout_secs,
            input_timeout_secs = settings.input_timeout_secs,
            "configuration applied"
        );
        self.emit(TerminalEvent::ConfigApplied {
            version,
            settings: settings.clone(),
        });
        vec![DeviceMessage::ConfigAck { version }]
    }

    /// Applies the configuration that waited for a transaction, once none is in progress.
    async fn apply_pending_config(&mut self) -> Vec<DeviceMessage> {
        if self.in_transaction() {
            return Vec::new();
        }
        match self.settings.take_pending() {
            Some(config) => self.apply_config(config).await,
            None => Vec::new(),
        }
    }

    /// Journals `Started` before anything touches the card, then runs the backend. A repeated
    /// `start` never runs the transaction twice.
    async fn on_start(&mut self, id: TransactionId) -> Vec<DeviceMessage> {
        if let Some(entry) = self.journal.get(id) {
            return entry
                .result()
                .map(|r| DeviceMessage::Result(r.clone()))
                .into_iter()
                .collect();
        }
        let offer = match self.accepted.take() {
            Some((offer, _)) if offer.transaction_id == id => offer,
            other => {
                self.accepted = other;
                // Never accepted (or forgotten after abort/cancel): nothing touched a card,
                // so CANCELLED is a definite, safe answer.
                tracing::warn!(transaction_id = %id, "start for a transaction not accepted");
                return vec![DeviceMessage::Result(DeviceResult {
                    transaction_id: id,
                    transaction_result: Some(TransactionResult::Cancelled),
                    result: ResultCode::Cancelled,
                    result_text: "Not accepted by the device; nothing was charged".into(),
                    fields: Default::default(),
                    receipts: None,
                    settlement: None,
                })];
            }
        };
        if let Err(e) = self.journal.record_started(&offer).await {
            // Without a journal entry the card must not be touched: fail it, nothing charged.
            tracing::error!(error = %e, "cannot journal the start; failing the transaction");
            let result = DeviceResult {
                transaction_id: id,
                transaction_result: offer
                    .function()
                    .is_financial()
                    .then_some(TransactionResult::Failed),
                result: ResultCode::Failed,
                result_text: "Device journal unavailable; nothing was charged".into(),
                fields: Default::default(),
                receipts: None,
                settlement: None,
            };
            self.emit(TerminalEvent::Completed {
                result: result.clone(),
            });
            return vec![DeviceMessage::Result(result)];
        }
        let cancel = CancellationToken::new();
        let run = self.backend.run(BackendTransaction {
            progress: ProgressSink::new(id, self.progress_tx.clone()),
            cancel: cancel.clone(),
            history: self.journal.history(),
            hardware: self.config.hardware(),
            settings: self.settings.settings().clone(),
            offer,
        });
        self.tasks.spawn(async move { (id, run.await) });
        self.running = Some(Running { id, cancel });
        Vec::new()
    }

    fn on_progress(&mut self, (id, note): (TransactionId, Note)) -> Vec<DeviceMessage> {
        let p = match note {
            Note::Prompt(p) => p,
            Note::Printed(slip) => {
                // The slip itself goes to the user interface; the log says only that it printed.
                tracing::info!(transaction_id = %id, lines = slip.lines().count(), "printed a slip");
                self.emit(TerminalEvent::Printed {
                    transaction_id: id,
                    slip,
                });
                return Vec::new();
            }
        };
        self.emit(TerminalEvent::Prompt {
            transaction_id: id,
            prompt: p.prompt.clone(),
            text: p.text.clone(),
        });
        vec![DeviceMessage::Progress {
            transaction_id: id,
            prompt: p.prompt,
            text: p.text,
        }]
    }

    /// Journals the backend's result before it is sent; a power failure stops everything.
    async fn on_backend_done(
        &mut self,
        done: Result<(TransactionId, BackendOutcome), JoinError>,
    ) -> Result<Vec<DeviceMessage>, Stop> {
        let running = self.running.take();
        let (id, mut result) = match done {
            Ok((_, BackendOutcome::PowerFailure)) => return Err(Stop::PowerFailure),
            Ok((id, BackendOutcome::Completed(result))) => (id, result),
            Err(e) => {
                // The backend crashed: whether the card was charged is unknown, so reverse.
                let Some(running) = running else {
                    return Ok(Vec::new());
                };
                tracing::error!(error = %e, "the card backend failed; reversing");
                let Some(offer) = self.journal.get(running.id).map(|e| e.offer.clone()) else {
                    return Ok(Vec::new());
                };
                let result = reversal(&offer, "Transaction reversed after a card reader failure");
                (running.id, result)
            }
        };
        // The agent, not the backend, owns ids.
        result.transaction_id = id;
        match self.journal.record_completed(result.clone()).await {
            Ok(true) => {}
            Ok(false) => {
                // Already completed: report what the journal holds, never a second outcome.
                if let Some(r) = self.journal.get(id).and_then(|e| e.result()) {
                    result = r.clone();
                }
            }
            Err(e) => tracing::error!(error = %e, "could not journal a result; sending it anyway"),
        }
        self.emit(TerminalEvent::Completed {
            result: result.clone(),
        });
        if self.screen_held {
            self.show_screen();
        }
        // The result is journaled: a configuration that waited for it runs from now on, and
        // its acknowledgement follows the result.
        let mut out = vec![DeviceMessage::Result(result)];
        out.extend(self.apply_pending_config().await);
        Ok(out)
    }

    fn on_command(&mut self, cmd: Option<TerminalCommand>) -> Vec<DeviceMessage> {
        match cmd {
            None => {
                // The UI went away; the agent carries on (a terminal has no keyboard anyway).
                self.commands_open = false;
                Vec::new()
            }
            Some(TerminalCommand::RequestPairingCode) => vec![DeviceMessage::PairingCodeRequest],
            Some(TerminalCommand::Unpair(register)) => vec![DeviceMessage::Unpair { register }],
        }
    }

    /// On a graceful shutdown, lets a running transaction end (cancelled) and journals it, so
    /// the next start has a result to report rather than a reversal to make.
    async fn wind_down(&mut self) {
        // A download in progress is dropped; the cloud offers the update again.
        self.downloads.abort_all();
        let Some(running) = &self.running else {
            return;
        };
        running.cancel.cancel();
        if let Ok(Some(done)) = tokio::time::timeout(SHUTDOWN_GRACE, self.tasks.join_next()).await {
            let _ = self.on_backend_done(done).await;
        }
        self.tasks.shutdown().await;
    }
}

/// Software updates: an `update` frame is downloaded and verified in a task of its own while
/// frames keep flowing, then installed between transactions and before its window ends.
impl Agent {
    /// The `update_status` frame of a step, also shown on the user interface.
    fn update_status(
        &self,
        offer: &UpdateOffer,
        step: UpdateStep,
        reason: Option<String>,
    ) -> DeviceMessage {
        let campaign_id = offer.campaign_id.clone();
        let version = offer.artifact.version.clone();
        match (&reason, step) {
            (Some(reason), UpdateStep::Failed) => {
                tracing::warn!(%campaign_id, %version, %reason, "update failed")
            }
            _ => tracing::info!(%campaign_id, %version, step = step.as_str(), ?reason, "update"),
        }
        self.emit(TerminalEvent::Update {
            campaign_id: campaign_id.clone(),
            version: version.clone(),
            step,
            reason: reason.clone(),
        });
        DeviceMessage::UpdateStatus {
            campaign_id,
            version,
            step,
            reason,
        }
    }

    fn update_failed(&self, offer: &UpdateOffer, failure: UpdateFailure) -> Vec<DeviceMessage> {
        vec![self.update_status(offer, UpdateStep::Failed, Some(failure.to_string()))]
    }

    /// An `update` frame: checked, then downloaded in the background. A repeat of the offer in
    /// progress (same campaign and artifact) is answered with the step it has reached and
    /// takes its window; another offer replaces it.
    fn on_update(&mut self, offer: UpdateOffer) -> Vec<DeviceMessage> {
        if let Some(job) = self.update.as_mut() {
            if job.offer.campaign_id == offer.campaign_id && job.offer.artifact == offer.artifact {
                // A repeat, perhaps with the next window's end: nothing is fetched again.
                if let Ok(t) = DateTime::parse_from_rfc3339(&offer.install_before) {
                    job.install_before = t.with_timezone(&Utc);
                    job.offer.install_before = offer.install_before.clone();
                }
                let step = match job.verified {
                    Some(_) => UpdateStep::Verified,
                    None => UpdateStep::Downloading,
                };
                return vec![self.update_status(&offer, step, None)];
            }
            tracing::info!(replaced = %job.offer.campaign_id, campaign_id = %offer.campaign_id, "a new update offer replaces the one in progress");
        }
        self.update = None;
        self.downloads.abort_all();
        if offer.artifact.version == crate::AGENT_VERSION {
            // Already running it: typically the cloud's offer made again on reconnecting,
            // which crossed this start's report of the installation.
            return vec![self.update_status(&offer, UpdateStep::Installed, None)];
        }
        let install_before = match DateTime::parse_from_rfc3339(&offer.install_before) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => {
                let reason = format!(
                    "install_before '{}' is not an RFC 3339 time ({e})",
                    offer.install_before
                );
                return self.update_failed(&offer, UpdateFailure::Offer(reason));
            }
        };
        if install_before <= Utc::now() {
            let reason = "the maintenance window has ended".to_string();
            return vec![self.update_status(&offer, UpdateStep::Postponed, Some(reason))];
        }
        // The signature before the download: a file no trusted key signed is not worth
        // fetching. (The file's checksum, and the signature again, are checked once it is in.)
        if let Err(e) = offer.artifact.check_signature(&self.config.release_keys) {
            return self.update_failed(&offer, e.into());
        }
        let source = url::Url::parse(&self.url)
            .map_err(|_| updater::DownloadError::BadUrl {
                url: offer.artifact.url.clone(),
            })
            .and_then(|connected| {
                updater::source(
                    &offer.artifact.url,
                    &connected,
                    &self.config.device_id,
                    &self.config.secret,
                )
            });
        let source = match source {
            Ok(s) => s,
            Err(e) => return self.update_failed(&offer, e.into()),
        };
        if offer.artifact.size > updater::MAX_ARTIFACT_BYTES {
            let e = updater::DownloadError::OverLimit {
                size: offer.artifact.size,
            };
            return self.update_failed(&offer, e.into());
        }
        self.update_seq += 1;
        let seq = self.update_seq;
        let client = self.http.clone();
        let artifact = offer.artifact.clone();
        let trusted = self.config.release_keys.clone();
        self.downloads.spawn(async move {
            (
                seq,
                updater::fetch_verified(&client, &source, artifact, trusted).await,
            )
        });
        let out = vec![self.update_status(&offer, UpdateStep::Downloading, None)];
        self.update = Some(UpdateJob {
            seq,
            offer,
            install_before,
            verified: None,
        });
        out
    }

    /// A download ended: `verified`, or `failed` and forgotten.
    fn on_downloaded(
        &mut self,
        done: Result<(u64, Result<Vec<u8>, UpdateFailure>), JoinError>,
    ) -> Vec<DeviceMessage> {
        // An aborted download (replaced, or shutting down) has nothing to say.
        let Ok((seq, outcome)) = done else {
            return Vec::new();
        };
        let Some(mut job) = self.update.take() else {
            return Vec::new();
        };
        if job.seq != seq || job.verified.is_some() {
            self.update = Some(job);
            return Vec::new();
        }
        match outcome {
            Ok(file) => {
                let out = vec![self.update_status(&job.offer, UpdateStep::Verified, None)];
                job.verified = Some(file);
                self.update = Some(job);
                out
            }
            Err(failure) => self.update_failed(&job.offer, failure),
        }
    }

    /// When the window of a verified update ends (bounded like every timer: waking early only
    /// looks again).
    fn update_window_end(&self) -> Option<tokio::time::Instant> {
        let job = self.update.as_ref().filter(|j| j.verified.is_some())?;
        let left = (job.install_before - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_TIMER);
        Some(tokio::time::Instant::now() + left)
    }

    /// Installs a verified update if the terminal is idle and its window is open; postpones it
    /// once the window has ended. Returns the frames to send (none once this process has been
    /// replaced, which does not return).
    async fn install_if_due(&mut self, socket: &mut Socket) -> Vec<DeviceMessage> {
        let Some(job) = self.update.as_ref().filter(|j| j.verified.is_some()) else {
            return Vec::new();
        };
        if Utc::now() >= job.install_before {
            let offer = job.offer.clone();
            self.update = None;
            let reason = "the maintenance window ended before the terminal was idle".to_string();
            return vec![self.update_status(&offer, UpdateStep::Postponed, Some(reason))];
        }
        if self.in_transaction() {
            return Vec::new();
        }
        match self.update.take() {
            Some(UpdateJob {
                offer,
                verified: Some(file),
                ..
            }) => self.install(offer, file, socket).await,
            _ => Vec::new(),
        }
    }

    /// Records the installation beside the journal, then installs with the configured
    /// installer. While this runs no frame is read, so no transaction can start.
    async fn install(
        &mut self,
        offer: UpdateOffer,
        file: Vec<u8>,
        socket: &mut Socket,
    ) -> Vec<DeviceMessage> {
        let installer = self.config.installer.clone();
        if matches!(installer, Installer::Refuse) {
            let reason = updater::IN_PROCESS_REFUSAL.to_string();
            return self.update_failed(&offer, UpdateFailure::Install(reason));
        }
        // `installing` goes out before anything changes. If the link is gone the installation
        // goes ahead all the same: the next start reports how it ended.
        let installing = self.update_status(&offer, UpdateStep::Installing, None);
        if let Err(e) = send_all(socket, vec![installing]).await {
            tracing::warn!(error = %e, "cannot report the installation's start");
        }
        let marker_path = self.config.update_marker_path();
        let marker = InstallMarker {
            campaign_id: offer.campaign_id.clone(),
            version: offer.artifact.version.clone(),
        };
        if let Err(e) = updater::write_marker(&marker_path, &marker).await {
            let reason = format!("cannot record it in {}: {e}", marker_path.display());
            return self.update_failed(&offer, UpdateFailure::Install(reason));
        }
        let update = VerifiedUpdate {
            campaign_id: marker.campaign_id,
            version: marker.version,
            file,
        };
        let outcome = match installer {
            Installer::Refuse => Err(updater::IN_PROCESS_REFUSAL.to_string()),
            Installer::SelfReplace => replace_self(update, socket).await,
            Installer::Custom(custom) => {
                tokio::task::spawn_blocking(move || custom.install(&update))
                    .await
                    .unwrap_or_else(|e| Err(format!("the installer did not finish: {e}")))
            }
        };
        match outcome {
            Ok(()) => {
                tracing::info!(version = %offer.artifact.version, "update installed; it runs from the next start, which reports it");
                Vec::new()
            }
            Err(reason) => {
                if let Err(e) = updater::remove_marker(&marker_path).await {
                    tracing::warn!(error = %e, "cannot remove the record of the failed installation");
                }
                self.update_failed(&offer, UpdateFailure::Install(reason))
            }
        }
    }

    /// What became of the installation recorded before this start: `installed` if this is the
    /// version it installed, `failed` if another one still runs.
    fn install_report(&self, marker: &InstallMarker) -> DeviceMessage {
        let (step, reason) = if marker.version == crate::AGENT_VERSION {
            (UpdateStep::Installed, None)
        } else {
            let reason = UpdateFailure::Install(format!("still running {}", crate::AGENT_VERSION));
            (UpdateStep::Failed, Some(reason.to_string()))
        };
        self.emit(TerminalEvent::Update {
            campaign_id: marker.campaign_id.clone(),
            version: marker.version.clone(),
            step,
            reason: reason.clone(),
        });
        tracing::info!(campaign_id = %marker.campaign_id, version = %marker.version, step = step.as_str(), ?reason, "reporting the installation made before this start");
        DeviceMessage::UpdateStatus {
            campaign_id: marker.campaign_id.clone(),
            version: marker.version.clone(),
            step,
            reason,
        }
    }
}

/// Replaces this process's executable with `update` and executes it with the same arguments:
/// returns only when that fails. The cloud gets a clean close first, so it does not wait for
/// a heartbeat to notice the restart.
#[cfg(unix)]
async fn replace_self(update: VerifiedUpdate, socket: &mut Socket) -> Result<(), String> {
    // Named now: once the file is replaced, this process's executable is a deleted file.
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this agent's executable: {e}"))?;
    let target = exe.clone();
    let VerifiedUpdate { version, file, .. } = update;
    tokio::task::spawn_blocking(move || updater::replace_executable(&target, &file))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        .map_err(|e| format!("cannot replace {}: {e}", exe.display()))?;
    tracing::info!(%version, exe = %exe.display(), "executable replaced; restarting into the new version");
    let frame = CloseFrame {
        code: CloseCode::from(close::GOING_AWAY),
        reason: "terminal restarting into a new version".into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(Some(frame))).await;
    let e = updater::exec(&exe);
    Err(format!(
        "replaced {} but cannot start it: {e}",
        exe.display()
    ))
}

#[cfg(not(unix))]
async fn replace_self(_update: VerifiedUpdate, _socket: &mut Socket) -> Result<(), String> {
    Err("replacing the running executable is supported on Unix only".into())
}

/// The result journaled for a transaction whose outcome is unknown: reversed, nothing charged.
fn reversal(offer: &TransactionOffer, text: &str) -> DeviceResult {
    DeviceResult {
        transaction_id: offer.transaction_id,
        transaction_result: offer
            .function()
            .is_financial()
            .then_some(TransactionResult::Cancelled),
        result: ResultCode::Cancelled,
        result_text: text.to_string(),
        fields: [
            ("Reversed".to_string(), "true".to_string()),
            (
                "Timestamp".to_string(),
                protocol::timestamp::device_local_now(),
            ),
        ]
        .into(),
        receipts: None,
        settlement: None,
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends frames in order; an error or a stalled send means the link is gone.
async fn send_all(socket: &mut Socket, out: Vec<DeviceMessage>) -> Result<(), String> {
    for m in out {
        let text = serde_json::to_string(&m).map_err(|e| format!("cannot encode a frame: {e}"))?;
        match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::text(text))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("send failed: {e}")),
            Err(_) => return Err("send timed out".into()),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    //! Drives the agent against a tiny in-test cloud (`accept_async` on 127.0.0.1:0).

    use super::*;
    use crate::simulator::{Simulator, SimulatorConfig};
    use protocol::{DeviceId, TransactionRequest};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    type ServerWs = WebSocketStream<TcpStream>;

    struct Harness {
        listener: TcpListener,
        journal: std::path::PathBuf,
        config: TerminalConfig,
        events: mpsc::Receiver<TerminalEvent>,
        commands: mpsc::Sender<TerminalCommand>,
        shutdown: CancellationToken,
        agent: JoinHandle<Result<Exit, TerminalError>>,
        _dir: tempfile::TempDir,
    }

    async fn start_agent(
        config: TerminalConfig,
        slow: Duration,
    ) -> (
        mpsc::Receiver<TerminalEvent>,
        mpsc::Sender<TerminalCommand>,
        CancellationToken,
        JoinHandle<Result<Exit, TerminalError>>,
    ) {
        let backend = Arc::new(Simulator::new(SimulatorConfig {
            step_delay: Duration::ZERO,
            slow,
        }));
        let (ev_tx, ev_rx) = mpsc::channel(256);
        let (cmd_tx, cmd_rx) = mpsc::channel(8);
        let shutdown = CancellationToken::new();
        let agent = tokio::spawn(run(config, backend, ev_tx, cmd_rx, shutdown.clone()));
        (ev_rx, cmd_tx, shutdown, agent)
    }

    async fn harness(keep_pairing: bool) -> Harness {
        harness_with(keep_pairing, Duration::from_millis(50)).await
    }

    /// An agent whose slow test amount (`..53`) takes `slow`.
    async fn harness_with(keep_pairing: bool, slow: Duration) -> Harness {
        harness_adjusted(keep_pairing, slow, |_| {}).await
    }

    /// Like [`harness_with`], with the configuration adjusted first.
    async fn harness_adjusted(
        keep_pairing: bool,
        slow: Duration,
        adjust: impl FnOnce(&mut TerminalConfig),
    ) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = dir.path().join("dev.journal");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = TerminalConfig::new(
            url::Url::parse(&format!("http://{addr}")).expect("url"),
            DeviceId::parse("dev-1").expect("id"),
            "s3cret",
            &journal,
        );
        config.keep_pairing = keep_pairing;
        config.reconnect_min = Duration::from_millis(10);
        config.reconnect_max = Duration::from_millis(100);
        adjust(&mut config);
        let (events, commands, shutdown, agent) = start_agent(config.clone(), slow).await;
        Harness {
            listener,
            journal,
            config,
            events,
            commands,
            shutdown,
            agent,
            _dir: dir,
        }
    }

    async fn accept(listener: &TcpListener) -> ServerWs {
        let (tcp, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("the agent connects")
            .expect("accept");
        tokio_tungstenite::accept_async(tcp)
            .await
            .expect("handshake")
    }

    /// The next frame from the device, or `None` if the connection ended.
    async fn try_recv(ws: &mut ServerWs) -> Option<DeviceMessage> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("a frame in time");
            match frame {
                Some(Ok(Message::Text(t))) => {
                    return Some(serde_json::from_str(t.as_str()).expect("a device frame"))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return None,
            }
        }
    }

    async fn recv(ws: &mut ServerWs) -> DeviceMessage {
        try_recv(ws).await.expect("the connection is open")
    }

    /// Skips `progress` frames, returning them and the next other frame.
    async fn recv_after_progress(ws: &mut ServerWs) -> (Vec<String>, DeviceMessage) {
        let mut prompts = Vec::new();
        loop {
            match recv(ws).await {
                DeviceMessage::Progress { prompt, .. } => prompts.push(prompt),
                other => return (prompts, other),
            }
        }
    }

    async fn send(ws: &mut ServerWs, m: &CloudMessage) {
        let text = serde_json::to_string(m).expect("encode");
        ws.send(Message::text(text)).await.expect("send");
    }

    /// Round-trips a ping: every frame sent before it has been handled.
    async fn sync(ws: &mut ServerWs, nonce: u64) {
        send(ws, &CloudMessage::Ping { nonce }).await;
        assert_eq!(recv(ws).await, DeviceMessage::Pong { nonce });
    }

    fn register() -> RegisterInfo {
        RegisterInfo {
            key: RegisterKey {
                register_id: "r1".into(),
                business_name: "Shop".into(),
                vendor_name: "V".into(),
            },
            register_name: "Front counter".into(),
        }
    }

    fn welcome(registers: Vec<RegisterInfo>, heartbeat_ms: u64) -> CloudMessage {
        CloudMessage::Welcome {
            device_id: DeviceId::parse("dev-1").expect("id"),
            registers,
            heartbeat_ms,
            accepts: Vec::new(),
        }
    }

    fn offer(cents: u64) -> TransactionOffer {
        TransactionOffer {
            transaction_id: TransactionId::new(),
            register: register(),
            request: TransactionRequest {
                amount_total: Cents::new(cents).ok(),
                ..TransactionRequest::of(Function::CardPurchase)
            },
            request_timestamp: "20240101000000".into(),
        }
    }

    async fn hello(ws: &mut ServerWs) -> Hello {
        match recv(ws).await {
            DeviceMessage::Hello(h) => h,
            other => panic!("expected hello, got {other:?}"),
        }
    }

    fn drain(events: &mut mpsc::Receiver<TerminalEvent>) -> Vec<TerminalEvent> {
        let mut out = Vec::new();
        while let Ok(e) = events.try_recv() {
            out.push(e);
        }
        out
    }

    #[tokio::test]
    async fn an_unacknowledged_result_is_sent_again_on_the_same_connection() {
        // The cloud could not store the result (its disk was full) and said so with `error`:
        // the agent repeats the result, with growing waits, until `result_ack`.
        let mut h = harness_adjusted(false, Duration::from_millis(50), |c| {
            c.result_resend_min = Duration::from_millis(40);
            c.result_resend_max = Duration::from_millis(160);
        })
        .await;
        let mut ws = accept(&h.listener).await;
        hello(&mut ws).await;
        send(&mut ws, &welcome(vec![register()], 10_000)).await;
        let o = offer(1000);
        let id = o.transaction_id;
        send(&mut ws, &CloudMessage::Transaction(o)).await;
        assert_eq!(
            recv(&mut ws).await,
            DeviceMessage::Accept { transaction_id: id }
        );
        send(&mut ws, &CloudMessage::Start { transaction_id: id }).await;
        let (_, first) = recv_after_progress(&mut ws).await;
        let DeviceMessage::Result(result) = first else {
            panic!("expected a result, got {first:?}")
        };
        let refused = CloudMessage::Error {
            message: "cloud storage unavailable".into(),
        };
        send(&mut ws, &refused).await;
        let mut at = vec![tokio::time::Instant::now()];
        for _ in 0..3 {
            assert_eq!(recv(&mut ws).await, DeviceMessage::Result(result.clone()));
            at.push(tokio::time::Instant::now());
        }
        // Waits grow (40, 80, 160 ms): never a tight loop against a struggling cloud.
        let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps[0] >= Duration::from_millis(35), "{gaps:?}");
        assert!(gaps[2] >= Duration::from_millis(140), "{gaps:?}");

        send(&mut ws, &CloudMessage::ResultAck { transaction_id: id }).await;
        sync(&mut ws, 1).await;
        assert!(Journal::open(&h.journal)
            .expect("journal")
            .unacknowledged()
            .is_empty());
        // Acknowledged: no more re-sends (a frame would arrive before the ping's answer).
        tokio::time::sleep(Duration::from_millis(400)).await;
        sync(&mut ws, 2).await;
        h.shutdown.cancel();
        assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
        let _ = drain(&mut h.events);
    }

    #[tokio::test]
    async fn accept_start_result_ack_and_duplicates() {
        let mut h = harness(false).await;
        let mut ws = accept(&h.listener).await;
        let hi = hello(&mut ws).await;
        assert_eq!(hi.protocol_version, PROTOCOL_VERSION);
        assert_eq!(hi.device_id.as_str(), "dev-1");
        assert_eq!(hi.secret, "s3cret");
        assert_eq!(hi.agent_version, crate::AGENT_VERSION);
        assert!(hi.unacknowledged.is_empty());
        assert_eq!(hi.in_progress, None);
        // All but `update`: this agent trusts no release key.
        assert_eq!(
            hi.capabilities.len(),
            protocol::device::capability::ALL.len() - 1
        );
        assert!(!hi
            .capabilities
            .iter()
            .any(|c| c == protocol::device::capability::UPDATE));
        let hardware = hi.hardware.expect("hardware is declared");
        assert_eq!(hardware.printer_columns, Some(32));
        assert!(hardware.screen.is_some());

        // Paired already: no pairing code requested.
        send(&mut ws, &welcome(vec![register()], 10_000)).await;
        let o = offer(1000);
        let id = o.transaction_id;
        send(&mut ws, &CloudMessage::Transaction(o.clone())).await;
        assert_eq!(
            recv(&mut ws).await,
            DeviceMessage::Accept { transaction_id: id }
        );
        // A repeated offer gets the same answer; another one is refused while busy.
        send(&mut ws, &CloudMessage::Transaction(o.clone())).await;
        assert_eq!(
            recv(&mut ws).await,
            DeviceMessage::Accept { transaction_id: id }
        );
        send(&mut ws, &CloudMessage::Transaction(offer(2000))).await;
        sync(&mut ws, 1).await;
        assert!(
            Journal::open(&h.journal)
                .expect("journal")
                .entries()
                .is_empty(),
            "nothing is journaled before start"
        );

        send(&mut ws, &CloudMessage::Start { transaction_id: id }).await;
        let (prompts, first) = recv_after_progress(&mut ws).await;
        assert!(prompts.contains(&protocol::device::prompt::PRESENT_CARD.to_string()));
        let DeviceMessage::Result(result) = first else {
            panic!("expected a result, got {first:?}")
        };
        assert_eq!(result.transaction_id, id);
        assert_eq!(result.transaction_result, Some(TransactionResult::Accepted));
        // Journaled before it was sent.
        assert_eq!(
            Journal::open(&h.journal).expect("journal").unacknowledged(),
            vec![result.clone()]
        );

        // Duplicate start and duplicate offer: the same result again, never a second run.
        send(&mut ws, &CloudMessage::Start { transaction_id: id }).await;
        assert_eq!(recv(&mut ws).await, DeviceMessage::Result(result.clone()));
        send(&mut ws, &CloudMessage::Transaction(o.clone())).await;
        assert_eq!(recv(&mut ws).await, DeviceMessage::Result(result.clone()));

        // A start for something never accepted is a definite "nothing charged".
        let stray = TransactionId::new();
        send(
            &mut ws,
            &CloudMessage::Start {
                transaction_id: stray,
            },
        )
        .await;
        match recv(&mut ws).await {
            DeviceMessage::Result(r) => {
                assert_eq!(r.transaction_id, stray);
                assert_eq!(r.result, ResultCode::Cancelled);
            }
            other => panic!("expected a result, got {other:?}"),
        }

        send(&mut ws, &CloudMessage::ResultAck { transaction_id: id }).await;
        sync(&mut ws, 2).await;
        let j = Journal::open(&h.journal).expect("journal");
        assert!(j.unacknowledged().is_empty());
        assert_eq!(j.history().entries().len(), 1);

        h.shutdown.cancel();
        assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
        let events = drain(&mut h.events);
        let received = events
            .iter()
            .filter(|e| matches!(e, TerminalEvent::TransactionReceived { .. }))
            .count();
        assert_eq!(received, 1);
        assert!(events
            .iter()
            .any(|e| matches!(e, TerminalEvent::Connected { .. })));
        assert!(events
            .iter()
            .any(|e| matches!(e, TerminalEvent::Prompt { .. })));
        assert!(events.contains(&TerminalEvent::Completed { result }));
        assert!(events.contains(&TerminalEvent::Acknowledged { transaction_id: id }));
    }

    #[tokio::test]
    async fn a_terminal_without_a_printer_declares_none() {
        let h = harness_adjusted(false, Duration::from_millis(50), |c| {
            c.printer_columns = None
        })
        .await;
        let mut ws = accept(&h.listener).await;
        let hi = hello(&mut ws).await;
        assert!(!hi
            .capabilities
            .iter()
            .any(|c| c == protocol::device::capability::PRINTER));
        assert!(hi
            .capabilities
            .iter()
            .any(|c| c == protocol::device::capability::DISPLAY));
        assert_eq!(hi.hardware.and_then(|h| h.printer_columns), None);
        h.shutdown.cancel();
        assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
    }

    fn display(version: u64, total: Option<u64>) -> CloudMessage {
        CloudMessage::Display(protocol::action::Display {
            version,
            cart: total.map(|total| Cart {
                lines: vec![protocol::action::CartLine {
                    description: "Flat white".into(),
                    quantity: "1".into(),
                    unit_price: None,
                    amount: total,
                }],
                currency: None,
                total,
                tax: None,
            }),
        })
    }

    fn displays(events: &[TerminalEvent]) -> Vec<(u64, Option<u64>)> {
        events
            .iter()
            .filter_map(|e| match e {
                TerminalEvent::Display { version, cart } => {
                    Some((*version, cart.as_ref().map(|c| c.total)))
                }
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn displays_keep_the_newest_version_and_wait_for_a_running_payment() {
        // Slow enough that the displays surely arrive while the payment runs.
        let mut h = harness_with(false, Duration::from_millis(300)).await;
        let mut ws = accept(&h.listener).await;
        hello(&mut ws).await;
        send(&mut ws, &welcome(vec![register()], 10_000)).await;
        send(&mut ws, &display(2, Some(450))).await;
        send(&mut ws, &display(1, Some(100))).await; // stale
        send(&mut ws, &display(2, Some(999))).await; // repeated
        sync(&mut ws, 1).await;
        assert_eq!(displays(&drain(&mut h.events)), vec![(2, Some(450))]);

        // A payment with its basket, in the request's currency.
        let mut o = offer(1053); // slow: 300 ms
        o.request.currency = protocol::Currency::parse("NZD").ok();
        o.request.cart = match display(0, Some(1053)) {
            CloudMessage::Display(d) => d.cart,
            _ => None,
        };
        let id = o.transaction_id;
        send(&mut ws, &CloudMessage::Transaction(o)).await;
        assert_eq!(
            recv(&mut ws).await,
            DeviceMessage::Accept { transaction_id: id }
        );
        send(&mut ws, &CloudMessage::Start { transaction_id: id }).await;
        // A display while the payment runs does not interrupt it...
        send(&mut ws, &display(3, None)).await;
        send(&mut ws, &display(4, Some(700))).await;
        let (_, last) = recv_after_progress(&mut ws).await;
        assert!(matches!(last, DeviceMessage::Result(_)), "{last:?}");
        sync(&mut ws, 2).await;
        let events = drain(&mut h.events);
        let received = events.iter().find_map(|e| match e {
            TerminalEvent::TransactionReceived { cart, .. } => cart.clone(),
            _ => None,
        });
        assert_eq!(received.as_ref().map(|c| c.total), Some(1053));
        assert_eq!(
            received.and_then(|c| c.currency).map(|c| c.to_string()),
            Some("NZD".to_string())
        );
        // ...and the newest one is shown once it is over.
        assert_eq!(displays(&events), vec![(4, Some(700))]);
        let completed = events
            .iter()
            .position(|e| matches!(e, TerminalEvent::Completed { .. }));
        let shown = events
            .iter()
            .position(|e| matches!(e, TerminalEvent::Display { .. }));
        assert!(completed < shown, "{events:?}");

        // Between payments, a clearing display is shown at once.
        send(&mut ws, &display(5, None)).await;
        sync(&mut ws, 3).await;
        assert_eq!(displays(&drain(&mut h.events)), vec![(5, None)]);
        h.shutdown.cancel();
        assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
    }

    /// Offers `request`, starts it and returns the frames up to its result.
    async fn run_offer(
        ws: &mut ServerWs,
        request: TransactionRequest,
        then: Option<CloudMessage>,
    ) -> (TransactionId, Vec<String>, DeviceResult) {
        let o = TransactionOffer {
            request,
            ..offer(0)
        };
        let id = o.transaction_id;
        send(ws, &CloudMessage::Transaction(o)).await;
        assert_eq!(recv(ws).await, DeviceMessage::Accept { transaction_id: id });
        send(ws, &CloudMessage::Start { transaction_id: id }).await;
        if let Some(m) = then {
            let m = match m {
                CloudMessage::Cancel { .. } => CloudMessage::Cancel { transaction_id: id },
                other => other,
            };
            send(ws, &m).await;
        }
        match recv_after_progress(ws).await {
            (prompts, DeviceMessage::Result(r)) => (id, prompts, r),
            (_, other) => panic!("expected a result, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn terminal_actions_run_through_the_journal_like_payments() {
        use protocol::action::{
            cancel_reason, field, printer_status, InputKind, InputRequest, InputRules, PrintJob,
            PrintLine,
        };
        let mut h = harness(false).await;
        let mut ws = accept(&h.listener).await;
        hello(&mut ws).await;
        send(&mut ws, &welcome(vec![register()], 10_000)).await;
        let ask = |prompt: &str| TransactionRequest {
            input: Some(InputRequest {
                kind: InputKind::Email,
                prompt: prompt.into(),
                options: vec![],
                rules: InputRules::default(),
                timeout_secs: 30,
            }),
            ..TransactionRequest::of(Function::TerminalInput)
        };

        let (id, prompts, r) = run_offer(&mut ws, ask("Email for your receipt?"), None).await;
        assert_eq!(prompts, vec!["input".to_string()]);
        assert_eq!(r.transaction_id, id);
        assert_eq!(r.transaction_result, None);
        assert_eq!(r.result, ResultCode::Ok);
        assert_eq!(
            r.fields.get(field::INPUT_VALUE).map(String::as_str),
            Some("customer@example.com")
        );
        assert_eq!(
            Journal::open(&h.journal).expect("journal").unacknowledged(),
            vec![r.clone()],
            "journaled before it was sent"
        );
        send(&mut ws, &CloudMessage::ResultAck { transaction_id: id }).await;

        // A POS cancel while the customer thinks.
        let (_, _, r) = run_offer(
            &mut ws,
            ask("Email? #slow"),
            Some(CloudMessage::Cancel { transaction_id: id }),
        )
        .await;
        assert_eq!(r.result, ResultCode::Cancelled);
        assert_eq!(
            r.fields.get(field::CANCEL_REASON).map(String::as_str),
            Some(cancel_reason::POS)
        );

        let print = TransactionRequest {
            print: Some(PrintJob {
                lines: vec![PrintLine::Text {
                    text: "Table 4".into(),
                    bold: false,
                    align: protocol::action::Align::Left,
                    large: false,
                }],
            }),
            ..TransactionRequest::of(Function::TerminalPrint)
        };
        let (id, _, r) = run_offer(&mut ws, print, None).await;
        assert_eq!(
            r.fields.get(field::PRINTER_STATUS).map(String::as_str),
            Some(printer_status::OK)
        );
        sync(&mut ws, 1).await;
        let events = drain(&mut h.events);
        assert!(
            events.iter().any(
                |e| matches!(e, TerminalEvent::Printed { transaction_id, slip }
                if *transaction_id == id && slip == "Table 4")
            ),
            "{events:?}"
        );
        h.shutdown.cancel();
        assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
    }

    #[tokio::test]
    async fn a_terminal_without_a_printer_fails_a_print_job() {
        use protocol::action::{field, printer_status, PrintJob, PrintLine};
        let h = harness_adjusted(false, Duration::from_millis(50), |c| {
            c.printer_columns = None
        })
        .await;
        let mut ws = accept(&h.listener).await;
        hello(&mut ws).await;
        send(&mut ws, &welcome(vec![register()], 10_000)).await;
        let print = TransactionRequest {
            print: Some(PrintJob {
                lines: vec![PrintLine::Cut],
            }),
            ..TransactionRequest::of(Function::TerminalPrint)
        };
        let (_, _, r) = run_offer(&mut ws, print, None).await;
        assert_eq!(r.result, ResultCode::Failed);
        assert_eq!(r.result_text, "No printer");
        assert_eq!(
            r.fields.get(field::PRINTER_STATUS).map(String::as_str),
            Some(printer_status::NO_PRINTER)
        );
        h.shutdown.cancel();
        assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
    }

    #[tokio::test]
    async fn many_unacknowledged_results_are_split_between_hello_and_result_frames() {
        // A journal with more unacknowledged results than hello carries.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dev.journal");
        let mut journal = Journal::open(&path).expect("journal");
        let mut ids = Vec::new();
        for i in 0..(HELLO_RESULTS + 3) {
            let o = offer(1000 + i as u64);
            journal.record_started(&o).await.expect("started");
            let r = reversal(&o, "test");
            journal.record_completed(r).await.expect("completed");
            ids.push(o.transaction_id);
        }
        drop(journal);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = TerminalConfig::new(
            url::Url::parse(&format!("http://{addr}")).expect("url"),
            DeviceId::parse("dev-1").expect("id"),
            "s3cret",
            &path,
        );
        let (_events, _commands, shutdown, agent) =
            start_agent(config, Duration::from_millis(50)).await;
        let mut ws = accept(&listener).await;
        let hi = hello(&mut ws).await;
        assert_eq!(hi.unacknowledged.len(), HELLO_RESULTS);
        send(&mut ws, &welcome(vec![register()], 10_000)).await;
        let mut rest = Vec::new();
        while rest.len() < 3 {
            if let DeviceMessage::Result(r) = recv(&mut ws).await {
                rest.push(r.transaction_id);
            }
        }
        let mut all: Vec<_> = hi
            .unacknowledged
            .iter()
            .map(|r| r.transaction_id)
            .chain(rest)
            .collect();
        all.sort();
        ids.sort();
        assert_eq!(all, ids, "every result is delivered exactly once");
        shutdown.cancel();
        let _ = agent.await;
    }

    #[tokio::test]
    async fn power_failure_mid_transaction_is_reversed_on_restart() {
        let h = harness(false).await;
        let mut ws = accept(&h.listener).await;
        hello(&mut ws).await;
        send(&mut ws, &welcome(vec![register()], 10_000)).await;
        let o = offer(1054);
        let id = o.transaction_id;
        send(&mut ws, &CloudMessage::Transaction(o.clone())).await;
        assert_eq!(
            recv(&mut ws).await,
            DeviceMessage::Accept { transaction_id: id }
        );
        send(&mut ws, &CloudMessage::Start { transaction_id: id }).await;
        assert_eq!(
            h.agent.await.expect("join").expect("run"),
            Exit::PowerFailure
        );
        // Not a word after the power cut, not even a close frame: the socket just goes away.
        let after = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("the socket ends");
        assert!(!matches!(after, Some(Ok(_))), "{after:?}");
        assert_eq!(
            Journal::open(&h.journal).expect("journal").interrupted(),
            vec![o]
        );

        // Power back: the agent reverses the payment and reports it in hello.
        let (mut events, _commands, shutdown, agent) =
            start_agent(h.config.clone(), Duration::from_millis(50)).await;
        let mut ws = accept(&h.listener).await;
        let hi = hello(&mut ws).await;
        assert_eq!(hi.in_progress, None);
        assert_eq!(hi.unacknowledged.len(), 1);
        let reversed = &hi.unacknowledged[0];
        assert_eq!(reversed.transaction_id, id);
        assert_eq!(
            reversed.transaction_result,
            Some(TransactionResult::Cancelled)
        );
        assert_eq!(reversed.result, ResultCode::Cancelled);
        assert_eq!(reversed.result_text, REVERSED_TEXT);
        assert_eq!(
            reversed.fields.get("Reversed").map(String::as_str),
            Some("true")
        );
        assert!(drain(&mut events).contains(&TerminalEvent::Completed {
            result: reversed.clone()
        }));

        // A late duplicate start gets the journaled answer, not a second run.
        send(&mut ws, &welcome(vec![register()], 10_000)).await;
        send(&mut ws, &CloudMessage::Start { transaction_id: id }).await;
        assert_eq!(recv(&mut ws).await, DeviceMessage::Result(reversed.clone()));
        send(&mut ws, &CloudMessage::ResultAck { transaction_id: id }).await;
        sync(&mut ws, 3).await;
        assert!(Journal::open(&h.journal)
            .expect("journal")
            .unacknowledged()
            .is_empty());
        shutdown.cancel();
        assert_eq!(agent.await.expect("join").expect("run"), Exit::Shutdown);
    }

    #[tokio::test]
    async fn pairing_codes_commands_and_garbage() {
        let mut h = harness(false).await;
        let mut ws = accept(&h.listener).await;
        hello(&mut ws).await;
        send(&mut ws, &welcome(Vec::new(), 10_000)).await;
        assert_eq!(recv(&mut ws).await, DeviceMessage::PairingCodeRequest);

        // Unreadable frames are ignored, not fatal.
        ws.send(Message::text("not json")).await.expect("send");
        ws.send(Message::text(r#"{"type":"launch_missiles"}"#))
            .await
            .expect("send");
        ws.send(Message::binary(vec![1u8, 2, 3]))
            .await
            .expect("send");
        sync(&mut ws, 1).await;

        // A short-lived code is refreshed before it expires.
        let code = PairingCode::parse("12345678").expect("code");
        send(
            &mut ws,
            &CloudMessage::PairingCode {
                code: code.clone(),
                expires_in_ms: 100,
            },
        )
        .await;
        assert_eq!(recv(&mut ws).await, DeviceMessage::PairingCodeRequest);

        // Once paired, no more refreshing.
        send(
            &mut ws,
            &CloudMessage::PairingCode {
                code: code.clone(),
                expires_in_ms: 100,
            },
        )
        .await;
        send(
            &mut ws,
            &CloudMessage::Paired {
                register: register(),
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        sync(&mut ws, 2).await;

        // Unpaired from everything: ask for a code again.
        send(
            &mut ws,
            &CloudMessage::Unpaired {
                registers: vec![register().key],
            },
        )
        .await;
        assert_eq!(recv(&mut ws).await, DeviceMessage::PairingCodeRequest);

        h.commands
            .send(TerminalCommand::RequestPairingCode)
            .await
            .expect("cmd");
        assert_eq!(recv(&mut ws).await, DeviceMessage::PairingCodeRequest);
        h.commands
            .send(TerminalCommand::Unpair(None))
            .await
            .expect("cmd");
        assert_eq!(
            recv(&mut ws).await,
            DeviceMessage::Unpair { register: None }
        );

        h.shutdown.cancel();
        // The agent says goodbye with a close frame.
        assert_eq!(try_recv(&mut ws).await, None);
        assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
        let events = drain(&mut h.events);
        assert!(events.contains(&TerminalEvent::PairingCode {
            code,
            expires_in: Duration::from_millis(100)
        }));
        assert!(events.contains(&TerminalEvent::Paired {
            register_name: "Front counter".into()
        }));
        assert!(events.contains(&TerminalEvent::Unpaired {
            registers: vec![register().key]
        }));
    }

    #[tokio::test]
    async fn keep_pairing_keeps_refreshing_when_paired() {
        let h = harness(true).await;
        let mut ws = accept(&h.listener).await;
        hello(&mut ws).await;
        send(&mut ws, &welcome(vec![register()], 10_000)).await;
        assert_eq!(recv(&mut ws).await, DeviceMessage::PairingCodeRequest);
        let code = PairingCode::parse("87654321").expect("code");
        send(
            &mut ws,
            &CloudMessage::PairingCode {
                code,
                expires_in_ms: 100,
            },
        )
        .await;
        send(
            &mut ws,
            &CloudMessage::Paired {
                register: register(),
            },
        )
        .await;
        assert_eq!(recv(&mut ws).await, DeviceMessage::PairingCodeRequest);
        h.shutdown.cancel();
        assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
    }

    #[tokio::test]
    async fn reconnects_after_silence_rejection_and_oversized_frames() {
        let mut h = harness(false).await;
        // Silence for three heartbeats: the agent gives up on the link and reconnects.
        let mut ws = accept(&h.listener).await;
        hello(&mut ws).await;
        send(&mut ws, &welcome(vec![register()], 30)).await;
        let mut ws2 = accept(&h.listener).await;
        hello(&mut ws2).await;
        drop(ws);

        // Rejected: a clear event, and it keeps trying.
        ws2.close(Some(CloseFrame {
            code: CloseCode::from(close::AUTH_FAILED),
            reason: "unknown device or wrong secret".into(),
        }))
        .await
        .expect("close");
        let mut ws3 = accept(&h.listener).await;
        hello(&mut ws3).await;
        let events = drain(&mut h.events);
        assert!(
            events.iter().any(
                |e| matches!(e, TerminalEvent::Rejected { code, .. } if *code == close::AUTH_FAILED)
            ),
            "{events:?}"
        );

        // A frame over the limit ends the connection; the agent comes back.
        send(&mut ws3, &welcome(vec![register()], 10_000)).await;
        let huge = format!(
            r#"{{"type":"error","message":"{}"}}"#,
            "x".repeat(MAX_FRAME_BYTES + 1)
        );
        let _ = ws3.send(Message::text(huge)).await;
        let mut ws4 = accept(&h.listener).await;
        hello(&mut ws4).await;

        h.shutdown.cancel();
        assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
    }
    #[tokio::test]
    async fn cancel_from_the_pos_stops_a_running_transaction() {
        // Slower than the test could wait: only the cancel can end it in time.
        let h = harness_with(false, Duration::from_secs(600)).await;
        let mut ws = accept(&h.listener).await;
        hello(&mut ws).await;
        send(&mut ws, &welcome(vec![register()], 10_000)).await;
        let o = offer(1053);
        let id = o.transaction_id;
        send(&mut ws, &CloudMessage::Transaction(o)).await;
        assert_eq!(
            recv(&mut ws).await,
            DeviceMessage::Accept { transaction_id: id }
        );
        send(&mut ws, &CloudMessage::Start { transaction_id: id }).await;
        send(&mut ws, &CloudMessage::Cancel { transaction_id: id }).await;
        let (_, last) = recv_after_progress(&mut ws).await;
        let DeviceMessage::Result(r) = last else {
            panic!("expected a result, got {last:?}")
        };
        assert_eq!(r.transaction_result, Some(TransactionResult::Cancelled));
        assert_eq!(r.result, ResultCode::Cancelled);
        h.shutdown.cancel();
        assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
    }

    fn config(version: u64, settings: Settings) -> CloudMessage {
        CloudMessage::Config(DeviceConfig { version, settings })
    }

    /// Settings that surcharge every card `bps` basis points.
    fn surcharging(bps: u32) -> Settings {
        Settings {
            surcharges: vec![protocol::config::SurchargeRule {
                card: protocol::config::ANY_CARD.into(),
                bps,
                cap: None,
            }],
            ..Settings::default()
        }
    }

    /// The versions of the `ConfigApplied` events.
    fn applied(events: &[TerminalEvent]) -> Vec<u64> {
        events
            .iter()
            .filter_map(|e| match e {
                TerminalEvent::ConfigApplied { version, .. } => Some(*version),
                _ => None,
            })
            .collect()
    }

    /// Round-trips a ping, returning every frame that came before its answer.
    async fn frames_until_pong(ws: &mut ServerWs, nonce: u64) -> Vec<DeviceMessage> {
        send(ws, &CloudMessage::Ping { nonce }).await;
        let mut before = Vec::new();
        loop {
            match recv(ws).await {
                DeviceMessage::Pong { nonce: n } if n == nonce => return before,
                other => before.push(other),
            }
        }
    }

    fn acks(frames: &[DeviceMessage]) -> Vec<u64> {
        frames
            .iter()
            .filter_map(|m| match m {
                DeviceMessage::ConfigAck { version } => Some(*version),
                _ => None,
            })
            .collect()
    }

    /// A purchase of `cents`.
    fn purchase(cents: u64) -> TransactionRequest {
        TransactionRequest {
            amount_total: Cents::new(cents).ok(),
            ..TransactionRequest::of(Function::CardPurchase)
        }
    }

    #[tokio::test]
    async fn a_config_is_applied_at_once_when_idle_and_acknowledged() {
        let mut h = harness(false).await;
        let mut ws = accept(&h.listener).await;
        hello(&mut ws).await;
        send(&mut ws, &welcome(vec![register()], 10_000)).await;
        let settings = Settings {
            idle_text: "Welcome to Joe's".into(),
            ..surcharging(100)
        };
        send(&mut ws, &config(1, settings.clone())).await;
        assert_eq!(recv(&mut ws).await, DeviceMessage::ConfigAck { version: 1 });
        let events = drain(&mut h.events);
        assert!(
            events.contains(&TerminalEvent::ConfigApplied {
                version: 1,
                settings: settings.clone()
            }),
            "{events:?}"
        );
        // Kept before it was acknowledged.
        let kept = AppliedSettings::open(h.config.settings_path()).expect("settings");
        assert_eq!(kept.version(), Some(1));
        assert_eq!(kept.settings(), &settings);
        // The next payment runs with it: 1 % of 20.00.
        let (_, _, r) = run_offer(&mut ws, purchase(2000), None).await;
        assert_eq!(
            r.fields.get("AmountSurcharge").map(String::as_str),
            Some("20")
        );
        assert_eq!(
            r.fields.get("AmountTotal").map(String::as_str),
            Some("2020")
        );
        h.shutdown.cancel();
        assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
    }

    #[tokio::test]
    async fn a_config_waits_for_the_transaction_in_progress() {
        // Slower than the test could wait: only the cancel ends the payment.
        let mut h = harness_with(false, Duration::from_secs(600)).await;
        let mut ws = accept(&h.listener).await;
        hello(&mut ws).await;
        send(&mut ws, &welcome(vec![register()], 10_000)).await;

        // Accepted, not started: the configuration waits...
        let o = offer(1053);
        let id = o.transaction_id;
        send(&mut ws, &CloudMessage::Transaction(o)).await;
        assert_eq!(
            recv(&mut ws).await,
            DeviceMessage::Accept { transaction_id: id }
        );
        send(&mut ws, &config(1, surcharging(100))).await;
        assert_eq!(
            acks(&frames_until_pong(&mut ws, 1).await),
            Vec::<u64>::new()
        );
        // ...and still while it runs, where a newer one replaces it.
        send(&mut ws, &CloudMessage::Start { transaction_id: id }).await;
        send(&mut ws, &config(2, surcharging(200))).await;
        assert_eq!(
            acks(&frames_until_pong(&mut ws, 2).await),
            Vec::<u64>::new()
        );
        assert_eq!(applied(&drain(&mut h.events)), Vec::<u64>::new());
        assert_eq!(
            AppliedSettings::open(h.config.settings_path())
                .expect("settings")
                .version(),
            None,
            "nothing is applied during a transaction"
        );

        // The result first, then the newest configuration, applied and acknowledged.
        send(&mut ws, &CloudMessage::Cancel { transaction_id: id }).await;
        let (_, last) = recv_after_progress(&mut ws).await;
        let DeviceMessage::Result(r) = last else {
            panic!("expected a result, got {last:?}")
        };
        assert_eq!(r.transaction_id, id);
        assert_eq!(recv(&mut ws).await, DeviceMessage::ConfigAck { version: 2 });
        sync(&mut ws, 3).await;
        let events = drain(&mut h.events);
        assert_eq!(applied(&events), vec![2], "the newest only");
        let completed = events
            .iter()
            .position(|e| matches!(e, TerminalEvent::Completed { .. }));
        let configured = events
            .iter()
            .position(|e| matches!(e, TerminalEvent::ConfigApplied { .. }));
        assert!(completed < configured, "{events:?}");

        // An accepted transaction the cloud aborts also ends the wait.
        let o = offer(1000);
        let id = o.transaction_id;
        send(&mut ws, &CloudMessage::Transaction(o)).await;
        assert_eq!(
            recv(&mut ws).await,
            DeviceMessage::Accept { transaction_id: id }
        );
        send(&mut ws, &config(3, surcharging(300))).await;
        assert_eq!(
            acks(&frames_until_pong(&mut ws, 4).await),
            Vec::<u64>::new()
        );
        send(
            &mut ws,
            &CloudMessage::Abort {
                transaction_id: id,
                reason: "accept deadline passed".into(),
            },
        )
        .await;
        assert_eq!(recv(&mut ws).await, DeviceMessage::ConfigAck { version: 3 });
        // 3 % of 20.00.
        let (_, _, r) = run_offer(&mut ws, purchase(2000), None).await;
        assert_eq!(
            r.fields.get("AmountSurcharge").map(String::as_str),
            Some("60")
        );
        h.shutdown.cancel();
        assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
    }

    #[tokio::test]
    async fn an_older_or_equal_config_is_acknowledged_again_not_reapplied() {
        let mut h = harness(false).await;
        let mut ws = accept(&h.listener).await;
        hello(&mut ws).await;
        send(&mut ws, &welcome(vec![register()], 10_000)).await;
        send(&mut ws, &config(2, surcharging(100))).await;
        assert_eq!(recv(&mut ws).await, DeviceMessage::ConfigAck { version: 2 });
        // A re-send after a reconnect, and an older one with other settings.
        send(&mut ws, &config(2, surcharging(900))).await;
        assert_eq!(recv(&mut ws).await, DeviceMessage::ConfigAck { version: 2 });
        send(&mut ws, &config(1, surcharging(900))).await;
        assert_eq!(recv(&mut ws).await, DeviceMessage::ConfigAck { version: 1 });
        sync(&mut ws, 1).await;
        assert_eq!(applied(&drain(&mut h.events)), vec![2]);
        let kept = AppliedSettings::open(h.config.settings_path()).expect("settings");
        assert_eq!(kept.settings(), &surcharging(100));
        let (_, _, r) = run_offer(&mut ws, purchase(2000), None).await;
        assert_eq!(
            r.fields.get("AmountSurcharge").map(String::as_str),
            Some("20")
        );
        // Settings beyond the protocol's limits are neither applied nor acknowledged.
        send(&mut ws, &config(3, surcharging(5_000))).await;
        assert_eq!(
            acks(&frames_until_pong(&mut ws, 2).await),
            Vec::<u64>::new()
        );
        h.shutdown.cancel();
        assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
    }

    #[tokio::test]
    async fn the_applied_config_survives_a_restart() {
        let mut h = harness(false).await;
        let mut ws = accept(&h.listener).await;
        hello(&mut ws).await;
        send(&mut ws, &welcome(vec![register()], 10_000)).await;
        let settings = Settings {
            receipt_header: "Joe's Coffee".into(),
            receipt_footer: "See you soon".into(),
            ..surcharging(100)
        };
        send(&mut ws, &config(5, settings.clone())).await;
        assert_eq!(recv(&mut ws).await, DeviceMessage::ConfigAck { version: 5 });
        h.shutdown.cancel();
        assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
        let _ = drain(&mut h.events);

        // Restarted: it runs with them before the cloud says anything...
        let (mut events, _commands, shutdown, agent) =
            start_agent(h.config.clone(), Duration::from_millis(50)).await;
        let mut ws = accept(&h.listener).await;
        hello(&mut ws).await;
        assert_eq!(
            drain(&mut events).first(),
            Some(&TerminalEvent::ConfigRestored {
                version: 5,
                settings: settings.clone()
            })
        );
        send(&mut ws, &welcome(vec![register()], 10_000)).await;
        let (_, _, r) = run_offer(&mut ws, purchase(2000), None).await;
        assert_eq!(
            r.fields.get("AmountSurcharge").map(String::as_str),
            Some("20")
        );
        let receipt = r.fields.get("Receipt").cloned().unwrap_or_default();
        assert!(
            receipt.trim_start().starts_with("Joe's Coffee"),
            "{receipt}"
        );
        assert!(receipt.ends_with("See you soon"), "{receipt}");
        // ...and acknowledges the same version again when the cloud re-sends it.
        send(&mut ws, &config(5, settings)).await;
        assert_eq!(recv(&mut ws).await, DeviceMessage::ConfigAck { version: 5 });
        sync(&mut ws, 1).await;
        assert_eq!(applied(&drain(&mut events)), Vec::<u64>::new());
        shutdown.cancel();
        assert_eq!(agent.await.expect("join").expect("run"), Exit::Shutdown);
    }

    #[tokio::test]
    async fn a_result_finished_while_offline_is_delivered_after_reconnect() {
        let h = harness(false).await;
        let mut ws = accept(&h.listener).await;
        hello(&mut ws).await;
        send(&mut ws, &welcome(vec![register()], 10_000)).await;
        let o = offer(1053); // slow: 50 ms in the harness
        let id = o.transaction_id;
        send(&mut ws, &CloudMessage::Transaction(o)).await;
        assert_eq!(
            recv(&mut ws).await,
            DeviceMessage::Accept { transaction_id: id }
        );
        send(&mut ws, &CloudMessage::Start { transaction_id: id }).await;
        drop(ws); // the link drops mid-transaction

        let mut ws = accept(&h.listener).await;
        let hi = hello(&mut ws).await;
        let result = match hi.unacknowledged.first() {
            // Finished before the reconnect: handed over in hello.
            Some(r) => r.clone(),
            // Still running at hello time: it says so, and sends the result when done.
            None => {
                assert_eq!(hi.in_progress, Some(id));
                send(&mut ws, &welcome(vec![register()], 10_000)).await;
                match recv_after_progress(&mut ws).await {
                    (_, DeviceMessage::Result(r)) => r,
                    (_, other) => panic!("expected a result, got {other:?}"),
                }
            }
        };
        assert_eq!(result.transaction_id, id);
        assert_eq!(result.transaction_result, Some(TransactionResult::Accepted));
        h.shutdown.cancel();
        assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
    }

    /// Software updates, against the scripted cloud and a file server of the test's own.
    mod updates {
        use super::*;
        use crate::update::{Install, InstallMarker, Installer, VerifiedUpdate};
        use protocol::update::{Artifact, ReleaseKey, SigningKey};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        /// An installer that records what it was given instead of installing anything.
        #[derive(Default)]
        struct Recorder {
            calls: std::sync::Mutex<Vec<VerifiedUpdate>>,
        }

        impl Install for Recorder {
            fn install(&self, update: &VerifiedUpdate) -> Result<(), String> {
                self.calls.lock().unwrap().push(update.clone());
                Ok(())
            }
        }

        impl Recorder {
            fn calls(&self) -> Vec<VerifiedUpdate> {
                self.calls.lock().unwrap().clone()
            }
        }

        fn release_key() -> (SigningKey, ReleaseKey) {
            let (_, key) = SigningKey::generate().expect("key");
            let public = key.public();
            (key, public)
        }

        fn artifact(key: &SigningKey, version: &str, file: &[u8], url: &str) -> Artifact {
            let signed = key.sign(version, file).expect("sign");
            Artifact {
                version: version.into(),
                url: url.into(),
                size: file.len() as u64,
                sha256: signed.sha256,
                signature: signed.signature,
                key_id: signed.key_id,
            }
        }

        fn in_secs(secs: i64) -> String {
            (Utc::now() + chrono::TimeDelta::seconds(secs)).to_rfc3339()
        }

        fn update(campaign_id: &str, artifact: Artifact, install_before: String) -> CloudMessage {
            CloudMessage::Update(UpdateOffer {
                campaign_id: campaign_id.into(),
                artifact,
                install_before,
            })
        }

        /// An agent that trusts `trusted` and installs with `installer`.
        async fn updating(
            trusted: ReleaseKey,
            installer: Installer,
            slow: Duration,
            adjust: impl FnOnce(&mut TerminalConfig),
        ) -> Harness {
            harness_adjusted(false, slow, |c| {
                c.release_keys = vec![trusted];
                c.installer = installer;
                adjust(c);
            })
            .await
        }

        /// Answers one HTTP request on `listener` with `body`; returns the request's head.
        async fn serve_one(listener: &TcpListener, body: &[u8]) -> String {
            let (mut tcp, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
                .await
                .expect("the agent downloads")
                .expect("accept");
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = tcp.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            tcp.write_all(response.as_bytes()).await.expect("write");
            tcp.write_all(body).await.expect("write");
            let _ = tcp.shutdown().await;
            String::from_utf8_lossy(&head).into_owned()
        }

        /// The next frame, which must be an `update_status`.
        async fn step(ws: &mut ServerWs) -> (String, UpdateStep, Option<String>) {
            match recv(ws).await {
                DeviceMessage::UpdateStatus {
                    campaign_id,
                    step,
                    reason,
                    ..
                } => (campaign_id, step, reason),
                other => panic!("expected update_status, got {other:?}"),
            }
        }

        fn steps(frames: &[DeviceMessage]) -> Vec<UpdateStep> {
            frames
                .iter()
                .filter_map(|m| match m {
                    DeviceMessage::UpdateStatus { step, .. } => Some(*step),
                    _ => None,
                })
                .collect()
        }

        fn update_events(events: &[TerminalEvent]) -> Vec<UpdateStep> {
            events
                .iter()
                .filter_map(|e| match e {
                    TerminalEvent::Update { step, .. } => Some(*step),
                    _ => None,
                })
                .collect()
        }

        #[tokio::test]
        async fn an_update_is_downloaded_verified_and_installed_when_idle() {
            let (key, trusted) = release_key();
            let recorder = Arc::new(Recorder::default());
            let mut h = updating(
                trusted,
                Installer::Custom(recorder.clone()),
                Duration::from_millis(50),
                |_| {},
            )
            .await;
            let mut ws = accept(&h.listener).await;
            let hi = hello(&mut ws).await;
            assert!(hi
                .capabilities
                .iter()
                .any(|c| c == protocol::device::capability::UPDATE));
            send(&mut ws, &welcome(vec![register()], 10_000)).await;

            // A path of the cloud's: fetched from the cloud, with the device's credentials.
            let file = b"agent 2.0.0 \x00\x01 binary".to_vec();
            let a = artifact(&key, "2.0.0", &file, "/device/v1/artifacts/a1");
            send(&mut ws, &update("c1", a, in_secs(3600))).await;
            assert_eq!(
                step(&mut ws).await,
                ("c1".into(), UpdateStep::Downloading, None)
            );
            let head = serve_one(&h.listener, &file).await;
            assert!(
                head.starts_with("GET /device/v1/artifacts/a1 HTTP/1.1\r\n"),
                "{head}"
            );
            // base64("dev-1:s3cret")
            assert!(
                head.to_ascii_lowercase()
                    .contains("authorization: basic zgv2lte6cznjcmv0\r\n"),
                "{head}"
            );
            assert_eq!(
                step(&mut ws).await,
                ("c1".into(), UpdateStep::Verified, None)
            );
            assert_eq!(
                step(&mut ws).await,
                ("c1".into(), UpdateStep::Installing, None)
            );
            // The installation is over before the next frame is read.
            sync(&mut ws, 1).await;
            assert_eq!(
                recorder.calls(),
                vec![VerifiedUpdate {
                    campaign_id: "c1".into(),
                    version: "2.0.0".into(),
                    file: file.clone(),
                }]
            );
            assert_eq!(
                crate::update::read_marker(&h.config.update_marker_path()),
                Ok(Some(InstallMarker {
                    campaign_id: "c1".into(),
                    version: "2.0.0".into()
                }))
            );
            assert_eq!(
                update_events(&drain(&mut h.events)),
                vec![
                    UpdateStep::Downloading,
                    UpdateStep::Verified,
                    UpdateStep::Installing
                ]
            );
            h.shutdown.cancel();
            assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);

            // The next start reports it; this build is still the old version, so: failed.
            let (mut events, _commands, shutdown, agent) =
                start_agent(h.config.clone(), Duration::from_millis(50)).await;
            let mut ws = accept(&h.listener).await;
            hello(&mut ws).await;
            send(&mut ws, &welcome(vec![register()], 10_000)).await;
            let still = format!("install: still running {}", crate::AGENT_VERSION);
            assert_eq!(
                step(&mut ws).await,
                ("c1".into(), UpdateStep::Failed, Some(still))
            );
            sync(&mut ws, 2).await;
            assert_eq!(update_events(&drain(&mut events)), vec![UpdateStep::Failed]);
            assert_eq!(
                crate::update::read_marker(&h.config.update_marker_path()),
                Ok(None),
                "reported once"
            );
            shutdown.cancel();
            assert_eq!(agent.await.expect("join").expect("run"), Exit::Shutdown);
        }

        #[tokio::test]
        async fn the_installation_is_reported_once_after_the_restart() {
            let marker = |version: &str| {
                serde_json::to_vec(&InstallMarker {
                    campaign_id: "c7".into(),
                    version: version.into(),
                })
                .expect("json")
            };
            let (_, trusted) = release_key();
            let h = updating(trusted, Installer::Refuse, Duration::from_millis(50), |c| {
                // As the version being replaced left it before executing this one.
                std::fs::write(c.update_marker_path(), marker(crate::AGENT_VERSION))
                    .expect("marker");
            })
            .await;
            let mut ws = accept(&h.listener).await;
            hello(&mut ws).await;
            send(&mut ws, &welcome(vec![register()], 10_000)).await;
            assert_eq!(
                step(&mut ws).await,
                ("c7".into(), UpdateStep::Installed, None)
            );
            sync(&mut ws, 1).await;
            assert!(!h.config.update_marker_path().exists());
            // The offer made again on reconnecting, crossing that report: what runs already.
            let (key, _) = release_key();
            let same = artifact(&key, crate::AGENT_VERSION, b"x", "/device/v1/artifacts/a1");
            send(&mut ws, &update("c7", same, in_secs(3600))).await;
            assert_eq!(
                step(&mut ws).await,
                ("c7".into(), UpdateStep::Installed, None)
            );
            // Reconnected: nothing more to say.
            drop(ws);
            let mut ws = accept(&h.listener).await;
            hello(&mut ws).await;
            send(&mut ws, &welcome(vec![register()], 10_000)).await;
            assert_eq!(
                steps(&frames_until_pong(&mut ws, 2).await),
                Vec::<UpdateStep>::new()
            );
            h.shutdown.cancel();
            assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);

            // A corrupt marker costs the report, never the start.
            std::fs::write(h.config.update_marker_path(), b"{").expect("marker");
            let (_events, _commands, shutdown, agent) =
                start_agent(h.config.clone(), Duration::from_millis(50)).await;
            let mut ws = accept(&h.listener).await;
            hello(&mut ws).await;
            send(&mut ws, &welcome(vec![register()], 10_000)).await;
            assert_eq!(
                steps(&frames_until_pong(&mut ws, 3).await),
                Vec::<UpdateStep>::new()
            );
            assert!(!h.config.update_marker_path().exists());
            shutdown.cancel();
            assert_eq!(agent.await.expect("join").expect("run"), Exit::Shutdown);
        }

        #[tokio::test]
        async fn a_bad_checksum_size_or_signature_is_refused_and_nothing_installed() {
            let (key, trusted) = release_key();
            let recorder = Arc::new(Recorder::default());
            let h = updating(
                trusted,
                Installer::Custom(recorder.clone()),
                Duration::from_millis(50),
                |_| {},
            )
            .await;
            let mut ws = accept(&h.listener).await;
            hello(&mut ws).await;
            send(&mut ws, &welcome(vec![register()], 10_000)).await;
            // Files on another server: fetched without the device's credentials.
            let files = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let url = format!("http://{}/agent-2.0.0", files.local_addr().expect("addr"));
            let file = b"agent 2.0.0".to_vec();

            // Another file of the same size under the artifact: the checksum.
            let a = artifact(&key, "2.0.0", &file, &url);
            send(&mut ws, &update("c1", a.clone(), in_secs(3600))).await;
            assert_eq!(step(&mut ws).await.1, UpdateStep::Downloading);
            let head = serve_one(&files, b"agent 6.6.6").await;
            assert!(
                !head.to_ascii_lowercase().contains("authorization"),
                "{head}"
            );
            let (campaign, s, reason) = step(&mut ws).await;
            assert_eq!((campaign.as_str(), s), ("c1", UpdateStep::Failed));
            let reason = reason.unwrap_or_default();
            assert!(reason.starts_with("checksum: "), "{reason}");

            // More bytes than the artifact says: refused as soon as it shows.
            send(&mut ws, &update("c2", a.clone(), in_secs(3600))).await;
            assert_eq!(step(&mut ws).await.1, UpdateStep::Downloading);
            serve_one(&files, b"agent 2.0.0 and then some").await;
            let (_, s, reason) = step(&mut ws).await;
            assert_eq!(s, UpdateStep::Failed);
            let reason = reason.unwrap_or_default();
            assert!(reason.starts_with("download: "), "{reason}");

            // Signed by a key this device does not trust, or relabelled as another version:
            // the signature, before anything is downloaded.
            let (stranger, _) = release_key();
            let untrusted = artifact(&stranger, "2.0.0", &file, &url);
            let relabelled = Artifact {
                version: "9.9.9".into(),
                ..a.clone()
            };
            for (campaign, bad) in [("c3", untrusted), ("c4", relabelled)] {
                send(&mut ws, &update(campaign, bad, in_secs(3600))).await;
                let (c, s, reason) = step(&mut ws).await;
                assert_eq!((c.as_str(), s), (campaign, UpdateStep::Failed));
                let reason = reason.unwrap_or_default();
                assert!(reason.starts_with("signature: "), "{reason}");
            }
            // Garbage where a time should be: refused, never a panic.
            send(&mut ws, &update("c5", a, "tomorrow".into())).await;
            let (_, s, reason) = step(&mut ws).await;
            assert_eq!(s, UpdateStep::Failed);
            assert!(reason.unwrap_or_default().starts_with("offer: "));

            sync(&mut ws, 1).await;
            assert_eq!(recorder.calls(), Vec::new());
            assert!(!h.config.update_marker_path().exists());
            h.shutdown.cancel();
            assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
        }

        #[tokio::test]
        async fn an_in_process_agent_refuses_to_replace_itself() {
            let (key, trusted) = release_key();
            // The library's default installer.
            let h = updating(
                trusted,
                Installer::default(),
                Duration::from_millis(50),
                |_| {},
            )
            .await;
            let mut ws = accept(&h.listener).await;
            hello(&mut ws).await;
            send(&mut ws, &welcome(vec![register()], 10_000)).await;
            let file = b"agent 2.0.0".to_vec();
            let a = artifact(&key, "2.0.0", &file, "/device/v1/artifacts/a1");
            send(&mut ws, &update("c1", a, in_secs(3600))).await;
            assert_eq!(step(&mut ws).await.1, UpdateStep::Downloading);
            serve_one(&h.listener, &file).await;
            assert_eq!(step(&mut ws).await.1, UpdateStep::Verified);
            assert_eq!(
                step(&mut ws).await,
                (
                    "c1".into(),
                    UpdateStep::Failed,
                    Some("install: this agent cannot replace itself (running in-process)".into())
                )
            );
            sync(&mut ws, 1).await;
            assert!(!h.config.update_marker_path().exists());
            h.shutdown.cancel();
            assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
        }

        #[tokio::test]
        async fn an_update_waits_for_the_transaction_in_progress() {
            let (key, trusted) = release_key();
            let recorder = Arc::new(Recorder::default());
            // Slower than the test could wait: only the cancel ends the payment.
            let h = updating(
                trusted,
                Installer::Custom(recorder.clone()),
                Duration::from_secs(600),
                |_| {},
            )
            .await;
            let mut ws = accept(&h.listener).await;
            hello(&mut ws).await;
            send(&mut ws, &welcome(vec![register()], 10_000)).await;
            let o = offer(1053);
            let id = o.transaction_id;
            send(&mut ws, &CloudMessage::Transaction(o)).await;
            assert_eq!(
                recv(&mut ws).await,
                DeviceMessage::Accept { transaction_id: id }
            );
            send(&mut ws, &CloudMessage::Start { transaction_id: id }).await;

            // Downloaded and verified during the payment, not installed.
            let file = b"agent 2.0.0".to_vec();
            let a = artifact(&key, "2.0.0", &file, "/device/v1/artifacts/a1");
            let offered = update("c1", a, in_secs(3600));
            send(&mut ws, &offered).await;
            let (_, first) = recv_after_progress(&mut ws).await;
            assert!(
                matches!(
                    first,
                    DeviceMessage::UpdateStatus {
                        step: UpdateStep::Downloading,
                        ..
                    }
                ),
                "{first:?}"
            );
            serve_one(&h.listener, &file).await;
            let (_, verified) = recv_after_progress(&mut ws).await;
            assert!(
                matches!(
                    verified,
                    DeviceMessage::UpdateStatus {
                        step: UpdateStep::Verified,
                        ..
                    }
                ),
                "{verified:?}"
            );
            // A repeated offer gets the step it has reached.
            send(&mut ws, &offered).await;
            assert_eq!(
                steps(&frames_until_pong(&mut ws, 1).await),
                vec![UpdateStep::Verified]
            );
            assert_eq!(recorder.calls(), Vec::new());

            // The result first, then the installation.
            send(&mut ws, &CloudMessage::Cancel { transaction_id: id }).await;
            let (_, last) = recv_after_progress(&mut ws).await;
            assert!(matches!(last, DeviceMessage::Result(_)), "{last:?}");
            assert_eq!(step(&mut ws).await.1, UpdateStep::Installing);
            sync(&mut ws, 2).await;
            assert_eq!(recorder.calls().len(), 1);
            h.shutdown.cancel();
            assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
        }

        #[tokio::test]
        async fn an_update_is_postponed_when_its_window_ends_first() {
            let (key, trusted) = release_key();
            let recorder = Arc::new(Recorder::default());
            let h = updating(
                trusted,
                Installer::Custom(recorder.clone()),
                Duration::from_secs(600),
                |_| {},
            )
            .await;
            let mut ws = accept(&h.listener).await;
            hello(&mut ws).await;
            send(&mut ws, &welcome(vec![register()], 10_000)).await;
            let file = b"agent 2.0.0".to_vec();
            let a = artifact(&key, "2.0.0", &file, "/device/v1/artifacts/a1");

            // A window already over: postponed without a download.
            send(&mut ws, &update("c0", a.clone(), in_secs(-1))).await;
            let (c, s, reason) = step(&mut ws).await;
            assert_eq!((c.as_str(), s), ("c0", UpdateStep::Postponed));
            assert!(reason.is_some());

            // A window that ends while a payment runs.
            let o = offer(1053);
            let id = o.transaction_id;
            send(&mut ws, &CloudMessage::Transaction(o)).await;
            assert_eq!(
                recv(&mut ws).await,
                DeviceMessage::Accept { transaction_id: id }
            );
            send(&mut ws, &CloudMessage::Start { transaction_id: id }).await;
            send(&mut ws, &update("c1", a, in_secs(2))).await;
            let mut seen = Vec::new();
            while seen.last() != Some(&UpdateStep::Postponed) {
                let (_, m) = recv_after_progress(&mut ws).await;
                match m {
                    DeviceMessage::UpdateStatus { step, .. } => {
                        if step == UpdateStep::Downloading {
                            serve_one(&h.listener, &file).await;
                        }
                        seen.push(step);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(
                seen,
                vec![
                    UpdateStep::Downloading,
                    UpdateStep::Verified,
                    UpdateStep::Postponed
                ]
            );
            // The payment ends: nothing is installed.
            send(&mut ws, &CloudMessage::Cancel { transaction_id: id }).await;
            let frames = frames_until_pong(&mut ws, 1).await;
            assert!(
                frames.iter().any(|m| matches!(m, DeviceMessage::Result(_))),
                "{frames:?}"
            );
            assert_eq!(steps(&frames), Vec::<UpdateStep>::new());
            assert_eq!(recorder.calls(), Vec::new());
            assert!(!h.config.update_marker_path().exists());
            h.shutdown.cancel();
            assert_eq!(h.agent.await.expect("join").expect("run"), Exit::Shutdown);
        }
    }
}
