//! `eftcloud bench latency`: the cloud hop on loopback, measured end to end.
//!
//! Starts a cloud on a temporary SQLite file, a terminal agent with an instant card simulator
//! and a POS client, all in this process over real sockets, then runs transactions one after
//! another and reports, per transaction, the time from the POS's POST to the device receiving
//! the request, and from the POST to the completed poll (a long-poll, which returns as soon as
//! the result is stored).

use anyhow::Context;
use cloud::{Application, Config};
use pos::{PairingDetails, PosClient, TransactionSpec};
use protocol::{Cents, DeviceId, Function, RegisterKey};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use terminal::{Simulator, SimulatorConfig, TerminalCommand, TerminalConfig, TerminalEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

/// Runs `bench latency`.
pub async fn latency(
    transactions: usize,
    warmup: usize,
    database_url: Option<String>,
    nodes: usize,
    nats_url: Option<String>,
) -> anyhow::Result<ExitCode> {
    if transactions == 0 || nodes == 0 {
        anyhow::bail!("--transactions and --nodes must be at least 1");
    }
    if nodes > 1 && (nats_url.is_none() || database_url.is_none()) {
        anyhow::bail!("--nodes > 1 needs --database-url (PostgreSQL) and --nats-url");
    }
    let dir = tempfile::tempdir().context("temporary directory")?;
    let database_url = database_url
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let store_kind = if database_url.starts_with("sqlite:") {
        "SQLite synchronous=FULL"
    } else {
        "PostgreSQL"
    };
    let stop = CancellationToken::new();
    let mut bases = Vec::new();
    let mut servers = Vec::new();
    let mut engine = None;
    for i in 0..nodes {
        let mut config = Config {
            listen: "127.0.0.1:0".parse()?,
            database_url: database_url.clone(),
            nats_url: nats_url.clone(),
            poll_interval_min: Duration::ZERO,
            ..Config::default()
        };
        config.gateway.node = format!("bench-node-{i}-{}", uuid::Uuid::new_v4().simple());
        let app = Application::build(config).await?;
        bases.push(format!("http://{}", app.local_addr()));
        engine.get_or_insert_with(|| app.engine().clone());
        servers.push(tokio::spawn(app.run_until_stopped(stop.clone())));
    }
    let engine = engine.context("no node")?;
    // Unique per run: a PostgreSQL store outlives the benchmark.
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let device =
        DeviceId::parse(&format!("bench-{}", &run_id[..12])).map_err(|e| anyhow::anyhow!("{e}"))?;
    let secret = engine
        .enroll_device(&device, &cloud::engine::devices::NewDevice::default())
        .await?;
    // The device on the first node, the POS on the second (the same one on a single node).
    let base = bases[0].clone();
    let pos_base = bases[1 % nodes].clone();

    let terminal_config = TerminalConfig::new(
        base.parse()?,
        device,
        secret,
        dir.path().join("bench.journal"),
    );
    let (events_tx, mut events) = mpsc::channel(1024);
    let (_commands_tx, commands) = mpsc::channel::<TerminalCommand>(1);
    let simulator = Arc::new(Simulator::new(SimulatorConfig {
        step_delay: Duration::ZERO,
        slow: Duration::from_secs(1),
    }));
    let agent = tokio::spawn(terminal::run(
        terminal_config,
        simulator,
        events_tx,
        commands,
        stop.clone(),
    ));

    let code = next_event(&mut events, |e| match e {
        TerminalEvent::PairingCode { code, .. } => Some(code.to_string()),
        _ => None,
    })
    .await?;
    let pos = PosClient::new(&pos_base)?;
    let register = RegisterKey {
        register_id: format!("bench-register-{run_id}"),
        business_name: "Bench".into(),
        vendor_name: "eftcloud".into(),
    };
    pos.pair(&code, &register, &PairingDetails::new("Bench"))
        .await?;
    // Event times are taken by a collector task as the agent emits them: `TransactionReceived`
    // carries its own instant; `Completed` is emitted just before the result frame is sent.
    let seen: Arc<std::sync::Mutex<HashMap<String, EventTimes>>> = Arc::default();
    let collector = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                let mut map = seen.lock().unwrap_or_else(|p| p.into_inner());
                match e {
                    TerminalEvent::TransactionReceived {
                        transaction_id, at, ..
                    } => {
                        map.entry(transaction_id.to_string()).or_default().received = Some(at);
                    }
                    TerminalEvent::Completed { result } => {
                        map.entry(result.transaction_id.to_string())
                            .or_default()
                            .result_sent = Some(Instant::now());
                    }
                    _ => {}
                }
            }
        })
    };
    let http = reqwest::Client::new();
    let spec = TransactionSpec::new(Function::CardPurchase)
        .with_amount(Cents::new(1000).map_err(|e| anyhow::anyhow!("{e}"))?);

    let mut to_device = Vec::with_capacity(transactions);
    let mut to_completed = Vec::with_capacity(transactions);
    let mut result_to_pos = Vec::with_capacity(transactions);
    let started_all = Instant::now();
    for i in 0..warmup + transactions {
        let t0 = Instant::now();
        let env = pos.start(&register, &spec).await?;
        let id = env.transaction_id.clone();
        let url = format!(
            "{}&wait={}",
            env.field("PollingUrl").context("no PollingUrl")?,
            WAIT.as_secs()
        );
        let body: protocol::pos_api::TransactionEnvelope = http
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let done_at = Instant::now();
        let done = done_at - t0;
        anyhow::ensure!(
            body.is_completed(),
            "transaction {id} not completed within {WAIT:?}"
        );
        let times = event_times(&seen, &id).await?;
        if i >= warmup {
            to_device.push(times.0.saturating_duration_since(t0));
            to_completed.push(done);
            result_to_pos.push(done_at.saturating_duration_since(times.1));
        }
    }
    let wall = started_all.elapsed();
    stop.cancel();
    let _ = agent.await;
    for server in servers {
        let _ = server.await;
    }
    collector.abort();

    println!(
        "{transactions} transactions (after {warmup} warm-up), one at a time, on loopback; store {store_kind}; {nodes} node(s){}",
        if nodes > 1 { " with NATS, device on node 1, POS on node 2" } else { "" }
    );
    report("POST -> device receives request", &mut to_device);
    report("POST -> completed poll (long-poll)", &mut to_completed);
    report(
        "device sends result -> long-poll returns",
        &mut result_to_pos,
    );
    println!(
        "throughput (sequential): {:.0} transactions/s",
        (warmup + transactions) as f64 / wall.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// When the device received a transaction and when it sent the result.
#[derive(Default)]
struct EventTimes {
    received: Option<Instant>,
    result_sent: Option<Instant>,
}

/// Waits (briefly) until the collector has seen both events of a transaction.
async fn event_times(
    seen: &std::sync::Mutex<HashMap<String, EventTimes>>,
    id: &str,
) -> anyhow::Result<(Instant, Instant)> {
    let deadline = Instant::now() + WAIT;
    loop {
        {
            let mut map = seen.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(EventTimes {
                received: Some(r),
                result_sent: Some(s),
            }) = map.get(id)
            {
                let times = (*r, *s);
                map.remove(id);
                return Ok(times);
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "terminal events for {id} did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn next_event<T>(
    events: &mut mpsc::Receiver<TerminalEvent>,
    mut f: impl FnMut(&TerminalEvent) -> Option<T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(WAIT, async {
        while let Some(e) = events.recv().await {
            if let Some(t) = f(&e) {
                return Ok(t);
            }
        }
        anyhow::bail!("terminal agent stopped")
    })
    .await
    .context("terminal event did not arrive in time")?
}

fn report(name: &str, samples: &mut [Duration]) {
    samples.sort();
    let pct = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i.min(samples.len() - 1)]
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name}: median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(pct(1.0))
    );
}
