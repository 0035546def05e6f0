//! `eftcloud serve`.

use crate::database::DatabaseArgs;
use cloud::config::{ListenerSettings, VirtualTerminals};
use cloud::device_gateway::GatewaySettings;
use cloud::engine::EngineSettings;
use cloud::pos_api::callbacks::CallbackSettings;
use cloud::tls::TlsSource;
use cloud::{Application, Config};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Parses a duration written like `500ms`, `2s`, `15m`, `0s`.
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration '{s}' ({e}); write e.g. 500ms, 2s, 15m"))
}

/// Flags of `eftcloud serve`; each is also read from `EFTCLOUD_<FLAG>`, and from the
/// configuration file under the flag's name (see `config_file`).
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// TOML file of settings, keys named like these flags (`accept-timeout = "10s"`); flags and
    /// environment variables override it.
    #[arg(long, env = "EFTCLOUD_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// NATS server of a cluster (`nats://host:4222`): many nodes share one PostgreSQL store and
    /// NATS routes each request to the node holding the device. Unset: a single node.
    #[arg(long, env = "EFTCLOUD_NATS_URL")]
    nats_url: Option<String>,
    /// This node's name in the cluster [default: `<hostname>-<port>` with NATS, else `local`].
    #[arg(long, env = "EFTCLOUD_NODE_NAME")]
    node_name: Option<String>,
    /// Address to listen on (POS API and device gateway on one port).
    #[arg(long, env = "EFTCLOUD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    database: DatabaseArgs,
    /// Base URL written into PollingUrl (default: http://<listen address>).
    #[arg(long, env = "EFTCLOUD_PUBLIC_URL")]
    public_url: Option<String>,
    /// How long a pairing code shown on a device stays valid.
    #[arg(long, env = "EFTCLOUD_PAIRING_CODE_TTL", default_value = "2m", value_parser = duration)]
    pairing_code_ttl: Duration,
    /// How long a device has to accept a transaction before the POS gets device-offline.
    #[arg(long, env = "EFTCLOUD_ACCEPT_TIMEOUT", default_value = "10s", value_parser = duration)]
    accept_timeout: Duration,
    /// Minimum time between two polls of one transaction (0s: no limit).
    #[arg(long, env = "EFTCLOUD_POLL_INTERVAL_MIN", default_value = "2s", value_parser = duration)]
    poll_interval_min: Duration,
    /// Lifetime of a polling token, counted from the POST.
    #[arg(long, env = "EFTCLOUD_TOKEN_TTL", default_value = "15m", value_parser = duration)]
    token_ttl: Duration,
    /// After this long without a result from a started transaction, polls show OK-DELAYED.
    #[arg(long, env = "EFTCLOUD_DELAYED_AFTER", default_value = "60s", value_parser = duration)]
    delayed_after: Duration,
    /// How long completed transactions are kept (lookup by reference works until then).
    #[arg(long, env = "EFTCLOUD_RETENTION", default_value = "180days", value_parser = duration)]
    retention: Duration,
    /// A vendor key given here rather than created (`eftcloud api-key create --vendor`):
    /// `VENDOR=KEY` (repeatable; env: comma-separated). It acts only for its vendor's registers
    /// with the POS scopes, and with any given every POS request needs a key. None (the
    /// default): keyless requests are accepted, as in SmartConnect.
    #[arg(
        long = "pos-api-key",
        env = "EFTCLOUD_POS_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pos_api_keys: Vec<String>,
    /// Refuse keyless POS requests: `all`, or the vendors (`POSVendorName`) whose registers
    /// must send an API key (repeatable; env: comma-separated). See SECURITY.md.
    #[arg(
        long = "require-pos-keys",
        env = "EFTCLOUD_REQUIRE_POS_KEYS",
        value_delimiter = ',',
        num_args = 0..=1,
        default_missing_value = "all"
    )]
    require_pos_keys: Vec<String>,
    /// Secret for signing completion callbacks (HMAC-SHA256); generated and stored when unset.
    #[arg(long, env = "EFTCLOUD_CALLBACK_SECRET", hide_env_values = true)]
    callback_secret: Option<String>,
    /// First delay before retrying a failed callback; doubles each attempt (up to 1h).
    #[arg(long, env = "EFTCLOUD_CALLBACK_RETRY_MIN", default_value = "2s", value_parser = duration)]
    callback_retry_min: Duration,
    /// Attempts before a callback is given up.
    #[arg(long, env = "EFTCLOUD_CALLBACK_MAX_ATTEMPTS", default_value_t = 15)]
    callback_max_attempts: u32,
    /// First delay before retrying a failed webhook delivery; doubles each attempt (up to 1h).
    #[arg(long, env = "EFTCLOUD_WEBHOOK_RETRY_MIN", default_value = "5s", value_parser = duration)]
    webhook_retry_min: Duration,
    /// A webhook endpoint failing this long without one success is disabled (with a notice).
    #[arg(long, env = "EFTCLOUD_WEBHOOK_DISABLE_AFTER", default_value = "3d", value_parser = duration)]
    webhook_disable_after: Duration,
    /// Lets webhook endpoints target loopback, private and link-local addresses under
    /// --production (refused there otherwise, so customers cannot make the cloud call into
    /// its own network).
    #[arg(long, env = "EFTCLOUD_WEBHOOK_ALLOW_PRIVATE")]
    webhook_allow_private: bool,
    /// SMTP server for receipts by email: smtp://[user:password@]host[:port] (add
    /// ?tls=required for STARTTLS, ?tls=opportunistic to use it when offered), or smtps://...
    /// for implicit TLS. Unset: email receipts are refused.
    #[arg(long, env = "EFTCLOUD_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// Sender of receipt emails, such as "Shop <receipts@example.com>" (needed with
    /// --smtp-url).
    #[arg(long, env = "EFTCLOUD_SMTP_FROM")]
    smtp_from: Option<String>,
    /// SMS provider webhook for receipts by SMS: POSTed JSON {"to": "+61...", "text": "..."}.
    /// Unset: SMS receipts are refused.
    #[arg(long, env = "EFTCLOUD_SMS_WEBHOOK_URL")]
    sms_webhook_url: Option<String>,
    /// Key signing SMS webhook requests (HMAC-SHA256 in an Eftcloud-Signature header, as for
    /// callbacks); unset: they are not signed.
    #[arg(long, env = "EFTCLOUD_SMS_WEBHOOK_SECRET", hide_env_values = true)]
    sms_webhook_secret: Option<String>,
    /// First delay before retrying a failed receipt delivery; doubles each attempt (up to 1h).
    #[arg(long, env = "EFTCLOUD_RECEIPT_RETRY_MIN", default_value = "30s", value_parser = duration)]
    receipt_retry_min: Duration,
    /// Attempts before a receipt delivery is given up (it is then `failed`).
    #[arg(long, env = "EFTCLOUD_RECEIPT_MAX_ATTEMPTS", default_value_t = 8)]
    receipt_max_attempts: u32,
    /// How often the cloud pings devices; three silent intervals close the connection.
    #[arg(long, env = "EFTCLOUD_HEARTBEAT_INTERVAL", default_value = "10s", value_parser = duration)]
    heartbeat_interval: Duration,
    /// How long a legacy synchronous POST is held before the pending body is returned.
    #[arg(long, env = "EFTCLOUD_SYNC_TIMEOUT", default_value = "110s", value_parser = duration)]
    sync_timeout: Duration,
    /// Production mode: turns off what only a developer's cloud should offer (the virtual
    /// terminal page enrolling its own devices).
    #[arg(long, env = "EFTCLOUD_PRODUCTION")]
    production: bool,
    /// Lets /virtual-terminal enroll its own devices whatever the rest of the configuration.
    /// Without it they may only on a local development cloud: loopback listen addresses, no
    /// --admin-token or --pos-api-key, not --production.
    #[arg(long, env = "EFTCLOUD_VIRTUAL_TERMINALS")]
    virtual_terminals: bool,
    /// How long a device the virtual terminal page enrolled is kept while unused (never
    /// connected, or not seen since); then the hourly sweep removes it.
    #[arg(long, env = "EFTCLOUD_VIRTUAL_TERMINAL_TTL", default_value = "24h", value_parser = duration)]
    virtual_terminal_ttl: Duration,
    /// Token for the operator dashboard (/dashboard), at least 16 characters; without one the
    /// dashboard is off.
    #[arg(long, env = "EFTCLOUD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Largest request body in bytes; larger ones get 413.
    #[arg(long, env = "EFTCLOUD_MAX_BODY_BYTES", default_value_t = cloud::pos_api::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Failed pairing attempts allowed from one source address per minute (0: no limit).
    #[arg(
        long,
        env = "EFTCLOUD_PAIRING_FAILURES_PER_MINUTE",
        default_value_t = 10
    )]
    pairing_failures_per_minute: u32,
    /// Failed pairing attempts allowed from all sources together per minute (0: no limit).
    #[arg(
        long,
        env = "EFTCLOUD_PAIRING_FAILURES_GLOBAL_PER_MINUTE",
        default_value_t = 300
    )]
    pairing_failures_global_per_minute: u32,
    /// Count attempts (pairing, virtual terminal enrollment, device hellos, admin tokens) by
    /// the last X-Forwarded-For address (only behind a proxy that sets it; otherwise clients
    /// could choose their own source).
    #[arg(long, env = "EFTCLOUD_TRUST_FORWARDED_FOR")]
    trust_forwarded_for: bool,
    /// Serve GET /metrics (Prometheus) on this address only, instead of on --listen.
    #[arg(long, env = "EFTCLOUD_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Serve the POS API (and the web pages) on this address only; --listen keeps the rest.
    #[arg(long, env = "EFTCLOUD_POS_LISTEN")]
    pos_listen: Option<SocketAddr>,
    /// Serve the device gateway (/device/v1) on this address only; --listen keeps the rest.
    #[arg(long, env = "EFTCLOUD_DEVICE_LISTEN")]
    device_listen: Option<SocketAddr>,
    /// TLS certificate chain (PEM) for the POS and device listeners; needs --tls-key.
    #[arg(long, env = "EFTCLOUD_TLS_CERT")]
    tls_cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM) of --tls-cert.
    #[arg(long, env = "EFTCLOUD_TLS_KEY")]
    tls_key: Option<std::path::PathBuf>,
    /// Development TLS: a self-signed certificate for localhost and the listen addresses,
    /// kept in <data-dir>/tls/dev-cert.pem for terminals and POS tools to trust (--ca-cert).
    #[arg(long, env = "EFTCLOUD_TLS_SELF_SIGNED")]
    tls_self_signed: bool,
    /// Longest time a client may take to send a request header, from the connection's start
    /// (and for the TLS handshake) and between keep-alive requests; slow and silent clients
    /// are disconnected, quiet HTTP/2 connections pinged.
    #[arg(long, env = "EFTCLOUD_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body; the request fails after it.
    #[arg(long, env = "EFTCLOUD_BODY_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    body_read_timeout: Duration,
    /// Most connections open at once from one IP address (0: no limit). Terminals of a shop
    /// behind one NAT share an address, so the default is generous.
    #[arg(
        long,
        env = "EFTCLOUD_MAX_CONNECTIONS_PER_SOURCE",
        default_value_t = 4096
    )]
    max_connections_per_source: usize,
}

