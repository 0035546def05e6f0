//! `eftcloud bench load`: a cloud under POS traffic from many registers, or an idle fleet's
//! memory and reconnect time, each measured against the baseline relay in the same run.
//!
//! The cloud runs as a child process (`eftcloud serve` on a fresh store), or is given with
//! `--target`; the simulated devices and the POS workers run in this process, so every
//! latency is taken on one clock: the POST's instant, the device's receipt of the offer, the
//! POS holding the completed result.
//!
//! With `--nodes N` (N > 1) the cloud is a cluster: N child nodes on one fresh PostgreSQL
//! database and one NATS server, the devices spread over them, and each POS worker sending to
//! the node after its device's, so every request crosses NATS; a PostgreSQL baseline (pgbench,
//! or a loop of plain commits) runs in the same session.

use super::fleet::{Credentials, DeviceBehaviour, Fleet, SimDevice};
use super::limits;
use super::postgres::{self, BaselineKind, ScratchDatabase};
use super::server::{rss_of, ClusterNode, ServerKind, ServerProcess};
use super::stats::{Errors, Latencies, Samples};
use anyhow::Context;
use cloud::bus::connections::Connections;
use cloud::bus::LocalBus;
use cloud::engine::devices::NewDevice;
use cloud::engine::{Engine, EngineSettings};
use cloud::store::{SqliteStore, Store};
use futures_util::StreamExt;
use pos::{PairingDetails, PosClient, TransactionEnvelope, TransactionMode, TransactionSpec};
use protocol::pos_api::keys;
use protocol::{Cents, DeviceId, Function, RegisterKey, TransactionId};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The amount of every transaction: an approval on any terminal simulator.
const AMOUNT_CENTS: u64 = 1000;
/// Longest a transaction may take before it counts as an error.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a fleet may take to connect, or to reconnect after a restart.
const FLEET_TIMEOUT: Duration = Duration::from_secs(300);
/// Fleets at least this large are enrolled in a scratch database in memory first (see
/// `enroll`).
const STAGED_ENROLLMENT_FROM: usize = 2_000;

/// `eftcloud bench load` options.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// POS workers; each has its own register and device and runs one transaction at a time
    /// (POST async, then long-poll until completed).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Aim for this many transactions per second in all (each worker paced at its share);
    /// default: as fast as the workers go.
    #[arg(long)]
    rate: Option<f64>,
    /// How long to measure, after the warm-up.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Traffic run first and not measured.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// `progress` frames each device sends per transaction (a real terminal sends about 3).
    #[arg(long, default_value_t = 0)]
    prompts: u32,
    /// Store of the cloud: `sqlite://<path>` or `postgres://...` [default: a fresh SQLite file
    /// in a temporary directory, durable commits]. With --nodes 2 or more, the PostgreSQL
    /// server on which the run creates a fresh database (dropped afterwards).
    #[arg(long)]
    database_url: Option<String>,
    /// Cloud nodes to run: more than one needs --nats-url and a postgres:// --database-url;
    /// devices are spread over the nodes and each POS worker sends to another node than its
    /// device's.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// NATS server the nodes of a multi-node run share.
    #[arg(long)]
    nats_url: Option<String>,
    /// PostgreSQL baseline of a multi-node run (`--no-baseline` skips it too).
    #[arg(long, value_enum, default_value_t = BaselineKind::Auto)]
    pg_baseline: BaselineKind,
    /// Measure a running cloud (`http://host:port`) instead of starting one. Needs
    /// --database-url of its store: the bench enrolls its devices there as `eftcloud device
    /// add` does. Server memory and restarts are then not measured.
    #[arg(long, requires = "database_url")]
    target: Option<String>,
    /// Idle-fleet mode: connect this many devices, report the server's memory per device and
    /// the time the whole fleet takes to reconnect after the server is killed and restarted.
    #[arg(long)]
    idle_devices: Option<usize>,
    /// Source addresses 127.0.0.2, .3, ... to spread device connections over (each allows
    /// about 28,000 connections to one server port).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=200))]
    source_addresses: u8,
    /// Device handshakes in flight at once while the fleet first connects.
    #[arg(long, default_value_t = 256)]
    parallel_connects: usize,
    /// Skip the baseline relay.
    #[arg(long)]
    no_baseline: bool,
    /// Log filter of the cloud child process (its log goes to a file in the temporary dir).
    #[arg(long, default_value = "info")]
    server_log: String,
    /// Directory for the temporary store and the servers' logs [default: the system's].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Print the figures as JSON (one object) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Refuses the flag combinations a run cannot honour, saying why.
