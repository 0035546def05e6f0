//! Test harness: the real cloud on port 0 with a temporary SQLite file, real terminal agents,
//! a raw WebSocket device for protocol-level tests, and the POS client.

use cloud::device_gateway::GatewaySettings;
use cloud::engine::devices::NewDevice;
use cloud::engine::{Engine, EngineSettings};
use cloud::{Application, Config};
use futures_util::{SinkExt, StreamExt};
use pos::{PairingDetails, PosClient};
use protocol::device::{CloudMessage, DeviceMessage, Hello, PROTOCOL_VERSION};
use protocol::{DeviceId, RegisterKey};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use terminal::{Exit, SimulatorConfig, TerminalCommand, TerminalConfig, TerminalEvent};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// How long any single expectation may take before the test fails (never a sleep).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How often [`eventually`] asks again.
const ASK_EVERY: Duration = Duration::from_millis(20);

/// Asks `check` every 20 ms until it gives `Some`, for at most [`PATIENCE`] (then the test fails
/// naming `what`). The one place tests wait for a state they are not told about (a row written,
/// a connection counted, a journal flushed): it waits only as long as the state takes to arrive,
/// and no check depends on how long that is.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(ASK_EVERY).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Timing knobs, short by default so tests run fast.
#[derive(Clone)]
pub struct Opts {
    pub accept_timeout: Duration,
    pub poll_interval_min: Duration,
    pub token_ttl: Duration,
    pub delayed_after: Duration,
    pub pairing_code_ttl: Duration,
    pub heartbeat: Duration,
    pub hello_timeout: Duration,
    pub sync_timeout: Duration,
    pub retention: Duration,
    pub callback_retry_min: Duration,
    pub callback_retry_max: Duration,
    /// The callback signing secret (none: generated and kept in the store, as by default).
    pub callback_secret: Option<String>,
    pub api_limits: cloud::pos_api::ApiLimits,
    /// The cluster's NATS server, for multi-node tests.
    pub nats_url: Option<String>,
    /// A shared database (PostgreSQL) instead of the node's own SQLite file.
    pub database_url: Option<String>,
    /// This node's name (unique per node in a cluster).
    pub node: String,
    /// POS API keys, `VENDOR=KEY` (none: not required).
    pub pos_api_keys: Vec<String>,
    /// `--require-pos-keys` values (`all` or vendors; none: keyless accepted).
    pub require_pos_keys: Vec<String>,
    /// Whether a cloud with nobody signed up makes a setup link (off unless a test asks).
    pub first_run_setup: bool,
    /// Dashboard sessions: idle and absolute expiry.
    pub session_idle: Duration,
    pub session_ttl: Duration,
    /// The operator's admin token (none: dashboard and admin API off).
    pub admin_token: Option<String>,
    /// Most open connections per source address (0: no limit).
    pub max_connections_per_source: usize,
    /// Commit failures on demand (SQLite store only).
    pub store_faults: Arc<cloud::store::StoreFaults>,
    /// Where the cloud's "now" comes from (a test's [`cloud::domain::ManualClock`] to move
    /// time without sleeping).
    pub clock: Arc<dyn cloud::domain::Clock>,
    /// Whether the virtual terminal page may enroll devices (`On` here, so that the page's
    /// tests need no setup; `Auto` is the rule of `serve`).
    pub virtual_terminals: cloud::config::VirtualTerminals,
    /// How long an unused self-enrolled device is kept.
    pub virtual_terminal_ttl: Duration,
    /// Refused device handshakes allowed per source.
    pub hello_failures: cloud::pos_api::pairing_guard::PairingGuardSettings,
    /// `pairing_code_request`s allowed per device.
    pub pairing_code_requests: cloud::pos_api::pairing_guard::PairingGuardSettings,
    /// Receipts by email and SMS (none configured unless a test sets them; short retries).
    pub receipts: cloud::receipts::ReceiptSettings,
    /// A connection's time to deliver a request header (the server's default unless set).
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body (the server's default unless set).
    pub body_read_timeout: Duration,
    /// How often update campaign loops look again besides their wake-ups.
    pub update_tick: Duration,
    /// Webhook deliveries (short retries; disabling after a day unless a test says).
    pub webhooks: cloud::pos_api::webhook_delivery::WebhookSettings,
    /// Refuse webhook targets on private addresses (production's rule).
    pub refuse_private_webhooks: bool,
}

/// The callback signing secret of test apps.
pub const CALLBACK_SECRET: &str = "test-callback-secret";

impl Default for Opts {
    fn default() -> Self {
        Self {
            accept_timeout: Duration::from_secs(3),
            poll_interval_min: Duration::ZERO,
            token_ttl: Duration::from_secs(900),
            delayed_after: Duration::from_secs(60),
            pairing_code_ttl: Duration::from_secs(120),
            heartbeat: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(3),
            sync_timeout: Duration::from_secs(20),
            retention: Duration::from_secs(3600),
            callback_retry_min: Duration::from_millis(50),
            callback_retry_max: Duration::from_secs(1),
            callback_secret: Some(CALLBACK_SECRET.into()),
            nats_url: None,
            database_url: None,
            node: "test".into(),
            pos_api_keys: Vec::new(),
            require_pos_keys: Vec::new(),
            first_run_setup: false,
            session_idle: Duration::from_secs(8 * 3600),
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            update_tick: Duration::from_millis(200),
            webhooks: cloud::pos_api::webhook_delivery::WebhookSettings {
                policy: cloud::domain::webhooks::DeliveryPolicy {
                    retry_min: Duration::from_millis(50),
                    retry_max: Duration::from_millis(400),
                    disable_after: Duration::from_secs(24 * 3600),
                },
                timeout: Duration::from_secs(2),
                recheck: Duration::from_millis(500),
            },
            refuse_private_webhooks: false,
            admin_token: None,
            max_connections_per_source: 0,
            api_limits: Default::default(),
            store_faults: Arc::default(),
            clock: Arc::new(cloud::domain::SystemClock),
            virtual_terminals: cloud::config::VirtualTerminals::On,
            virtual_terminal_ttl: EngineSettings::default().virtual_terminal_ttl,
            hello_failures: GatewaySettings::default().hello_failures,
            pairing_code_requests: GatewaySettings::default().pairing_code_requests,
            receipts: cloud::receipts::ReceiptSettings {
                retry_min: Duration::from_millis(50),
                retry_max: Duration::from_secs(1),
                timeout: Duration::from_secs(5),
                ..Default::default()
            },
            header_read_timeout: cloud::config::ListenerSettings::default().header_read_timeout,
            body_read_timeout: cloud::config::ListenerSettings::default().body_read_timeout,
        }
    }
}

/// A running cloud.
pub struct TestApp {
    pub addr: SocketAddr,
    /// Makes the store's commits fail (SQLite), as a full disk would.
    pub faults: Arc<cloud::store::StoreFaults>,
    /// Whether the store and bus are available, as `/readyz` reports.
    pub health: Arc<cloud::health::Health>,
    pub base: String,
    pub engine: Engine,
    pub http: reqwest::Client,
    pub dir: Arc<tempfile::TempDir>,
    /// The first owner's setup link (with `Opts::first_run_setup` on a cloud with nobody).
    pub setup_url: Option<String>,
    stop: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

/// The cluster's NATS URL, or `None` after saying that `what` is skipped (CI sets it).
pub fn nats_url_or_skip(what: &str) -> Option<String> {
    let url = std::env::var("EFTCLOUD_TEST_NATS_URL").ok();
    if url.is_none() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "{what} skipped: EFTCLOUD_TEST_NATS_URL not set"
        );
    }
    url
}

