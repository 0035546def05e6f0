//! Three cloud nodes on one PostgreSQL database and NATS: devices on one node, POS requests on
//! the others, a node killed mid-transaction. Runs when both `EFTCLOUD_TEST_DATABASE_URL` and
//! `EFTCLOUD_TEST_NATS_URL` are set (CI sets them), else says it was skipped.

use crate::faults::cloud::Cloud;
use crate::harness::*;
use eftcloud_testing::FreshDatabase;
use pos::{PairingDetails, TransactionSpec};
use protocol::{Cents, Function};
use std::io::Write;
use std::time::Duration;
use terminal::TerminalEvent;

#[tokio::test]
async fn three_nodes_route_requests_and_survive_losing_the_devices_node() {
    let Ok(nats) = std::env::var("EFTCLOUD_TEST_NATS_URL") else {
        let _ = writeln!(
            std::io::stderr(),
            "cluster test skipped: EFTCLOUD_TEST_NATS_URL not set"
        );
        return;
    };
    let Some(db) = FreshDatabase::create("cluster test").await else {
        return;
    };
    let opts = |node: &str| Opts {
        database_url: Some(db.url.clone()),
        nats_url: Some(nats.clone()),
        node: node.into(),
        accept_timeout: Duration::from_secs(3),
        ..Opts::default()
    };
    let a = Cloud::start(opts("node-a")).await;
    let b = Cloud::start(opts("node-b")).await;
    let c = Cloud::start(opts("node-c")).await;

    // The device connects to A (B and C are its fallbacks); the POS talks to B and C only.
    let secret = a.enroll("dev-cluster").await;
    // The journal lives apart from node A's directory, which goes when A is killed.
    let terminal_dir = tempfile::tempdir().unwrap();
    let journal = terminal_dir.path().join("cluster.journal");
    let mut t = start_terminal_with(
        &a.base,
        "dev-cluster",
        &secret,
        &journal,
        terminal::SimulatorConfig {
            step_delay: Duration::from_millis(5),
            slow: Duration::from_millis(1500),
        },
        |cfg| {
            cfg.fallback_urls = vec![b.base.parse().unwrap(), c.base.parse().unwrap()];
        },
    );
    let code = t.next_code().await;
    let reg = register("cluster");
    b.pos()
        .pair(&code, &reg, &PairingDetails::new("Till 1"))
        .await
        .unwrap();
    // The `paired` frame went from B to the device on A through NATS.
    t.wait_for(|e| matches!(e, TerminalEvent::Paired { .. }).then_some(()))
        .await;

    // A purchase on C reaches the device on A; the long-poll on B wakes when A stores the result.
    let started = c
        .pos()
        .start(
            &reg,
            &TransactionSpec::new(Function::CardPurchase).with_amount(Cents::new(1000).unwrap()),
        )
        .await
        .unwrap();
    let on_b = started
        .field("PollingUrl")
        .unwrap()
        .replace(&c.base, &b.base);
    let r = b.http.get(format!("{on_b}&wait=10")).send().await.unwrap();
    let done: serde_json::Value = r.json().await.unwrap();
    assert_eq!(done["transactionStatus"], "COMPLETED");
    assert_eq!(done["data"]["TransactionResult"], "OK-ACCEPTED");

    // Status through B sees the device online (held by A).
    let q = format!(
        "/pos/register?POSRegisterID={}&POSBusinessName=Toys%20Shop&POSVendorName=Till2Go",
        reg.register_id
    );
    let (_, status) = b.get_json(&b.url(&q)).await;
    assert_eq!(status["online"], true, "{status}");

    // A slow purchase starts on the device; then A dies (kill -9).
    let slow = b
        .pos()
        .start(
            &reg,
            &TransactionSpec::new(Function::CardPurchase).with_amount(Cents::new(2053).unwrap()),
        )
        .await
        .unwrap();
    let url = slow.field("PollingUrl").unwrap().to_string();
    tokio::time::timeout(PATIENCE, async {
        loop {
            let (_, p) = b.get_json(&url).await;
            if p["data"]["DisplayText"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let _ = a.kill().await;
    // The device moves to B or C and reports what it journaled; the POS sees it on C.
    let finished = c
        .pos()
        .wait_for_completion(&slow, quick(), |_| {})
        .await
        .unwrap();
    assert_eq!(finished.field("TransactionResult"), Some("OK-ACCEPTED"));
    let journal_view = terminal::Journal::open(&journal).unwrap();
    let entry = journal_view
        .get(slow.transaction_id.parse().unwrap())
        .unwrap();
    assert_eq!(
        entry
            .result()
            .unwrap()
            .transaction_result
            .map(|r| r.to_string())
            .as_deref(),
        Some("OK-ACCEPTED")
    );

    // And business goes on through the surviving nodes.
    let next = b
        .pos()
        .start(
            &reg,
            &TransactionSpec::new(Function::CardRefund).with_amount(Cents::new(500).unwrap()),
        )
        .await
        .unwrap();
    let next = c
        .pos()
        .wait_for_completion(&next, quick(), |_| {})
        .await
        .unwrap();
    assert_eq!(next.field("TransactionResult"), Some("OK-ACCEPTED"));

    t.stop().await;
    drop((b, c));
    db.drop().await;
}