fn check_nodes(args: &LoadArgs) -> anyhow::Result<()> {
    let n = args.nodes;
    anyhow::ensure!(n > 0, "--nodes must be at least 1");
    if n == 1 {
        anyhow::ensure!(
            args.nats_url.is_none(),
            "--nats-url is for a cluster: add --nodes 2 or more"
        );
        return Ok(());
    }
    anyhow::ensure!(
        args.nats_url.is_some(),
        "--nodes {n} needs --nats-url (the NATS server the nodes share)"
    );
    anyhow::ensure!(
        args.database_url.as_deref().is_some_and(is_postgres),
        "--nodes {n} needs --database-url postgres://... (the nodes share one PostgreSQL database)"
    );
    anyhow::ensure!(
        args.target.is_none(),
        "--nodes starts its own nodes; --target measures a cloud already running"
    );
    anyhow::ensure!(
        args.idle_devices.is_none(),
        "--nodes measures traffic; --idle-devices measures one node"
    );
    anyhow::ensure!(
        args.concurrency >= n,
        "--nodes {n} needs --concurrency {n} or more (a device on every node)"
    );
    Ok(())
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The cluster of a multi-node run: its fresh database and NATS server.
struct Cluster {
    database: ScratchDatabase,
    nats_url: String,
}

/// Runs `bench load`.
pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    check_nodes(&args)?;
    let cluster = match (&args.nats_url, &args.database_url) {
        (Some(nats), Some(server)) if args.nodes > 1 => {
            let name = format!("eftcloud_bench_{}", uuid::Uuid::new_v4().simple());
            Some(Cluster {
                database: ScratchDatabase::create(server, &name).await?,
                nats_url: nats.clone(),
            })
        }
        _ => None,
    };
    let result = measure(&args, cluster.as_ref()).await;
    if let Some(cluster) = cluster {
        if let Err(e) = cluster.database.drop().await {
            eprintln!("warning: the run's database was not dropped: {e:#}");
        }
    }
    result
}

async fn measure(args: &LoadArgs, cluster: Option<&Cluster>) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    if let Some(rate) = args.rate {
        anyhow::ensure!(rate > 0.0, "--rate must be positive");
    }
    let devices = args.idle_devices.unwrap_or(args.concurrency);
    anyhow::ensure!(devices > 0, "--idle-devices must be at least 1");
    // Each process holds one socket per device (the bench the device side, the server the
    // other), plus files, the store and the POS connections.
    let wanted = devices as u64 + args.concurrency as u64 + 1024;
    let open_files = limits::raise_open_files(wanted);
    anyhow::ensure!(
        open_files >= wanted,
        "the open-file limit is {open_files} and could not be raised to {wanted}; \
         raise it (ulimit -n, or run as root) or use fewer devices"
    );
    let work = match &args.work_dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .context("temporary directory")?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let (database_url, fresh_sqlite) = match (cluster, &args.database_url) {
        (Some(c), _) => (c.database.url.clone(), None),
        (None, Some(url)) => (url.clone(), None),
        (None, None) => {
            let path = work.path().join("eftcloud.db");
            (format!("sqlite://{}", path.display()), Some(path))
        }
    };
    let mut store = describe_store(&database_url);
    if let Some(c) = cluster {
        store = format!(
            "PostgreSQL (a fresh database, {}), {} nodes on NATS {}",
            c.database.name(),
            args.nodes,
            c.nats_url
        );
    }
    let sources: Vec<Ipv4Addr> = (0..args.source_addresses)
        .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i))
        .collect();

    let started = Instant::now();
    let credentials = enroll(&database_url, fresh_sqlite, devices, &run_id).await?;
    let enroll_s = started.elapsed().as_secs_f64();
    let mut nodes = Vec::with_capacity(args.nodes);
    match &args.target {
        Some(url) => nodes.push(Server::target(url).await?),
        None => {
            for i in 0..args.nodes {
                let cluster = cluster.map(|c| ClusterNode {
                    name: format!("bench-{run_id}-node-{}", i + 1),
                    nats_url: c.nats_url.clone(),
                });
                let started = ServerProcess::start(
                    ServerKind::Cloud {
                        database_url: database_url.clone(),
                        log: args.server_log.clone(),
                        cluster,
                    },
                    work.path(),
                )
                .await;
                match started {
                    Ok(node) => nodes.push(Server::Child(Box::new(node))),
                    Err(e) => {
                        stop_all(nodes).await;
                        return Err(e);
                    }
                }
            }
        }
    }
    let setup = Setup {
        args,
        sources: &sources,
        run_id: &run_id,
        cluster,
    };

    let errors_total;
    if let Some(n) = args.idle_devices {
        // One node (check_nodes refuses --nodes with --idle-devices).
        let mut cloud = nodes.remove(0);
        stop_all(nodes).await;
        let cloud_result = idle(&setup, &mut cloud, Target::Cloud, credentials.clone()).await;
        cloud.stop().await;
        let cloud_result = cloud_result?;
        let relay_result = if args.no_baseline {
            None
        } else {
            let mut relay = Server::Child(Box::new(
                ServerProcess::start(ServerKind::Relay, work.path()).await?,
            ));
            let r = idle(&setup, &mut relay, Target::Relay, credentials).await;
            relay.stop().await;
            Some(r?)
        };
        errors_total = cloud_result.errors.values().sum::<u64>()
            + relay_result
                .as_ref()
                .map_or(0, |r| r.errors.values().sum::<u64>());
        let report = IdleReport {
            mode: "idle",
            store,
            devices: n,
            source_addresses: sources.len(),
            open_file_limit: open_files,
            enroll_s,
            ratio: relay_result
                .as_ref()
                .map(|r| IdleRatio::of(&cloud_result, r)),
            cloud: cloud_result,
            relay: relay_result,
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            report.print();
        }
    } else {
        let cloud_result = traffic(&setup, &nodes, Target::Cloud, credentials.clone()).await;
        stop_all(nodes).await;
        let cloud_result = cloud_result?;
        let relay_result = if args.no_baseline {
            None
        } else {
            let relay = Server::Child(Box::new(
                ServerProcess::start(ServerKind::Relay, work.path()).await?,
            ));
            let r = traffic(
                &setup,
                std::slice::from_ref(&relay),
                Target::Relay,
                credentials,
            )
            .await;
            relay.stop().await;
            Some(r?)
        };
        let store_efficiency = match (cluster, cloud_result.commits_before) {
            (Some(c), Some(before)) if !args.no_baseline => {
                Some(store_efficiency(args, c, before, &cloud_result, &run_id).await?)
            }
            _ => None,
        };
        errors_total =
            cloud_result.error_total + relay_result.as_ref().map_or(0, |r| r.error_total);
        let report = LoadReport {
            mode: "load",
            store,
            concurrency: args.concurrency,
            rate: args.rate,
            duration_s: args.duration.as_secs_f64(),
            warmup_s: args.warmup.as_secs_f64(),
            prompts: args.prompts,
            nodes: cluster.map(|_| args.nodes),
            store_efficiency,
            ratio: relay_result
                .as_ref()
                .map(|r| TrafficRatio::of(&cloud_result, r)),
            cloud: cloud_result,
            relay: relay_result,
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            report.print();
        }
    }
    Ok(if errors_total == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What every measurement shares.
struct Setup<'a> {
    args: &'a LoadArgs,
    sources: &'a [Ipv4Addr],
    run_id: &'a str,
    cluster: Option<&'a Cluster>,
}