/// A clock stopped at the current time, for [`Opts::clock`]: the test moves it.
/// A fresh PostgreSQL database and the NATS server of a cluster test; none (the test says it
/// was skipped) without `EFTCLOUD_TEST_DATABASE_URL` and `EFTCLOUD_TEST_NATS_URL`.
pub struct ClusterEnv {
    pub db: eftcloud_testing::FreshDatabase,
    pub nats: String,
}

impl ClusterEnv {
    pub async fn new(what: &str) -> Option<Self> {
        let nats = nats_url_or_skip(what)?;
        let db = eftcloud_testing::FreshDatabase::create(what).await?;
        Some(Self { db, nats })
    }

    /// The options of a node called `name` on this database and NATS.
    pub fn node(&self, name: &str) -> Opts {
        Opts {
            database_url: Some(self.db.url.clone()),
            nats_url: Some(self.nats.clone()),
            node: name.into(),
            ..Opts::default()
        }
    }
}

pub fn manual_clock() -> Arc<cloud::domain::ManualClock> {
    // Whole milliseconds, as the store keeps times.
    let now = chrono::Utc::now();
    let ms = chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
    Arc::new(cloud::domain::ManualClock::at(ms))
}

/// A cloud on its default options whose clock stands still until the test moves it.
pub async fn spawn_app_on_manual_clock() -> (TestApp, Arc<cloud::domain::ManualClock>) {
    let clock = manual_clock();
    let app = spawn_app_with(Opts {
        clock: clock.clone(),
        ..Opts::default()
    })
    .await;
    (app, clock)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Opts::default()).await
}

