//! The cloud's side of the device protocol, driven by a hand-written device.

use crate::harness::*;
use futures_util::SinkExt;
use protocol::device::{close, CloudMessage, DeviceMessage, DeviceResult, PROTOCOL_VERSION};
use protocol::{DeviceId, ResultCode, TransactionResult};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn result(id: protocol::TransactionId, r: TransactionResult) -> DeviceResult {
    DeviceResult {
        transaction_id: id,
        transaction_result: Some(r),
        result: ResultCode::Ok,
        result_text: "DONE".into(),
        fields: BTreeMap::new(),
        receipts: None,
        settlement: None,
    }
}

async fn offered(d: &mut RawDevice) -> protocol::TransactionId {
    match d.recv().await {
        CloudMessage::Transaction(o) => o.transaction_id,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_credentials_and_bad_first_frames_are_closed_with_reasons() {
    let app = spawn_app_with(Opts {
        hello_timeout: Duration::from_millis(300),
        ..Opts::default()
    })
    .await;
    let secret = app.enroll("dev-auth").await;

    let mut ws = ws_connect(&app).await;
    ws.send(Message::text(
        serde_json::to_string(&hello("dev-auth", "wrong")).unwrap(),
    ))
    .await
    .unwrap();
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, close::AUTH_FAILED);
    assert!(reason.contains("authentication failed"), "{reason}");

    let mut ws = ws_connect(&app).await;
    ws.send(Message::text(
        serde_json::to_string(&hello("nobody", &secret)).unwrap(),
    ))
    .await
    .unwrap();
    assert_eq!(close_of(&mut ws).await.0, close::AUTH_FAILED);

    let mut ws = ws_connect(&app).await;
    ws.send(Message::text("{\"type\":\"accept\""))
        .await
        .unwrap();
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, close::HELLO_REQUIRED);
    assert!(!reason.is_empty());

    let mut ws = ws_connect(&app).await;
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, close::HELLO_REQUIRED, "{reason}");

    let mut ws = ws_connect(&app).await;
    let DeviceMessage::Hello(mut h) = hello("dev-auth", &secret) else {
        unreachable!()
    };
    h.protocol_version = PROTOCOL_VERSION + 1;
    ws.send(Message::text(
        serde_json::to_string(&DeviceMessage::Hello(h)).unwrap(),
    ))
    .await
    .unwrap();
    assert_eq!(close_of(&mut ws).await.0, close::UNSUPPORTED_VERSION);

    // After hello, garbage is a protocol error.
    let mut d = RawDevice::connect(&app, "dev-auth", &secret).await;
    d.ws.send(Message::text("not json")).await.unwrap();
    assert_eq!(close_of(&mut d.ws).await.0, close::PROTOCOL_ERROR);
}