async fn stop_all(servers: Vec<Server>) {
    for server in servers {
        server.stop().await;
    }
}

/// The cloud's commits per transaction against the PostgreSQL baseline, each run alone in
/// this session.
async fn store_efficiency(
    args: &LoadArgs,
    cluster: &Cluster,
    commits_before: i64,
    cloud: &TrafficResult,
    run_id: &str,
) -> anyhow::Result<StoreEfficiency> {
    // The nodes are stopped: their backends have exited, and so reported all their commits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let commits = cluster.database.commits().await? - commits_before;
    let per_tx = ratio(commits as f64, cloud.all_completed as f64);
    let server = args.database_url.as_deref().unwrap_or_default();
    let scratch =
        ScratchDatabase::create(server, &format!("eftcloud_bench_{run_id}_baseline")).await?;
    let baseline = postgres::baseline(
        &scratch,
        args.pg_baseline,
        per_tx.round().max(1.0) as u32,
        args.duration,
    )
    .await;
    let dropped = scratch.drop().await;
    let baseline = baseline?;
    dropped?;
    let cloud_commits_per_s = cloud.tx_per_s * per_tx;
    let baseline_commits_per_s = baseline.tx_per_s * f64::from(baseline.commits_per_tx);
    Ok(StoreEfficiency {
        cloud_commits: commits,
        cloud_commits_per_tx: per_tx,
        cloud_commits_per_s,
        tx_ratio: ratio(cloud.tx_per_s, baseline.tx_per_s),
        commit_ratio: ratio(cloud_commits_per_s, baseline_commits_per_s),
        baseline,
    })
}

/// How the cloud's use of PostgreSQL compares with PostgreSQL alone on this machine.
#[derive(Debug, Serialize)]
struct StoreEfficiency {
    /// Transactions PostgreSQL committed in the cloud's database during the workers' run
    /// (warm-up included; read-only ones too), as `pg_stat_database` counts them.
    cloud_commits: i64,
    /// `cloud_commits` ÷ the POS transactions completed in the same time.
    cloud_commits_per_tx: f64,
    /// Completed transactions per second × commits per transaction.
    cloud_commits_per_s: f64,
    baseline: postgres::Baseline,
    /// eftcloud completed transactions/s ÷ baseline transactions/s.
    tx_ratio: f64,
    /// eftcloud commits/s ÷ baseline commits/s.
    commit_ratio: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Cloud,
    Relay,
}

/// A server under test: a child process of ours, or a cloud someone else runs.
enum Server {
    Child(Box<ServerProcess>),
    Target { base: String, addr: SocketAddr },
}

impl Server {
    async fn target(url: &str) -> anyhow::Result<Self> {
        let parsed = url::Url::parse(url).with_context(|| format!("--target {url}"))?;
        let host = parsed.host_str().context("--target has no host")?;
        let port = parsed
            .port_or_known_default()
            .context("--target has no port")?;
        let addr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .context("--target does not resolve")?;
        Ok(Self::Target {
            base: url.trim_end_matches('/').to_string(),
            addr,
        })
    }

    fn base(&self) -> String {
        match self {
            Server::Child(s) => s.base(),
            Server::Target { base, .. } => base.clone(),
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Server::Child(s) => s.addr(),
            Server::Target { addr, .. } => *addr,
        }
    }

    fn rss_bytes(&self) -> Option<u64> {
        match self {
            Server::Child(s) => s.rss_bytes(),
            Server::Target { .. } => None,
        }
    }

    fn cpu_seconds(&self) -> Option<f64> {
        match self {
            Server::Child(s) => s.cpu_seconds(),
            Server::Target { .. } => None,
        }
    }

    async fn stop(self) {
        if let Server::Child(s) = self {
            s.stop().await;
        }
    }
}

fn describe_store(url: &str) -> String {
    if let Some(path) = url.strip_prefix("sqlite://") {
        format!("SQLite {path}: WAL, synchronous=FULL (every commit fsynced)")
    } else if url.starts_with("sqlite:") {
        format!("SQLite {url}: WAL, synchronous=FULL (every commit fsynced)")
    } else {
        "PostgreSQL".to_string()
    }
}

