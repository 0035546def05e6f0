//! `eftcloud terminal`: the agent with the card simulator, driven from a console.
//!
//! Prints `pairing code: NNNNNNNN` whenever a code arrives and `paired: <register name>` when
//! pairing completes (scripts and tests wait for these exact lines), plus short lines for
//! transactions and the connection. Reads `pair`, `unpair` and `quit` from stdin; end of
//! input does not stop the agent, so it runs unattended with no stdin at all. With
//! `--interactive`, the operator also answers for the customer on stdin: inputs (type the
//! answer, pick an option's number, `y`/`n`, Enter to sign, `c` to cancel) and QR codes
//! (Enter when dismissed, `c` to cancel). Between payments, with no cart on the customer's
//! display, the console shows the idle screen's text (`idle screen: …`) when the cloud's
//! configuration sets one.

use crate::agent::{self, Exit, TerminalCommand, TerminalEvent};
use crate::config::TerminalConfig;
use crate::console::Operator;
use crate::display::{render_cart, CONSOLE_WIDTH};
use crate::error::TerminalError;
use crate::simulator::{Simulator, SimulatorConfig};
use crate::update::Installer;
use protocol::update::ReleaseKey;
use protocol::{Currency, DeviceId};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use url::Url;

/// Exit status after a simulated power failure (EX_TEMPFAIL: run me again).
pub const POWER_FAILURE_EXIT_CODE: i32 = 75;

/// Flags of `eftcloud terminal`.
#[derive(Debug, Clone, clap::Args)]
pub struct TerminalArgs {
    /// The cloud's base URL (http, https, ws or wss).
    #[arg(
        long = "cloud",
        env = "EFTCLOUD_CLOUD",
        default_value = "http://127.0.0.1:8080"
    )]
    pub cloud: Url,
    /// Another cloud node to try when the connection to the first fails or is lost
    /// (repeatable; the nodes of a cluster without a load balancer in front).
    #[arg(long = "fallback-cloud")]
    pub fallback_clouds: Vec<Url>,
    /// The device id as enrolled in the cloud.
    #[arg(long, env = "EFTCLOUD_DEVICE_ID", value_parser = parse_device_id)]
    pub device_id: DeviceId,
    /// The device secret.
    #[arg(long, env = "EFTCLOUD_DEVICE_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Journal file [default: ./eftcloud-terminal-<device-id>.journal].
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Maker name reported to the cloud.
    #[arg(long, default_value = "eftcloud")]
    pub vendor: String,
    /// Model name reported to the cloud.
    #[arg(long, default_value = "simulator")]
    pub model: String,
    /// Seconds a slow test amount (cents ending in 53) takes to approve.
    #[arg(long, default_value_t = 30)]
    pub slow_secs: u64,
    /// Milliseconds the simulated customer pauses at each prompt.
    #[arg(long, default_value_t = 300)]
    pub step_delay: u64,
    /// Keep offering pairing codes while paired (one device serving several registers).
    #[arg(long)]
    pub keep_pairing: bool,
    /// Seconds the simulated acquirer takes to reverse a payment interrupted by a power
    /// failure; the terminal reports REVERSAL_PENDING meanwhile (0: reverse at start-up).
    #[arg(long, default_value_t = 2)]
    pub reversal_secs: u64,
    /// A CA certificate (PEM) to trust besides the public roots, for a wss:// cloud with a
    /// self-signed or private certificate (e.g. `eftcloud-data/tls/dev-cert.pem`).
    #[arg(long, env = "EFTCLOUD_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// The terminal has no printer: `printer` is not declared to the cloud, and a print job
    /// that arrives anyway fails with `PrinterStatus` `NO_PRINTER`.
    #[arg(long)]
    pub no_printer: bool,
    /// Characters a printed line holds (declared to the cloud as `printer_columns`).
    #[arg(long, default_value_t = crate::config::DEFAULT_PRINTER_COLUMNS,
          value_parser = clap::value_parser!(u16).range(16..=80))]
    pub printer_columns: u16,
    /// Answer for the customer on stdin: inputs and QR codes wait for the operator instead of
    /// the simulator's fixed answers and triggers.
    #[arg(long)]
    pub interactive: bool,
    /// How often to report the terminal's health (uptime, free storage, battery, paper) to a
    /// cloud that accepts it; also once on each connection.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub health_interval_secs: u64,
    /// An operator's release key (64 hex digits, `eftcloud release-key public`) whose signed
    /// updates this terminal installs (repeatable). Without one the terminal does not declare
    /// `update`, and the cloud offers it none. With one, a verified update replaces this
    /// executable and restarts it with the same flags.
    #[arg(long = "release-key", env = "EFTCLOUD_RELEASE_KEYS", value_delimiter = ',',
          value_parser = parse_release_key)]
    pub release_keys: Vec<ReleaseKey>,
}

