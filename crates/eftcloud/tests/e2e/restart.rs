//! A rolling upgrade under load: the real binary gets SIGTERM in the middle of a stream of
//! purchases and starts again on the same data and port, twice. The terminal reconnects by
//! itself, the POS retries what failed in the gap (with its reference, so never twice), and
//! every transaction the POS got an id for ends in exactly one final state, the one in the
//! terminal's journal.

use crate::faults::cloud::{free_port, BinaryCloud};
use crate::faults::support::{assert_matches_journal, completed, journal_entry, pair, poll};
use crate::harness::{eventually, start_terminal_at};
use pos::{PosClient, TransactionSpec};
use protocol::pos_api::TransactionEnvelope;
use protocol::{Cents, Function, RegisterKey, TransactionId};
use std::collections::HashSet;
use std::time::Duration;
use terminal::journal::{EntryState, JournalEntry};
use terminal::{Journal, SimulatorConfig};
use tokio::sync::watch;

/// Purchases in the stream, and after which ones the server is restarted.
const PURCHASES: usize = 24;
const RESTART_AFTER: [usize; 2] = [7, 15];

/// POSTs a purchase under `reference` until the cloud answers, riding out a restart: a retry
/// with the same reference returns the transaction a lost answer had created, never a second.
async fn post(
    pos: &PosClient,
    reg: &RegisterKey,
    cents: u64,
    reference: &str,
) -> TransactionEnvelope {
    let spec = TransactionSpec::new(Function::CardPurchase)
        .with_amount(Cents::new(cents).unwrap())
        .with_pos_reference(reference);
    eventually("the POST's answer", || async {
        match pos.start(reg, &spec).await {
            Ok(env) => Some(env),
            Err(e) => {
                assert!(e.is_retryable(), "{reference}: {e}");
                None
            }
        }
    })
    .await
}

#[tokio::test]
async fn sigterm_and_restart_mid_stream_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let flags = ["--accept-timeout", "3s", "--log", "warn"];
    let bin = BinaryCloud::start(port, &data, &flags).await;
    let secret = bin.enroll("dev-rolling").await;
    let journal = dir.path().join("dev-rolling.journal");
    // A few steps per payment, so that a restart lands while one is running.
    let sim = SimulatorConfig {
        step_delay: Duration::from_millis(20),
        slow: Duration::from_millis(800),
    };
    let mut term = start_terminal_at(&bin.base, "dev-rolling", &secret, &journal, sim);
    let pos = PosClient::new(&bin.base).unwrap();
    let reg = pair(&pos, &mut term).await;

    // The operator: restarts the server when the stream reaches each mark, while a
    // transaction is in flight (the POS does not wait for it).
    let (progress_tx, mut progress) = watch::channel(0usize);
    let (port_data, restart_flags) = (data.clone(), flags);
    let operator = tokio::spawn(async move {
        let mut bin = bin;
        for mark in RESTART_AFTER {
            progress.wait_for(|n| *n > mark).await.unwrap();
            bin.terminate().await;
            bin = BinaryCloud::start(port, &port_data, &restart_flags).await;
        }
        bin
    });

    let mut seen = Vec::new();
    for i in 0..PURCHASES {
        // Amounts ending in 00: plain approvals on the simulator.
        let cents = 1000 + 100 * i as u64;
        let env = post(&pos, &reg, cents, &format!("rolling-{i}")).await;
        let id: TransactionId = env.transaction_id.parse().unwrap();
        let url = env.field("PollingUrl").unwrap().to_string();
        progress_tx.send_replace(i + 1);
        let done = completed(&pos, &url).await;
        seen.push((id, url, done));
    }
    let bin = operator.await.unwrap();

    let ids: HashSet<TransactionId> = seen.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(ids.len(), PURCHASES, "one transaction per purchase");
    // Every result the device journaled reaches its acknowledged state (the cloud's
    // `result_ack`, whichever restart it crossed).
    eventually("every journaled result acknowledged", || async {
        let j = Journal::open(&journal).unwrap();
        let acked = |e: &JournalEntry| matches!(e.state, EntryState::Acknowledged { .. });
        j.entries().iter().all(acked).then_some(())
    })
    .await;
    for (i, (id, url, done)) in seen.iter().enumerate() {
        let ctx = format!("purchase {i} ({id})");
        // Exactly one final state: polling again gives the same body, byte for byte.
        assert_eq!(&poll(&pos, url).await, done, "{ctx}");
        assert_matches_journal(done, journal_entry(&journal, *id).as_ref(), &ctx);
    }
    // Nothing ran on the device that the POS does not know of.
    let journal = Journal::open(&journal).unwrap();
    for entry in journal.entries() {
        assert!(
            ids.contains(&entry.transaction_id()),
            "the device ran {} that no POS request got an id for",
            entry.transaction_id()
        );
    }
    term.stop().await;
    bin.terminate().await;
}
