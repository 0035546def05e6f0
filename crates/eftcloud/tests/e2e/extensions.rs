//! eftcloud's additions to the POS API: POS references (idempotency), lookup, cancel, register
//! status, the event timeline, retention — and proof that a plain SmartConnect client sees
//! nothing new.

use crate::harness::*;
use protocol::device::{CloudMessage, DeviceMessage, DeviceResult};
use protocol::{ResultCode, TransactionResult};
use std::collections::BTreeMap;
use std::time::Duration;

fn with_reference<'a>(
    r: &'a protocol::RegisterKey,
    amount: &'a str,
    reference: &'a str,
) -> Vec<(&'static str, &'a str)> {
    let mut f = purchase(r, amount);
    f.push(("PosReference", reference));
    f
}

async fn offered(d: &mut RawDevice) -> protocol::TransactionId {
    match d.recv().await {
        CloudMessage::Transaction(o) => o.transaction_id,
        other => panic!("{other:?}"),
    }
}

async fn start(d: &mut RawDevice, id: protocol::TransactionId) {
    d.send(&DeviceMessage::Accept { transaction_id: id }).await;
    assert_eq!(d.recv().await, CloudMessage::Start { transaction_id: id });
}

fn result(id: protocol::TransactionId, r: TransactionResult) -> DeviceMessage {
    DeviceMessage::Result(DeviceResult {
        transaction_id: id,
        transaction_result: Some(r),
        result: ResultCode::Ok,
        result_text: "DONE".into(),
        fields: BTreeMap::new(),
        receipts: None,
        settlement: None,
    })
}

