//! The cloud's configuration, and the checks that turn operator input into it.

use crate::device_gateway::GatewaySettings;
use crate::engine::EngineSettings;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use url::Url;

/// Everything `Application::build` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (port 0 picks a free port).
    pub listen: SocketAddr,
    /// `sqlite://path` or `postgres://...`.
    pub database_url: String,
    /// NATS server of a cluster (`nats://host:4222`); none on a single node.
    pub nats_url: Option<String>,
    /// Base of polling URLs; default `http://<listen address>`.
    pub public_url: Option<Url>,
    pub engine: EngineSettings,
    pub gateway: GatewaySettings,
    pub poll_interval_min: Duration,
    pub sync_timeout: Duration,
    pub callbacks: crate::pos_api::callbacks::CallbackSettings,
    /// Whether `/virtual-terminal` may enroll its own devices: on for development, off in
    /// production unless an operator turns it on.
    pub virtual_terminals: bool,
    /// The token the operator dashboard (`/dashboard`, `/admin/...`) asks for; none: it is off.
    pub admin_token: Option<String>,
    /// POS API abuse limits: body size, pairing brute force.
    pub api_limits: crate::pos_api::ApiLimits,
    /// A separate address for `GET /metrics` (then only there); none: on the main listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Separate POS and device listeners, TLS, and the slow-client timeouts.
    pub listeners: ListenerSettings,
    /// POS API keys per vendor; empty (the default): no key required, as in SmartConnect.
    pub pos_api_keys: crate::pos_api::api_keys::ApiKeys,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://eftcloud-data/eftcloud.db".into(),
            nats_url: None,
            public_url: None,
            engine: EngineSettings::default(),
            gateway: GatewaySettings::default(),
            poll_interval_min: Duration::from_secs(2),
            sync_timeout: Duration::from_secs(110),
            callbacks: Default::default(),
            // The default configuration is a developer's local cloud.
            virtual_terminals: true,
            admin_token: None,
            api_limits: Default::default(),
            pos_api_keys: Default::default(),
            metrics_listen: None,
            listeners: ListenerSettings::default(),
        }
    }
}

/// How the cloud is reached: one port (`listen`) or a POS and a device port, TLS or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// Serve the POS API (and the web pages) here only; `listen` keeps what is left.
    pub pos: Option<SocketAddr>,
    /// Serve the device gateway (`/device/v1`) here only; `listen` keeps what is left.
    pub device: Option<SocketAddr>,
    /// TLS on the POS and device listeners; none: plain HTTP and WebSocket.
    pub tls: Option<crate::tls::TlsSource>,
    /// Longest time to receive a complete request header, from the connection's start and
    /// between keep-alive requests (slow-loris and silent clients are cut off); also the TLS
    /// handshake's bound and the HTTP/2 ping interval and timeout.
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_read_timeout: Duration,
    /// Most connections open at once from one IP address; 0: no limit.
    pub max_connections_per_source: usize,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        Self {
            pos: None,
            device: None,
            tls: None,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_connections_per_source: 0,
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("data directory {path} is not usable: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid public URL '{0}': expected an absolute http(s) URL such as https://pay.example.com")]
    PublicUrl(String),
}

/// Creates the data directory if needed, checks that it is writable, and returns the URL of the
/// SQLite file inside it.
pub fn database_url_for_data_dir(dir: &Path) -> Result<String, ConfigError> {
    let err = |source| ConfigError::DataDir {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    // Creating a file is the only reliable test of writability (permissions, read-only mounts).
    let probe = dir.join(".eftcloud-write-test");
    std::fs::write(&probe, b"ok").map_err(err)?;
    let _ = std::fs::remove_file(&probe);
    Ok(format!("sqlite://{}", dir.join("eftcloud.db").display()))
}

/// Parses a public URL given by the operator.
pub fn parse_public_url(s: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(s).map_err(|_| ConfigError::PublicUrl(s.into()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::PublicUrl(s.into()));
    }
    Ok(url)
}
