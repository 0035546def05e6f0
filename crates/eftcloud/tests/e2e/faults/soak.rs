//! The randomized soak: several terminals behind proxies, POS transactions on every register,
//! and faults injected at random moments (connections cut, stalled then cut, blackholed,
//! terminals killed, the cloud killed, the store unable to commit for a while, and one commit in
//! 25 failing at random throughout); then, with every party back, an audit of the cloud's
//! final state of every transaction against every terminal journal.
//!
//! CI runs a short version (`EFTCLOUD_SOAK_ITERATIONS` defaults to 300 POS transactions, at most
//! `EFTCLOUD_SOAK_SECS`, default 10 s, of faults). A longer run is one command:
//!
//! ```sh
//! EFTCLOUD_SOAK_ITERATIONS=2000 EFTCLOUD_SOAK_SECS=300 cargo test -p eftcloud --test e2e soak -- --nocapture
//! ```
//!
//! The seed is printed at the start and in every assertion message; `EFTCLOUD_SOAK_SEED=<seed>`
//! replays the same choices (amounts, faults, delays), though not the same thread timings.

use super::cloud::Cloud;
use super::proxy::Proxy;
use super::support::{pair, restart_terminal};
use crate::harness::{start_terminal_at, Opts, Terminal, PATIENCE};
use cloud::domain::lifecycle::{CompletedBy, Completion, Phase};
use pos::{PollOutcome, PosClient, TransactionSpec};
use protocol::pos_api::TransactionEnvelope;
use protocol::{Cents, Function, RegisterKey, TransactionId, TransactionResult};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use terminal::{Journal, SimulatorConfig};
use tokio::sync::mpsc;

const DEVICES: usize = 3;

