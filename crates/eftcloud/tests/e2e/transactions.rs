//! Transactions through the real terminal agent and simulator: every function, the test
//! amounts, validation, busy, offline and the legacy synchronous mode.

use crate::harness::*;
use pos::TransactionSpec;
use protocol::{Cents, Function, TransactionRequest};
use std::time::Duration;

fn spec(function: Function, amount: Option<u64>) -> TransactionSpec {
    let mut s = TransactionSpec::new(function);
    if let Some(a) = amount {
        s = s.with_amount(Cents::new(a).unwrap());
    }
    s
}

#[tokio::test]
async fn every_function_runs_end_to_end() {
    let app = spawn_app().await;
    let (t, reg) = paired_terminal(&app, "dev-all").await;
    let pos = app.pos();
    for f in Function::ALL {
        let mut s = spec(f, None);
        s.request = TransactionRequest::of(f);
        match f {
            Function::CardPurchasePlusCash => {
                s.request.amount_total = Cents::new(6000).ok();
                s.request.amount_cash = Cents::new(2000).ok();
            }
            Function::CardAuthorise => {
                s.request.amount_auth = Cents::new(10000).ok();
                s.request.transaction_reference = Some("PRE-1".into());
            }
            Function::CardFinalise => {
                s.request.amount_final = Cents::new(8000).ok();
                s.request.transaction_reference = Some("PRE-1".into());
            }
            f if f.is_financial() => s.request.amount_total = Cents::new(1000).ok(),
            _ => {}
        }
        let started = pos.start(&reg, &s).await.unwrap();
        assert_eq!(
            started.transaction_status,
            protocol::pos_api::TransactionStatus::Pending
        );
        assert_eq!(started.field("Function"), Some(f.as_str()));
        let done = pos
            .wait_for_completion(&started, quick(), |_| {})
            .await
            .unwrap();
        assert!(done.is_completed());
        assert_eq!(done.field("RequestId"), Some(done.transaction_id.as_str()));
        assert_eq!(done.field("Result"), Some("OK"), "{f}: {:?}", done.data);
        if f.is_financial() {
            assert_eq!(done.field("TransactionResult"), Some("OK-ACCEPTED"), "{f}");
            for k in [
                "AuthId",
                "CardType",
                "Receipt",
                "Timestamp",
                "AcquirerRef",
                "TerminalRef",
                "AmountTotal",
            ] {
                assert!(done.field(k).is_some(), "{f} lacks {k}: {:?}", done.data);
            }
            // A QR wallet payment has no card number or account.
            if f.as_str().starts_with("Card.") {
                for k in ["CardPan", "AccountType"] {
                    assert!(done.field(k).is_some(), "{f} lacks {k}: {:?}", done.data);
                }
            }
        } else {
            assert_eq!(
                done.field("TransactionResult"),
                None,
                "{f} is not financial"
            );
        }
        match f {
            Function::TerminalGetStatus => assert_eq!(done.field("Status"), Some("READY")),
            Function::JournalGetTransResult => assert!(done.field("ReferenceId").is_some()),
            Function::CardPurchasePlusCash => {
                assert_eq!(done.field("AmountTotal"), Some("6000"));
                assert_eq!(done.field("AmountCash"), Some("2000"));
            }
            Function::CardFinalise => assert_eq!(done.field("TransactionReference"), Some("PRE-1")),
            _ => {}
        }
        assert!(pos::outcome_is_success(&done), "{f}");
    }
    t.stop().await;
}

#[tokio::test]
async fn simulator_test_amounts() {
    let app = spawn_app().await;
    let (t, reg) = paired_terminal(&app, "dev-amounts").await;
    let pos = app.pos();
    let run = |amount: u64| {
        let pos = pos.clone();
        let reg = reg.clone();
        async move {
            let started = pos
                .start(&reg, &spec(Function::CardPurchase, Some(amount)))
                .await
                .unwrap();
            pos.wait_for_completion(&started, quick(), |_| {})
                .await
                .unwrap()
        }
    };
    let declined = run(1051).await;
    assert_eq!(declined.field("TransactionResult"), Some("OK-DECLINED"));
    assert_eq!(declined.field("Result"), Some("OK"));
    assert!(declined.field("Receipt").unwrap().contains("DECLINED"));
    assert!(!pos::outcome_is_success(&declined));

    let cancelled = run(1052).await;
    assert_eq!(cancelled.field("TransactionResult"), Some("CANCELLED"));
    assert_eq!(cancelled.field("Result"), Some("CANCELLED"));

    let slow = run(1053).await;
    assert_eq!(slow.field("TransactionResult"), Some("OK-ACCEPTED"));

    let surcharged = run(10055).await;
    assert_eq!(surcharged.field("TransactionResult"), Some("OK-ACCEPTED"));
    // 1.5% of 100.55 = 1.51 (rounded), included in the total.
    assert_eq!(surcharged.field("AmountSurcharge"), Some("151"));
    assert_eq!(surcharged.field("AmountTotal"), Some("10206"));

    let approved = run(1000).await;
    assert_eq!(approved.field("TransactionResult"), Some("OK-ACCEPTED"));
    assert_eq!(approved.field("AmountTotal"), Some("1000"));
    t.stop().await;
}