pub async fn spawn_app_with(opts: Opts) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    spawn_app_in(dir, opts, None).await
}

/// Starts a cloud on the database in `dir` (to restart one on the same data), optionally on a
/// given address.
pub async fn spawn_app_in(
    dir: Arc<tempfile::TempDir>,
    opts: Opts,
    addr: Option<SocketAddr>,
) -> TestApp {
    let database_url = opts
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("eftcloud.db").display()));
    spawn_app_on(database_url, dir, opts, addr).await
}

/// Starts a cloud on the store at `database_url` (e.g. a PostgreSQL database); `dir` holds
/// what else the test writes (terminal journals).
pub async fn spawn_app_on(
    database_url: String,
    dir: Arc<tempfile::TempDir>,
    opts: Opts,
    addr: Option<SocketAddr>,
) -> TestApp {
    let config = Config {
        listen: addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()),
        database_url,
        nats_url: opts.nats_url.clone(),
        public_url: None,
        engine: EngineSettings {
            pairing_code_ttl: opts.pairing_code_ttl,
            accept_timeout: opts.accept_timeout,
            token_ttl: opts.token_ttl,
            delayed_after: opts.delayed_after,
            retention: opts.retention,
            virtual_terminal_ttl: opts.virtual_terminal_ttl,
            clock: opts.clock.clone(),
            session_idle: opts.session_idle,
            session_ttl: opts.session_ttl,
            update_tick: opts.update_tick,
            refuse_private_webhooks: opts.refuse_private_webhooks,
        },
        gateway: GatewaySettings {
            heartbeat_interval: opts.heartbeat,
            hello_timeout: opts.hello_timeout,
            node: opts.node.clone(),
            hello_failures: opts.hello_failures.clone(),
            pairing_code_requests: opts.pairing_code_requests.clone(),
        },
        poll_interval_min: opts.poll_interval_min,
        sync_timeout: opts.sync_timeout,
        callbacks: cloud::pos_api::callbacks::CallbackSettings {
            secret: opts.callback_secret.clone(),
            retry_min: opts.callback_retry_min,
            retry_max: opts.callback_retry_max,
            max_attempts: 5,
            timeout: Duration::from_secs(2),
        },
        receipts: opts.receipts.clone(),
        webhooks: opts.webhooks.clone(),
        virtual_terminals: opts.virtual_terminals,
        admin_token: opts.admin_token.clone(),
        api_limits: opts.api_limits.clone(),
        metrics_listen: None,
        listeners: cloud::config::ListenerSettings {
            max_connections_per_source: opts.max_connections_per_source,
            header_read_timeout: opts.header_read_timeout,
            body_read_timeout: opts.body_read_timeout,
            ..Default::default()
        },
        pos_api_keys: cloud::pos_api::credentials::ApiKeys::parse(&opts.pos_api_keys).unwrap(),
        require_pos_keys: cloud::domain::accounts::KeylessPolicy::parse(&opts.require_pos_keys),
        store_faults: Some(opts.store_faults.clone()),
        first_run_setup: opts.first_run_setup,
    };
    let app = Application::build(config).await.expect("cloud builds");
    let addr = app.local_addr();
    let health = app.health().clone();
    let engine = app.engine().clone();
    let setup_url = app.setup_url().map(|u| u.to_string());
    let stop = CancellationToken::new();
    let s = stop.clone();
    let handle = tokio::spawn(async move {
        app.run_until_stopped(s).await.expect("cloud runs");
    });
    TestApp {
        addr,
        faults: opts.store_faults.clone(),
        health,
        base: format!("http://{addr}"),
        engine,
        http: reqwest::Client::new(),
        dir,
        setup_url,
        stop,
        handle: Some(handle),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pos(&self) -> PosClient {
        PosClient::new(&self.base).unwrap()
    }

    pub async fn enroll(&self, id: &str) -> String {
        self.engine
            .enroll_device(
                &DeviceId::parse(id).unwrap(),
                &NewDevice {
                    vendor: "Acme".into(),
                    model: "T1".into(),
                    merchant: "Toys Shop Pty Ltd".into(),
                    site: None,
                },
            )
            .await
            .unwrap()
    }

    /// Stops the cloud gracefully and waits for it.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(h) = self.handle.take() {
            h.await.unwrap();
        }
    }

    /// POSTs a form to a path and returns status and JSON body.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `GET /readyz`: status, body and `Retry-After`.
    pub async fn readyz(&self) -> (u16, serde_json::Value, Option<String>) {
        let r = self.http.get(self.url("/readyz")).send().await.unwrap();
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (status, r.json().await.unwrap(), retry)
    }

    /// Waits until `/readyz` answers `ready` (200) or not (503), returning its last answer.
    pub async fn until_ready(&self, ready: bool) -> (u16, serde_json::Value, Option<String>) {
        eventually("readiness", || async {
            let r = self.readyz().await;
            ((r.0 == 200) == ready).then_some(r)
        })
        .await
    }

    pub async fn get_json(&self, url: &str) -> (u16, serde_json::Value) {
        let r = self.http.get(url).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Runs the real binary's admin command `args` against `app` with the admin token `token`:
/// its exit code, stdout and stderr.
pub async fn admin_command(app: &TestApp, token: &str, args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_eftcloud"))
            .args(args)
            .args(["--cloud", &app.base, "--token", token])
            .env_remove("EFTCLOUD_ADMIN_TOKEN")
            .env_remove("EFTCLOUD_CLOUD")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("command finished in time")
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Creates an API key of `owner` with `scopes`; the key as presented.
pub async fn key(
    app: &TestApp,
    owner: cloud::domain::accounts::KeyOwner,
    scopes: &[cloud::domain::accounts::Scope],
) -> String {
    app.engine
        .create_api_key(
            cloud::engine::accounts::NewApiKey {
                owner,
                scopes: cloud::domain::accounts::Scopes::of(scopes.iter().copied()),
                label: String::new(),
                expires_at: None,
            },
            &cloud::engine::accounts::Actor::cli(),
        )
        .await
        .unwrap()
        .key
}

pub fn register(name: &str) -> RegisterKey {
    RegisterKey {
        register_id: format!("{name}-{}", uuid::Uuid::new_v4()),
        business_name: "Toys Shop".into(),
        vendor_name: "Till2Go".into(),
    }
}

pub fn register_form(r: &RegisterKey) -> Vec<(&'static str, &str)> {
    vec![
        ("POSRegisterID", r.register_id.as_str()),
        ("POSBusinessName", r.business_name.as_str()),
        ("POSVendorName", r.vendor_name.as_str()),
    ]
}

/// A real terminal agent with the card simulator, run in this process.
pub struct Terminal {
    pub events: mpsc::Receiver<TerminalEvent>,
    pub commands: mpsc::Sender<TerminalCommand>,
    pub journal: PathBuf,
    pub id: String,
    pub secret: String,
    stop: CancellationToken,
    handle: JoinHandle<Result<Exit, terminal::TerminalError>>,
}

pub fn fast_simulator() -> SimulatorConfig {
    SimulatorConfig {
        step_delay: Duration::from_millis(5),
        slow: Duration::from_millis(1500),
    }
}

pub async fn start_terminal(
    app: &TestApp,
    id: &str,
    secret: &str,
    journal: &Path,
    sim: SimulatorConfig,
) -> Terminal {
    start_terminal_at(&app.base, id, secret, journal, sim)
}

pub fn start_terminal_at(
    base: &str,
    id: &str,
    secret: &str,
    journal: &Path,
    sim: SimulatorConfig,
) -> Terminal {
    start_terminal_with(base, id, secret, journal, sim, |_| {})
}

/// A terminal whose configuration the test adjusts first.
pub fn start_terminal_with(
    base: &str,
    id: &str,
    secret: &str,
    journal: &Path,
    sim: SimulatorConfig,
    adjust: impl FnOnce(&mut TerminalConfig),
) -> Terminal {
    let mut config = TerminalConfig::new(
        base.parse().unwrap(),
        DeviceId::parse(id).unwrap(),
        secret,
        journal,
    );
    config.reconnect_min = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(300);
    adjust(&mut config);
    let (etx, erx) = mpsc::channel(256);
    let (ctx, crx) = mpsc::channel(8);
    let stop = CancellationToken::new();
    let backend = Arc::new(terminal::Simulator::new(sim));
    let handle = tokio::spawn(terminal::run(config, backend, etx, crx, stop.clone()));
    Terminal {
        events: erx,
        commands: ctx,
        journal: journal.to_path_buf(),
        id: id.to_string(),
        secret: secret.to_string(),
        stop,
        handle,
    }
}

impl Terminal {
    /// Waits for an event matching `f` and returns what `f` extracts.
    pub async fn wait_for<T>(&mut self, mut f: impl FnMut(&TerminalEvent) -> Option<T>) -> T {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let e = self.events.recv().await.expect("terminal still running");
                if let Some(t) = f(&e) {
                    return t;
                }
            }
        })
        .await
        .expect("terminal event in time")
    }

    pub async fn next_code(&mut self) -> String {
        self.wait_for(|e| match e {
            TerminalEvent::PairingCode { code, .. } => Some(code.to_string()),
            _ => None,
        })
        .await
    }

    /// Stops the agent gracefully.
    pub async fn stop(self) -> Exit {
        self.stop.cancel();
        self.handle.await.unwrap().unwrap()
    }

    /// Waits for the agent to end by itself (e.g. a simulated power failure).
    pub async fn exited(self) -> Exit {
        tokio::time::timeout(PATIENCE, self.handle)
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    }
}

