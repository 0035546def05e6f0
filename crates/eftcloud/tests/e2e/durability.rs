//! Nothing lost across restarts of the cloud or the terminal.

use crate::faults::cloud::Cloud;
use crate::harness::*;
use pos::TransactionSpec;
use protocol::device::{CloudMessage, DeviceMessage};
use protocol::{Cents, Function};
use std::time::Duration;
use terminal::{Exit, TerminalEvent};

#[tokio::test]
async fn completed_transactions_survive_a_restart_identically() {
    let cloud = Cloud::start(Opts::default()).await;
    let (t, reg) = paired_terminal(&cloud, "dev-restart").await;
    let (_, env) = cloud
        .post_form("/POS/Transaction", &purchase(&reg, "4200"))
        .await;
    let url = env["data"]["PollingUrl"].as_str().unwrap().to_string();
    let before = poll_until_completed(&cloud, &url).await;
    t.stop().await;
    // Killed as by `kill -9`: only what was committed survives.
    let (dir, addr, opts) = cloud.kill().await;

    let app = Cloud::start_in(dir, opts, Some(addr)).await;
    let (s, after) = app.get_json(&url).await;
    assert_eq!(s, 200);
    assert_eq!(after, before);
    // Pairing survived too.
    let (s, body) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    assert_eq!(s, 200, "{body}");
}

#[tokio::test]
async fn an_offer_pending_when_the_cloud_died_still_ends_definitely() {
    let clock = manual_clock();
    let cloud = Cloud::start(Opts {
        clock: clock.clone(),
        ..Opts::default()
    })
    .await;
    let secret = cloud.enroll("dev-crash").await;
    let mut d = RawDevice::connect(&cloud, "dev-crash", &secret).await;
    let reg = d.pair(&cloud).await;
    let (_, env) = cloud
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    let url = env["data"]["PollingUrl"].as_str().unwrap().to_string();
    assert!(matches!(d.recv().await, CloudMessage::Transaction(_)));
    let (dir, addr, opts) = cloud.kill().await;
    drop(d);
    // The deadline passes while the cloud is down; it is a row, so the new process honours it.
    clock.advance(opts.accept_timeout);
    let app = Cloud::start_in(dir, opts, Some(addr)).await;
    let done = poll_until_completed(&app, &url).await;
    assert_eq!(done["data"]["Result"], "FAILED-INTERFACE");
    assert_eq!(done["data"]["ResultText"], "Device did not respond in time");
}

#[tokio::test]
async fn an_offer_is_resent_after_reconnect_within_its_deadline() {
    let app = spawn_app().await;
    let secret = app.enroll("dev-resend").await;
    let mut d = RawDevice::connect(&app, "dev-resend", &secret).await;
    let reg = d.pair(&app).await;
    let (_, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    assert!(matches!(d.recv().await, CloudMessage::Transaction(_)));
    // A newer connection replaces this one before it accepted: the offer is made again to it.
    let mut d2 = RawDevice::connect(&app, "dev-resend", &secret).await;
    let id = match d2.recv().await {
        CloudMessage::Transaction(o) => o.transaction_id,
        other => panic!("{other:?}"),
    };
    assert_eq!(id.to_string(), env["transactionId"].as_str().unwrap());
    d2.send(&DeviceMessage::Accept { transaction_id: id }).await;
    assert_eq!(d2.recv().await, CloudMessage::Start { transaction_id: id });
}

#[tokio::test]
async fn power_failure_on_the_device_is_reversed_and_reported_once() {
    let app = spawn_app().await;
    let (t, reg) = paired_terminal(&app, "dev-power").await;
    let pos = app.pos();
    let started = pos
        .start(
            &reg,
            &TransactionSpec::new(Function::CardPurchase).with_amount(Cents::new(1054).unwrap()),
        )
        .await
        .unwrap();
    let (journal, id, secret) = (t.journal.clone(), t.id.clone(), t.secret.clone());
    assert_eq!(t.exited().await, Exit::PowerFailure);
    // While the device is away the POS keeps getting PENDING.
    let (_, pending) = app.get_json(started.field("PollingUrl").unwrap()).await;
    assert_eq!(pending["transactionStatus"], "PENDING");
    // Restarted with the same journal, the terminal reverses the payment and reports it.
    let mut t = start_terminal(&app, &id, &secret, &journal, fast_simulator()).await;
    let done = pos
        .wait_for_completion(&started, quick(), |_| {})
        .await
        .unwrap();
    t.wait_for(|e| matches!(e, TerminalEvent::Acknowledged { .. }).then_some(()))
        .await;
    t.stop().await;
    assert_eq!(done.field("TransactionResult"), Some("CANCELLED"));
    assert!(done
        .field("ResultText")
        .unwrap()
        .to_lowercase()
        .contains("reversed"));
}

#[tokio::test]
async fn status_shows_reversal_pending_until_the_reversal_is_reported() {
    let app = spawn_app().await;
    let (t, reg) = paired_terminal(&app, "dev-reversal").await;
    let pos = app.pos();
    let started = pos
        .start(
            &reg,
            &TransactionSpec::new(Function::CardPurchase).with_amount(Cents::new(2054).unwrap()),
        )
        .await
        .unwrap();
    let (journal, id, secret) = (t.journal.clone(), t.id.clone(), t.secret.clone());
    assert_eq!(t.exited().await, Exit::PowerFailure);
    // Back on, the reversal needs the acquirer: it takes a moment, reported as REVERSAL_PENDING.
    let mut t = start_terminal_with(&app.base, &id, &secret, &journal, fast_simulator(), |c| {
        c.reversal_delay = Duration::from_millis(1500);
    });
    t.wait_for(|e| matches!(e, TerminalEvent::Connected { .. }).then_some(()))
        .await;
    let status = TransactionSpec::new(Function::TerminalGetStatus);
    let seen = eventually("REVERSAL_PENDING reported", || async {
        let s = pos.start(&reg, &status).await.unwrap();
        (s.field("Status") == Some("REVERSAL_PENDING")).then_some(s)
    })
    .await;
    assert!(seen.is_completed());
    let done = pos
        .wait_for_completion(&started, quick(), |_| {})
        .await
        .unwrap();
    assert_eq!(done.field("TransactionResult"), Some("CANCELLED"));
    assert!(done
        .field("ResultText")
        .unwrap()
        .to_lowercase()
        .contains("reversed"));
    // Reversed: the device answers for itself again.
    let s = pos.start(&reg, &status).await.unwrap();
    let s = pos.wait_for_completion(&s, quick(), |_| {}).await.unwrap();
    assert_eq!(s.field("Status"), Some("READY"));
    t.stop().await;
}
