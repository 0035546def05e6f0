//! The polling URL: tokens, errors, rate limit, long-poll; and HTTP conventions (paths, CORS).

use crate::harness::*;
use protocol::device::{CloudMessage, DeviceMessage, DeviceResult};
use protocol::{ResultCode, TransactionResult};
use std::collections::BTreeMap;
use std::time::Duration;

/// A raw device that accepts and starts the next transaction; returns its id.
async fn accept_next(d: &mut RawDevice) -> protocol::TransactionId {
    let id = match d.recv().await {
        CloudMessage::Transaction(o) => o.transaction_id,
        other => panic!("{other:?}"),
    };
    d.send(&DeviceMessage::Accept { transaction_id: id }).await;
    assert_eq!(d.recv().await, CloudMessage::Start { transaction_id: id });
    id
}

fn approved(id: protocol::TransactionId) -> DeviceMessage {
    let mut fields = BTreeMap::new();
    fields.insert("AuthId".to_string(), "123456".to_string());
    fields.insert("AmountTotal".to_string(), "100".to_string());
    // A device must not be able to override what the cloud owns.
    fields.insert("PosVendor".to_string(), "Evil".to_string());
    DeviceMessage::Result(DeviceResult {
        transaction_id: id,
        transaction_result: Some(TransactionResult::Accepted),
        result: ResultCode::Ok,
        result_text: "APPROVED".into(),
        fields,
        receipts: None,
        settlement: None,
    })
}