/// Enrolls a device, starts its terminal and pairs a new register with it.
/// Polling options for a test POS: poll often, give up after [`PATIENCE`].
pub fn quick() -> pos::WaitOptions {
    pos::WaitOptions {
        interval: Duration::from_millis(20),
        timeout: PATIENCE,
    }
}

pub async fn paired_terminal(app: &TestApp, id: &str) -> (Terminal, RegisterKey) {
    paired_terminal_with(app, id, fast_simulator()).await
}

pub async fn paired_terminal_with(
    app: &TestApp,
    id: &str,
    sim: SimulatorConfig,
) -> (Terminal, RegisterKey) {
    let secret = app.enroll(id).await;
    let journal = app.dir.path().join(format!("{id}.journal"));
    let mut t = start_terminal(app, id, &secret, &journal, sim).await;
    let code = t.next_code().await;
    let reg = register("reg");
    app.pos()
        .pair(&code, &reg, &PairingDetails::new("Main Register"))
        .await
        .unwrap();
    t.wait_for(|e| matches!(e, TerminalEvent::Paired { .. }).then_some(()))
        .await;
    (t, reg)
}

/// Enrolls `id` on `devices` (the app its terminal connects to), starts a terminal with a slow
/// amount of `slow` that re-sends unacknowledged results only after a minute (so what stores a
/// refused result is the cloud's own retry), and pairs a new register through `pos`.
pub async fn paired_terminal_without_resend(
    devices: &TestApp,
    pos: &TestApp,
    id: &str,
    slow: Duration,
) -> (Terminal, RegisterKey) {
    let secret = devices.enroll(id).await;
    let journal = devices.dir.path().join(format!("{id}.journal"));
    let sim = SimulatorConfig {
        step_delay: Duration::from_millis(5),
        slow,
    };
    let mut t = start_terminal_with(&devices.base, id, &secret, &journal, sim, |c| {
        c.result_resend_min = Duration::from_secs(60);
        c.result_resend_max = Duration::from_secs(60);
    });
    let code = t.next_code().await;
    let reg = register(id);
    pos.pos()
        .pair(&code, &reg, &PairingDetails::new("Till"))
        .await
        .unwrap();
    t.wait_for(|e| matches!(e, TerminalEvent::Paired { .. }).then_some(()))
        .await;
    (t, reg)
}

