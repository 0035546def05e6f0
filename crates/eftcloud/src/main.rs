//! `eftcloud`: the cloud (`serve`), device administration (`device`), the device-side client
//! (`terminal`) and a POS client (`pos`), in one binary.

mod accounts_admin;
mod bench;
mod config_file;
mod database;
mod device_admin;
mod profiles_admin;
mod release_key;
mod reports_admin;
mod serve;
mod update_admin;
mod webhooks_admin;

/// mimalloc rather than glibc's malloc: the server allocates per request and per frame on
/// several threads, where glibc's arenas cost 13% of its CPU under load (perf, `bench load`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

/// eftcloud links point-of-sale registers to payment terminals.
#[derive(Parser)]
#[command(name = "eftcloud", version, about, propagate_version = true)]
struct Cli {
    /// Log filter (tracing's env-filter syntax, e.g. `info`, `eftcloud_cloud=debug`).
    #[arg(long, env = "EFTCLOUD_LOG", default_value = "info", global = true)]
    log: String,
    /// Log format on stderr: `text` for people, `json` for log pipelines (one object per line).
    #[arg(long, env = "EFTCLOUD_LOG_FORMAT", default_value = "text", global = true, value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cloud: POS API, device gateway.
    Serve(serve::ServeArgs),
    /// Check the cloud's own configuration without starting it (`check`); show and set the
    /// terminals' configuration profiles (`show`, `set`, `history`, `device`).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Enroll and list devices.
    #[command(subcommand)]
    Device(device_admin::DeviceCommand),
    /// Add and list merchants (the businesses this installation serves).
    #[command(subcommand)]
    Merchant(accounts_admin::MerchantCommand),
    /// Add and list sites (a merchant's stores).
    #[command(subcommand)]
    Site(accounts_admin::SiteCommand),
    /// Create, list and revoke API keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(accounts_admin::ApiKeyCommand),
    /// Show the audit log of admin actions.
    Audit(accounts_admin::AuditArgs),
    /// Add, list and remove the people who sign in to the dashboard.
    #[command(subcommand)]
    User(accounts_admin::UserCommand),
    /// Create or upgrade the database schema, then exit (serve also does it at start-up).
    Migrate {
        #[command(flatten)]
        database: database::DatabaseArgs,
    },
    /// Write a consistent copy of the live SQLite database to a new file. To restore, stop the
    /// cloud and either start it with --database-url sqlite://<copy>, or put the copy in an
    /// empty directory as eftcloud.db and start it with --data-dir <that directory>.
    Backup {
        /// The file to create.
        file: std::path::PathBuf,
        #[command(flatten)]
        database: database::DatabaseArgs,
    },
    /// Print the secret that signs completion callbacks (give it to POS vendors to verify
    /// `Eftcloud-Signature`); generated on first use unless `serve --callback-secret` is set.
    CallbackSecret {
        #[command(flatten)]
        database: database::DatabaseArgs,
    },
    /// Create an operator's release key and sign software for terminals with it (offline:
    /// key files only, no cloud).
    #[command(subcommand, name = "release-key")]
    ReleaseKey(release_key::ReleaseKeyCommand),
    /// Software updates of the terminals: release keys, signed artifacts, campaigns (through
    /// the admin API of a running cloud).
    #[command(subcommand)]
    Update(update_admin::UpdateCommand),
    /// Webhook endpoints: create, list, change, rotate their secret, read their delivery log,
    /// redeliver (through the admin API of a running cloud).
    #[command(subcommand)]
    Webhook(webhooks_admin::WebhookCommand),
    /// A page of the event log (through the admin API of a running cloud).
    Events(webhooks_admin::EventsArgs),
    /// Settlements and their reconciliation (through the admin API of a running cloud).
    #[command(subcommand)]
    Settlement(reports_admin::SettlementCommand),
    /// A merchant's daily report: its settlements and the day's totals by card type.
    #[command(subcommand)]
    Report(reports_admin::ReportCommand),
    /// Export transactions or settlements as CSV or JSON.
    Export(reports_admin::ExportArgs),
    /// Run the device-side client (a terminal with a card simulator).
    Terminal(terminal::cli::TerminalArgs),
    /// A POS client: pair a register, run transactions.
    Pos(pos::cli::PosArgs),
    /// Measure the cloud (in-process cloud, terminal and POS over loopback sockets).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

// Parsed once at start-up and matched once: the size difference between `check`'s serve
// flags and the profile commands costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate everything `serve` would check before binding its port; print the effective
    /// settings and where each came from, or exactly what is wrong (exit code 2).
    Check(serve::ServeArgs),
    /// Configuration profiles of terminals, through the admin API of a running cloud.
    #[command(flatten)]
    Profile(profiles_admin::ProfileCommand),
}

async fn backup(
    file: std::path::PathBuf,
    database: database::DatabaseArgs,
) -> anyhow::Result<ExitCode> {
    let url = database.url()?;
    if !url.starts_with("sqlite:") {
        anyhow::bail!("backup copies SQLite stores; for PostgreSQL use pg_dump");
    }
    let store = cloud::store::SqliteStore::open(&url).await?;
    store.backup_to(&file).await?;
    println!("backup written to {}", file.display());
    Ok(ExitCode::SUCCESS)
}

