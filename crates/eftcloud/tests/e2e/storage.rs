//! Storage faults: the store cannot commit (a full disk; here the SQLite writer's commits fail
//! on demand, rolled back as a full disk rolls them back) while a card is charged. Nothing is
//! lost and nothing waits for a reconnect: the cloud keeps what it could not store on the
//! device's connection and applies it when the store is back; the POS gets 503
//! `storage unavailable` meanwhile, and `/readyz` says not ready.

use crate::harness::*;
use crate::metrics::{sample, scrape};
use protocol::device::{close, CloudMessage, DeviceMessage, DeviceResult};
use protocol::{ResultCode, TransactionId, TransactionResult};
use std::time::Duration;
use terminal::TerminalEvent;

/// Waits until the store has failed `n` more commits than `from` (so the outage has been
/// met by the writes the test wants to fail), without sleeping a fixed time.
async fn until_injected(app: &TestApp, from: u64, n: u64) {
    eventually("the failed commits", || async {
        (app.faults.injected() >= from + n).then_some(())
    })
    .await;
}

async fn metric(app: &TestApp, series: &str) -> f64 {
    sample(&scrape(&app.http, &app.base).await, series)
}

#[tokio::test]
async fn a_result_refused_by_a_full_disk_is_stored_on_the_same_connection() {
    let app = spawn_app().await;
    // What stores the result here is the cloud's own retry, on the connection that stays up.
    let (mut t, reg) =
        paired_terminal_without_resend(&app, &app, "dev-disk-full", Duration::from_millis(600))
            .await;

    // A slow purchase (cents end in 53): the card is charged while the disk is full.
    let (s, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "553"))
        .await;
    assert_eq!(s, 200, "{env}");
    let url = env["data"]["PollingUrl"].as_str().unwrap().to_string();
    let id: TransactionId = env["transactionId"].as_str().unwrap().parse().unwrap();
    t.wait_for(|e| matches!(e, TerminalEvent::Prompt { .. }).then_some(()))
        .await;
    let before = app.faults.injected();
    app.faults.fail_commits();

    let result = t
        .wait_for(|e| match e {
            TerminalEvent::Completed { result } => Some(result.clone()),
            TerminalEvent::Disconnected { reason } => panic!("disconnected: {reason}"),
            _ => None,
        })
        .await;
    assert_eq!(result.transaction_result, Some(TransactionResult::Accepted));
    // The result's write and at least one retry of it failed.
    until_injected(&app, before, 2).await;

    // Meanwhile: reads work, so the POS sees the transaction pending, not an error.
    let (s, body) = app.get_json(&url).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["transactionStatus"], "PENDING", "{body}");
    // A new request cannot be stored: 503 with the reason and when to retry, not a 500.
    let r = app
        .http
        .post(app.url("/POS/Transaction"))
        .form(&{
            let mut f = register_form(&reg);
            f.extend([
                ("TransactionMode", "ASYNC"),
                ("TransactionType", "Terminal.GetStatus"),
            ]);
            f
        })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "storage unavailable, retry later");
    let (s, body, retry) = app.readyz().await;
    assert_eq!(s, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("storage unavailable"),
        "{body}"
    );
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(metric(&app, "eftcloud_store_available").await, 0.0);

    // The disk has room again: the result is stored and acknowledged on the same connection,
    // with no reconnect and no re-send by the terminal.
    app.faults.heal();
    t.wait_for(|e| match e {
        TerminalEvent::Acknowledged { transaction_id } if *transaction_id == id => Some(()),
        TerminalEvent::Disconnected { reason } => panic!("disconnected: {reason}"),
        _ => None,
    })
    .await;
    let done = poll_until_completed(&app, &url).await;
    assert_eq!(done["data"]["TransactionResult"], "OK-ACCEPTED", "{done}");
    assert_eq!(
        done["data"]["AuthId"].as_str(),
        result.fields.get("AuthId").map(String::as_str)
    );
    app.until_ready(true).await;
    assert_eq!(metric(&app, "eftcloud_store_available").await, 1.0);
    assert_eq!(metric(&app, "eftcloud_store_outages_total").await, 1.0);
    // And the device takes new work.
    let (s, body) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    assert_eq!(s, 200, "{body}");
}