#[tokio::test]
async fn bad_requests_are_clear_400s() {
    let app = spawn_app().await;
    let (t, reg) = paired_terminal(&app, "dev-bad").await;
    let base = register_form(&reg);
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut f = base.clone();
        f.push(("TransactionMode", "ASYNC"));
        f.extend_from_slice(extra);
        f
    };
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (with(&[("AmountTotal", "100")]), "TransactionType"),
        (
            with(&[("TransactionType", "Card.Steal"), ("AmountTotal", "100")]),
            "Card.Steal",
        ),
        (with(&[("TransactionType", "Card.Purchase")]), "AmountTotal"),
        (
            with(&[("TransactionType", "Card.Purchase"), ("AmountTotal", "0")]),
            "AmountTotal",
        ),
        (
            with(&[("TransactionType", "Card.Purchase"), ("AmountTotal", "-5")]),
            "AmountTotal",
        ),
        (
            with(&[
                ("TransactionType", "Card.Purchase"),
                ("AmountTotal", "5.00"),
            ]),
            "AmountTotal",
        ),
        (
            with(&[("TransactionType", "Card.Purchase"), ("AmountTotal", "abc")]),
            "AmountTotal",
        ),
        (
            with(&[
                ("TransactionType", "Card.Purchase"),
                ("AmountTotal", "100000000000"),
            ]),
            "AmountTotal",
        ),
        (
            with(&[
                ("TransactionType", "Card.PurchasePlusCash"),
                ("AmountTotal", "100"),
                ("AmountCash", "200"),
            ]),
            "AmountCash",
        ),
        (
            with(&[("TransactionType", "Card.Authorise"), ("AmountAuth", "100")]),
            "TransactionReference",
        ),
        (
            with(&[
                ("TransactionType", "Card.Finalise"),
                ("TransactionReference", "X"),
            ]),
            "AmountFinal",
        ),
        (
            with(&[
                ("TransactionType", "Card.Purchase"),
                ("AmountTotal", "100"),
                ("SaleData", "{not json"),
            ]),
            "SaleData",
        ),
        (
            with(&[
                ("TransactionType", "Card.Purchase"),
                ("AmountTotal", "100"),
                (
                    "SaleData",
                    r#"{"version":"1.0.0","saleData":{"totalTax":"1"}}"#,
                ),
            ]),
            "totalAmount",
        ),
        (
            with(&[
                ("TransactionType", "Card.Purchase"),
                ("AmountTotal", "100"),
                ("PosNotificationCallbackUrl", "ftp://x/y"),
            ]),
            "PosNotificationCallbackUrl",
        ),
        (
            with(&[
                ("TransactionType", "Card.Purchase"),
                ("AmountTotal", "100"),
                ("TransactionMode", "MAYBE"),
            ]),
            "TransactionMode",
        ),
        (
            vec![
                ("TransactionMode", "ASYNC"),
                ("TransactionType", "Card.Purchase"),
                ("AmountTotal", "100"),
            ],
            "POSRegisterID",
        ),
    ];
    for (form, needle) in cases {
        let (s, body) = app.post_form("/POS/Transaction", &form).await;
        assert_eq!(s, 400, "{form:?} -> {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.contains(needle), "{needle} not in {msg}");
    }
    // Nothing was stored or sent: the device is idle and takes the next one.
    let (s, _) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    assert_eq!(s, 200);
    t.stop().await;
}

#[tokio::test]
async fn sale_data_is_stored_and_fields_are_lenient() {
    let app = spawn_app().await;
    let (t, reg) = paired_terminal(&app, "dev-sale").await;
    let sale = r#"{"version":"1.0.0","saleData":{"totalAmount":"500","totalTax":"45","lineItems":[{"lineId":"1","productName":"Robot","quantity":"1","unitPrice":"500"}]}}"#;
    // Fields in the query string, a charset in the content type, spaces as %20.
    let url = format!(
        "{}?POSRegisterID={}&POSBusinessName=Toys%20Shop&POSVendorName=Till2Go&TransactionMode=ASYNC",
        app.url("/pos/TRANSACTION"),
        reg.register_id
    );
    let body = format!(
        "TransactionType=Card.Purchase&AmountTotal=500&SaleData={}&SomethingNew=1",
        url::form_urlencoded::byte_serialize(sale.as_bytes()).collect::<String>()
    );
    let r = app
        .http
        .post(url)
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let env: serde_json::Value = r.json().await.unwrap();
    let id: protocol::TransactionId = env["transactionId"].as_str().unwrap().parse().unwrap();
    let stored = app.engine.transaction(&id).await.unwrap().unwrap();
    assert_eq!(stored.sale_data.as_deref(), Some(sale));
    poll_until_completed(&app, env["data"]["PollingUrl"].as_str().unwrap()).await;
    t.stop().await;
}