#[tokio::test]
async fn a_retry_with_the_same_reference_never_charges_twice() {
    let app = spawn_app().await;
    let (mut d, reg) = RawDevice::paired(&app, "dev-idem").await;

    let r1 = app
        .http
        .post(app.url("/POS/Transaction"))
        .form(&with_reference(&reg, "500", "INV-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r1.status(), 200);
    assert!(r1.headers().get("idempotent-replayed").is_none());
    let first: serde_json::Value = r1.json().await.unwrap();
    assert_eq!(first["data"]["PosReference"], "INV-1");
    let id = offered(&mut d).await;

    // The response was "lost": the POS retries.
    let r2 = app
        .http
        .post(app.url("/POS/Transaction"))
        .form(&with_reference(&reg, "500", "INV-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r2.status(), 200);
    assert_eq!(r2.headers()["idempotent-replayed"], "true");
    let second: serde_json::Value = r2.json().await.unwrap();
    assert_eq!(second["transactionId"], first["transactionId"]);
    assert_eq!(second["merchantAccessToken"], first["merchantAccessToken"]);
    d.expect_silence(Duration::from_millis(200)).await;

    // Same reference, different request: 409.
    let (s, b) = app
        .post_form("/POS/Transaction", &with_reference(&reg, "900", "INV-1"))
        .await;
    assert_eq!(s, 409);
    assert!(b["error"].as_str().unwrap().contains("INV-1"), "{b}");

    // The Idempotency-Key header works the same way, and the retry shows the current state.
    start(&mut d, id).await;
    d.send(&result(id, TransactionResult::Accepted)).await;
    assert!(matches!(d.recv().await, CloudMessage::ResultAck { .. }));
    let r3 = app
        .http
        .post(app.url("/POS/Transaction"))
        .header("Idempotency-Key", "INV-1")
        .form(&purchase(&reg, "500"))
        .send()
        .await
        .unwrap();
    assert_eq!(r3.status(), 200);
    let third: serde_json::Value = r3.json().await.unwrap();
    assert_eq!(third["transactionId"], first["transactionId"]);
    assert_eq!(third["transactionStatus"], "COMPLETED");

    // A new reference is a new transaction.
    let (s, other) = app
        .post_form("/POS/Transaction", &with_reference(&reg, "500", "INV-2"))
        .await;
    assert_eq!(s, 200);
    assert_ne!(other["transactionId"], first["transactionId"]);
}

#[tokio::test]
async fn racing_duplicates_resolve_to_one_transaction() {
    let app = spawn_app().await;
    let (mut d, reg) = RawDevice::paired(&app, "dev-idem-race").await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let http = app.http.clone();
        let url = app.url("/POS/Transaction");
        let form: Vec<(String, String)> = with_reference(&reg, "700", "RACE-1")
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        set.spawn(async move {
            let r = http.post(url).form(&form).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        });
    }
    let mut ids = std::collections::HashSet::new();
    while let Some(r) = set.join_next().await {
        let (status, body) = r.unwrap();
        assert_eq!(status, 200, "{body}");
        ids.insert(body["transactionId"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    offered(&mut d).await;
    d.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn lookup_outlives_the_polling_token() {
    let (app, clock) = spawn_app_on_manual_clock().await;
    let (t, reg) = paired_terminal(&app, "dev-lookup").await;
    let (_, env) = app
        .post_form(
            "/POS/Transaction",
            &with_reference(&reg, "1000", "ORDER-77"),
        )
        .await;
    let url = env["data"]["PollingUrl"].as_str().unwrap().to_string();
    let done = poll_until_completed(&app, &url).await;
    clock.advance(Opts::default().token_ttl);
    let (s, _) = app.get_json(&url).await;
    assert_eq!(s, 401, "token expired");

    let q = |extra: &str| {
        format!(
            "/pos/lookup?POSRegisterID={}&POSBusinessName=Toys%20Shop&POSVendorName=Till2Go{extra}",
            reg.register_id
        )
    };
    let (s, by_ref) = app.get_json(&app.url(&q("&PosReference=ORDER-77"))).await;
    assert_eq!(s, 200);
    assert_eq!(by_ref, done, "the same body as the completed poll");
    let id = done["transactionId"].as_str().unwrap();
    let (s, by_id) = app
        .get_json(&app.url(&q(&format!("&TransactionId={id}"))))
        .await;
    assert_eq!((s, &by_id), (200, &done));
    let (s, _) = app.get_json(&app.url(&q("&PosReference=NOPE"))).await;
    assert_eq!(s, 404);
    let (s, b) = app.get_json(&app.url(&q(""))).await;
    assert_eq!(s, 400, "{b}");
    // Another register cannot see it.
    let other = format!("/pos/lookup?POSRegisterID=someone-else&POSBusinessName=Toys%20Shop&POSVendorName=Till2Go&TransactionId={id}");
    let (s, _) = app.get_json(&app.url(&other)).await;
    assert_eq!(s, 404);
    t.stop().await;

    // Kept for the whole retention period, then the sweep deletes it.
    clock.advance(Opts::default().retention - Opts::default().token_ttl - Duration::from_secs(1));
    assert_eq!(app.engine.sweep_once().await, 0);
    let (s, _) = app.get_json(&app.url(&q("&PosReference=ORDER-77"))).await;
    assert_eq!(s, 200);
    clock.advance(Duration::from_secs(2));
    // The hourly sweep, woken by the clock's jump, may take it first: gone either way.
    app.engine.sweep_once().await;
    let (s, _) = app.get_json(&app.url(&q("&PosReference=ORDER-77"))).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn the_retention_sweep_runs_by_itself_each_hour_of_the_cloud_clock() {
    let (app, clock) = spawn_app_on_manual_clock().await;
    let (d, reg) = RawDevice::paired(&app, "dev-sweep").await;
    let device = protocol::DeviceId::parse("dev-sweep").unwrap();
    drop(d);
    eventually("the device offline", || async {
        (!app.engine.is_online(&device).await).then_some(())
    })
    .await;
    // Offline: completed at once, at the clock's time.
    let (_, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    assert_eq!(env["transactionStatus"], "COMPLETED", "{env}");
    let id: protocol::TransactionId = env["transactionId"].as_str().unwrap().parse().unwrap();
    assert!(app.engine.transaction(&id).await.unwrap().is_some());
    // Past its retention: the sweep, asleep on the same clock for its hour, wakes and deletes it.
    clock.advance(Opts::default().retention + Duration::from_secs(1));
    eventually("the background sweep", || async {
        app.engine
            .transaction(&id)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn cancel_before_start_is_immediate_and_after_completion_is_refused() {
    let app = spawn_app().await;
    let (mut d, reg) = RawDevice::paired(&app, "dev-cancel").await;
    let (_, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    let id = offered(&mut d).await;
    let cancel_url = format!(
        "{}/pos/transaction/{id}/cancel?merchantAccessToken={}",
        app.base,
        env["merchantAccessToken"].as_str().unwrap()
    );
    let r = app.http.post(&cancel_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["transactionStatus"], "COMPLETED");
    assert_eq!(b["data"]["TransactionResult"], "CANCELLED");
    assert_eq!(b["data"]["Result"], "CANCELLED");
    assert!(
        matches!(d.recv().await, CloudMessage::Abort { transaction_id, .. } if transaction_id == id)
    );
    // The device accepting now is too late.
    d.send(&DeviceMessage::Accept { transaction_id: id }).await;
    assert!(matches!(d.recv().await, CloudMessage::Abort { .. }));
    // Cancelling again says clearly that it is over.
    let r = app.http.post(&cancel_url).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let b: serde_json::Value = r.json().await.unwrap();
    assert!(
        b["error"].as_str().unwrap().contains("already completed"),
        "{b}"
    );
    // No credential, no cancel.
    let r = app
        .http
        .post(format!("{}/pos/transaction/{id}/cancel", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn cancel_while_the_device_runs_gives_the_real_outcome() {
    let app = spawn_app().await;
    let (t, reg) = paired_terminal_with(
        &app,
        "dev-cancel-slow",
        terminal::SimulatorConfig {
            step_delay: Duration::from_millis(5),
            slow: Duration::from_secs(5),
        },
    )
    .await;
    let (_, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "1053"))
        .await;
    let id = env["transactionId"].as_str().unwrap();
    // Wait until the device runs it.
    eventually("the device running the payment", || async {
        let (_, b) = app
            .get_json(env["data"]["PollingUrl"].as_str().unwrap())
            .await;
        let shown = b["data"]["DisplayText"].as_str();
        shown.is_some_and(|s| !s.is_empty()).then_some(())
    })
    .await;
    // Cancel with the register identity, waiting for the outcome.
    let mut form = register_form(&reg);
    form.push(("wait", "10"));
    let r = app
        .http
        .post(app.url(&format!("/POS/Transaction/{id}/Cancel")))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: serde_json::Value = r.json().await.unwrap();
    // Cancelled: the device stopped (the slow approval would have answered OK-ACCEPTED).
    assert_eq!(b["transactionStatus"], "COMPLETED");
    assert_eq!(b["data"]["TransactionResult"], "CANCELLED");
    t.stop().await;
}

#[tokio::test]
async fn cancel_racing_a_result_ends_in_exactly_one_outcome() {
    let app = spawn_app().await;
    let (mut d, reg) = RawDevice::paired(&app, "dev-cancel-race").await;
    for round in 0..5 {
        let (_, env) = app
            .post_form("/POS/Transaction", &purchase(&reg, "100"))
            .await;
        // A cancel of the previous round may arrive late (it lost the race): the device ignores it.
        let id = loop {
            match d.recv().await {
                CloudMessage::Cancel { .. } => continue,
                CloudMessage::Transaction(o) => break o.transaction_id,
                other => panic!("{other:?}"),
            }
        };
        start(&mut d, id).await;
        let cancel_url = format!(
            "{}/pos/transaction/{id}/cancel?merchantAccessToken={}",
            app.base,
            env["merchantAccessToken"].as_str().unwrap()
        );
        let http = app.http.clone();
        let cancel = tokio::spawn(async move {
            http.post(cancel_url)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
        d.send(&result(id, TransactionResult::Accepted)).await;
        let status = cancel.await.unwrap();
        assert!(status == 200 || status == 409, "round {round}: {status}");
        // The device may see a cancel (too late, ignored) before the ack.
        loop {
            match d.recv().await {
                CloudMessage::Cancel { .. } => continue,
                m => {
                    assert_eq!(m, CloudMessage::ResultAck { transaction_id: id });
                    break;
                }
            }
        }
        let done = poll_until_completed(&app, env["data"]["PollingUrl"].as_str().unwrap()).await;
        assert_eq!(
            done["data"]["TransactionResult"], "OK-ACCEPTED",
            "the device's outcome is the truth"
        );
    }
}

#[tokio::test]
async fn register_status_tells_paired_online_and_busy() {
    let app = spawn_app().await;
    let q = |r: &protocol::RegisterKey| {
        format!(
            "/pos/register?POSRegisterID={}&POSBusinessName=Toys%20Shop&POSVendorName=Till2Go",
            r.register_id
        )
    };
    let (s, b) = app.get_json(&app.url(&q(&register("nobody")))).await;
    assert_eq!((s, b["paired"].as_bool()), (200, Some(false)));
    let (s, _) = app.get_json(&app.url("/pos/register")).await;
    assert_eq!(s, 400);

    let (mut d, reg) = RawDevice::paired(&app, "dev-status").await;
    let (_, b) = app.get_json(&app.url(&q(&reg))).await;
    assert_eq!(b["paired"], true);
    assert_eq!(b["deviceId"], "dev-status");
    assert_eq!(b["registerName"], "Counter 2");
    assert_eq!(b["online"], true);
    assert_eq!(b["busy"], false);
    let (_, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    offered(&mut d).await;
    let (_, b) = app.get_json(&app.url(&q(&reg))).await;
    assert_eq!(b["busy"], true);
    assert_eq!(b["activeTransactionId"], env["transactionId"]);
    drop(d);
    let b = eventually("offline and not busy", || async {
        let (_, b) = app.get_json(&app.url(&q(&reg))).await;
        // The offer ends just after the connection is dropped from the table.
        (b["online"] == false && b["busy"] == false).then_some(b)
    })
    .await;
    assert!(b["lastSeen"].is_string());
}

#[tokio::test]
async fn the_timeline_tells_the_story() {
    let app = spawn_app().await;
    let (t, reg) = paired_terminal(&app, "dev-timeline").await;
    let (_, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "1000"))
        .await;
    poll_until_completed(&app, env["data"]["PollingUrl"].as_str().unwrap()).await;
    let id = env["transactionId"].as_str().unwrap();
    let url = format!(
        "{}/pos/transaction/{id}/events?merchantAccessToken={}",
        app.base,
        env["merchantAccessToken"].as_str().unwrap()
    );
    let (s, b) = app.get_json(&url).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["transactionStatus"], "COMPLETED");
    let kinds: Vec<&str> = b["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let first_prompt = kinds.iter().position(|k| *k == "prompt").unwrap();
    assert_eq!(
        &kinds[..4],
        &["received", "offered", "accepted", "started"],
        "{kinds:?}"
    );
    assert!(first_prompt > 3);
    assert_eq!(
        &kinds[kinds.len() - 3..],
        &["result", "result_acknowledged", "completed"],
        "{kinds:?}"
    );
    let prompts: Vec<&str> = b["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "prompt")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert!(
        prompts.iter().any(|p| p.to_lowercase().contains("card")),
        "{prompts:?}"
    );
    assert!(b["events"][0]["at"].as_str().unwrap().ends_with('Z'));
    // By register identity too; a stranger gets 401.
    let mut form = register_form(&reg);
    form.retain(|_| true);
    let r = app
        .http
        .get(format!("{}/pos/transaction/{id}/events", app.base))
        .query(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .http
        .get(format!(
            "{}/pos/transaction/{id}/events?merchantAccessToken=nope",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Another register is told the transaction does not exist (ids cannot be probed).
    let stranger = register("stranger");
    let r = app
        .http
        .get(format!("{}/pos/transaction/{id}/events", app.base))
        .query(&register_form(&stranger))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .http
        .post(format!("{}/pos/transaction/{id}/cancel", app.base))
        .form(&register_form(&stranger))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    t.stop().await;
}

#[tokio::test]
async fn a_plain_smartconnect_client_sees_exactly_the_same_fields() {
    let app = spawn_app().await;
    let (t, reg) = paired_terminal(&app, "dev-plain").await;
    let (s, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "1000"))
        .await;
    assert_eq!(s, 200);
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(
        keys(&env),
        [
            "data",
            "deviceId",
            "merchantAccessToken",
            "merchantId",
            "transactionId",
            "transactionStatus",
            "transactionTimeStamp"
        ]
    );
    assert_eq!(
        keys(&env["data"]),
        [
            "AmountTotal",
            "DeviceID",
            "Function",
            "PollingUrl",
            "PosBusinessName",
            "PosRegisterID",
            "PosVendor",
            "RequestTimestamp",
            "Result",
            "ResultText",
            "TransactionResult"
        ]
    );
    let done = poll_until_completed(&app, env["data"]["PollingUrl"].as_str().unwrap()).await;
    assert_eq!(
        keys(&done["data"]),
        [
            "AccountType",
            "AcquirerRef",
            "AmountSurcharge",
            "AmountTip",
            "AmountTotal",
            "AuthId",
            "CardPan",
            "CardType",
            "Company",
            "DeviceID",
            "Function",
            "Merchant",
            "PollingUrl",
            "PosBusinessName",
            "PosRegisterID",
            "PosVendor",
            "Receipt",
            "RequestId",
            "RequestTimestamp",
            "ResponseTimestamp",
            "Result",
            "ResultText",
            "TerminalRef",
            "Timestamp",
            "TransactionResult"
        ]
    );
    assert!(
        done["data"]
            .as_object()
            .unwrap()
            .values()
            .all(|v| v.is_string()),
        "every data value is a string"
    );
    t.stop().await;
}

#[tokio::test]
async fn pos_api_keys_when_configured_bind_requests_to_their_vendor() {
    let app = spawn_app_with(Opts {
        pos_api_keys: vec![
            "Till2Go=till2go-key-0123456789".into(),
            "OtherVendor=other-key-0123456789".into(),
        ],
        ..Opts::default()
    })
    .await;
    let secret = app.enroll("dev-keys").await;
    let mut d = RawDevice::connect(&app, "dev-keys", &secret).await;
    let code = d.code().await;
    let reg = register("keys");
    let mut form = register_form(&reg);
    form.push(("POSRegisterName", "Main"));
    let put = |key: Option<&'static str>| {
        let mut r = app
            .http
            .put(app.url(&format!("/POS/Pairing/{code}")))
            .form(&form);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let r = put(None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = put(Some("other-key-0123456789")).await.unwrap();
    assert_eq!(r.status(), 403, "a key acts only for its own vendor");
    let r = put(Some("till2go-key-0123456789")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(matches!(d.recv().await, CloudMessage::Paired { .. }));

    let r = app
        .http
        .post(app.url("/POS/Transaction"))
        .bearer_auth("till2go-key-0123456789")
        .form(&purchase(&reg, "100"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let env: serde_json::Value = r.json().await.unwrap();
    let url = env["data"]["PollingUrl"].as_str().unwrap();
    // The token alone is not enough, and another vendor's key does not see it.
    assert_eq!(app.http.get(url).send().await.unwrap().status(), 401);
    assert_eq!(
        app.http
            .get(url)
            .bearer_auth("other-key-0123456789")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        app.http
            .get(url)
            .bearer_auth("till2go-key-0123456789")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The API description stays public.
    assert_eq!(
        app.http
            .get(app.url("/openapi.json"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
