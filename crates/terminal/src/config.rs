//! How a terminal agent is configured: where the cloud is, who the device is, where it journals.

use crate::error::TerminalError;
use crate::update::Installer;
use protocol::device::{capability, Hardware, Screen};
use protocol::update::ReleaseKey;
use protocol::DeviceId;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// Everything the agent needs to connect and to keep its journal.
#[derive(Debug, Clone)]
pub struct TerminalConfig {
    /// The cloud's base address, `http(s)://` or `ws(s)://` (e.g. `http://127.0.0.1:8080`);
    /// the agent derives `ws(s)://host/device/v1` from it.
    pub cloud_url: Url,
    /// The device id as enrolled in the cloud.
    pub device_id: DeviceId,
    /// The device secret, sent in `hello`.
    pub secret: String,
    /// The journal file (created on first use).
    pub journal_path: PathBuf,
    /// Maker name reported in `hello`.
    pub vendor: String,
    /// Model name reported in `hello`.
    pub model: String,
    /// Keep offering pairing codes while paired (one device may serve several registers).
    pub keep_pairing: bool,
    /// First (and smallest) delay before reconnecting.
    pub reconnect_min: Duration,
    /// Largest delay before reconnecting; also used after the cloud rejects the device.
    pub reconnect_max: Duration,
    /// More cloud base URLs, tried in turn after `cloud_url` when a connection fails or is
    /// lost (the nodes of a cluster, when there is no load balancer in front of them).
    pub fallback_urls: Vec<Url>,
    /// How long reversing a payment interrupted by a power failure takes (the acquirer must be
    /// reached, so it happens once connected; the device reports `REVERSAL_PENDING` meanwhile).
    /// Zero reverses at start-up, before connecting.
    pub reversal_delay: Duration,
    /// A CA certificate (PEM) trusted besides the public roots, for a cloud whose certificate
    /// is self-signed or from a private CA.
    pub ca_cert: Option<PathBuf>,
    /// First wait before a result the cloud has not acknowledged is sent again on the same
    /// connection (the cloud may have failed to store it); doubles up to `result_resend_max`.
    pub result_resend_min: Duration,
    /// Longest wait between re-sends of an unacknowledged result.
    pub result_resend_max: Duration,
    /// The customer-facing screen declared in `hello`, in pixels.
    pub screen: Screen,
    /// Characters a printed line holds; `None` when the terminal has no printer
    /// (`--no-printer`): then `printer` is not declared and a print job fails `NO_PRINTER`.
    pub printer_columns: Option<u16>,
    /// How often the agent reports its health, to a cloud that accepts it (also once on
    /// every connection).
    pub health_interval: Duration,
    /// The operator's release keys this device trusts: an update is installed only when one
    /// of them signed it. None (the default): the agent does not declare `update`, so the
    /// cloud never offers it one.
    pub release_keys: Vec<ReleaseKey>,
    /// How a verified update is installed: refused by default, because an agent embedded in
    /// another program cannot replace itself; `eftcloud terminal` replaces its executable.
    pub installer: Installer,
}

/// The simulated screen: a common countertop terminal's.
pub const DEFAULT_SCREEN: Screen = Screen {
    width: 480,
    height: 320,
};

/// Characters a line of the simulated 58 mm printer holds.
pub const DEFAULT_PRINTER_COLUMNS: u16 = 32;

impl TerminalConfig {
    /// A configuration with the default vendor, model and reconnect delays (200 ms to 10 s).
    pub fn new(
        cloud_url: Url,
        device_id: DeviceId,
        secret: impl Into<String>,
        journal_path: impl Into<PathBuf>,
    ) -> Self {
        Self {
            cloud_url,
            device_id,
            secret: secret.into(),
            journal_path: journal_path.into(),
            vendor: "eftcloud".into(),
            model: "simulator".into(),
            keep_pairing: false,
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
            reversal_delay: Duration::ZERO,
            fallback_urls: Vec::new(),
            ca_cert: None,
            result_resend_min: Duration::from_secs(5),
            result_resend_max: Duration::from_secs(60),
            screen: DEFAULT_SCREEN,
            printer_columns: Some(DEFAULT_PRINTER_COLUMNS),
            health_interval: Duration::from_secs(5 * 60),
            release_keys: Vec::new(),
            installer: Installer::default(),
        }
    }

    /// The screen and printer declared in `hello`.
    pub fn hardware(&self) -> Hardware {
        Hardware {
            screen: Some(self.screen),
            printer_columns: self.printer_columns,
        }
    }

    /// The capabilities declared in `hello`: every one this agent knows, but `printer` only
    /// with a printer, and `update` only with a release key to verify updates with.
    pub fn capabilities(&self) -> Vec<String> {
        capability::ALL
            .iter()
            .filter(|c| **c != capability::PRINTER || self.printer_columns.is_some())
            .filter(|c| **c != capability::UPDATE || !self.release_keys.is_empty())
            .map(|c| c.to_string())
            .collect()
    }

    /// Where the settings the cloud configures are kept: beside the journal, named after it
    /// (`dev-1.journal` keeps `dev-1.config.json`; a journal without that extension gets
    /// `.config.json` appended, so two journals never share a settings file).
    pub fn settings_path(&self) -> PathBuf {
        self.beside_journal("config.json")
    }

    /// Where an installation in progress is recorded until the next start reports it, named
    /// after the journal like the settings (`dev-1.journal` keeps `dev-1.update.json`).
    pub fn update_marker_path(&self) -> PathBuf {
        self.beside_journal("update.json")
    }