fn positive(name: &str, d: Duration) -> anyhow::Result<Duration> {
    if d.is_zero() {
        anyhow::bail!("--{name} must be greater than zero");
    }
    Ok(d)
}

impl ServeArgs {
    /// This node's name: `--node-name`, else `local` on a single node, else host and port
    /// (unique among nodes on one machine and across machines).
    fn node_name(&self) -> String {
        if let Some(n) = &self.node_name {
            return n.clone();
        }
        if self.nats_url.is_none() {
            return "local".into();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".into());
        format!("{host}-{}", self.listen.port())
    }
    /// Receipts by email and SMS: the SMTP server and sender, the SMS webhook, retries.
    fn receipts(&self) -> anyhow::Result<cloud::receipts::ReceiptSettings> {
        use cloud::receipts::{ReceiptSettings, SmsSettings, SmtpSettings};
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        Ok(ReceiptSettings {
            smtp: given(&self.smtp_url)
                .map(|url| SmtpSettings::parse(url, given(&self.smtp_from)))
                .transpose()?,
            sms: given(&self.sms_webhook_url)
                .map(|url| SmsSettings::parse(url, given(&self.sms_webhook_secret)))
                .transpose()?,
            retry_min: positive("receipt-retry-min", self.receipt_retry_min)?,
            max_attempts: self.receipt_max_attempts.max(1),
            ..ReceiptSettings::default()
        })
    }

    /// The body limit, refused when too small for a basket-sized `SaleData`.
    fn max_body_bytes_checked(&self) -> anyhow::Result<usize> {
        let min = 1024;
        if self.max_body_bytes < min {
            anyhow::bail!("--max-body-bytes must be at least {min}");
        }
        Ok(self.max_body_bytes)
    }

    /// Where the certificate comes from. PEM files are read here, so a missing or invalid one
    /// stops `serve` (and `config check`) with a message naming the file.
    /// Checked here rather than by clap, so that values from the configuration file (clap
    /// defaults) are held to the same rules.
    fn tls(&self) -> anyhow::Result<Option<TlsSource>> {
        if self.tls_self_signed && (self.tls_cert.is_some() || self.tls_key.is_some()) {
            anyhow::bail!("--tls-self-signed cannot be combined with --tls-cert / --tls-key");
        }
        if self.tls_self_signed {
            // The names clients may use: loopback, plus every address given explicitly.
            let mut hosts = vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                "::1".to_string(),
            ];
            let addrs = [Some(self.listen), self.pos_listen, self.device_listen];
            for ip in addrs.into_iter().flatten().map(|a| a.ip()) {
                let ip = ip.to_string();
                if !ip
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|i| i.is_unspecified())
                    && !hosts.contains(&ip)
                {
                    hosts.push(ip);
                }
            }
            let public_host = self
                .public_url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()));
            if let Some(h) = public_host.filter(|h| !hosts.contains(h)) {
                hosts.push(h);
            }
            return Ok(Some(TlsSource::SelfSigned {
                dir: self.database.data_dir.join("tls"),
                hosts,
            }));
        }
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => {
                cloud::tls::load(cert, key)?;
                Ok(Some(TlsSource::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                }))
            }
            _ => anyhow::bail!("--tls-cert and --tls-key must be given together"),
        }
    }

    /// The cloud configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<Config> {
        let public_url = self
            .public_url
            .as_deref()
            .map(cloud::config::parse_public_url)
            .transpose()?;
        Ok(Config {
            listen: self.listen,
            database_url: self.database.url()?,
            public_url,
            engine: EngineSettings {
                pairing_code_ttl: positive("pairing-code-ttl", self.pairing_code_ttl)?,
                accept_timeout: positive("accept-timeout", self.accept_timeout)?,
                token_ttl: positive("token-ttl", self.token_ttl)?,
                delayed_after: self.delayed_after,
                retention: positive("retention", self.retention)?,
                virtual_terminal_ttl: positive("virtual-terminal-ttl", self.virtual_terminal_ttl)?,
                refuse_private_webhooks: self.production && !self.webhook_allow_private,
                ..EngineSettings::default()
            },
            gateway: GatewaySettings {
                heartbeat_interval: positive("heartbeat-interval", self.heartbeat_interval)?,
                node: self.node_name(),
                ..GatewaySettings::default()
            },
            nats_url: self.nats_url.clone(),
            poll_interval_min: self.poll_interval_min,
            sync_timeout: self.sync_timeout,
            require_pos_keys: cloud::domain::accounts::KeylessPolicy::parse(&self.require_pos_keys),
            pos_api_keys: cloud::pos_api::credentials::ApiKeys::parse(&self.pos_api_keys)
                .map_err(|e| anyhow::anyhow!(e))?,
            callbacks: CallbackSettings {
                secret: self.callback_secret.clone().filter(|s| !s.is_empty()),
                retry_min: positive("callback-retry-min", self.callback_retry_min)?,
                max_attempts: self.callback_max_attempts.max(1),
                ..CallbackSettings::default()
            },
            webhooks: cloud::pos_api::webhook_delivery::WebhookSettings {
                policy: cloud::domain::webhooks::DeliveryPolicy {
                    retry_min: positive("webhook-retry-min", self.webhook_retry_min)?,
                    disable_after: positive("webhook-disable-after", self.webhook_disable_after)?,
                    ..Default::default()
                },
                ..Default::default()
            },
            receipts: self.receipts()?,
            virtual_terminals: if self.virtual_terminals {
                VirtualTerminals::On
            } else if self.production {
                VirtualTerminals::Off
            } else {
                VirtualTerminals::Auto
            },
            admin_token: self
                .admin_token
                .as_deref()
                .map(cloud::config::parse_admin_token)
                .transpose()?
                .flatten(),
            api_limits: cloud::pos_api::ApiLimits {
                max_body_bytes: self.max_body_bytes_checked()?,
                pairing: cloud::pos_api::pairing_guard::PairingGuardSettings {
                    failures_per_source: self.pairing_failures_per_minute,
                    failures_global: self.pairing_failures_global_per_minute,
                    window: Duration::from_secs(60),
                    trust_forwarded_for: self.trust_forwarded_for,
                },
                ..Default::default()
            },
            metrics_listen: self.metrics_listen,
            listeners: ListenerSettings {
                pos: self.pos_listen,
                device: self.device_listen,
                tls: self.tls()?,
                header_read_timeout: positive("header-read-timeout", self.header_read_timeout)?,
                body_read_timeout: positive("body-read-timeout", self.body_read_timeout)?,
                max_connections_per_source: self.max_connections_per_source,
            },
            store_faults: None,
            first_run_setup: !self.production,
        })
    }
}