/// A device speaking the protocol by hand, for tests of the cloud's side of it.
pub struct RawDevice {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub id: DeviceId,
}

pub async fn ws_connect(app: &TestApp) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/device/v1", app.addr))
        .await
        .unwrap();
    ws
}

pub fn hello(id: &str, secret: &str) -> DeviceMessage {
    DeviceMessage::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        device_id: DeviceId::parse(id).unwrap(),
        secret: secret.into(),
        vendor: "Acme".into(),
        model: "Raw".into(),
        agent_version: "test".into(),
        unacknowledged: vec![],
        in_progress: None,
        capabilities: Vec::new(),
        hardware: None,
        config_version: None,
    })
}

impl RawDevice {
    /// Enrolls device `id`, connects it and pairs a register to it.
    pub async fn paired(app: &TestApp, id: &str) -> (RawDevice, RegisterKey) {
        let secret = app.enroll(id).await;
        let mut d = Self::connect(app, id, &secret).await;
        let reg = d.pair(app).await;
        (d, reg)
    }

    /// Connects and says hello; returns after `welcome`.
    pub async fn connect(app: &TestApp, id: &str, secret: &str) -> RawDevice {
        Self::connect_with(app, hello(id, secret)).await
    }

    pub async fn connect_with(app: &TestApp, hello: DeviceMessage) -> RawDevice {
        let DeviceMessage::Hello(h) = &hello else {
            panic!("hello")
        };
        let mut d = RawDevice {
            ws: ws_connect(app).await,
            id: h.device_id.clone(),
        };
        d.send(&hello).await;
        match d.recv().await {
            CloudMessage::Welcome { device_id, .. } => assert_eq!(device_id, d.id),
            other => panic!("expected welcome, got {other:?}"),
        }
        d
    }

