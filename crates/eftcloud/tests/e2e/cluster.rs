//! Three cloud nodes on one PostgreSQL database and NATS: devices on one node, POS requests on
//! the others, a node killed mid-transaction. Runs when both `EFTCLOUD_TEST_DATABASE_URL` and
//! `EFTCLOUD_TEST_NATS_URL` are set (CI sets them), else says it was skipped.

use crate::faults::cloud::Cloud;
use crate::faults::proxy::Proxy;
use crate::harness::*;
use eftcloud_testing::FreshDatabase;
use pos::{PairingDetails, TransactionSpec};
use protocol::{Cents, Function};
use std::time::Duration;
use terminal::TerminalEvent;

#[cfg_attr(
    not(all(eftcloud_test_postgres, eftcloud_test_nats)),
    ignore = "needs PostgreSQL and NATS: set EFTCLOUD_TEST_DATABASE_URL and EFTCLOUD_TEST_NATS_URL (.ci/run does)"
)]
#[tokio::test]
async fn three_nodes_route_requests_and_survive_losing_the_devices_node() {
    let Some(nats) = nats_url_or_skip("cluster test") else {
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
    eventually("the device running the payment", || async {
        let (_, p) = b.get_json(&url).await;
        let shown = p["data"]["DisplayText"].as_str();
        shown.is_some_and(|s| !s.is_empty()).then_some(())
    })
    .await;
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

/// The `host:port` of a URL as a socket address (the test services run on 127.0.0.1).
fn socket_of(url: &str) -> std::net::SocketAddr {
    let u = url::Url::parse(url).unwrap();
    format!("{}:{}", u.host_str().unwrap(), u.port().unwrap())
        .parse()
        .unwrap()
}

/// `url` with its host and port replaced by `addr`.
fn through(url: &str, addr: std::net::SocketAddr) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_ip_host(addr.ip()).unwrap();
    u.set_port(Some(addr.port())).unwrap();
    u.to_string()
}

#[cfg_attr(
    not(all(eftcloud_test_postgres, eftcloud_test_nats)),
    ignore = "needs PostgreSQL and NATS: set EFTCLOUD_TEST_DATABASE_URL and EFTCLOUD_TEST_NATS_URL (.ci/run does)"
)]
#[tokio::test]
async fn a_result_reported_while_postgres_restarts_completes_on_the_same_connection() {
    let Some(nats) = nats_url_or_skip("cluster test") else {
        return;
    };
    let Some(db) = FreshDatabase::create("cluster test").await else {
        return;
    };
    // Both nodes reach PostgreSQL, and B reaches NATS, through proxies that can play a
    // restart: every connection dropped, new ones refused until it is back.
    let pg = Proxy::start(socket_of(&db.url)).await;
    let bus = Proxy::start(socket_of(&nats)).await;
    let opts = |node: &str, nats: String| Opts {
        database_url: Some(through(&db.url, pg.addr)),
        nats_url: Some(nats),
        node: node.into(),
        ..Opts::default()
    };
    let a = Cloud::start(opts("pg-a", nats.clone())).await;
    let b = Cloud::start(opts("pg-b", through(&nats, bus.addr))).await;

    // The device on A, the POS on B; the result is stored by the cloud's own retry on the
    // connection that stays up.
    let (mut t, reg) =
        paired_terminal_without_resend(&a, &b, "dev-pg-restart", Duration::from_millis(300)).await;

    let started = b
        .pos()
        .start(
            &reg,
            &TransactionSpec::new(Function::CardPurchase).with_amount(Cents::new(853).unwrap()),
        )
        .await
        .unwrap();
    t.wait_for(|e| matches!(e, TerminalEvent::Prompt { .. }).then_some(()))
        .await;
    // PostgreSQL restarts while the card is charged and the result is reported.
    pg.refuse();
    pg.cut();
    let result = t
        .wait_for(|e| match e {
            TerminalEvent::Completed { result } => Some(result.clone()),
            TerminalEvent::Disconnected { reason } => panic!("disconnected: {reason}"),
            _ => None,
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.resume();
    t.wait_for(|e| match e {
        TerminalEvent::Acknowledged { transaction_id } => {
            (*transaction_id == result.transaction_id).then_some(())
        }
        TerminalEvent::Disconnected { reason } => panic!("disconnected: {reason}"),
        _ => None,
    })
    .await;
    let done = b
        .pos()
        .wait_for_completion(&started, quick(), |_| {})
        .await
        .unwrap();
    assert_eq!(done.field("TransactionResult"), Some("OK-ACCEPTED"));
    assert_eq!(
        done.field("AuthId"),
        result.fields.get("AuthId").map(String::as_str)
    );
    a.until_ready(true).await;

    // B loses NATS: not ready (a load balancer moves POS traffic to A), ready when it is back.
    bus.refuse();
    bus.cut();
    let (s, body, _) = b.until_ready(false).await;
    assert_eq!(s, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("bus unavailable"),
        "{body}"
    );
    bus.resume();
    b.until_ready(true).await;

    t.stop().await;
    drop((a, b));
    db.drop().await;
}