    fn beside_journal(&self, extension: &str) -> PathBuf {
        let journal = &self.journal_path;
        if journal.extension().is_some_and(|e| e == "journal") {
            journal.with_extension(extension)
        } else {
            let mut name = journal.as_os_str().to_os_string();
            name.push(".");
            name.push(extension);
            PathBuf::from(name)
        }
    }

    /// The device endpoint: the base URL with a WebSocket scheme and `/device/v1` appended to
    /// its path (so a cloud served under a prefix still works).
    pub fn device_url(&self) -> Result<Url, TerminalError> {
        device_url(&self.cloud_url)
    }

    /// The device endpoints of `cloud_url` and every fallback, in the order they are tried.
    pub fn device_urls(&self) -> Result<Vec<Url>, TerminalError> {
        std::iter::once(&self.cloud_url)
            .chain(&self.fallback_urls)
            .map(device_url)
            .collect()
    }
}

/// Derives `ws(s)://host[/prefix]/device/v1` from an `http(s)://` or `ws(s)://` base URL.
pub fn device_url(base: &Url) -> Result<Url, TerminalError> {
    let bad = |reason: &str| TerminalError::BadCloudUrl {
        url: base.to_string(),
        reason: reason.to_string(),
    };
    let scheme = match base.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        _ => return Err(bad("the scheme must be http, https, ws or wss")),
    };
    if base.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    let mut url = base.clone();
    url.set_scheme(scheme)
        .map_err(|()| bad("cannot use a WebSocket scheme with this URL"))?;
    let prefix = base.path().trim_end_matches('/');
    let path = if prefix.ends_with(protocol::device::PATH) {
        prefix.to_string()
    } else {
        format!("{prefix}{}", protocol::device::PATH)
    };
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derive(s: &str) -> Option<String> {
        let base = Url::parse(s).ok()?;
        device_url(&base).ok().map(|u| u.to_string())
    }

    #[test]
    fn derives_the_device_endpoint() {
        assert_eq!(
            derive("http://127.0.0.1:8080").as_deref(),
            Some("ws://127.0.0.1:8080/device/v1")
        );
        assert_eq!(
            derive("https://eft.example.com/").as_deref(),
            Some("wss://eft.example.com/device/v1")
        );
        assert_eq!(
            derive("https://example.com/eft/?x=1").as_deref(),
            Some("wss://example.com/eft/device/v1")
        );
        assert_eq!(
            derive("ws://h:1/device/v1").as_deref(),
            Some("ws://h:1/device/v1")
        );
        assert_eq!(derive("ftp://h/"), None);
        assert_eq!(derive("mailto:a@b"), None);
    }

    #[test]
    fn declares_a_printer_only_when_there_is_one() {
        let Ok(url) = Url::parse("http://h") else {
            panic!("url")
        };
        let Ok(id) = DeviceId::parse("d") else {
            panic!("id")
        };
        let mut c = TerminalConfig::new(url, id, "s", "j");
        c.release_keys = vec![ReleaseKey::parse(&"0".repeat(64)).unwrap_or_else(|_| panic!())];
        assert_eq!(c.capabilities().len(), capability::ALL.len());
        assert_eq!(c.hardware().printer_columns, Some(DEFAULT_PRINTER_COLUMNS));
        assert_eq!(c.hardware().screen, Some(DEFAULT_SCREEN));
        c.printer_columns = None;
        assert!(!c.capabilities().iter().any(|x| x == capability::PRINTER));
        assert_eq!(c.capabilities().len(), capability::ALL.len() - 1);
        assert_eq!(c.hardware().printer_columns, None);
    }

    #[test]
    fn declares_updates_only_with_a_release_key() {
        let Ok(url) = Url::parse("http://h") else {
            panic!("url")
        };
        let Ok(id) = DeviceId::parse("d") else {
            panic!("id")
        };
        let mut c = TerminalConfig::new(url, id, "s", "j");
        assert!(!c.capabilities().iter().any(|x| x == capability::UPDATE));
        assert_eq!(c.capabilities().len(), capability::ALL.len() - 1);
        c.release_keys = vec![ReleaseKey::parse(&"1".repeat(64)).unwrap_or_else(|_| panic!())];
        assert!(c.capabilities().iter().any(|x| x == capability::UPDATE));
    }

    #[test]
    fn settings_live_beside_the_journal() {
        let Ok(url) = Url::parse("http://h") else {
            panic!("url")
        };
        let Ok(id) = DeviceId::parse("d") else {
            panic!("id")
        };
        let at = |journal: &str| {
            TerminalConfig::new(url.clone(), id.clone(), "s", journal)
                .settings_path()
                .display()
                .to_string()
        };
        assert_eq!(
            at("./eftcloud-terminal-d.journal"),
            "./eftcloud-terminal-d.config.json"
        );
        assert_eq!(at("/var/lib/t/dev.1"), "/var/lib/t/dev.1.config.json");
        assert_eq!(at("j"), "j.config.json");
        let marker = |journal: &str| {
            TerminalConfig::new(url.clone(), id.clone(), "s", journal)
                .update_marker_path()
                .display()
                .to_string()
        };
        assert_eq!(
            marker("/var/lib/t/dev-1.journal"),
            "/var/lib/t/dev-1.update.json"
        );
        assert_eq!(marker("j"), "j.update.json");
    }
}