fn parse_release_key(s: &str) -> Result<ReleaseKey, String> {
    ReleaseKey::parse(s).map_err(|e| e.to_string())
}

fn parse_device_id(s: &str) -> Result<DeviceId, String> {
    DeviceId::parse(s).map_err(|e| e.to_string())
}

impl TerminalArgs {
    /// The agent's configuration from the flags.
    pub fn config(&self) -> TerminalConfig {
        let journal = self.journal.clone().unwrap_or_else(|| {
            PathBuf::from(format!("./eftcloud-terminal-{}.journal", self.device_id))
        });
        let mut config = TerminalConfig::new(
            self.cloud.clone(),
            self.device_id.clone(),
            self.secret.clone(),
            journal,
        );
        config.vendor = self.vendor.clone();
        config.model = self.model.clone();
        config.keep_pairing = self.keep_pairing;
        config.fallback_urls = self.fallback_clouds.clone();
        config.reversal_delay = Duration::from_secs(self.reversal_secs);
        config.ca_cert = self.ca_cert.clone();
        config.printer_columns = (!self.no_printer).then_some(self.printer_columns);
        config.health_interval = std::time::Duration::from_secs(self.health_interval_secs);
        config.release_keys = self.release_keys.clone();
        // This process is the agent: it can replace its own executable.
        config.installer = Installer::SelfReplace;
        config
    }

    /// The simulator's timing from the flags.
    pub fn simulator(&self) -> SimulatorConfig {
        SimulatorConfig {
            step_delay: Duration::from_millis(self.step_delay),
            slow: Duration::from_secs(self.slow_secs),
        }
    }
}