    pub async fn send(&mut self, m: &DeviceMessage) {
        self.ws
            .send(Message::text(serde_json::to_string(m).unwrap()))
            .await
            .unwrap();
    }

    /// The next frame that is not a ping (pings are answered).
    pub async fn recv(&mut self) -> CloudMessage {
        tokio::time::timeout(PATIENCE, async {
            loop {
                match self.ws.next().await.expect("open").expect("frame") {
                    Message::Text(t) => {
                        let m: CloudMessage = serde_json::from_str(t.as_str()).unwrap();
                        if let CloudMessage::Ping { nonce } = m {
                            self.send(&DeviceMessage::Pong { nonce }).await;
                            continue;
                        }
                        return m;
                    }
                    Message::Close(c) => panic!("closed: {c:?}"),
                    _ => continue,
                }
            }
        })
        .await
        .expect("frame in time")
    }

    /// Asserts no frame (other than pings) arrives within `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Ok(m) = tokio::time::timeout(d, self.recv()).await {
            panic!("unexpected frame {m:?}");
        }
    }

    /// Asks for a pairing code and returns it.
    pub async fn code(&mut self) -> String {
        self.send(&DeviceMessage::PairingCodeRequest).await;
        match self.recv().await {
            CloudMessage::PairingCode { code, .. } => code.to_string(),
            other => panic!("expected code, got {other:?}"),
        }
    }

    /// Pairs a fresh register with this device through the POS API.
    pub async fn pair(&mut self, app: &TestApp) -> RegisterKey {
        let code = self.code().await;
        let reg = register("raw");
        app.pos()
            .pair(&code, &reg, &PairingDetails::new("Counter 2"))
            .await
            .unwrap();
        match self.recv().await {
            CloudMessage::Paired { register } => assert_eq!(register.key, reg),
            other => panic!("expected paired, got {other:?}"),
        }
        reg
    }
}

/// Waits for the close frame of a socket the cloud closes, returning (code, reason).
pub async fn close_of(ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> (u16, String) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => {
                    return (u16::from(f.code), f.reason.to_string())
                }
                Some(Ok(Message::Close(None))) | None => {
                    return (u16::from(CloseCode::Abnormal), String::new())
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) => return (u16::from(CloseCode::Abnormal), String::new()),
            }
        }
    })
    .await
    .expect("close in time")
}

/// Purchase form for a register.
pub fn purchase<'a>(r: &'a RegisterKey, amount: &'a str) -> Vec<(&'static str, &'a str)> {
    let mut f = register_form(r);
    f.extend([
        ("TransactionMode", "ASYNC"),
        ("TransactionType", "Card.Purchase"),
        ("AmountTotal", amount),
    ]);
    f
}

/// Polls a URL until the transaction completes (the test apps have no poll rate limit).
pub async fn poll_until_completed(app: &TestApp, url: &str) -> serde_json::Value {
    eventually("the transaction's completion", || async {
        let (status, body) = app.get_json(url).await;
        assert_eq!(status, 200, "{body}");
        (body["transactionStatus"] == "COMPLETED").then_some(body)
    })
    .await
}

// Used by the `faults` test binary until it is folded into this one.
#[allow(dead_code)]
impl Terminal {
    /// Kills the agent abruptly, as pulling the power would: its task is aborted (no close
    /// frame, no wind-down, a running card transaction is dropped mid-way). Returns once it is
    /// gone and any journal write it had handed to a blocking thread has landed (a real power
    /// cut would have stopped that thread too; waiting keeps the next agent from racing it on
    /// the journal's temporary file).
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
        let name = self
            .journal
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = self.journal.with_file_name(format!(".{name}.tmp"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while tmp.exists() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }

    /// Whether the agent has ended by itself (e.g. a simulated power failure).
    pub fn has_exited(&self) -> bool {
        self.handle.is_finished()
    }
}