#[tokio::test]
async fn poll_statuses_and_errors() {
    let (app, clock) = spawn_app_on_manual_clock().await;
    let (mut d, reg) = RawDevice::paired(&app, "dev-poll").await;
    let (s, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    assert_eq!(s, 200);
    for k in [
        "transactionId",
        "transactionTimeStamp",
        "merchantId",
        "deviceId",
        "transactionStatus",
        "merchantAccessToken",
    ] {
        assert!(env[k].is_string(), "{k} in {env}");
    }
    assert_eq!(env["transactionTimeStamp"].as_str().unwrap().len(), 18);
    assert_eq!(env["deviceId"], "dev-poll");
    assert_eq!(env["data"]["PosVendor"], "Till2Go");
    assert_eq!(env["data"]["PosRegisterID"], reg.register_id.as_str());
    assert_eq!(env["data"]["AmountTotal"], "100");
    assert_eq!(env["data"]["DeviceID"], "dev-poll");
    let url = env["data"]["PollingUrl"].as_str().unwrap().to_string();
    let id = env["transactionId"].as_str().unwrap();
    assert_eq!(
        url,
        format!(
            "{}/pos/transaction/{id}?merchantAccessToken={}",
            app.base,
            env["merchantAccessToken"].as_str().unwrap()
        )
    );

    let tid = accept_next(&mut d).await;
    assert_eq!(tid.to_string(), id);
    d.send(&DeviceMessage::Progress {
        transaction_id: tid,
        prompt: "present_card".into(),
        text: "Present card".into(),
    })
    .await;
    let pending = tokio::time::timeout(PATIENCE, async {
        loop {
            let (_, b) = app.get_json(&url).await;
            if b["data"]["DisplayText"] == "Present card" {
                return b;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(pending["transactionStatus"], "PENDING");
    assert_eq!(pending["data"]["TransactionResult"], "");

    // Errors: wrong token, unknown id, malformed id, no token.
    let wrong = url.replace("merchantAccessToken=", "merchantAccessToken=x");
    let (s, b) = app.get_json(&wrong).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("Invalid token")));
    let (s, b) = app
        .get_json(&app.url(&format!(
            "/pos/transaction/{}?merchantAccessToken=x",
            uuid::Uuid::new_v4()
        )))
        .await;
    assert_eq!(s, 404);
    assert!(b["error"].is_string());
    let (s, _) = app
        .get_json(&app.url("/pos/transaction/not-a-uuid?merchantAccessToken=x"))
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .get_json(&app.url(&format!("/pos/transaction/{id}")))
        .await;
    assert_eq!(s, 401);

    d.send(&approved(tid)).await;
    assert_eq!(
        d.recv().await,
        CloudMessage::ResultAck {
            transaction_id: tid
        }
    );
    let done = poll_until_completed(&app, &url).await;
    assert_eq!(done["data"]["TransactionResult"], "OK-ACCEPTED");
    assert_eq!(done["data"]["PosVendor"], "Till2Go");
    assert_eq!(done["data"]["AuthId"], "123456");
    assert_eq!(done["data"]["Merchant"], "Toys Shop Pty Ltd");
    assert!(done["data"].get("DisplayText").is_none());
    // Re-polls are identical.
    let (_, again) = app.get_json(&url).await;
    assert_eq!(again, done);
    // Upper-case path, same answer.
    let (_, upper) = app
        .get_json(&url.replace("/pos/transaction/", "/POS/Transaction/"))
        .await;
    assert_eq!(upper, done);

    // The token expires counted from the POST, completed or not: still valid to the last
    // millisecond, expired from then on.
    clock.advance(Opts::default().token_ttl - Duration::from_millis(1));
    let (s, _) = app.get_json(&url).await;
    assert_eq!(s, 200);
    clock.advance(Duration::from_millis(1));
    let (s, b) = app.get_json(&url).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("Token expired")));
}

#[tokio::test]
async fn polling_too_fast_is_429_with_retry_after() {
    let app = spawn_app_with(Opts {
        poll_interval_min: Duration::from_secs(2),
        ..Opts::default()
    })
    .await;
    let (t, reg) = paired_terminal(&app, "dev-429").await;
    let (_, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    let url = env["data"]["PollingUrl"].as_str().unwrap();
    let first = app.http.get(url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = app.http.get(url).send().await.unwrap();
    assert_eq!(second.status(), 429);
    let retry: u64 = second.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let body: serde_json::Value = second.json().await.unwrap();
    assert!(body["error"].is_string());
    t.stop().await;
}

#[tokio::test]
async fn long_poll_returns_when_the_result_arrives() {
    let app = spawn_app().await;
    let (mut d, reg) = RawDevice::paired(&app, "dev-long").await;
    let (_, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    let url = format!("{}&wait=30", env["data"]["PollingUrl"].as_str().unwrap());
    let tid = accept_next(&mut d).await;
    let http = app.http.clone();
    let waiter = tokio::spawn(async move {
        let b: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
        b
    });
    // Held by the cloud: from here only the result (or its 30 s) can end it.
    eventually("the long-poll held", || async {
        (app.engine.requests_waiting() == 1).then_some(())
    })
    .await;
    assert!(
        !waiter.is_finished(),
        "long-poll returned before the result"
    );
    d.send(&approved(tid)).await;
    // COMPLETED: the result ended the wait (its 30 s running out would answer PENDING).
    let body = waiter.await.unwrap();
    assert_eq!(body["transactionStatus"], "COMPLETED");
}

#[tokio::test]
async fn http_conventions() {
    let app = spawn_app().await;
    // A known path with the wrong method is 404 with a JSON error, as clients expect.
    for (method, path) in [
        (reqwest::Method::GET, "/POS/Transaction"),
        (reqwest::Method::DELETE, "/POS/Transaction"),
        (reqwest::Method::GET, "/POS/Pairing/12345678"),
        (reqwest::Method::POST, "/POS/Pairing/12345678"),
        (
            reqwest::Method::PUT,
            "/pos/transaction/00000000-0000-0000-0000-000000000000",
        ),
        (reqwest::Method::GET, "/nothing/here"),
    ] {
        let r = app
            .http
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
        let b: serde_json::Value = r.json().await.unwrap();
        assert!(b["error"].is_string());
    }
    // CORS preflight for the pairing PUT, and CORS headers on answers.
    let r = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/POS/Pairing/12345678"))
        .header("Origin", "https://pos.example.com")
        .header("Access-Control-Request-Method", "PUT")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(
        r.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PUT")
            || r.headers()["access-control-allow-methods"] == "*"
    );
    let r = app
        .http
        .post(app.url("/POS/Transaction"))
        .header("Origin", "https://pos.example.com")
        .form(&[("TransactionType", "Card.Purchase")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
}