/// Creates or upgrades the schema, saying which it did.
async fn migrate(database: database::DatabaseArgs) -> anyhow::Result<ExitCode> {
    let url = database.url()?;
    let before = cloud::store::schema_version(&url).await.ok().flatten();
    database.open().await?;
    let after = cloud::store::schema_version(&url).await?;
    match (before, after) {
        (None, Some(v)) => println!("database schema created (version {v})"),
        (Some(b), Some(a)) if b < a => println!("database schema upgraded from version {b} to {a}"),
        (_, Some(v)) => println!("database schema is up to date (version {v})"),
        (_, None) => {
            anyhow::bail!("the migrations left no schema version; is this the right database?")
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn callback_secret(database: database::DatabaseArgs) -> anyhow::Result<ExitCode> {
    use cloud::pos_api::callbacks::{generate_secret, SECRET_NAME};
    let store = database.open().await?;
    println!("{}", store.secret(SECRET_NAME, &generate_secret).await?);
    Ok(ExitCode::SUCCESS)
}

/// Dependencies whose log lines are the client's doing, quieted unless the filter names them
/// (`--log rustls=warn` brings them back). rustls warns once per TLS client that sends an IP
/// address (or another invalid name) as SNI, so one scan of the port wrote hundreds of lines;
/// handshake failures are already logged by the accept loop, at debug.
const QUIET_DEPENDENCIES: &[(&str, &str)] = &[("rustls", "rustls=error")];

/// The filter of `--log` (`info` when it does not parse), with [`QUIET_DEPENDENCIES`].
fn log_filter(filter: &str) -> tracing_subscriber::EnvFilter {
    let (mut env_filter, given) = match tracing_subscriber::EnvFilter::try_new(filter) {
        Ok(f) => (f, filter),
        Err(_) => (tracing_subscriber::EnvFilter::new("info"), "info"),
    };
    for (name, directive) in QUIET_DEPENDENCIES {
        if !given.contains(name) {
            if let Ok(d) = directive.parse() {
                env_filter = env_filter.add_directive(d);
            }
        }
    }
    env_filter
}

fn init_logging(filter: &str, format: &str) {
    let filter = log_filter(filter);
    // Logs go to stderr: stdout carries the commands' own output (secrets, pairing codes).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Ends the process quietly (exit 0) when stdout or stderr is a pipe closed by its reader
/// (`eftcloud device list | head -1`). Rust ignores SIGPIPE, so a write to a closed pipe fails,
/// and `println!` turns that failure into a panic ("failed printing to stdout: Broken pipe",
/// exit 101). Restoring the signal's default needs `unsafe`, which the workspace forbids; so
/// the panic is recognised by its message instead, and every other panic is reported as usual.
fn quiet_on_closed_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if is_closed_pipe(message) {
            std::process::exit(0);
        }
        report(info);
    }));
}

/// Whether a panic message is `println!`'s (or `eprintln!`'s) on a pipe closed by its reader.
fn is_closed_pipe(message: &str) -> bool {
    // EPIPE is 32 on Linux and the BSDs, and std words it "Broken pipe".
    message.starts_with("failed printing to std")
        && (message.contains("Broken pipe") || message.contains("os error 32"))
}

#[tokio::main]
async fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let root = Cli::command();
    let (matches, loaded) = match config_file::parse(root.clone(), std::env::args_os().collect()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging(&cli.log, &cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Config(ConfigCommand::Check(args)) => serve::check(args, &root, &matches, &loaded),
        Command::Config(ConfigCommand::Profile(cmd)) => profiles_admin::run(cmd).await,
        Command::Device(cmd) => device_admin::run(cmd).await,
        Command::Merchant(cmd) => accounts_admin::merchant(cmd).await,
        Command::Site(cmd) => accounts_admin::site(cmd).await,
        Command::ApiKey(cmd) => accounts_admin::api_key(cmd).await,
        Command::Audit(args) => accounts_admin::audit(args).await,
        Command::User(cmd) => accounts_admin::user(cmd).await,
        Command::CallbackSecret { database } => callback_secret(database).await,
        Command::Migrate { database } => migrate(database).await,
        Command::Backup { file, database } => backup(file, database).await,
        Command::ReleaseKey(cmd) => release_key::run(cmd),
        Command::Update(cmd) => update_admin::run(cmd).await,
        Command::Webhook(cmd) => webhooks_admin::run(cmd).await,
        Command::Events(args) => webhooks_admin::events(args).await,
        Command::Settlement(cmd) => reports_admin::settlement(cmd).await,
        Command::Report(cmd) => reports_admin::report(cmd).await,
        Command::Export(args) => reports_admin::export(args).await,
        Command::Terminal(args) => terminal::cli::run(args)
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(anyhow::Error::from),
        // The POS CLI prints its own errors and picks its exit codes (1 declined, 2 errors).
        Command::Bench(cmd) => bench::run(cmd).await,
        Command::Pos(args) => Ok(pos::cli::run_to_exit_code(args).await),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing_subscriber::layer::SubscriberExt;

    /// Whether a WARN of rustls's handshake parser passes `filter`, and an INFO of ours.
    fn passes(filter: &str) -> (bool, bool) {
        let subscriber = tracing_subscriber::registry().with(log_filter(filter));
        tracing::subscriber::with_default(subscriber, || {
            (
                tracing::enabled!(target: "rustls::msgs::handshake", tracing::Level::WARN),
                tracing::enabled!(target: "eftcloud_cloud::server", tracing::Level::INFO),
            )
        })
    }

    #[test]
    fn only_printing_to_a_closed_pipe_counts_as_a_closed_pipe() {
        assert!(super::is_closed_pipe(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(super::is_closed_pipe(
            "failed printing to stderr: Broken pipe (os error 32)"
        ));
        assert!(!super::is_closed_pipe(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!super::is_closed_pipe("Broken pipe (os error 32)"));
    }

    #[test]
    fn rustls_warnings_are_quiet_unless_asked_for() {
        assert_eq!(passes("info"), (false, true));
        assert_eq!(passes("debug"), (false, true));
        assert_eq!(passes("eftcloud=loud"), (false, true));
        assert_eq!(passes("info,rustls=warn"), (true, true));
    }
}