#[tokio::test]
async fn accept_result_and_pairing_frames_wait_for_the_store_and_are_answered_after() {
    let app = spawn_app().await;
    let (mut d, reg) = RawDevice::paired(&app, "dev-raw-outage").await;
    let (_, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    let id = match d.recv().await {
        CloudMessage::Transaction(o) => o.transaction_id,
        other => panic!("{other:?}"),
    };
    assert_eq!(id.to_string(), env["transactionId"].as_str().unwrap());

    // accept while the store cannot commit: the device is told why its start is late.
    app.faults.fail_commits();
    d.send(&DeviceMessage::Accept { transaction_id: id }).await;
    match d.recv().await {
        CloudMessage::Error { message } => {
            assert!(
                message.starts_with("cloud storage unavailable"),
                "{message}"
            )
        }
        other => panic!("expected a note, got {other:?}"),
    }
    // A repeat of the same frame adds nothing.
    d.send(&DeviceMessage::Accept { transaction_id: id }).await;
    d.expect_silence(Duration::from_millis(300)).await;
    app.faults.heal();
    assert_eq!(d.recv().await, CloudMessage::Start { transaction_id: id });

    // The result, then a pairing code request behind it: answered in order once stored.
    app.faults.fail_commits();
    let result = DeviceResult {
        transaction_id: id,
        transaction_result: Some(TransactionResult::Accepted),
        result: ResultCode::Ok,
        result_text: "Approved".into(),
        fields: [("AuthId".to_string(), "A1".to_string())].into(),
        receipts: None,
        settlement: None,
    };
    d.send(&DeviceMessage::Result(result)).await;
    assert!(matches!(d.recv().await, CloudMessage::Error { .. }));
    d.send(&DeviceMessage::PairingCodeRequest).await;
    let url = env["data"]["PollingUrl"].as_str().unwrap().to_string();
    let (_, body) = app.get_json(&url).await;
    assert_eq!(body["transactionStatus"], "PENDING");
    app.faults.heal();
    assert_eq!(
        d.recv().await,
        CloudMessage::ResultAck { transaction_id: id }
    );
    assert!(matches!(d.recv().await, CloudMessage::PairingCode { .. }));
    let done = poll_until_completed(&app, &url).await;
    assert_eq!(done["data"]["AuthId"], "A1");
}

#[tokio::test]
async fn a_connection_holds_a_bounded_number_of_waiting_frames() {
    let app = spawn_app().await;
    let (mut d, _reg) = RawDevice::paired(&app, "dev-flood-outage").await;
    app.faults.fail_commits();
    // Prompts of distinct transactions are each a write the store refuses. Past the bound
    // the cloud closes with "try again later" rather than hold more.
    for _ in 0..=cloud::device_gateway::retries::MAX_FRAMES {
        d.send(&DeviceMessage::Progress {
            transaction_id: TransactionId::new(),
            prompt: "processing".into(),
            text: String::new(),
        })
        .await;
    }
    let (code, reason) = close_of(&mut d.ws).await;
    assert_eq!(code, close::TRY_AGAIN_LATER, "{reason}");
    assert!(reason.contains("storage unavailable"), "{reason}");
}

#[tokio::test]
async fn the_node_recovers_by_itself_when_no_request_comes() {
    let app = spawn_app().await;
    let (_d, reg) = RawDevice::paired(&app, "dev-probe").await;
    app.faults.fail_commits();
    let (s, body) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (503, Some("storage unavailable, retry later"))
    );
    let (s, _, _) = app.readyz().await;
    assert_eq!(s, 503);
    // Healed, and nothing writes but the store's own probe (`/readyz` only reads): a load
    // balancer that moved traffic away sees the node ready again.
    app.faults.heal();
    app.until_ready(true).await;
    assert!(app.health.store_available());
    let (s, body) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    assert_eq!(s, 200, "{body}");
}

#[tokio::test]
async fn an_offer_sent_ahead_of_an_insert_that_fails_is_withdrawn() {
    let app = spawn_app().await;
    let (mut d, reg) = RawDevice::paired(&app, "dev-withdrawn").await;
    // On one node the offer goes out while its insert commits (one commit sooner); the insert
    // fails here, so the device is told to drop it, and the POS gets 503, not an id.
    app.faults.fail_commits();
    let (s, body) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    assert_eq!(s, 503, "{body}");
    let offered = match d.recv().await {
        CloudMessage::Transaction(o) => o.transaction_id,
        other => panic!("expected the early offer, got {other:?}"),
    };
    match d.recv().await {
        CloudMessage::Abort { transaction_id, .. } => assert_eq!(transaction_id, offered),
        other => panic!("expected the offer withdrawn, got {other:?}"),
    }
    assert_eq!(app.engine.transaction(&offered).await.unwrap(), None);
    app.faults.heal();
}
