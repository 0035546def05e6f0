//! `eftcloud bench`: the instruments that say where the cloud stands.
//!
//! * `latency` — one terminal agent, one transaction at a time, everything in this process.
//! * `load` — a cloud in a child process (or `--target`), a fleet of lightweight simulated
//!   devices and POS workers in this process, and the same workload against a baseline relay
//!   (HTTP → WebSocket, no persistence, no state machine) so each figure has a floor.
//! * `relay` (hidden) — that baseline relay, run by `load` as its own child process.

mod fleet;
mod latency;
mod limits;
mod load;
mod postgres;
mod relay;
mod server;
mod stats;

/// Benchmarks.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Latency of POST → device and POST → completed poll, one transaction at a time.
    Latency {
        /// Number of transactions to measure.
        #[arg(long, default_value_t = 1000)]
        transactions: usize,
        /// Transactions run first and not measured (connection set-up, caches).
        #[arg(long, default_value_t = 20)]
        warmup: usize,
        /// Store to use (e.g. `postgres://postgres@127.0.0.1/test`) [default: a temporary SQLite file].
        #[arg(long)]
        database_url: Option<String>,
        /// Cloud nodes to run; more than one needs --database-url (PostgreSQL) and --nats-url.
        /// The device connects to the first node, the POS to the second.
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        /// NATS server for a multi-node run.
        #[arg(long)]
        nats_url: Option<String>,
    },
    /// Throughput and latency under load, or an idle fleet's memory and reconnect time, each
    /// against a baseline relay measured in the same run.
    Load(load::LoadArgs),
    /// The baseline relay alone (run by `bench load` as a child process).
    #[command(hide = true)]
    Relay {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
}

/// Runs a benchmark.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        BenchCommand::Latency {
            transactions,
            warmup,
            database_url,
            nodes,
            nats_url,
        } => latency::latency(transactions, warmup, database_url, nodes, nats_url).await,
        BenchCommand::Load(args) => load::run(args).await,
        BenchCommand::Relay { listen } => relay::serve(listen).await,
    }
}
