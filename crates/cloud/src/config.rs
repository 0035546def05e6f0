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
    /// Webhook deliveries: backoff, disabling, timeouts.
    pub webhooks: crate::pos_api::webhook_delivery::WebhookSettings,
    /// Receipts by email and SMS: the SMTP server, the SMS webhook, retries.
    pub receipts: crate::receipts::ReceiptSettings,
    /// Whether `/virtual-terminal` may enroll its own devices (see [`VirtualTerminals`]).
    pub virtual_terminals: VirtualTerminals,
    /// The token the operator dashboard (`/dashboard`, `/admin/...`) asks for; none: it is off.
    pub admin_token: Option<String>,
    /// POS API abuse limits: body size, pairing brute force.
    pub api_limits: crate::pos_api::ApiLimits,
    /// A separate address for `GET /metrics` (then only there); none: on the main listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Separate POS and device listeners, TLS, and the slow-client timeouts.
    pub listeners: ListenerSettings,
    /// POS API keys per vendor given on the command line; when any is given, every POS
    /// request needs a key (command-line or created), as before keys lived in the store.
    pub pos_api_keys: crate::pos_api::credentials::ApiKeys,
    /// Vendors (or all) whose registers must send a key; empty (the default): keyless
    /// SmartConnect clients are accepted.
    pub require_pos_keys: crate::domain::accounts::KeylessPolicy,
    /// Commit failures on demand (tests and the soak only; `serve` never sets it).
    pub store_faults: Option<std::sync::Arc<crate::store::StoreFaults>>,
    /// Whether a cloud with nobody signed up yet makes a one-time setup link for its first
    /// owner (off under `--production`).
    pub first_run_setup: bool,
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
            webhooks: Default::default(),
            receipts: Default::default(),
            // The default configuration is a developer's local cloud, where it is on.
            virtual_terminals: VirtualTerminals::Auto,
            admin_token: None,
            api_limits: Default::default(),
            pos_api_keys: Default::default(),
            require_pos_keys: Default::default(),
            metrics_listen: None,
            listeners: ListenerSettings::default(),
            store_faults: None,
            first_run_setup: true,
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

impl Config {
    /// The addresses the cloud listens on for POS and devices: `listen` is not opened when
    /// both parts have listeners of their own.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        let l = &self.listeners;
        match (l.pos, l.device) {
            (Some(p), Some(d)) => vec![p, d],
            (p, d) => std::iter::once(self.listen).chain(p).chain(d).collect(),
        }
    }

    /// Whether a credential is configured: an admin token, POS API keys, or keys required.
    /// Such a cloud is meant to be protected, so it does not hand out device credentials to
    /// anyone.
    pub fn has_credentials(&self) -> bool {
        self.admin_token
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty())
            || self.pos_api_keys.enabled()
            || self.require_pos_keys.requires_any()
    }

    /// Whether the virtual terminal page may enroll its own devices, or why not.
    pub fn self_enrollment(&self) -> Result<(), EnrollmentOff> {
        self.virtual_terminals
            .decide(self.has_credentials(), &self.listen_addrs())
    }
}

/// Whether `POST /virtual-terminal/devices` may enroll devices for anyone who asks. It hands
/// out working device credentials (and so pairing codes) without any credential of its own,
/// which only a developer's own cloud should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtualTerminals {
    /// On only for a local development cloud: every listen address loopback and no
    /// credential configured (no admin token, no POS API key).
    Auto,
    /// On whatever the rest of the configuration (`--virtual-terminals`).
    On,
    /// Off (`--production`).
    Off,
}

/// Why the virtual terminal page may not enroll devices (shown in its 403 and the start-up log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnrollmentOff {
    #[error("production mode (--production)")]
    Production,
    #[error("a credential is configured (--admin-token or --pos-api-key)")]
    Credentials,
    #[error("the cloud listens on a non-loopback address")]
    NotLoopback,
}

impl VirtualTerminals {
    /// Applies the rule to a configuration: credentials configured, and the listen addresses.
    pub fn decide(self, credentials: bool, listen: &[SocketAddr]) -> Result<(), EnrollmentOff> {
        match self {
            Self::On => Ok(()),
            Self::Off => Err(EnrollmentOff::Production),
            Self::Auto if credentials => Err(EnrollmentOff::Credentials),
            // 0.0.0.0 and :: are not loopback: they accept connections from anywhere.
            Self::Auto if !listen.iter().all(|a| a.ip().is_loopback()) => {
                Err(EnrollmentOff::NotLoopback)
            }
            Self::Auto => Ok(()),
        }
    }
}

/// Checks an admin token given by the operator: held to the same minimum length as POS API
/// keys, since it opens every device's secret rotation. Empty counts as none.
pub fn parse_admin_token(token: &str) -> Result<Option<String>, ConfigError> {
    let token = token.trim();
    if token.is_empty() {
        return Ok(None);
    }
    let min = crate::pos_api::credentials::MIN_KEY_LEN;
    if token.len() < min {
        return Err(ConfigError::AdminToken { min });
    }
    Ok(Some(token.to_string()))
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
    #[error("--admin-token is too short: at least {min} characters (like a POS API key)")]
    AdminToken { min: usize },
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn self_enrollment_is_on_only_for_a_local_cloud_without_credentials() {
        use EnrollmentOff::*;
        use VirtualTerminals::*;
        let local = addrs(&["127.0.0.1:8080", "[::1]:8081"]);
        let public = addrs(&["127.0.0.1:8080", "0.0.0.0:8443"]);
        let cases = [
            (Auto, false, &local, Ok(())),
            (Auto, true, &local, Err(Credentials)),
            (Auto, false, &public, Err(NotLoopback)),
            (Auto, true, &public, Err(Credentials)),
            (On, true, &public, Ok(())),
            (Off, false, &local, Err(Production)),
        ];
        for (mode, credentials, listen, want) in cases {
            assert_eq!(
                mode.decide(credentials, listen),
                want,
                "{mode:?} {credentials} {listen:?}"
            );
        }
    }

    #[test]
    fn listen_addrs_are_the_ones_opened() {
        let mut c = Config::default();
        assert_eq!(c.listen_addrs(), addrs(&["127.0.0.1:8080"]));
        c.listeners.device = Some("0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.listen_addrs(), addrs(&["127.0.0.1:8080", "0.0.0.0:9000"]));
        c.listeners.pos = Some("127.0.0.1:9001".parse().unwrap());
        c.listen = "0.0.0.0:1".parse().unwrap();
        assert_eq!(c.listen_addrs(), addrs(&["127.0.0.1:9001", "0.0.0.0:9000"]));
    }

    #[test]
    fn credentials_turn_the_default_off() {
        let mut c = Config::default();
        assert_eq!(c.self_enrollment(), Ok(()));
        c.admin_token = Some("a-long-enough-admin-token".into());
        assert_eq!(c.self_enrollment(), Err(EnrollmentOff::Credentials));
        c.admin_token = None;
        c.pos_api_keys =
            crate::pos_api::credentials::ApiKeys::parse(&["Till2Go=0123456789abcdef".into()])
                .unwrap();
        assert_eq!(c.self_enrollment(), Err(EnrollmentOff::Credentials));
    }

    #[test]
    fn admin_tokens_need_the_pos_key_minimum() {
        assert!(matches!(
            parse_admin_token("abc"),
            Err(ConfigError::AdminToken { min: 16 })
        ));
        assert_eq!(parse_admin_token("  ").unwrap(), None);
        assert_eq!(
            parse_admin_token(" 0123456789abcdef ").unwrap().as_deref(),
            Some("0123456789abcdef")
        );
    }
}