/// Runs the terminal until Ctrl-C (or `quit`). On a simulated power failure the process exits
/// at once with status 75, skipping every clean-up, as a real power cut would.
pub async fn run(args: TerminalArgs) -> Result<(), TerminalError> {
    if args.secret.is_empty() {
        return Err(TerminalError::InvalidArgument(
            "--secret (or EFTCLOUD_DEVICE_SECRET) must not be empty".into(),
        ));
    }
    let config = args.config();
    // A bad URL stops here, before anything starts.
    config.device_url()?;
    let operator = Operator::new();
    let mut simulator =
        Simulator::new(args.simulator()).with_terminal_id(config.device_id.to_string());
    if args.interactive {
        simulator = simulator.with_operator(operator.clone());
    }
    let backend = Arc::new(simulator);
    let (events_tx, events_rx) = mpsc::channel(256);
    let (commands_tx, commands_rx) = mpsc::channel(16);
    let shutdown = CancellationToken::new();

    let mut tasks = JoinSet::new();
    tasks.spawn(print_events(events_rx));
    tasks.spawn(stop_on_signal(shutdown.clone()));
    spawn_stdin_reader(commands_tx, operator, shutdown.clone());

    println!(
        "terminal {} starting; journal {}",
        config.device_id,
        config.journal_path.display()
    );
    let exit = agent::run(config, backend, events_tx, commands_rx, shutdown.clone()).await;
    match exit {
        Ok(Exit::PowerFailure) => {
            eprintln!("power failure (simulated): exiting abruptly");
            std::process::exit(POWER_FAILURE_EXIT_CODE);
        }
        Ok(Exit::Shutdown) => {
            // The agent dropped its event sender: the printer drains what is left and ends.
            shutdown.cancel();
            while tasks.join_next().await.is_some() {}
            println!("terminal stopped");
            Ok(())
        }
        Err(e) => {
            tasks.shutdown().await;
            Err(e)
        }
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = async {
            match signal(SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
            _ = shutdown.cancelled() => return,
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = shutdown.cancelled() => return,
    }
    println!("shutting down");
    shutdown.cancel();
}

/// Reads commands from stdin on a plain thread: a blocking read cannot be cancelled, and on a
/// runtime thread it would hold up the runtime's shutdown. The thread owns only a sender and
/// the shutdown token, and ends with the process.
///
/// A terminal's stdin is read only while this process is in its foreground: a shell stops a
/// background job that reads its terminal (`eftcloud terminal … &` would stop at once and
/// never show a code), so in the background the reader waits, and starts reading after `fg`.
fn spawn_stdin_reader(
    commands: mpsc::Sender<TerminalCommand>,
    operator: Operator,
    shutdown: CancellationToken,
) {
    let spawned = std::thread::Builder::new()
        .name("terminal-stdin".into())
        .spawn(move || {
            while !foreground() {
                if shutdown.is_cancelled() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let Ok(line) = line else { break };
                // A question for the customer takes the line first (only with --interactive).
                let Some(line) = operator.answer(line) else {
                    continue;
                };
                let cmd = match line.trim() {
                    "" => continue,
                    "pair" => TerminalCommand::RequestPairingCode,
                    "unpair" => TerminalCommand::Unpair(None),
                    "quit" | "exit" => {
                        shutdown.cancel();
                        break;
                    }
                    other => {
                        println!("unknown command '{other}' (try: pair, unpair, quit)");
                        continue;
                    }
                };
                if commands.blocking_send(cmd).is_err() {
                    break;
                }
            }
            // End of input: keep running; the commands sender simply goes away.
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot read commands from stdin");
    }
}

/// Whether reading stdin cannot stop this process: stdin is not a terminal (a pipe, a file,
/// nothing), or it is one whose foreground process group is ours.
fn foreground() -> bool {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return true;
    }
    #[cfg(unix)]
    {
        match rustix::termios::tcgetpgrp(&stdin) {
            Ok(group) => group == rustix::process::getpgrp(),
            // No controlling terminal to stop us.
            Err(_) => true,
        }
    }
    #[cfg(not(unix))]
    true
}

/// What the console remembers of the cloud's configuration and of the customer's display.
#[derive(Debug, Default)]
struct Console {
    /// The configured idle screen text (empty: none).
    idle_text: String,
    /// The currency of a cart that names none (the configured one, AUD by default).
    currency: Currency,
    /// A cart is on the customer's display, so the idle screen is not.
    cart_shown: bool,
}

impl Console {
    /// The idle screen, when it is what the customer sees.
    fn show_idle(&self) {
        let text = self.idle_text.trim();
        if !self.cart_shown && !text.is_empty() {
            println!("idle screen: {text}");
        }
    }

    fn configured(&mut self, settings: &protocol::config::Settings) {
        self.idle_text = settings.idle_text.clone();
        self.currency = settings.currency;
    }
}

async fn print_events(mut events: mpsc::Receiver<TerminalEvent>) {
    let mut console = Console::default();
    while let Some(event) = events.recv().await {
        match event {
            TerminalEvent::Connected { url, registers } => {
                let names: Vec<&str> = registers.iter().map(|r| r.register_name.as_str()).collect();
                if names.is_empty() {
                    println!("connected to {url} (not paired)");
                } else {
                    println!("connected to {url} (paired with: {})", names.join(", "));
                }
            }
            TerminalEvent::Disconnected { reason } => println!("disconnected: {reason}"),
            TerminalEvent::Rejected { code, reason } => {
                eprintln!("error: the cloud rejected this device ({code}): {reason}")
            }
            TerminalEvent::PairingCode { code, .. } => println!("pairing code: {code}"),
            TerminalEvent::Paired { register_name } => println!("paired: {register_name}"),
            TerminalEvent::Unpaired { registers } => {
                let ids: Vec<&str> = registers.iter().map(|r| r.register_id.as_str()).collect();
                println!("unpaired: {}", ids.join(", "));
            }
            TerminalEvent::TransactionReceived {
                transaction_id,
                function,
                amount,
                cart,
                ..
            } => {
                match amount {
                    Some(a) => println!(
                        "transaction {transaction_id}: {function} {}",
                        a.display_decimal()
                    ),
                    None => println!("transaction {transaction_id}: {function}"),
                }
                if let Some(cart) = cart {
                    println!(
                        "{}",
                        indent(&render_cart(&cart, console.currency, CONSOLE_WIDTH))
                    );
                }
            }
            TerminalEvent::Display { version, cart } => {
                console.cart_shown = cart.is_some();
                match cart {
                    Some(cart) => println!(
                        "customer display (version {version}):\n{}",
                        indent(&render_cart(&cart, console.currency, CONSOLE_WIDTH))
                    ),
                    None => println!("customer display (version {version}): cleared"),
                }
                console.show_idle();
            }
            TerminalEvent::Prompt { prompt, text, .. } => {
                println!("  [{prompt}] {}", text.replace('\n', " / "))
            }
            TerminalEvent::Printed {
                transaction_id,
                slip,
            } => println!("printed {transaction_id}:\n{}", paper(&slip)),
            TerminalEvent::Completed { result } => {
                let outcome = result
                    .transaction_result
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| result.result.to_string());
                println!(
                    "result {}: {outcome} {}",
                    result.transaction_id, result.result_text
                );
                console.show_idle();
            }
            TerminalEvent::ConfigApplied { version, settings } => {
                println!("configuration {version} applied");
                console.configured(&settings);
                console.show_idle();
            }
            TerminalEvent::ConfigRestored { version, settings } => {
                println!("configuration {version} (as applied before the restart)");
                console.configured(&settings);
                console.show_idle();
            }
            TerminalEvent::Acknowledged { transaction_id } => {
                println!("result {transaction_id}: stored by the cloud")
            }
            TerminalEvent::Update {
                campaign_id,
                version,
                step,
                reason,
            } => match reason {
                Some(reason) => println!(
                    "update {version} (campaign {campaign_id}): {}: {reason}",
                    step.as_str()
                ),
                None => println!(
                    "update {version} (campaign {campaign_id}): {}",
                    step.as_str()
                ),
            },
        }
    }
}

/// A printed slip framed as its paper: as wide as its longest line.
fn paper(slip: &str) -> String {
    let width = slip.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    let edge = format!("  +{}+", "-".repeat(width + 2));
    let mut out = vec![edge.clone()];
    for line in slip.split('\n') {
        let pad = width.saturating_sub(line.chars().count());
        out.push(format!("  | {line}{} |", " ".repeat(pad)));
    }
    out.push(edge);
    out.join("\n")
}

/// Lines set off from the event lines around them.
fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: TerminalArgs,
    }

    #[test]
    fn parses_flags_with_defaults() {
        let cmd = Cmd::try_parse_from(["t", "--device-id", "dev-1", "--secret", "s3cret"]);
        let Ok(Cmd { args }) = cmd else {
            panic!("{cmd:?}")
        };
        let config = args.config();
        assert_eq!(
            config.journal_path,
            PathBuf::from("./eftcloud-terminal-dev-1.journal")
        );
        assert_eq!(
            config.device_url().map(|u| u.to_string()).ok().as_deref(),
            Some("ws://127.0.0.1:8080/device/v1")
        );
        assert_eq!(args.simulator().step_delay, Duration::from_millis(300));
        assert_eq!(args.simulator().slow, Duration::from_secs(30));
        assert!(!config.keep_pairing);
        assert_eq!(config.printer_columns, Some(32));
        assert!(config.release_keys.is_empty());
        assert!(matches!(config.installer, Installer::SelfReplace));
    }

    #[test]
    fn release_keys_are_repeatable_and_checked() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let cmd = Cmd::try_parse_from([
            "t",
            "--device-id",
            "d",
            "--secret",
            "s",
            "--release-key",
            &a,
            "--release-key",
            &b,
        ]);
        let Ok(Cmd { args }) = cmd else {
            panic!("{cmd:?}")
        };
        let keys: Vec<String> = args
            .config()
            .release_keys
            .iter()
            .map(|k| k.to_hex())
            .collect();
        assert_eq!(keys, vec![a.clone(), b]);
        assert!(args
            .config()
            .capabilities()
            .contains(&protocol::device::capability::UPDATE.to_string()));
        for bad in ["00", "not hex", &"A".repeat(64)] {
            assert!(
                Cmd::try_parse_from([
                    "t",
                    "--device-id",
                    "d",
                    "--secret",
                    "s",
                    "--release-key",
                    bad
                ])
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn no_printer_declares_none() {
        let cmd =
            Cmd::try_parse_from(["t", "--device-id", "dev-1", "--secret", "s", "--no-printer"]);
        let Ok(Cmd { args }) = cmd else {
            panic!("{cmd:?}")
        };
        let config = args.config();
        assert_eq!(config.printer_columns, None);
        assert!(!config
            .capabilities()
            .contains(&protocol::device::capability::PRINTER.to_string()));
        let cmd = Cmd::try_parse_from([
            "t",
            "--device-id",
            "dev-1",
            "--secret",
            "s",
            "--printer-columns",
            "48",
        ]);
        let Ok(Cmd { args }) = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!(args.config().printer_columns, Some(48));
    }

    #[test]
    fn refuses_bad_flags() {
        assert!(Cmd::try_parse_from(["t", "--device-id", "bad id", "--secret", "s"]).is_err());
        assert!(Cmd::try_parse_from([
            "t",
            "--device-id",
            "d",
            "--secret",
            "s",
            "--cloud",
            "not a url"
        ])
        .is_err());
        assert!(Cmd::try_parse_from([
            "t",
            "--device-id",
            "d",
            "--secret",
            "s",
            "--slow-secs",
            "-1"
        ])
        .is_err());
    }
}