#[tokio::test]
async fn busy_device_gets_429_and_status_answers_busy() {
    let app = spawn_app().await;
    let (t, reg) = paired_terminal_with(
        &app,
        "dev-busy",
        terminal::SimulatorConfig {
            step_delay: Duration::from_millis(5),
            slow: Duration::from_millis(800),
        },
    )
    .await;
    let (s, slow) = app
        .post_form("/POS/Transaction", &purchase(&reg, "1053"))
        .await;
    assert_eq!(s, 200);
    let (s, body) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    assert_eq!(
        (s, body),
        (429, serde_json::json!({"error": "device is busy"}))
    );
    let mut form = register_form(&reg);
    form.extend([
        ("TransactionMode", "ASYNC"),
        ("TransactionType", "Terminal.GetStatus"),
    ]);
    let (s, status) = app.post_form("/POS/Transaction", &form).await;
    assert_eq!(s, 200);
    assert_eq!(status["transactionStatus"], "COMPLETED");
    assert_eq!(status["data"]["Status"], "BUSY");
    let done = poll_until_completed(&app, slow["data"]["PollingUrl"].as_str().unwrap()).await;
    assert_eq!(done["data"]["TransactionResult"], "OK-ACCEPTED");
    // Idle again.
    let (s, _) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    assert_eq!(s, 200);
    t.stop().await;
}

#[tokio::test]
async fn racing_posts_make_exactly_one_transaction() {
    let app = spawn_app().await;
    let (t, reg) = paired_terminal(&app, "dev-race").await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let http = app.http.clone();
        let url = app.url("/POS/Transaction");
        let form: Vec<(String, String)> = purchase(&reg, "100")
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        set.spawn(async move {
            http.post(url)
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(s) = set.join_next().await {
        statuses.push(s.unwrap());
    }
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    t.stop().await;
}

#[tokio::test]
async fn offline_device_is_a_prompt_definite_failure() {
    let app = spawn_app().await;
    let (t, reg) = paired_terminal(&app, "dev-off").await;
    t.stop().await;
    let (s, body) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    assert_eq!(s, 200);
    let done = poll_until_completed(&app, body["data"]["PollingUrl"].as_str().unwrap()).await;
    assert_eq!(done["data"]["TransactionResult"], "CANCELLED");
    assert_eq!(done["data"]["Result"], "FAILED-INTERFACE");
    // Ended by the first decision, not by the accept deadline running out.
    assert_eq!(done["data"]["ResultText"], "Device is offline");
    // A status request while offline says so.
    let mut form = register_form(&reg);
    form.extend([
        ("TransactionMode", "ASYNC"),
        ("TransactionType", "Terminal.GetStatus"),
    ]);
    let (_, status) = app.post_form("/POS/Transaction", &form).await;
    assert_eq!(status["data"]["Status"], "OFFLINE");
}

#[tokio::test]
async fn legacy_synchronous_mode_returns_the_completed_body() {
    let app = spawn_app().await;
    let (t, reg) = paired_terminal(&app, "dev-sync").await;
    let mut form = register_form(&reg);
    form.extend([("TransactionType", "Card.Refund"), ("AmountTotal", "700")]);
    let (s, body) = app.post_form("/POS/Transaction", &form).await;
    assert_eq!(s, 200);
    assert_eq!(body["transactionStatus"], "COMPLETED");
    assert_eq!(body["data"]["TransactionResult"], "OK-ACCEPTED");
    assert_eq!(body["data"]["Function"], "Card.Refund");
    // The same body is what a poll of it returns.
    let (_, polled) = app
        .get_json(body["data"]["PollingUrl"].as_str().unwrap())
        .await;
    assert_eq!(polled, body);
    // Through the client too.
    let done = app
        .pos()
        .transact_sync(&reg, &spec(Function::CardPurchase, Some(1051)))
        .await
        .unwrap();
    assert_eq!(done.field("TransactionResult"), Some("OK-DECLINED"));
    t.stop().await;
}