#[tokio::test]
async fn unaccepted_offer_fails_definitely_and_late_accept_is_aborted() {
    let (app, clock) = spawn_app_on_manual_clock().await;
    let (mut d, reg) = RawDevice::paired(&app, "dev-late").await;
    let (_, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    let url = env["data"]["PollingUrl"].as_str().unwrap().to_string();
    let id = offered(&mut d).await;
    // The device stays silent. Until the deadline, by the cloud's clock, the offer stands.
    clock.advance(Opts::default().accept_timeout - Duration::from_millis(1));
    let (_, b) = app.get_json(&url).await;
    assert_eq!(b["transactionStatus"], "PENDING", "{b}");
    // At the deadline the deadline loop (asleep on the same clock) ends it.
    clock.advance(Duration::from_millis(1));
    match d.recv().await {
        CloudMessage::Abort { transaction_id, .. } => assert_eq!(transaction_id, id),
        other => panic!("{other:?}"),
    }
    let done = poll_until_completed(&app, &url).await;
    assert_eq!(done["data"]["TransactionResult"], "CANCELLED");
    assert_eq!(done["data"]["Result"], "FAILED-INTERFACE");
    assert_eq!(done["data"]["ResultText"], "Device did not respond in time");
    // A late accept gets abort, never start.
    d.send(&DeviceMessage::Accept { transaction_id: id }).await;
    assert!(matches!(d.recv().await, CloudMessage::Abort { .. }));
    // Accepting something unknown is aborted too.
    let unknown = protocol::TransactionId::new();
    d.send(&DeviceMessage::Accept {
        transaction_id: unknown,
    })
    .await;
    assert!(
        matches!(d.recv().await, CloudMessage::Abort { transaction_id, .. } if transaction_id == unknown)
    );
}

#[tokio::test]
async fn disconnect_before_accept_fails_at_once() {
    let app = spawn_app().await;
    let (mut d, reg) = RawDevice::paired(&app, "dev-drop").await;
    let (_, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    offered(&mut d).await;
    drop(d);
    let done = poll_until_completed(&app, env["data"]["PollingUrl"].as_str().unwrap()).await;
    assert_eq!(done["data"]["Result"], "FAILED-INTERFACE");
    // Ended by the disconnect, not by the accept deadline ("did not respond in time").
    assert_eq!(done["data"]["ResultText"], "Device is offline");
}

#[tokio::test]
async fn device_away_mid_transaction_shows_delayed_then_reports_once() {
    let (app, clock) = spawn_app_on_manual_clock().await;
    let secret = app.enroll("dev-away").await;
    let mut d = RawDevice::connect(&app, "dev-away", &secret).await;
    let reg = d.pair(&app).await;
    let (_, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    let url = env["data"]["PollingUrl"].as_str().unwrap().to_string();
    let id = offered(&mut d).await;
    d.send(&DeviceMessage::Accept { transaction_id: id }).await;
    assert_eq!(d.recv().await, CloudMessage::Start { transaction_id: id });
    drop(d);

    // Pending, not yet late, until `delayed_after` has passed since the start.
    clock.advance(Opts::default().delayed_after - Duration::from_millis(1));
    let (_, b) = app.get_json(&url).await;
    assert_eq!(b["transactionStatus"], "PENDING");
    assert_eq!(b["data"]["TransactionResult"], "");
    clock.advance(Duration::from_millis(1));
    let (_, b) = app.get_json(&url).await;
    assert_eq!(b["transactionStatus"], "PENDING");
    assert_eq!(b["data"]["TransactionResult"], "OK-DELAYED");
    assert_eq!(b["data"]["Result"], "DELAYED-TRANSACTION");
    assert_eq!(
        b["data"]["ResultText"],
        "Transaction takes longer than usual"
    );
    // Still busy: the device owns the outcome now.
    let (s, _) = app
        .post_form("/POS/Transaction", &purchase(&reg, "200"))
        .await;
    assert_eq!(s, 429);

    // Back, with the result in its hello; reported twice (hello and again), applied once.
    let DeviceMessage::Hello(mut h) = hello("dev-away", &secret) else {
        unreachable!()
    };
    h.unacknowledged = vec![result(id, TransactionResult::Accepted)];
    let mut d = RawDevice::connect_with(&app, DeviceMessage::Hello(h)).await;
    assert_eq!(
        d.recv().await,
        CloudMessage::ResultAck { transaction_id: id }
    );
    let first = poll_until_completed(&app, &url).await;
    assert_eq!(first["data"]["TransactionResult"], "OK-ACCEPTED");
    d.send(&DeviceMessage::Result(result(
        id,
        TransactionResult::Declined,
    )))
    .await;
    assert_eq!(
        d.recv().await,
        CloudMessage::ResultAck { transaction_id: id }
    );
    let (_, again) = app.get_json(&url).await;
    assert_eq!(again, first, "a duplicate result changed the outcome");
}

#[tokio::test]
async fn newest_connection_wins() {
    let app = spawn_app().await;
    let secret = app.enroll("dev-twice").await;
    let mut old = RawDevice::connect(&app, "dev-twice", &secret).await;
    let reg = old.pair(&app).await;
    let mut new = RawDevice::connect(&app, "dev-twice", &secret).await;
    assert_eq!(close_of(&mut old.ws).await.0, close::REPLACED);
    // Transactions go to the new connection, and the old one's close did not mark it offline.
    let (s, _) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    assert_eq!(s, 200);
    let id = offered(&mut new).await;
    new.send(&DeviceMessage::Accept { transaction_id: id })
        .await;
    assert_eq!(new.recv().await, CloudMessage::Start { transaction_id: id });
    let online = app
        .engine
        .device(&DeviceId::parse("dev-twice").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(online.connected_at.is_some());
}

#[tokio::test]
async fn silent_device_is_dropped_by_heartbeat() {
    let app = spawn_app_with(Opts {
        heartbeat: Duration::from_millis(100),
        ..Opts::default()
    })
    .await;
    let secret = app.enroll("dev-silent").await;
    let mut ws = ws_connect(&app).await;
    ws.send(Message::text(
        serde_json::to_string(&hello("dev-silent", &secret)).unwrap(),
    ))
    .await
    .unwrap();
    // Never answer pings (close_of reads and discards them).
    let (code, _) = close_of(&mut ws).await;
    assert_eq!(code, close::HEARTBEAT_TIMEOUT);
}

#[tokio::test]
async fn results_for_unknown_transactions_are_not_acknowledged() {
    let app = spawn_app().await;
    let secret = app.enroll("dev-unknown").await;
    let mut d = RawDevice::connect(&app, "dev-unknown", &secret).await;
    let id = protocol::TransactionId::new();
    d.send(&DeviceMessage::Result(result(
        id,
        TransactionResult::Accepted,
    )))
    .await;
    assert!(matches!(d.recv().await, CloudMessage::Error { .. }));
    // Another device's transaction is unknown to this device.
    let s2 = app.enroll("dev-owner").await;
    let mut owner = RawDevice::connect(&app, "dev-owner", &s2).await;
    let reg = owner.pair(&app).await;
    app.post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    let tid = offered(&mut owner).await;
    d.send(&DeviceMessage::Accept {
        transaction_id: tid,
    })
    .await;
    assert!(matches!(d.recv().await, CloudMessage::Abort { .. }));
    owner.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn unpair_from_the_terminal_and_pair_again() {
    let app = spawn_app().await;
    let (mut t, reg) = paired_terminal(&app, "dev-cmd").await;
    t.commands
        .send(terminal::TerminalCommand::Unpair(None))
        .await
        .unwrap();
    let removed = t
        .wait_for(|e| match e {
            terminal::TerminalEvent::Unpaired { registers } => Some(registers.clone()),
            _ => None,
        })
        .await;
    assert_eq!(removed, vec![reg.clone()]);
    // With no register left, the terminal shows a new code, which pairs the register again.
    let code = t.next_code().await;
    let (s, body) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some(protocol::pos_api::NOT_PAIRED))
    );
    app.pos()
        .pair(&code, &reg, &pos::PairingDetails::new("Main Register"))
        .await
        .unwrap();
    let (s, _) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    assert_eq!(s, 200);
    t.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_releases_devices_and_held_requests() {
    let app = spawn_app().await;
    let (mut d, reg) = RawDevice::paired(&app, "dev-bye").await;
    let (_, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    let id = offered(&mut d).await;
    d.send(&DeviceMessage::Accept { transaction_id: id }).await;
    assert_eq!(d.recv().await, CloudMessage::Start { transaction_id: id });
    let url = format!("{}&wait=60", env["data"]["PollingUrl"].as_str().unwrap());
    let http = app.http.clone();
    let held = tokio::spawn(async move {
        http.get(url)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    });
    eventually("the long-poll held", || async {
        (app.engine.requests_waiting() == 1).then_some(())
    })
    .await;
    // Shutdown does not wait for the held request's 60 s.
    tokio::time::timeout(PATIENCE, app.stop())
        .await
        .expect("shutdown released the held request");
    let (code, reason) = close_of(&mut d.ws).await;
    assert_eq!(code, close::GOING_AWAY);
    assert!(reason.contains("shutting down"), "{reason}");
    let body = held.await.unwrap();
    assert_eq!(body["transactionStatus"], "PENDING");
}

#[tokio::test]
async fn a_start_lost_with_the_connection_is_sent_again() {
    let app = spawn_app().await;
    let secret = app.enroll("dev-lost").await;
    let mut d = RawDevice::connect(&app, "dev-lost", &secret).await;
    let reg = d.pair(&app).await;
    let (_, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    let id = offered(&mut d).await;
    d.send(&DeviceMessage::Accept { transaction_id: id }).await;
    // The connection dies before the device reads `start`.
    drop(d);
    // Back, not running anything: the cloud repeats `start`. (If the new connection attached
    // before the old connection's accept was read, the offer is made again first: the device
    // accepts it again and gets `start`.)
    let mut d = RawDevice::connect(&app, "dev-lost", &secret).await;
    loop {
        match d.recv().await {
            CloudMessage::Transaction(o) if o.transaction_id == id => {
                d.send(&DeviceMessage::Accept { transaction_id: id }).await;
            }
            m => {
                assert_eq!(m, CloudMessage::Start { transaction_id: id });
                break;
            }
        }
    }
    d.send(&DeviceMessage::Result(result(
        id,
        TransactionResult::Accepted,
    )))
    .await;
    // If the old connection's accept was processed after the new one attached, its `start`
    // arrives here too: duplicates are allowed by the protocol (the device ignores them).
    loop {
        match d.recv().await {
            CloudMessage::Start { transaction_id } if transaction_id == id => continue,
            other => {
                assert_eq!(other, CloudMessage::ResultAck { transaction_id: id });
                break;
            }
        }
    }
    let done = poll_until_completed(&app, env["data"]["PollingUrl"].as_str().unwrap()).await;
    assert_eq!(done["data"]["TransactionResult"], "OK-ACCEPTED");

    // A device that says it is running the transaction is not told to start it twice.
    let (_, _) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    let id = offered(&mut d).await;
    d.send(&DeviceMessage::Accept { transaction_id: id }).await;
    assert_eq!(d.recv().await, CloudMessage::Start { transaction_id: id });
    drop(d);
    let DeviceMessage::Hello(mut h) = hello("dev-lost", &secret) else {
        unreachable!()
    };
    h.in_progress = Some(id);
    let mut d = RawDevice::connect_with(&app, DeviceMessage::Hello(h)).await;
    d.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_financial_result_must_say_what_happened_to_the_money() {
    let app = spawn_app().await;
    let (mut d, reg) = RawDevice::paired(&app, "dev-vague").await;
    let (_, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    let id = offered(&mut d).await;
    d.send(&DeviceMessage::Accept { transaction_id: id }).await;
    assert_eq!(d.recv().await, CloudMessage::Start { transaction_id: id });
    let mut vague = result(id, TransactionResult::Accepted);
    vague.transaction_result = None;
    d.send(&DeviceMessage::Result(vague)).await;
    assert!(
        matches!(d.recv().await, CloudMessage::Error { .. }),
        "refused, not acknowledged"
    );
    let (_, b) = app
        .get_json(env["data"]["PollingUrl"].as_str().unwrap())
        .await;
    assert_eq!(b["transactionStatus"], "PENDING");
    d.send(&DeviceMessage::Result(result(
        id,
        TransactionResult::Declined,
    )))
    .await;
    assert_eq!(
        d.recv().await,
        CloudMessage::ResultAck { transaction_id: id }
    );
    let done = poll_until_completed(&app, env["data"]["PollingUrl"].as_str().unwrap()).await;
    assert_eq!(done["data"]["TransactionResult"], "OK-DECLINED");
}

#[tokio::test]
async fn oversized_frames_are_refused() {
    let app = spawn_app().await;
    let secret = app.enroll("dev-big").await;
    let mut d = RawDevice::connect(&app, "dev-big", &secret).await;
    let big = format!(
        r#"{{"type":"progress","transaction_id":"{}","prompt":"x","text":"{}"}}"#,
        protocol::TransactionId::new(),
        "x".repeat(protocol::device::MAX_FRAME_BYTES)
    );
    let _ = d.ws.send(Message::text(big)).await;
    let (code, reason) = close_of(&mut d.ws).await;
    assert_eq!(code, close::FRAME_TOO_LARGE, "{reason}");
}

#[tokio::test]
async fn an_operator_rotates_or_revokes_a_device_and_it_is_disconnected_at_once() {
    let app = spawn_app_with(Opts {
        admin_token: Some("admin-token-for-tests".into()),
        ..Opts::default()
    })
    .await;
    let secret = app.enroll("dev-revoke").await;
    let mut d = RawDevice::connect(&app, "dev-revoke", &secret).await;
    let admin = |path: String| {
        app.http
            .post(app.url(&path))
            .bearer_auth("admin-token-for-tests")
            .send()
    };
    // Without the token: refused.
    let r = app
        .http
        .post(app.url("/admin/devices/dev-revoke/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = admin("/admin/devices/dev-revoke/rotate-secret".into())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let new_secret = body["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    let (code, _) = close_of(&mut d.ws).await;
    assert_eq!(
        code,
        close::AUTH_FAILED,
        "the connection made with the old secret is closed"
    );
    // The old secret no longer opens it; the new one does.
    let mut ws = ws_connect(&app).await;
    ws.send(Message::text(
        serde_json::to_string(&hello("dev-revoke", &secret)).unwrap(),
    ))
    .await
    .unwrap();
    assert_eq!(close_of(&mut ws).await.0, close::AUTH_FAILED);
    let mut d = RawDevice::connect(&app, "dev-revoke", &new_secret).await;

    let r = admin("/admin/devices/dev-revoke/revoke".into())
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(close_of(&mut d.ws).await.0, close::AUTH_FAILED);
    let mut ws = ws_connect(&app).await;
    ws.send(Message::text(
        serde_json::to_string(&hello("dev-revoke", &new_secret)).unwrap(),
    ))
    .await
    .unwrap();
    assert_eq!(
        close_of(&mut ws).await.0,
        close::AUTH_FAILED,
        "revoked: no secret works"
    );
    let r = admin("/admin/devices/nobody/revoke".into()).await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn welcome_lists_the_registers_paired_to_the_device() {
    let app = spawn_app().await;
    let secret = app.enroll("dev-welcome").await;
    let mut d = RawDevice::connect(&app, "dev-welcome", &secret).await;
    let reg = d.pair(&app).await;
    drop(d);
    // Reconnecting (after a reboot, say), the device learns from `welcome` that it is paired.
    let mut d = RawDevice {
        ws: ws_connect(&app).await,
        id: DeviceId::parse("dev-welcome").unwrap(),
    };
    d.send(&hello("dev-welcome", &secret)).await;
    match d.recv().await {
        CloudMessage::Welcome { registers, .. } => {
            let keys: Vec<_> = registers.iter().map(|r| &r.key).collect();
            assert_eq!(keys, vec![&reg]);
        }
        other => panic!("expected welcome, got {other:?}"),
    }
}