/// `eftcloud config check`: everything `serve` checks before binding its port, then the
/// effective settings and where each came from (secrets hidden).
pub fn check(
    args: ServeArgs,
    root: &clap::Command,
    matches: &clap::ArgMatches,
    loaded: &crate::config_file::Loaded,
) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    let path = ["config", "check"];
    let sub = crate::config_file::subcommand_matches(matches, &path).unwrap_or(matches);
    println!("configuration OK");
    if let Some(file) = &loaded.path {
        println!("file: {}", file.display());
    }
    for arg in crate::config_file::settings(root, &path) {
        let (id, Some(key)) = (arg.get_id().as_str(), arg.get_long()) else {
            continue;
        };
        let raw: Vec<String> = sub
            .get_raw(id)
            .into_iter()
            .flatten()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let value = match raw.as_slice() {
            [] => "(unset)".to_string(),
            // Marked secret (its environment value is hidden from --help too).
            _ if arg.is_hide_env_values_set() => "(set, hidden)".to_string(),
            _ if key == "database-url" => crate::database::without_password(&raw.join(",")),
            _ => raw.join(","),
        };
        match crate::config_file::source(sub, id, key, loaded) {
            "unset" => println!("{key} = {value}"),
            // Off means "decided by the rest of the configuration", not "no enrollment".
            "default" if key == "virtual-terminals" => println!(
                "{key} = {value} (default: the page enrolls devices only on a local development \
                 cloud; see the effective line below)"
            ),
            from => println!("{key} = {value} ({from})"),
        }
    }
    // Derived values the flags do not show directly.
    println!(
        "effective database = {}",
        crate::database::without_password(&config.database_url)
    );
    match config.self_enrollment() {
        Ok(()) => println!("effective virtual terminal enrollment = on"),
        Err(why) => println!("effective virtual terminal enrollment = off ({why})"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the cloud until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    // The store kind only: a database URL may carry a password.
    let store_kind = if config.database_url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    let app = Application::build(config).await?;
    let signals = stop_signals();
    let scheme = if app.is_tls() { "https" } else { "http" };
    if app.device_addr() == app.local_addr() {
        println!(
            "eftcloud listening on {scheme}://{} (POS API {}/POS, devices {})",
            app.local_addr(),
            app.public_url().as_str().trim_end_matches('/'),
            app.device_url(),
        );
    } else {
        println!(
            "eftcloud listening on {scheme}://{} (POS API {}/POS) and {scheme}://{} (devices {})",
            app.local_addr(),
            app.public_url().as_str().trim_end_matches('/'),
            app.device_addr(),
            app.device_url(),
        );
    }
    if let Some(cert) = app.dev_cert() {
        println!(
            "self-signed TLS certificate: {} (trust it with --ca-cert)",
            cert.display()
        );
    }
    if let Some(addr) = app.metrics_addr() {
        println!("eftcloud metrics on http://{addr}/metrics");
    }
    let page = |path: &str| format!("{}{path}", app.public_url().as_str().trim_end_matches('/'));
    match app.setup_url() {
        Some(url) => {
            println!("dashboard: {url} (one-time link to create the owner account, valid 24 h)")
        }
        None => println!("dashboard: {}", page("/dashboard")),
    }
    println!("virtual terminal: {}", page("/virtual-terminal"));
    println!("API reference: {}", page("/openapi.json"));
    tracing::info!(
        listen = %app.local_addr(),
        device_listen = %app.device_addr(),
        tls = app.is_tls(),
        public_url = %app.public_url(),
        store = store_kind,
        "eftcloud started"
    );
    let stop = CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        signals.await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    app.run_until_stopped(stop).await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or Ctrl-C, listened for from the moment this is called (not from the first poll):
/// a signal that arrives while start-up is still printing stops the cloud gracefully too,
/// instead of killing it.
fn stop_signals() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