/// Enrolls `n` devices as `eftcloud device add` does (random secret, only its hash stored).
///
/// A fresh SQLite store for a large fleet is first built in memory (`/dev/shm`), then copied
/// to its real place with `VACUUM INTO`: enrolling is one durable commit per device, and
/// 100,000 fsyncs would take minutes without telling anything about the cloud.
async fn enroll(
    database_url: &str,
    fresh_sqlite: Option<PathBuf>,
    n: usize,
    run_id: &str,
) -> anyhow::Result<Vec<Credentials>> {
    let staging = match fresh_sqlite {
        Some(path) if n >= STAGED_ENROLLMENT_FROM && std::path::Path::new("/dev/shm").is_dir() => {
            Some(path)
        }
        _ => None,
    };
    let scratch = std::path::PathBuf::from(format!("/dev/shm/eftcloud-bench-{run_id}.db"));
    let (store, sqlite): (Arc<dyn Store>, Option<Arc<SqliteStore>>) = match &staging {
        Some(_) => {
            let s = Arc::new(SqliteStore::open(&format!("sqlite://{}", scratch.display())).await?);
            (s.clone(), Some(s))
        }
        None => (cloud::store::open(database_url).await?, None),
    };
    let bus = Arc::new(LocalBus::new(Arc::new(Connections::default())));
    let engine = Engine::new(store, bus, EngineSettings::default());
    let details = NewDevice {
        vendor: "eftcloud-bench".into(),
        model: "sim".into(),
        merchant: "Bench".into(),
        site: None,
    };
    let results: Vec<anyhow::Result<Credentials>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let engine = &engine;
            let details = &details;
            async move {
                let id = DeviceId::parse(&format!("bench-{run_id}-{i}"))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let secret = engine.enroll_device(&id, details).await?;
                Ok(Credentials { id, secret })
            }
        })
        .buffered(32)
        .collect()
        .await;
    let credentials = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    if let (Some(path), Some(sqlite)) = (staging, sqlite) {
        sqlite.backup_to(&path).await?;
        drop(engine);
        drop(sqlite);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", scratch.display()));
        }
    }
    Ok(credentials)
}