/// A small deterministic generator (splitmix64): the soak needs reproducible choices, not
/// cryptography, and no extra dependency.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
    fn fork(&mut self) -> Rng {
        Rng(self.next())
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Faults injected, by kind.
#[derive(Default, Debug)]
struct FaultCounts {
    cut: AtomicU64,
    stall_then_cut: AtomicU64,
    blackhole: AtomicU64,
    terminal_kill: AtomicU64,
    power_failure: AtomicU64,
    cloud_kill: AtomicU64,
    /// Spells of "disk full": every commit fails for a while.
    storage_outage: AtomicU64,
}

/// A transaction the POS got an id for.
struct PosRecord {
    device: usize,
    cents: u64,
    url: String,
    /// The first COMPLETED body the POS saw.
    completed: Option<TransactionEnvelope>,
}

/// What the run observed, for the audit.
#[derive(Default)]
struct Ledger {
    pos: BTreeMap<TransactionId, PosRecord>,
    /// POSTs that got no answer (the cloud died under them): the POS has no id to follow.
    pos_unanswered: u64,
    /// Every journal entry ever seen (journals prune old history), by id: device and result.
    journaled: HashMap<TransactionId, (usize, Option<protocol::device::DeviceResult>)>,
    /// Anything a snapshot contradicted (a result that changed, an id on two devices, ...).
    anomalies: Vec<String>,
    /// Follow-ups the POS started: (original, follow-up).
    follow_ups: Vec<(TransactionId, TransactionId)>,
}

impl Ledger {
    /// Folds a journal snapshot in: results never change once written, ids never repeat.
    fn snapshot(&mut self, device: usize, journal: &Journal) {
        let mut seen = HashMap::new();
        for e in journal.entries() {
            let id = e.transaction_id();
            *seen.entry(id).or_insert(0) += 1;
            let result = e.result().cloned();
            match self.journaled.get(&id) {
                Some((d, _)) if *d != device => self
                    .anomalies
                    .push(format!("{id} journaled by devices {d} and {device}")),
                Some((_, Some(old))) => match &result {
                    Some(r) if r != old => self.anomalies.push(format!(
                        "{id}: journaled result changed from {old:?} to {r:?}"
                    )),
                    None => self
                        .anomalies
                        .push(format!("{id}: journal went back from a result to started")),
                    _ => {}
                },
                _ => {
                    self.journaled.insert(id, (device, result));
                }
            }
        }
        for (id, n) in seen {
            if n > 1 {
                self.anomalies
                    .push(format!("{id}: {n} entries in device {device}'s journal"));
            }
        }
    }
}

/// One device: its proxy, its supervisor (which owns the terminal) and its register.
struct Device {
    proxy: Arc<Proxy>,
    reg: RegisterKey,
    journal: PathBuf,
    kill: mpsc::Sender<()>,
    supervisor: tokio::task::JoinHandle<Terminal>,
}

/// Owns a terminal: drains its events, restarts it when it dies by itself (a power failure:
/// the device reboots) or when asked to kill it. Returns it when the command channel closes.
async fn supervise(
    mut term: Terminal,
    base: String,
    sim: SimulatorConfig,
    mut kill: mpsc::Receiver<()>,
    faults: Arc<FaultCounts>,
) -> Terminal {
    loop {
        tokio::select! {
            cmd = kill.recv() => match cmd {
                Some(()) => {
                    faults.terminal_kill.fetch_add(1, Ordering::Relaxed);
                    term = restart_terminal(term, &base, sim).await;
                }
                None => return term,
            },
            ev = term.events.recv() => {
                if ev.is_none() {
                    // The agent ended by itself: the simulator's power failure.
                    faults.power_failure.fetch_add(1, Ordering::Relaxed);
                    term = restart_terminal(term, &base, sim).await;
                }
            }
        }
    }
}

/// A purchase amount: mostly ordinary, often a test amount (declined, cancelled on the device,
/// slow, power failure, surcharge).
fn amount(rng: &mut Rng) -> u64 {
    let dollars = 1 + rng.below(500);
    let cents = match rng.below(100) {
        0..=9 => 51,
        10..=17 => 52,
        18..=29 => 53,
        30..=37 => 54,
        38..=43 => 55,
        _ => rng.below(50),
    };
    dollars * 100 + cents
}

/// Polls until completed, through restarts; `None` if it did not complete within `limit`.
async fn wait_completed(
    pos: &PosClient,
    url: &str,
    limit: Duration,
) -> Option<TransactionEnvelope> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(PollOutcome::Envelope(env)) = pos.poll(url).await {
            if env.is_completed() {
                return Some(env);
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

/// One register's POS: a transaction at a time until the budget is spent or time is up.
#[allow(clippy::too_many_arguments)]
async fn pos_worker(
    device: usize,
    pos: PosClient,
    reg: RegisterKey,
    journal: PathBuf,
    mut rng: Rng,
    budget: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    while !stop.load(Ordering::Relaxed) {
        if budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
            .is_err()
        {
            return;
        }
        // A moment at the till between sales.
        tokio::time::sleep(rng.millis(0, 100)).await;
        let cents = amount(&mut rng);
        let spec =
            TransactionSpec::new(Function::CardPurchase).with_amount(Cents::new(cents).unwrap());
        // Busy means a transaction whose POST got no answer still runs: wait for it.
        let started = loop {
            match pos.start(&reg, &spec).await {
                Ok(env) => break Some(env),
                Err(e) if e.status() == Some(429) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) if e.is_retryable() => {
                    ledger.lock().unwrap().pos_unanswered += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    break None;
                }
                Err(e) => panic!("POST refused: {e}"),
            }
        };
        let Some(env) = started else { continue };
        let id: TransactionId = env.transaction_id.parse().unwrap();
        let url = env.field("PollingUrl").unwrap().to_string();
        ledger.lock().unwrap().pos.insert(
            id,
            PosRecord {
                device,
                cents,
                url: url.clone(),
                completed: None,
            },
        );
        let done = wait_completed(&pos, &url, Duration::from_secs(30)).await;
        let approved = done
            .as_ref()
            .is_some_and(|d| d.field("TransactionResult") == Some("OK-ACCEPTED"));
        record_completion(&ledger, device, &journal, id, done);
        // Now and then the sale is voided or partly refunded by reference, under the same
        // faults (a void of whole units ..54, a refund of cents ..54, loses power).
        if approved && rng.below(100) < 35 {
            let follow_up = if rng.below(3) == 0 {
                pos::FollowUp::Void
            } else {
                pos::FollowUp::Refund(Cents::new(1 + rng.below(cents)).unwrap())
            };
            let asked = match follow_up {
                pos::FollowUp::Refund(c) => c.get(),
                _ => 0,
            };
            let started = loop {
                match pos
                    .follow_up(&reg, &id.to_string(), follow_up, None, None)
                    .await
                {
                    Ok(env) => break Some(env),
                    Err(e) if e.status() == Some(429) => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    // Refused by the money rules (never expected here: one follow-up per
                    // sale), or the cloud died under the POST.
                    Err(e) if e.status() == Some(409) => panic!("follow-up refused: {e}"),
                    Err(e) if e.is_retryable() => {
                        ledger.lock().unwrap().pos_unanswered += 1;
                        break None;
                    }
                    Err(e) => panic!("follow-up refused: {e}"),
                }
            };
            let Some(env) = started else { continue };
            let fid: TransactionId = env.transaction_id.parse().unwrap();
            let furl = env.field("PollingUrl").unwrap().to_string();
            {
                let mut l = ledger.lock().unwrap();
                l.pos.insert(
                    fid,
                    PosRecord {
                        device,
                        cents: asked,
                        url: furl.clone(),
                        completed: None,
                    },
                );
                l.follow_ups.push((id, fid));
            }
            let done = wait_completed(&pos, &furl, Duration::from_secs(30)).await;
            record_completion(&ledger, device, &journal, fid, done);
        }
    }
}

/// Folds the device's journal and the POS's view of a completion into the ledger.
fn record_completion(
    ledger: &Mutex<Ledger>,
    device: usize,
    journal: &std::path::Path,
    id: TransactionId,
    done: Option<TransactionEnvelope>,
) {
    let journal = Journal::open(journal).unwrap();
    let mut l = ledger.lock().unwrap();
    l.snapshot(device, &journal);
    if let Some(r) = l.pos.get_mut(&id) {
        r.completed = done;
    }
}

#[tokio::test]
async fn soak() {
    let seed = env_u64("EFTCLOUD_SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let iterations = env_u64("EFTCLOUD_SOAK_ITERATIONS").unwrap_or(300);
    let secs = env_u64("EFTCLOUD_SOAK_SECS").unwrap_or(10);
    let ctx = format!("soak seed {seed} (EFTCLOUD_SOAK_SEED={seed} to replay)");
    println!("{ctx}: {iterations} iterations, at most {secs} s of faults, {DEVICES} devices");
    let mut rng = Rng(seed);

    let opts = Opts {
        accept_timeout: Duration::from_secs(1),
        delayed_after: Duration::from_millis(300),
        heartbeat: Duration::from_millis(200),
        ..Opts::default()
    };
    let sim = SimulatorConfig {
        step_delay: Duration::from_millis(5),
        slow: Duration::from_millis(300),
    };
    let mut cloud = Cloud::start(opts).await;
    let journals = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultCounts::default());
    let pos = cloud.pos();
    let mut devices = Vec::new();
    for i in 0..DEVICES {
        let id = format!("soak-{i}");
        let secret = cloud.enroll(&id).await;
        let proxy = Arc::new(Proxy::start(cloud.addr).await);
        let journal = journals.path().join(format!("{id}.journal"));
        let mut term = start_terminal_at(&proxy.base, &id, &secret, &journal, sim);
        let reg = pair(&pos, &mut term).await;
        let (kill, kill_rx) = mpsc::channel(4);
        let supervisor = tokio::spawn(supervise(
            term,
            proxy.base.clone(),
            sim,
            kill_rx,
            faults.clone(),
        ));
        devices.push(Device {
            proxy,
            reg,
            journal,
            kill,
            supervisor,
        });
    }

    let t0 = Instant::now();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let budget = Arc::new(AtomicU64::new(iterations));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            tokio::spawn(pos_worker(
                i,
                PosClient::new(&cloud.base).unwrap(),
                d.reg.clone(),
                d.journal.clone(),
                rng.fork(),
                budget.clone(),
                stop.clone(),
                ledger.clone(),
            ))
        })
        .collect();

    // Faults, one after another at random moments, until the POS work is done or time is up;
    // beneath them, a commit now and then fails at random.
    cloud.faults.fail_one_in(25);
    let fault_deadline = t0 + Duration::from_secs(secs);
    while Instant::now() < fault_deadline && workers.iter().any(|w| !w.is_finished()) {
        tokio::time::sleep(rng.millis(20, 250)).await;
        let d = &devices[rng.below(DEVICES as u64) as usize];
        match rng.below(100) {
            0..=24 => {
                d.proxy.cut();
                faults.cut.fetch_add(1, Ordering::Relaxed);
            }
            25..=44 => {
                // Half-open for a while (long enough, sometimes, for heartbeats to notice and
                // the device to connect again beside it), then cut.
                d.proxy.stall();
                tokio::time::sleep(rng.millis(50, 900)).await;
                d.proxy.cut();
                faults.stall_then_cut.fetch_add(1, Ordering::Relaxed);
            }
            45..=54 => {
                d.proxy.blackhole();
                d.proxy.cut();
                tokio::time::sleep(rng.millis(50, 600)).await;
                d.proxy.resume();
                faults.blackhole.fetch_add(1, Ordering::Relaxed);
            }
            55..=79 => {
                let _ = d.kill.try_send(());
            }
            80..=89 => {
                cloud.faults.fail_commits();
                tokio::time::sleep(rng.millis(50, 800)).await;
                cloud.faults.heal();
                faults.storage_outage.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                let (dir, addr, opts) = cloud.kill().await;
                faults.cloud_kill.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(rng.millis(0, 300)).await;
                cloud = Cloud::start_in(dir, opts, Some(addr)).await;
            }
        }
    }
    let fault_secs = t0.elapsed().as_secs_f64();

    // Everyone back: links healthy, the store writable, the cloud up, terminals running; the
    // POS finishes.
    let failed_commits = cloud.faults.injected();
    cloud.faults.fail_one_in(0);
    cloud.faults.heal();
    stop.store(true, Ordering::Relaxed);
    for d in &devices {
        d.proxy.resume();
    }
    for w in workers {
        tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .unwrap_or_else(|_| panic!("{ctx}: a POS worker hung"))
            .unwrap_or_else(|e| panic!("{ctx}: a POS worker failed: {e}"));
    }
    let mut terminals = Vec::new();
    for d in devices.iter_mut() {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut d.kill, closed));
        terminals.push((&mut d.supervisor).await.unwrap());
    }
    // Every journal settles: nothing running, every result acknowledged.
    for (i, d) in devices.iter().enumerate() {
        let settled = tokio::time::timeout(PATIENCE * 2, async {
            loop {
                let j = Journal::open(&d.journal).unwrap();
                if j.in_progress().is_none() && j.unacknowledged().is_empty() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let j = Journal::open(&d.journal).unwrap();
        assert!(
            settled.is_ok(),
            "{ctx}: device {i} never settled: in progress {:?}, unacknowledged {:?}",
            j.in_progress(),
            j.unacknowledged()
        );
        ledger.lock().unwrap().snapshot(i, &j);
    }

    // The audit.
    let l = std::mem::take(&mut *ledger.lock().unwrap());
    let mut lost = Vec::new();
    let mut duplicated = l.anomalies.clone();
    let mut mismatched = Vec::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut finals: HashMap<TransactionId, Completion> = HashMap::new();
    for (id, r) in &l.pos {
        let rec = cloud.engine.transaction(id).await.unwrap();
        let Some(Phase::Completed(c)) = rec.map(|t| t.phase) else {
            lost.push(format!(
                "{id} (device {}, {} cents): no final state",
                r.device, r.cents
            ));
            continue;
        };
        let label = match (c.by, c.transaction_result) {
            (CompletedBy::Cloud, _) => format!("{} by the cloud", c.result),
            (CompletedBy::Device, Some(t)) if c.result_text.contains("reversed") => {
                format!("{t} (reversed)")
            }
            (CompletedBy::Device, t) => t.map(|t| t.to_string()).unwrap_or_default(),
        };
        *outcomes.entry(label).or_default() += 1;
        // What the POS saw is what the cloud holds, and it re-polls identically.
        match &r.completed {
            Some(env) => {
                let same = env.field("TransactionResult")
                    == c.transaction_result.map(TransactionResult::as_str)
                    && env.field("Result") == Some(c.result.as_str())
                    && env.field("ResultText").unwrap_or("") == c.result_text;
                if !same {
                    mismatched.push(format!("{id}: POS saw {env:?}, cloud holds {c:?}"));
                }
                let again = wait_completed(&pos, &r.url, PATIENCE).await;
                if again.as_ref() != Some(env) {
                    mismatched.push(format!("{id}: re-poll {again:?} differs from {env:?}"));
                }
            }
            None => {
                // Completed only after the POS stopped waiting: it would see it now.
                if wait_completed(&pos, &r.url, PATIENCE).await.is_none() {
                    lost.push(format!("{id}: the POS never saw it completed"));
                }
            }
        }
        finals.insert(*id, c);
    }
    // Every journaled transaction, whether or not the POS got its id.
    for (id, (device, result)) in &l.journaled {
        let c = match finals.get(id) {
            Some(c) => c.clone(),
            None => match cloud.engine.transaction(id).await.unwrap().map(|t| t.phase) {
                Some(Phase::Completed(c)) => c,
                other => {
                    lost.push(format!(
                        "{id} journaled by device {device}, cloud has {other:?}"
                    ));
                    continue;
                }
            },
        };
        let Some(result) = result else {
            lost.push(format!("{id}: device {device} never finished it"));
            continue;
        };
        let agrees = c.by == CompletedBy::Device
            && c.transaction_result == result.transaction_result
            && c.result == result.result
            && c.result_text == result.result_text;
        if !agrees {
            // A charge the POS was told failed is the worst case: count it with duplicates.
            let charged = result.transaction_result == Some(TransactionResult::Accepted);
            let line = format!("{id}: device {device} journaled {result:?}, cloud holds {c:?}");
            if charged && !c.is_success() {
                duplicated.push(line);
            } else {
                mismatched.push(line);
            }
        }
    }
    // Whatever the cloud ended itself was never charged anywhere.
    for (id, c) in &finals {
        if c.by == CompletedBy::Cloud && l.journaled.contains_key(id) {
            duplicated.push(format!(
                "{id}: ended by the cloud yet journaled by a device"
            ));
        }
    }
    // Charges whose POST died with the cloud: the POS never got their id (it recovers them by
    // its own reference); they are still audited against the cloud above.
    let orphans = l
        .journaled
        .iter()
        .filter(|(id, (_, r))| {
            !l.pos.contains_key(id)
                && r.as_ref().and_then(|r| r.transaction_result)
                    == Some(TransactionResult::Accepted)
        })
        .count();
    // The money: what the devices approved for each sale's follow-ups never refunds more than
    // it came to, a voided sale is refunded nothing, and the cloud's summary agrees.
    let mut originals: Vec<TransactionId> = l.follow_ups.iter().map(|(o, _)| *o).collect();
    originals.sort();
    originals.dedup();
    let mut money: BTreeMap<&str, u64> = BTreeMap::new();
    for original in &originals {
        let everyone = cloud::domain::accounts::Principal::Keyless;
        let Some(payment) = cloud.engine.payment_as(&everyone, original).await.unwrap() else {
            lost.push(format!("{original}: no payment record"));
            continue;
        };
        let s = payment.summary();
        let approved_refunds: u64 = l
            .follow_ups
            .iter()
            .filter(|(o, _)| o == original)
            .filter_map(|(_, f)| match l.journaled.get(f) {
                Some((_, Some(r))) if r.transaction_result == Some(TransactionResult::Accepted) => {
                    l.pos.get(f).map(|p| p.cents)
                }
                _ => None,
            })
            .sum();
        if approved_refunds > s.amount
            || (s.voided && s.refunded > 0)
            || s.refunded != approved_refunds
        {
            duplicated.push(format!(
                "{original}: devices approved refunds of {approved_refunds}, cloud holds {s:?}"
            ));
        }
        *money
            .entry(if s.voided {
                "voided"
            } else if s.refunded > 0 {
                "refunded"
            } else {
                "untouched"
            })
            .or_default() += 1;
    }
    let transactions = l.pos.len();
    let journaled = l.journaled.len();
    let unanswered = l.pos_unanswered;

    let f = &faults;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "{ctx}\n  iterations {} in {fault_secs:.1} s; transactions with a POS id {transactions}; \
         POSTs without an answer {unanswered} (approved on a device nonetheless: {orphans}); \
         journaled {journaled}\n  \
         faults: cut {}, stall-then-cut {}, blackhole {}, terminal kill {}, power failure {}, \
         cloud kill {}, storage outage {} (total {}); commits failed {failed_commits}\n  outcomes: {outcomes:?}\n  \
         sales followed up {}: {money:?}\n  lost {}, duplicated {}, mismatched {}",
        iterations - budget.load(Ordering::Relaxed),
        n(&f.cut),
        n(&f.stall_then_cut),
        n(&f.blackhole),
        n(&f.terminal_kill),
        n(&f.power_failure),
        n(&f.cloud_kill),
        n(&f.storage_outage),
        n(&f.cut)
            + n(&f.stall_then_cut)
            + n(&f.blackhole)
            + n(&f.terminal_kill)
            + n(&f.power_failure)
            + n(&f.cloud_kill)
            + n(&f.storage_outage),
        originals.len(),
        lost.len(),
        duplicated.len(),
        mismatched.len(),
    );
    for t in terminals {
        t.kill().await;
    }
    assert!(lost.is_empty(), "{ctx}: lost {lost:#?}");
    assert!(duplicated.is_empty(), "{ctx}: duplicated {duplicated:#?}");
    assert!(mismatched.is_empty(), "{ctx}: mismatched {mismatched:#?}");
    assert!(transactions > 0, "{ctx}: no transaction ran");
}
