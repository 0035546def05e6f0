//! Shared steps of the fault tests: a paired terminal behind a proxy, POS calls that ride out a
//! cloud restart, and the comparison of a final state with the device's journal.

use super::cloud::Cloud;
use super::proxy::Proxy;
use crate::harness::{eventually, register, start_terminal_at, Opts, Terminal};
use pos::{PairingDetails, PollOutcome, PosClient, TransactionSpec};
use protocol::pos_api::TransactionEnvelope;
use protocol::{Cents, Function, RegisterKey, TransactionId, TransactionResult};
use std::path::Path;
use terminal::journal::{EntryState, JournalEntry};
use terminal::{Journal, SimulatorConfig, TerminalEvent};

/// A cloud, a proxy in front of it for the device, and a paired terminal behind the proxy.
pub struct Rig {
    pub cloud: Cloud,
    pub proxy: Proxy,
    pub term: Terminal,
    pub reg: RegisterKey,
    pub sim: SimulatorConfig,
}

impl Rig {
    pub async fn new(opts: Opts, sim: SimulatorConfig, id: &str) -> Rig {
        let cloud = Cloud::start(opts).await;
        let proxy = Proxy::start(cloud.addr).await;
        let secret = cloud.enroll(id).await;
        let journal = cloud.dir.path().join(format!("{id}.journal"));
        let mut term = start_terminal_at(&proxy.base, id, &secret, &journal, sim);
        let reg = pair(&cloud.pos(), &mut term).await;
        Rig {
            cloud,
            proxy,
            term,
            reg,
            sim,
        }
    }

    pub fn pos(&self) -> PosClient {
        self.cloud.pos()
    }
}

/// Kills a terminal abruptly and starts it again on the same journal, connecting to `base`.
pub async fn restart_terminal(term: Terminal, base: &str, sim: SimulatorConfig) -> Terminal {
    let (id, secret, journal) = (term.id.clone(), term.secret.clone(), term.journal.clone());
    // Killed first: two agents must never share a journal.
    term.kill().await;
    start_terminal_at(base, &id, &secret, &journal, sim)
}

/// Pairs a new register with the terminal (which must be showing a code).
pub async fn pair(pos: &PosClient, term: &mut Terminal) -> RegisterKey {
    let code = term.next_code().await;
    let reg = register("reg");
    pos.pair(&code, &reg, &PairingDetails::new("Main Register"))
        .await
        .unwrap();
    term.wait_for(|e| matches!(e, TerminalEvent::Paired { .. }).then_some(()))
        .await;
    reg
}

/// A purchase through the POS client; returns its id and polling URL.
pub async fn post(pos: &PosClient, reg: &RegisterKey, cents: u64) -> (TransactionId, String) {
    let env = pos
        .start(
            reg,
            &TransactionSpec::new(Function::CardPurchase).with_amount(Cents::new(cents).unwrap()),
        )
        .await
        .unwrap();
    (
        env.transaction_id.parse().unwrap(),
        env.field("PollingUrl").unwrap().to_string(),
    )
}

/// One poll that must answer (retried through a restarting cloud).
pub async fn poll(pos: &PosClient, url: &str) -> TransactionEnvelope {
    eventually("the cloud's answer to a poll", || async {
        match pos.poll(url).await {
            Ok(PollOutcome::Envelope(env)) => Some(env),
            Ok(PollOutcome::TooFast { .. }) => None,
            Err(e) => {
                assert!(e.is_retryable(), "poll failed: {e}");
                None
            }
        }
    })
    .await
}

/// Polls until COMPLETED, riding out restarts.
pub async fn completed(pos: &PosClient, url: &str) -> TransactionEnvelope {
    eventually("the transaction's completion", || async {
        let env = poll(pos, url).await;
        env.is_completed().then_some(env)
    })
    .await
}

/// The device's journal entry for a transaction, as on disk now.
pub fn journal_entry(path: &Path, id: TransactionId) -> Option<JournalEntry> {
    Journal::open(path).unwrap().get(id).cloned()
}

/// Kills the terminal, restarts it on its journal, and waits until it is connected again.
pub async fn kill_and_restart(mut rig: Rig) -> Rig {
    rig.term = restart_terminal(rig.term, &rig.proxy.base, rig.sim).await;
    rig.term
        .wait_for(|e| matches!(e, TerminalEvent::Connected { .. }).then_some(()))
        .await;
    rig
}

/// What the POS finally saw must be what the device journaled: its result if it has one;
/// if the device never started the transaction, something that charged nothing.
pub fn assert_matches_journal(done: &TransactionEnvelope, entry: Option<&JournalEntry>, ctx: &str) {
    assert!(done.is_completed(), "{ctx}: not completed: {done:?}");
    match entry.map(|e| &e.state) {
        Some(EntryState::Completed { result } | EntryState::Acknowledged { result }) => {
            assert_eq!(
                done.field("TransactionResult"),
                result.transaction_result.map(TransactionResult::as_str),
                "{ctx}: {done:?} vs journal {result:?}"
            );
            assert_eq!(done.field("Result"), Some(result.result.as_str()), "{ctx}");
            assert_eq!(
                done.field("ResultText").unwrap_or(""),
                result.result_text,
                "{ctx}"
            );
        }
        Some(EntryState::Started) => {
            panic!("{ctx}: the device journal still says started, yet the POS saw {done:?}")
        }
        None => assert_ne!(
            done.field("TransactionResult"),
            Some("OK-ACCEPTED"),
            "{ctx}: approved, but the device never journaled a start"
        ),
    }
}

/// Drops the events received so far.
pub fn drain(term: &mut Terminal) -> Vec<TerminalEvent> {
    let mut out = Vec::new();
    while let Ok(e) = term.events.try_recv() {
        out.push(e);
    }
    out
}