fn register_of(run_id: &str, i: usize) -> RegisterKey {
    RegisterKey {
        register_id: format!("bench-register-{run_id}-{i}"),
        business_name: "Bench".into(),
        vendor_name: "eftcloud".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Traffic

/// What one server did under the POS workload.
#[derive(Debug, Serialize)]
struct TrafficResult {
    /// Transactions completed within the measured window.
    completed: u64,
    tx_per_s: f64,
    error_total: u64,
    errors: BTreeMap<String, u64>,
    latency_ms: Latencies,
    /// The server's resident memory at the end of the run (all nodes' together).
    server_rss_bytes: Option<u64>,
    /// Server CPU time per transaction (warm-up included, in both the time and the count; all
    /// nodes' together).
    server_cpu_ms_per_tx: Option<f64>,
    /// Each node's figures, in a multi-node run.
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<Vec<NodeFigures>>,
    /// Transactions completed in all, warm-up included.
    #[serde(skip)]
    all_completed: u64,
    /// The cloud database's commit count when the workers started, in a multi-node run.
    #[serde(skip)]
    commits_before: Option<i64>,
}

/// The measured window: transactions that complete inside it count.
#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    until: Instant,
}

/// Runs the POS workload against `servers`: device `i` connects to `servers[i % n]`, and its
/// POS worker sends to the next one, `servers[(i + 1) % n]` (the same server when there is
/// one).
async fn traffic(
    setup: &Setup<'_>,
    servers: &[Server],
    target: Target,
    credentials: Vec<Credentials>,
) -> anyhow::Result<TrafficResult> {
    let args = setup.args;
    let errors = Arc::new(Errors::default());
    let n = credentials.len();
    let addrs: Vec<SocketAddr> = servers.iter().map(Server::addr).collect();
    let bases: Vec<String> = servers.iter().map(Server::base).collect();
    let pos_base = |i: usize| bases[(i + 1) % bases.len()].clone();
    let fleet = Fleet::start(
        credentials,
        &addrs,
        setup.sources,
        DeviceBehaviour {
            request_pairing_code: target == Target::Cloud,
            prompts: args.prompts,
        },
        args.parallel_connects,
        errors.clone(),
    );
    if !fleet.wait_connected(n, FLEET_TIMEOUT).await {
        // What went wrong, e.g. "device bench-3 refused: bad device credentials (4001)".
        let why: Vec<String> = errors.snapshot().into_keys().take(3).collect();
        anyhow::bail!(
            "only {} of {n} devices connected to the {target:?}: {}",
            fleet.connected(),
            if why.is_empty() {
                "no error reported".to_string()
            } else {
                why.join("; ")
            }
        );
    }
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(TRANSACTION_TIMEOUT)
        .build()?;
    if target == Target::Cloud {
        pair_all(&pos_base, &fleet.devices, setup.run_id, &http).await?;
    }
    let disconnects_before = fleet
        .counters
        .disconnects
        .load(std::sync::atomic::Ordering::Relaxed);
    let from = Instant::now() + args.warmup;
    let window = Window {
        from,
        until: from + args.duration,
    };
    // Each worker paced at its share of --rate, if given.
    let pace = args
        .rate
        .map(|r| Duration::from_secs_f64(args.concurrency as f64 / r));
    let spec = TransactionSpec::new(Function::CardPurchase)
        .with_amount(Cents::new(AMOUNT_CENTS).map_err(|e| anyhow::anyhow!("{e}"))?);
    let mut workers = tokio::task::JoinSet::new();
    for (i, device) in fleet.devices.iter().take(args.concurrency).enumerate() {
        let worker = Worker {
            http: http.clone(),
            base: pos_base(i),
            device: device.clone(),
            register: register_of(setup.run_id, i),
            spec: spec.clone(),
            errors: errors.clone(),
        };
        // Paced workers start spread over one interval, not all at once in bursts.
        let offset = pace.map_or(Duration::ZERO, |p| {
            p.mul_f64(i as f64 / args.concurrency as f64)
        });
        workers.spawn(worker.run(window, pace, offset, target));
    }
    let cpu_before: Vec<Option<f64>> = servers.iter().map(Server::cpu_seconds).collect();
    let commits_before = match setup.cluster {
        Some(c) if target == Target::Cloud => Some(c.database.commits().await?),
        _ => None,
    };
    let mut samples = Samples::default();
    let (mut completed, mut all) = (0u64, 0u64);
    while let Some(r) = workers.join_next().await {
        let (s, c, a) = r.context("worker panicked")?;
        samples.merge(s);
        completed += c;
        all += a;
    }
    let cpu_s: Vec<Option<f64>> = servers
        .iter()
        .zip(&cpu_before)
        .map(|(server, before)| match (before, server.cpu_seconds()) {
            (Some(b), Some(a)) => Some(a - b),
            _ => None,
        })
        .collect();
    let per_tx = |cpu_s: f64| (all > 0).then(|| cpu_s * 1000.0 / all as f64);
    let server_cpu_ms_per_tx = cpu_s.iter().copied().sum::<Option<f64>>().and_then(per_tx);
    let disconnects = fleet
        .counters
        .disconnects
        .load(std::sync::atomic::Ordering::Relaxed)
        - disconnects_before;
    if disconnects > 0 {
        for _ in 0..disconnects {
            errors.add("device: connection lost during the run");
        }
    }
    let rss: Vec<Option<u64>> = servers.iter().map(Server::rss_bytes).collect();
    let server_rss_bytes = rss.iter().copied().sum::<Option<u64>>();
    let nodes = (servers.len() > 1).then(|| {
        (0..servers.len())
            .map(|k| NodeFigures {
                node: k + 1,
                devices: (0..n).filter(|i| i % servers.len() == k).count(),
                cpu_s: cpu_s[k],
                cpu_ms_per_tx: cpu_s[k].and_then(per_tx),
                rss_bytes: rss[k],
            })
            .collect()
    });
    fleet.stop().await;
    let errors = errors.snapshot();
    Ok(TrafficResult {
        completed,
        tx_per_s: completed as f64 / args.duration.as_secs_f64(),
        error_total: errors.values().sum(),
        errors,
        latency_ms: samples.summarise(),
        server_rss_bytes,
        server_cpu_ms_per_tx,
        nodes,
        all_completed: all,
        commits_before,
    })
}

/// One node of a multi-node run.
#[derive(Debug, Serialize)]
struct NodeFigures {
    /// 1, 2, ...: node `k` holds devices `k - 1`, `k - 1 + nodes`, ... and takes the POS
    /// requests of the node before it.
    node: usize,
    devices: usize,
    /// CPU time (user + system) during the workers' run, warm-up included.
    cpu_s: Option<f64>,
    /// `cpu_s` ÷ every transaction of the run: the nodes' figures add up to the cluster's.
    cpu_ms_per_tx: Option<f64>,
    rss_bytes: Option<u64>,
}

/// Pairs a register with every device through the POS API: the device asks for a code, the
/// POS sends it with `PUT /POS/Pairing/{code}`, the device hears `paired`.
async fn pair_all(
    base_of: &dyn Fn(usize) -> String,
    devices: &[Arc<SimDevice>],
    run_id: &str,
    http: &reqwest::Client,
) -> anyhow::Result<()> {
    let clients = (0..devices.len())
        .map(|i| PosClient::with_http_client(&base_of(i), http.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(devices.iter().enumerate())
        .map(|(i, device)| {
            let pos = &clients[i];
            async move {
                let mut view = device.pairing();
                let code = tokio::time::timeout(
                    Duration::from_secs(30),
                    view.wait_for(|v| v.code.is_some()),
                )
                .await
                .context("no pairing code")?
                .context("device gone")?
                .code
                .clone()
                .unwrap_or_default();
                let register = register_of(run_id, i);
                pos.pair(&code, &register, &PairingDetails::new(format!("Bench {i}")))
                    .await
                    .with_context(|| format!("pairing {}", device.credentials.id))?;
                tokio::time::timeout(Duration::from_secs(30), view.wait_for(|v| v.paired))
                    .await
                    .context("device not told it was paired")?
                    .context("device gone")?;
                Ok(())
            }
        })
        // The cloud's brute-force guard counts a pairing attempt as failed until it succeeds,
        // and allows 10 per source address: stay well below.
        .buffer_unordered(4)
        .collect()
        .await;
    results.into_iter().collect()
}

/// One POS worker: its register, its device, one transaction at a time.
struct Worker {
    http: reqwest::Client,
    base: String,
    device: Arc<SimDevice>,
    register: RegisterKey,
    spec: TransactionSpec,
    errors: Arc<Errors>,
}

/// The times of one transaction, from its POST.
struct Times {
    post_response: Duration,
    to_device: Duration,
    to_completed: Duration,
}

impl Worker {
    /// Returns the samples and count of the measured window, and the count of all
    /// transactions completed (warm-up included).
    async fn run(
        self,
        window: Window,
        pace: Option<Duration>,
        offset: Duration,
        target: Target,
    ) -> (Samples, u64, u64) {
        let mut samples = Samples::default();
        let (mut completed, mut all) = (0, 0);
        let mut next = Instant::now() + offset;
        loop {
            if let Some(p) = pace {
                tokio::time::sleep_until(next.into()).await;
                next += p;
            }
            let t0 = Instant::now();
            if t0 >= window.until {
                break;
            }
            let outcome = match target {
                Target::Cloud => self.cloud_transaction(t0).await,
                Target::Relay => self.relay_transaction(t0).await,
            };
            match outcome {
                Ok(times) => {
                    all += 1;
                    let done = t0 + times.to_completed;
                    if done >= window.from && done <= window.until {
                        completed += 1;
                        samples.post_response.push(times.post_response);
                        samples.post_to_device.push(times.to_device);
                        samples.post_to_completed.push(times.to_completed);
                    }
                }
                Err(kind) => self.errors.add(kind),
            }
        }
        (samples, completed, all)
    }

    /// POST async, then long-poll until completed.
    async fn cloud_transaction(&self, t0: Instant) -> Result<Times, String> {
        let resp = self
            .http
            .post(format!("{}/POS/Transaction", self.base))
            .form(&self.spec.form(&self.register, TransactionMode::Async))
            .send()
            .await
            .map_err(|e| format!("POST: {}", transport(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("POST: HTTP {}", status.as_u16()));
        }
        let env: TransactionEnvelope = resp
            .json()
            .await
            .map_err(|_| "POST: unreadable body".to_string())?;
        let post_response = t0.elapsed();
        let id = TransactionId::from_str(&env.transaction_id)
            .map_err(|_| "POST: bad transactionId".to_string())?;
        let polling = env
            .field(keys::POLLING_URL)
            .ok_or("POST: no PollingUrl")?
            .to_string();
        let url = format!("{polling}&wait=30");
        let mut env = env;
        while !env.is_completed() {
            if t0.elapsed() > TRANSACTION_TIMEOUT {
                return Err("poll: not completed in time".into());
            }
            let resp = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("poll: {}", transport(&e)))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("poll: HTTP {}", status.as_u16()));
            }
            env = resp
                .json()
                .await
                .map_err(|_| "poll: unreadable body".to_string())?;
        }
        let to_completed = t0.elapsed();
        check_outcome(env.field(keys::TRANSACTION_RESULT))?;
        Ok(Times {
            post_response,
            to_device: self.to_device(&id, t0)?,
            to_completed,
        })
    }

    /// One POST that returns with the device's result.
    async fn relay_transaction(&self, t0: Instant) -> Result<Times, String> {
        let resp = self
            .http
            .post(format!("{}/tx", self.base))
            .form(&[
                ("device", self.device.credentials.id.as_str().to_string()),
                ("amount", AMOUNT_CENTS.to_string()),
            ])
            .send()
            .await
            .map_err(|e| format!("POST: {}", transport(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("POST: HTTP {}", status.as_u16()));
        }
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|_| "POST: unreadable body".to_string())?;
        let done = t0.elapsed();
        let id = body["transactionId"]
            .as_str()
            .and_then(|s| TransactionId::from_str(s).ok())
            .ok_or("POST: bad transactionId")?;
        check_outcome(body["data"]["TransactionResult"].as_str())?;
        Ok(Times {
            post_response: done,
            to_device: self.to_device(&id, t0)?,
            to_completed: done,
        })
    }

    fn to_device(&self, id: &TransactionId, t0: Instant) -> Result<Duration, String> {
        self.device
            .offer_received(id)
            .map(|at| at.saturating_duration_since(t0))
            .ok_or_else(|| "device: offer not seen".to_string())
    }
}

fn check_outcome(result: Option<&str>) -> Result<(), String> {
    match result {
        Some("OK-ACCEPTED") => Ok(()),
        other => Err(format!("outcome: {}", other.unwrap_or("none"))),
    }
}

fn transport(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else {
        "transport error"
    }
}

// ---------------------------------------------------------------------------------------------
// Idle fleet

/// An idle fleet against one server.
#[derive(Debug, Serialize)]
struct IdleResult {
    connected: usize,
    /// From the first handshake until every device was welcomed.
    connect_s: f64,
    server_rss_before_bytes: Option<u64>,
    server_rss_after_bytes: Option<u64>,
    server_rss_per_device_bytes: Option<f64>,
    /// This process (all the simulated devices) after connecting, for scale.
    bench_rss_bytes: Option<u64>,
    /// From the kill of the server until every device was welcomed by the new process.
    reconnect_s: Option<f64>,
    /// From the new process answering its health check until every device was welcomed.
    reconnect_after_ready_s: Option<f64>,
    reconnected: Option<usize>,
    errors: BTreeMap<String, u64>,
}

async fn idle(
    setup: &Setup<'_>,
    server: &mut Server,
    target: Target,
    credentials: Vec<Credentials>,
) -> anyhow::Result<IdleResult> {
    let n = credentials.len();
    let errors = Arc::new(Errors::default());
    let rss_before = server.rss_bytes();
    let t0 = Instant::now();
    let fleet = Fleet::start(
        credentials,
        &[server.addr()],
        setup.sources,
        DeviceBehaviour {
            request_pairing_code: false,
            prompts: 0,
        },
        setup.args.parallel_connects,
        errors.clone(),
    );
    let all = fleet.wait_connected(n, FLEET_TIMEOUT).await;
    let connect_s = t0.elapsed().as_secs_f64();
    let connected = fleet.connected();
    if !all {
        errors.add(format!(
            "connect: only {connected} of {n} within {FLEET_TIMEOUT:?}"
        ));
    }
    // Let the server finish what connecting started (connection records) before reading it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = server.rss_bytes();
    let bench_rss = rss_of(std::process::id());
    let (mut reconnect_s, mut after_ready_s, mut reconnected) = (None, None, None);
    if let Server::Child(child) = server {
        let welcomes = fleet
            .counters
            .welcomes
            .load(std::sync::atomic::Ordering::Relaxed);
        let (killed, ready) = child.restart().await?;
        let all = fleet
            .wait_welcomes(welcomes + connected as u64, FLEET_TIMEOUT)
            .await;
        let now = Instant::now();
        reconnected = Some(fleet.connected());
        if all {
            reconnect_s = Some((now - killed).as_secs_f64());
            after_ready_s = Some((now - ready).as_secs_f64());
        } else {
            errors.add(format!(
                "reconnect: only {} of {connected} within {FLEET_TIMEOUT:?}",
                fleet.connected()
            ));
        }
    }
    fleet.stop().await;
    let per_device = match (rss_before, rss_after) {
        (Some(b), Some(a)) if connected > 0 => Some(a.saturating_sub(b) as f64 / connected as f64),
        _ => None,
    };
    let _ = target;
    Ok(IdleResult {
        connected,
        connect_s,
        server_rss_before_bytes: rss_before,
        server_rss_after_bytes: rss_after,
        server_rss_per_device_bytes: per_device,
        bench_rss_bytes: bench_rss,
        reconnect_s,
        reconnect_after_ready_s: after_ready_s,
        reconnected,
        errors: errors.snapshot(),
    })
}

// ---------------------------------------------------------------------------------------------
// Reports

#[derive(Debug, Serialize)]
struct TrafficRatio {
    tx_per_s: f64,
    post_response: [f64; 4],
    post_to_device: [f64; 4],
    post_to_completed: [f64; 4],
}

impl TrafficRatio {
    fn of(cloud: &TrafficResult, relay: &TrafficResult) -> Self {
        let p = |c: &super::stats::Percentiles, r: &super::stats::Percentiles| {
            [
                ratio(c.p50, r.p50),
                ratio(c.p90, r.p90),
                ratio(c.p99, r.p99),
                ratio(c.max, r.max),
            ]
        };
        let (c, r) = (&cloud.latency_ms, &relay.latency_ms);
        Self {
            tx_per_s: ratio(cloud.tx_per_s, relay.tx_per_s),
            post_response: p(&c.post_response, &r.post_response),
            post_to_device: p(&c.post_to_device, &r.post_to_device),
            post_to_completed: p(&c.post_to_completed, &r.post_to_completed),
        }
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

#[derive(Debug, Serialize)]
struct LoadReport {
    mode: &'static str,
    store: String,
    concurrency: usize,
    rate: Option<f64>,
    duration_s: f64,
    warmup_s: f64,
    prompts: u32,
    /// Nodes of a multi-node run.
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<usize>,
    cloud: TrafficResult,
    relay: Option<TrafficResult>,
    /// The cloud against PostgreSQL alone, in a multi-node run.
    #[serde(skip_serializing_if = "Option::is_none")]
    store_efficiency: Option<StoreEfficiency>,
    /// cloud ÷ relay; percentiles as [p50, p90, p99, max].
    ratio: Option<TrafficRatio>,
}

impl LoadReport {
    fn print(&self) {
        println!(
            "eftcloud bench load: {} workers (a register and a device each, one transaction at a time){}, {:.0} s measured after {:.0} s warm-up, {} prompt(s) per transaction",
            self.concurrency,
            self.rate.map(|r| format!(" at {r}/s")).unwrap_or_default(),
            self.duration_s,
            self.warmup_s,
            self.prompts
        );
        println!("store: {}", self.store);
        if let Some(n) = self.nodes {
            println!(
                "cluster: {n} nodes, the devices spread over them, each POS worker sending to the node after its device's (every request crosses NATS)"
            );
        }
        println!("baseline: relay (HTTP POST -> WebSocket -> result; no store, no state machine)");
        println!();
        let relay = self.relay.as_ref();
        println!("{:<34}{:>12}{:>12}{:>9}", "", "eftcloud", "relay", "ratio");
        let row = |name: &str, c: f64, r: Option<f64>| {
            match r {
                Some(r) => println!("{name:<34}{c:>12.1}{r:>12.1}{:>9.2}", ratio(c, r)),
                None => println!("{name:<34}{c:>12.1}{:>12}{:>9}", "-", "-"),
            };
        };
        row(
            "completed transactions/s",
            self.cloud.tx_per_s,
            relay.map(|r| r.tx_per_s),
        );
        println!(
            "{:<34}{:>12}{:>12}",
            "errors",
            self.cloud.error_total,
            relay.map_or("-".to_string(), |r| r.error_total.to_string())
        );
        type Pick = fn(&Latencies) -> &super::stats::Percentiles;
        let metrics: [(&str, Pick); 3] = [
            ("POST response", |l| &l.post_response),
            ("POST -> device receives", |l| &l.post_to_device),
            ("POST -> POS has the result", |l| &l.post_to_completed),
        ];
        for (name, pick) in metrics {
            let c = pick(&self.cloud.latency_ms);
            let r = relay.map(|r| *pick(&r.latency_ms));
            row(&format!("{name} p50 ms"), c.p50, r.map(|r| r.p50));
            row(&format!("{name} p90 ms"), c.p90, r.map(|r| r.p90));
            row(&format!("{name} p99 ms"), c.p99, r.map(|r| r.p99));
            row(&format!("{name} max ms"), c.max, r.map(|r| r.max));
        }
        if let Some(cpu) = self.cloud.server_cpu_ms_per_tx {
            row(
                "server CPU ms per transaction",
                cpu,
                relay.and_then(|r| r.server_cpu_ms_per_tx),
            );
        }
        if let Some(rss) = self.cloud.server_rss_bytes {
            row(
                "server RSS MiB",
                mib(rss),
                relay.and_then(|r| r.server_rss_bytes).map(mib),
            );
        }
        for node in self.cloud.nodes.iter().flatten() {
            let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
            println!(
                "node {}: {} devices, CPU {} s, {} ms per transaction (of all the cluster's), RSS {} MiB",
                node.node,
                node.devices,
                f(node.cpu_s),
                f(node.cpu_ms_per_tx),
                f(node.rss_bytes.map(mib))
            );
        }
        if let Some(e) = &self.store_efficiency {
            println!(
                "PostgreSQL: the cloud committed {} transactions, {:.1} per POS transaction ({:.0} commits/s)",
                e.cloud_commits, e.cloud_commits_per_tx, e.cloud_commits_per_s
            );
            println!(
                "PostgreSQL baseline ({}: {}): {:.1} transactions/s of {} commit(s)",
                e.baseline.kind, e.baseline.command, e.baseline.tx_per_s, e.baseline.commits_per_tx
            );
            println!(
                "store efficiency: eftcloud transactions/s / baseline's {:.3}; commits/s / baseline's {:.3}",
                e.tx_ratio, e.commit_ratio
            );
        }
        for (who, errors) in std::iter::once(("eftcloud", &self.cloud.errors))
            .chain(relay.map(|r| ("relay", &r.errors)))
        {
            for (kind, count) in errors {
                println!("error ({who}): {kind}: {count}");
            }
        }
        println!("(the relay's POST returns with the result, so its POST response is the whole transaction)");
    }
}

#[derive(Debug, Serialize)]
struct IdleRatio {
    server_rss_per_device: f64,
    connect_s: f64,
    reconnect_s: f64,
}

impl IdleRatio {
    fn of(cloud: &IdleResult, relay: &IdleResult) -> Self {
        Self {
            server_rss_per_device: ratio(
                cloud.server_rss_per_device_bytes.unwrap_or(0.0),
                relay.server_rss_per_device_bytes.unwrap_or(0.0),
            ),
            connect_s: ratio(cloud.connect_s, relay.connect_s),
            reconnect_s: ratio(
                cloud.reconnect_s.unwrap_or(0.0),
                relay.reconnect_s.unwrap_or(0.0),
            ),
        }
    }
}

#[derive(Debug, Serialize)]
struct IdleReport {
    mode: &'static str,
    store: String,
    devices: usize,
    source_addresses: usize,
    open_file_limit: u64,
    enroll_s: f64,
    cloud: IdleResult,
    relay: Option<IdleResult>,
    /// cloud ÷ relay.
    ratio: Option<IdleRatio>,
}

impl IdleReport {
    fn print(&self) {
        println!(
            "eftcloud bench load --idle-devices {}: {} source addresses, open-file limit {}, enrolled in {:.1} s",
            self.devices, self.source_addresses, self.open_file_limit, self.enroll_s
        );
        println!("store: {}", self.store);
        println!();
        println!("{:<40}{:>12}{:>12}{:>9}", "", "eftcloud", "relay", "ratio");
        let relay = self.relay.as_ref();
        let row = |name: &str, c: Option<f64>, r: Option<f64>| {
            let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
            let q = match (c, r) {
                (Some(c), Some(r)) => format!("{:.2}", ratio(c, r)),
                _ => "-".to_string(),
            };
            println!("{name:<40}{:>12}{:>12}{q:>9}", f(c), f(r));
        };
        row(
            "devices connected",
            Some(self.cloud.connected as f64),
            relay.map(|r| r.connected as f64),
        );
        row(
            "time to connect the fleet s",
            Some(self.cloud.connect_s),
            relay.map(|r| r.connect_s),
        );
        row(
            "server RSS before MiB",
            self.cloud.server_rss_before_bytes.map(mib),
            relay.and_then(|r| r.server_rss_before_bytes).map(mib),
        );
        row(
            "server RSS with the fleet MiB",
            self.cloud.server_rss_after_bytes.map(mib),
            relay.and_then(|r| r.server_rss_after_bytes).map(mib),
        );
        row(
            "server RSS per device KiB",
            self.cloud.server_rss_per_device_bytes.map(|b| b / 1024.0),
            relay
                .and_then(|r| r.server_rss_per_device_bytes)
                .map(|b| b / 1024.0),
        );
        row(
            "reconnect after kill + restart s",
            self.cloud.reconnect_s,
            relay.and_then(|r| r.reconnect_s),
        );
        row(
            "  of which after the server was up s",
            self.cloud.reconnect_after_ready_s,
            relay.and_then(|r| r.reconnect_after_ready_s),
        );
        row(
            "devices reconnected",
            self.cloud.reconnected.map(|v| v as f64),
            relay.and_then(|r| r.reconnected).map(|v| v as f64),
        );
        row(
            "bench process RSS MiB (all devices)",
            self.cloud.bench_rss_bytes.map(mib),
            relay.and_then(|r| r.bench_rss_bytes).map(mib),
        );
        for (who, errors) in std::iter::once(("eftcloud", &self.cloud.errors))
            .chain(relay.map(|r| ("relay", &r.errors)))
        {
            for (kind, count) in errors {
                println!("error ({who}): {kind}: {count}");
            }
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
