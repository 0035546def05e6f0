//! Terminal actions through real sockets: the cart on the customer's screen, customer input,
//! printing and QR codes, against a device that speaks the protocol by hand (so every frame
//! the cloud sends is seen) on SQLite and on PostgreSQL, and across two nodes.

use crate::harness::*;
use eftcloud_testing::FreshDatabase;
use protocol::action::{InputKind, PrintLine};
use protocol::device::{capability, CloudMessage, DeviceMessage, DeviceResult, TransactionOffer};
use protocol::{Function, RegisterKey, ResultCode, TransactionId};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// A raw device that declares `capabilities`, paired with a register.
async fn device_with(app: &TestApp, id: &str, capabilities: &[&str]) -> (RawDevice, RegisterKey) {
    let secret = app.enroll(id).await;
    let mut h = hello(id, &secret);
    if let DeviceMessage::Hello(h) = &mut h {
        h.capabilities = capabilities.iter().map(|c| c.to_string()).collect();
    }
    let mut d = RawDevice::connect_with(app, h).await;
    let reg = d.pair(app).await;
    (d, reg)
}

/// A device that can do every action (and does not take `config` frames, which its tests do
/// not expect).
async fn counter(app: &TestApp, id: &str) -> (RawDevice, RegisterKey) {
    let all: Vec<&str> = capability::ALL
        .into_iter()
        .filter(|c| *c != capability::CONFIG)
        .collect();
    device_with(app, id, &all).await
}

fn form<'a>(
    reg: &'a RegisterKey,
    extra: &[(&'static str, &'a str)],
) -> Vec<(&'static str, &'a str)> {
    let mut f = register_form(reg);
    f.extend_from_slice(extra);
    f
}

/// The next `transaction` frame (the offer).
async fn offer(d: &mut RawDevice) -> TransactionOffer {
    match d.recv().await {
        CloudMessage::Transaction(o) => o,
        other => panic!("expected an offer, got {other:?}"),
    }
}

/// Accepts an offer and waits for `start`.
async fn accept(d: &mut RawDevice, id: TransactionId) {
    d.send(&DeviceMessage::Accept { transaction_id: id }).await;
    match d.recv().await {
        CloudMessage::Start { transaction_id } => assert_eq!(transaction_id, id),
        other => panic!("expected start, got {other:?}"),
    }
}

fn result(
    id: TransactionId,
    code: ResultCode,
    text: &str,
    fields: &[(&str, &str)],
) -> DeviceMessage {
    DeviceMessage::Result(DeviceResult {
        transaction_id: id,
        transaction_result: None,
        result: code,
        result_text: text.into(),
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        receipts: None,
        settlement: None,
    })
}

/// Reports a result and expects it stored (`result_ack`).
async fn report(d: &mut RawDevice, msg: DeviceMessage) {
    let DeviceMessage::Result(r) = &msg else {
        panic!("a result")
    };
    let id = r.transaction_id;
    d.send(&msg).await;
    match d.recv().await {
        CloudMessage::ResultAck { transaction_id } => assert_eq!(transaction_id, id),
        other => panic!("expected result_ack, got {other:?}"),
    }
}

fn id_of(envelope: &Value) -> TransactionId {
    envelope["transactionId"].as_str().unwrap().parse().unwrap()
}

async fn completed(app: &TestApp, started: &Value) -> Value {
    poll_until_completed(app, started["data"]["PollingUrl"].as_str().unwrap()).await
}

// ---------------------------------------------------------------------------------------------

async fn the_cart_is_shown_at_once_idempotently_and_again_after_a_reconnect(app: &TestApp) {
    let secret = app.enroll("cart-1").await;
    let mut h = hello("cart-1", &secret);
    if let DeviceMessage::Hello(h) = &mut h {
        h.capabilities = vec![capability::DISPLAY.into()];
    }
    let mut d = RawDevice::connect_with(app, h.clone()).await;
    let reg = d.pair(app).await;
    let lines = r#"[{"description":"Flat white","quantity":"2","unitPrice":450,"amount":900},
                   {"description":"Muffin","amount":"350"}]"#;
    let cart = form(
        &reg,
        &[
            ("Lines", lines),
            ("AmountTotal", "1250"),
            ("AmountTax", "114"),
        ],
    );
    let (status, shown) = app.post_form("/pos/register/display", &cart).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["version"], 1);
    assert_eq!(shown["delivered"], true);
    assert_eq!(
        shown["cart"]["currency"], "AUD",
        "the merchant's currency: {shown}"
    );
    match d.recv().await {
        CloudMessage::Display(display) => {
            assert_eq!(display.version, 1);
            let c = display.cart.unwrap();
            assert_eq!((c.total, c.tax, c.lines.len()), (1250, Some(114), 2));
            assert_eq!(c.lines[0].description, "Flat white");
            assert_eq!(
                (c.lines[1].quantity.as_str(), c.lines[1].amount),
                ("1", 350)
            );
        }
        other => panic!("expected display, got {other:?}"),
    }
    // A retry is the same version.
    let (_, again) = app.post_form("/pos/register/display", &cart).await;
    assert_eq!(again["version"], 1, "{again}");
    assert!(matches!(d.recv().await, CloudMessage::Display(x) if x.version == 1));

    // Cleared: a new version without a cart.
    let (status, cleared) = app
        .post_form("/pos/register/display", &form(&reg, &[("Clear", "true")]))
        .await;
    assert_eq!(
        (status, cleared["version"].as_u64()),
        (200, Some(2)),
        "{cleared}"
    );
    assert!(cleared["cart"].is_null());
    assert!(
        matches!(d.recv().await, CloudMessage::Display(x) if x.version == 2 && x.cart.is_none())
    );

    // Shown while the device is away: delivered on reconnect, after welcome.
    drop(d);
    eventually("the device is offline", || async {
        let (_, s) = app
            .get_json(&format!(
                "{}?POSRegisterID={}&POSBusinessName={}&POSVendorName={}",
                app.url("/pos/register"),
                reg.register_id,
                reg.business_name,
                reg.vendor_name
            ))
            .await;
        (s["online"] == false).then_some(())
    })
    .await;
    let (_, offline) = app
        .post_form(
            "/pos/register/display",
            &form(&reg, &[("Lines", "[]"), ("AmountTotal", "99")]),
        )
        .await;
    assert_eq!(
        (offline["version"].as_u64(), offline["delivered"].as_bool()),
        (Some(3), Some(false)),
        "{offline}"
    );
    let mut back = RawDevice::connect_with(app, h).await;
    match back.recv().await {
        CloudMessage::Display(x) => {
            assert_eq!(x.version, 3);
            assert_eq!(x.cart.map(|c| c.total), Some(99));
        }
        other => panic!("expected display after welcome, got {other:?}"),
    }

    // Bad carts are refused, naming the field.
    for (lines, total, why) in [
        (r#"[{"amount":5}]"#, "5", "Lines[0].description"),
        (
            r#"[{"description":"x","amount":-5}]"#,
            "5",
            "Lines[0].amount",
        ),
        (r#"{"description":"x"}"#, "5", "Lines"),
        ("[]", "", "AmountTotal"),
    ] {
        let (status, e) = app
            .post_form(
                "/pos/register/display",
                &form(&reg, &[("Lines", lines), ("AmountTotal", total)]),
            )
            .await;
        assert_eq!(status, 400, "{lines}: {e}");
        assert!(e["error"].as_str().unwrap().contains(why), "{e}");
    }
}

async fn an_answer_is_checked_polled_and_replayed_by_reference(app: &TestApp) {
    let (mut d, reg) = counter(app, "input-1").await;
    let ask = form(
        &reg,
        &[
            ("InputKind", "email"),
            ("Prompt", "Email for your receipt?"),
            ("PosReference", "email-1"),
        ],
    );
    let (status, started) = app.post_form("/pos/register/input", &ask).await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["transactionStatus"], "PENDING");
    assert_eq!(started["data"]["Function"], "Terminal.Input");
    assert_eq!(started["data"]["InputKind"], "email");
    let id = id_of(&started);
    let o = offer(&mut d).await;
    assert_eq!(
        (o.transaction_id, o.function()),
        (id, Function::TerminalInput)
    );
    let input = o.request.input.clone().unwrap();
    assert_eq!(
        (input.kind, input.prompt.as_str(), input.timeout_secs),
        (InputKind::Email, "Email for your receipt?", 60)
    );
    accept(&mut d, id).await;

    // The same reference is the same input: nothing new reaches the device.
    let (status, replay) = app.post_form("/pos/register/input", &ask).await;
    assert_eq!((status, id_of(&replay)), (200, id), "{replay}");
    // A different request under it is a conflict.
    let mut other = ask.clone();
    other[3] = ("InputKind", "phone");
    let (status, _) = app.post_form("/pos/register/input", &other).await;
    assert_eq!(status, 409);

    // An answer the rules refuse is not stored: the device is told, the POS still waits.
    d.send(&result(
        id,
        ResultCode::Ok,
        "Answered",
        &[("InputValue", "not-an-email")],
    ))
    .await;
    match d.recv().await {
        CloudMessage::Error { message } => assert!(message.contains("email"), "{message}"),
        other => panic!("expected the refusal, got {other:?}"),
    }
    let (_, pending) = app
        .get_json(started["data"]["PollingUrl"].as_str().unwrap())
        .await;
    assert_eq!(pending["transactionStatus"], "PENDING", "{pending}");

    report(
        &mut d,
        result(
            id,
            ResultCode::Ok,
            "Answered",
            &[("InputValue", "jo@example.com")],
        ),
    )
    .await;
    let done = completed(app, &started).await;
    assert_eq!(done["data"]["Result"], "OK", "{done}");
    assert_eq!(done["data"]["InputValue"], "jo@example.com");
    assert!(
        done["data"].get("TransactionResult").is_none(),
        "an input moves no money: {done}"
    );
    // On the timeline like any job.
    let (_, events) = app
        .get_json(&format!(
            "{}/pos/transaction/{id}/events?merchantAccessToken={}",
            app.url(""),
            started["merchantAccessToken"].as_str().unwrap()
        ))
        .await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(
        kinds.contains(&"result_refused") && kinds.contains(&"completed"),
        "{events}"
    );

    // Each kind carries what it needs; a bad request is a 400 naming the field.
    for (extra, why) in [
        (
            vec![
                ("InputKind", "selection"),
                ("Prompt", "Size?"),
                ("Options", r#"["S"]"#),
            ],
            "Options",
        ),
        (vec![("InputKind", "mood"), ("Prompt", "How?")], "InputKind"),
        (vec![("InputKind", "text")], "Prompt"),
        (
            vec![
                ("InputKind", "number"),
                ("Prompt", "Bags?"),
                ("Min", "5"),
                ("Max", "1"),
            ],
            "Min",
        ),
        (
            vec![
                ("InputKind", "email"),
                ("Prompt", "E?"),
                ("TimeoutSeconds", "9999"),
            ],
            "TimeoutSeconds",
        ),
        (
            vec![("InputKind", "email"), ("Prompt", "E?"), ("Min", "1")],
            "Min",
        ),
    ] {
        let (status, e) = app
            .post_form("/pos/register/input", &form(&reg, &extra))
            .await;
        assert_eq!(status, 400, "{extra:?}: {e}");
        assert!(e["error"].as_str().unwrap().contains(why), "{extra:?}: {e}");
    }
    d.expect_silence(Duration::from_millis(200)).await;
}

async fn a_selection_and_a_signature_come_back_as_the_device_answered(app: &TestApp) {
    let (mut d, reg) = counter(app, "input-2").await;
    let (status, started) = app
        .post_form(
            "/pos/register/input",
            &form(
                &reg,
                &[
                    ("InputKind", "selection"),
                    ("Prompt", "Bag?"),
                    ("Options", r#"["Paper","Cloth","None"]"#),
                ],
            ),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let id = id_of(&started);
    let o = offer(&mut d).await;
    assert_eq!(o.request.input.unwrap().options, ["Paper", "Cloth", "None"]);
    accept(&mut d, id).await;
    // The position must name the option.
    d.send(&result(
        id,
        ResultCode::Ok,
        "Answered",
        &[("InputValue", "Cloth"), ("InputIndex", "0")],
    ))
    .await;
    assert!(matches!(d.recv().await, CloudMessage::Error { .. }));
    report(
        &mut d,
        result(
            id,
            ResultCode::Ok,
            "Answered",
            &[("InputValue", "Cloth"), ("InputIndex", "1")],
        ),
    )
    .await;
    let done = completed(app, &started).await;
    assert_eq!(
        (
            done["data"]["InputValue"].as_str(),
            done["data"]["InputIndex"].as_str()
        ),
        (Some("Cloth"), Some("1"))
    );

    let (_, started) = app
        .post_form(
            "/pos/register/input",
            &form(&reg, &[("InputKind", "signature"), ("Prompt", "Sign here")]),
        )
        .await;
    let id = id_of(&started);
    let _ = offer(&mut d).await;
    accept(&mut d, id).await;
    let path = "M10 80 C 40 10, 65 10, 95 80 S 150 150, 180 80";
    // SVG path data only: no markup smuggled in.
    d.send(&result(
        id,
        ResultCode::Ok,
        "Signed",
        &[("InputValue", "M1 1 L2 2\"/><script>")],
    ))
    .await;
    assert!(matches!(d.recv().await, CloudMessage::Error { .. }));
    report(
        &mut d,
        result(
            id,
            ResultCode::Ok,
            "Signed",
            &[("InputValue", path), ("SignatureViewBox", "0 0 400 150")],
        ),
    )
    .await;
    let done = completed(app, &started).await;
    assert_eq!(done["data"]["InputValue"], path);
    assert_eq!(done["data"]["SignatureViewBox"], "0 0 400 150");
}

async fn one_job_at_a_time_cancels_from_the_pos_and_the_customer(app: &TestApp) {
    let (mut d, reg) = counter(app, "input-3").await;
    let (_, started) = app
        .post_form(
            "/pos/register/input",
            &form(
                &reg,
                &[("InputKind", "confirmation"), ("Prompt", "Join our club?")],
            ),
        )
        .await;
    let id = id_of(&started);
    let _ = offer(&mut d).await;
    accept(&mut d, id).await;
    // A payment and an input never collide: the second is a clear busy.
    let (status, busy) = app
        .post_form("/pos/transaction", &purchase(&reg, "500"))
        .await;
    assert_eq!(status, 429, "{busy}");
    let (status, busy) = app
        .post_form(
            "/pos/register/qr",
            &form(&reg, &[("QrData", "https://example.com")]),
        )
        .await;
    assert_eq!(status, 429, "{busy}");
    // The POS cancels: the device is asked, and says so.
    let (status, _) = app
        .post_form(
            &format!("/pos/transaction/{id}/cancel"),
            &register_form(&reg),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        matches!(d.recv().await, CloudMessage::Cancel { transaction_id } if transaction_id == id)
    );
    report(
        &mut d,
        result(
            id,
            ResultCode::Cancelled,
            "Cancelled by the POS",
            &[("CancelReason", "pos")],
        ),
    )
    .await;
    let done = completed(app, &started).await;
    assert_eq!(
        (
            done["data"]["Result"].as_str(),
            done["data"]["CancelReason"].as_str()
        ),
        (Some("CANCELLED"), Some("pos"))
    );

    // Cancelled before the device accepted: the cloud ends it, with the same reason.
    let (_, started) = app
        .post_form(
            "/pos/register/input",
            &form(&reg, &[("InputKind", "phone"), ("Prompt", "Phone?")]),
        )
        .await;
    let id = id_of(&started);
    let _ = offer(&mut d).await;
    app.post_form(
        &format!("/pos/transaction/{id}/cancel"),
        &register_form(&reg),
    )
    .await;
    assert!(
        matches!(d.recv().await, CloudMessage::Abort { transaction_id, .. } if transaction_id == id)
    );
    let done = completed(app, &started).await;
    assert_eq!(
        (
            done["data"]["Result"].as_str(),
            done["data"]["CancelReason"].as_str()
        ),
        (Some("CANCELLED"), Some("pos")),
        "{done}"
    );

    // The customer's Cancel key; then the device is free again.
    let (_, started) = app
        .post_form(
            "/pos/register/input",
            &form(
                &reg,
                &[("InputKind", "number"), ("Prompt", "Bags?"), ("Max", "5")],
            ),
        )
        .await;
    let id = id_of(&started);
    assert_eq!(
        offer(&mut d).await.request.input.unwrap().rules.max,
        Some(5)
    );
    accept(&mut d, id).await;
    report(
        &mut d,
        result(
            id,
            ResultCode::Cancelled,
            "Cancelled",
            &[("CancelReason", "customer")],
        ),
    )
    .await;
    assert_eq!(
        completed(app, &started).await["data"]["CancelReason"],
        "customer"
    );
    let (status, _) = app
        .post_form("/pos/transaction", &purchase(&reg, "500"))
        .await;
    assert_eq!(status, 200, "free again");
}

async fn printing_and_qr_codes_report_their_outcome(app: &TestApp) {
    let (mut d, reg) = counter(app, "print-1").await;
    let slip = r#"[{"kind":"text","text":"VOUCHER","bold":true,"align":"centre","large":true},
                  {"kind":"qr","data":"https://example.com/v/1"},
                  {"kind":"barcode","symbology":"ean13","data":"4006381333931"},
                  {"kind":"feed","lines":2},{"kind":"cut"}]"#;
    let (status, started) = app
        .post_form("/pos/register/print", &form(&reg, &[("Lines", slip)]))
        .await;
    assert_eq!(status, 200, "{started}");
    let id = id_of(&started);
    let o = offer(&mut d).await;
    let lines = o.request.print.unwrap().lines;
    assert_eq!(lines.len(), 5);
    assert!(matches!(
        &lines[0],
        PrintLine::Text {
            bold: true,
            large: true,
            ..
        }
    ));
    accept(&mut d, id).await;
    // Out of paper: a clear outcome, not a hang; a contradictory one is refused.
    d.send(&result(
        id,
        ResultCode::Ok,
        "Printed",
        &[("PrinterStatus", "NO_PAPER")],
    ))
    .await;
    assert!(matches!(d.recv().await, CloudMessage::Error { .. }));
    report(
        &mut d,
        result(
            id,
            ResultCode::Failed,
            "Printer out of paper",
            &[("PrinterStatus", "NO_PAPER")],
        ),
    )
    .await;
    let done = completed(app, &started).await;
    assert_eq!(
        (
            done["data"]["Result"].as_str(),
            done["data"]["PrinterStatus"].as_str(),
            done["data"]["ResultText"].as_str()
        ),
        (
            Some("FAILED"),
            Some("NO_PAPER"),
            Some("Printer out of paper")
        )
    );

    for (lines, why) in [
        ("[]", "Lines"),
        (
            r#"[{"kind":"barcode","symbology":"ean13","data":"4006381333932"}]"#,
            "check digit",
        ),
        (r#"[{"kind":"hologram"}]"#, "Lines[0]"),
    ] {
        let (status, e) = app
            .post_form("/pos/register/print", &form(&reg, &[("Lines", lines)]))
            .await;
        assert_eq!(status, 400, "{lines}: {e}");
        assert!(e["error"].as_str().unwrap().contains(why), "{e}");
    }

    let (status, started) = app
        .post_form(
            "/pos/register/qr",
            &form(
                &reg,
                &[
                    ("QrData", "https://example.com/join"),
                    ("Caption", "Join us"),
                    ("TimeoutSeconds", "30"),
                ],
            ),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let id = id_of(&started);
    let qr = offer(&mut d).await.request.qr.unwrap();
    assert_eq!(
        (qr.data.as_str(), qr.caption.as_str(), qr.timeout_secs),
        ("https://example.com/join", "Join us", 30)
    );
    accept(&mut d, id).await;
    report(
        &mut d,
        result(
            id,
            ResultCode::Ok,
            "Dismissed",
            &[("QrOutcome", "dismissed")],
        ),
    )
    .await;
    assert_eq!(
        completed(app, &started).await["data"]["QrOutcome"],
        "dismissed"
    );
    let (status, _) = app
        .post_form("/pos/register/qr", &form(&reg, &[("Caption", "x")]))
        .await;
    assert_eq!(status, 400);
}

async fn a_device_is_sent_nothing_it_did_not_declare(app: &TestApp) {
    let (mut d, reg) = device_with(app, "plain-1", &[capability::INPUT]).await;
    for (path, extra) in [
        (
            "/pos/register/input",
            vec![("InputKind", "signature"), ("Prompt", "Sign")],
        ),
        (
            "/pos/register/print",
            vec![("Lines", r#"[{"kind":"cut"}]"#)],
        ),
        ("/pos/register/qr", vec![("QrData", "x")]),
        (
            "/pos/register/display",
            vec![("Lines", "[]"), ("AmountTotal", "1")],
        ),
    ] {
        let (status, e) = app.post_form(path, &form(&reg, &extra)).await;
        assert_eq!(status, 409, "{path}: {e}");
        assert!(e["error"].as_str().unwrap().contains("capability"), "{e}");
    }
    d.expect_silence(Duration::from_millis(200)).await;
    // What it declared, it gets.
    let (status, _) = app
        .post_form(
            "/pos/register/input",
            &form(&reg, &[("InputKind", "text"), ("Prompt", "Name?")]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(offer(&mut d).await.function(), Function::TerminalInput);
}

async fn a_payment_shows_its_basket_on_a_device_with_a_screen(app: &TestApp) {
    let sale = r#"{"version":"1.0.0","saleData":{"totalAmount":"700","totalTax":"64","lineItems":[{"productName":"Tea","quantity":"1","unitPrice":"700","totalPrice":"700"}]}}"#;
    let (mut screen, with) = device_with(app, "basket-1", &[capability::DISPLAY]).await;
    let mut f = purchase(&with, "700");
    f.push(("SaleData", sale));
    let (status, started) = app.post_form("/pos/transaction", &f).await;
    assert_eq!(status, 200, "{started}");
    let cart = offer(&mut screen).await.request.cart.unwrap();
    assert_eq!(
        (cart.total, cart.lines[0].description.as_str()),
        (700, "Tea")
    );
    // A display during the payment reaches the device and does not touch the payment.
    let (status, shown) = app
        .post_form(
            "/pos/register/display",
            &form(&with, &[("Lines", "[]"), ("AmountTotal", "1")]),
        )
        .await;
    assert_eq!(
        (status, shown["delivered"].as_bool()),
        (200, Some(true)),
        "{shown}"
    );
    assert!(matches!(screen.recv().await, CloudMessage::Display(_)));
    let (_, still) = app
        .get_json(started["data"]["PollingUrl"].as_str().unwrap())
        .await;
    assert_eq!(still["transactionStatus"], "PENDING");
    // A device without a screen is not sent the basket.
    let secret = app.enroll("basket-2").await;
    let mut plain = RawDevice::connect(app, "basket-2", &secret).await;
    let code = plain.code().await;
    let other = register("basket-2");
    app.pos()
        .pair(&code, &other, &pos::PairingDetails::new("Till"))
        .await
        .unwrap();
    let _ = plain.recv().await;
    let mut f = purchase(&other, "700");
    f.push(("SaleData", sale));
    app.post_form("/pos/transaction", &f).await;
    assert_eq!(offer(&mut plain).await.request.cart, None);
}

/// Runs each scenario on SQLite, and on PostgreSQL when it is configured.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let app = crate::harness::spawn_app().await;
                    super::$name(&app).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[cfg_attr(
                    not(eftcloud_test_postgres),
                    ignore = "needs PostgreSQL: set EFTCLOUD_TEST_DATABASE_URL (.ci/run does)"
                )]
                #[tokio::test]
                async fn $name() {
                    let Some(db) = super::FreshDatabase::create(stringify!($name)).await else {
                        return;
                    };
                    let app = crate::harness::spawn_app_with(crate::harness::Opts {
                        database_url: Some(db.url.clone()),
                        ..crate::harness::Opts::default()
                    })
                    .await;
                    super::$name(&app).await;
                }
            )*
        }
    };
}

on_both_stores!(
    the_cart_is_shown_at_once_idempotently_and_again_after_a_reconnect,
    an_answer_is_checked_polled_and_replayed_by_reference,
    a_selection_and_a_signature_come_back_as_the_device_answered,
    one_job_at_a_time_cancels_from_the_pos_and_the_customer,
    printing_and_qr_codes_report_their_outcome,
    a_device_is_sent_nothing_it_did_not_declare,
    a_payment_shows_its_basket_on_a_device_with_a_screen,
);

#[cfg_attr(
    not(all(eftcloud_test_postgres, eftcloud_test_nats)),
    ignore = "needs PostgreSQL and NATS: set EFTCLOUD_TEST_DATABASE_URL and EFTCLOUD_TEST_NATS_URL (.ci/run does)"
)]
#[tokio::test]
async fn actions_asked_on_one_node_reach_a_device_on_another() {
    let Some(env) = ClusterEnv::new("actions across nodes").await else {
        return;
    };
    let a = spawn_app_with(env.node("node-a")).await;
    let b = spawn_app_with(env.node("node-b")).await;
    let (mut d, reg) = counter(&a, "far-1").await;
    // The cart, through B.
    let (status, shown) = b
        .post_form(
            "/pos/register/display",
            &form(&reg, &[("Lines", "[]"), ("AmountTotal", "42")]),
        )
        .await;
    assert_eq!(
        (status, shown["delivered"].as_bool()),
        (200, Some(true)),
        "{shown}"
    );
    assert!(
        matches!(d.recv().await, CloudMessage::Display(x) if x.cart.as_ref().map(|c| c.total) == Some(42))
    );
    // An input, asked on B, answered on A, read on B.
    let (status, started) = b
        .post_form(
            "/pos/register/input",
            &form(
                &reg,
                &[("InputKind", "confirmation"), ("Prompt", "Receipt?")],
            ),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let id = id_of(&started);
    let _ = offer(&mut d).await;
    accept(&mut d, id).await;
    report(
        &mut d,
        result(id, ResultCode::Ok, "Answered", &[("InputValue", "no")]),
    )
    .await;
    let (status, done) = b
        .get_json(&format!(
            "{}&wait=10",
            started["data"]["PollingUrl"]
                .as_str()
                .unwrap()
                .replace(&a.url(""), &b.url(""))
        ))
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["data"]["InputValue"], "no", "{done}");
}

#[tokio::test]
async fn the_operator_sees_what_each_device_declared() {
    let app = spawn_app_with(Opts {
        admin_token: Some("admin-token-for-tests".into()),
        ..Opts::default()
    })
    .await;
    let secret = app.enroll("declared-1").await;
    let mut h = hello("declared-1", &secret);
    if let DeviceMessage::Hello(h) = &mut h {
        h.capabilities = vec![capability::PRINTER.into(), capability::DISPLAY.into()];
        h.hardware = Some(protocol::device::Hardware {
            screen: Some(protocol::device::Screen {
                width: 480,
                height: 320,
            }),
            printer_columns: Some(32),
        });
    }
    let _d = RawDevice::connect_with(&app, h).await;
    let devices: Value = app
        .http
        .get(app.url("/admin/devices"))
        .bearer_auth("admin-token-for-tests")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let d = devices
        .as_array()
        .or_else(|| devices["devices"].as_array())
        .unwrap()
        .iter()
        .find(|d| d["deviceId"] == "declared-1")
        .unwrap()
        .clone();
    assert_eq!(
        d["capabilities"],
        serde_json::json!(["display", "printer"]),
        "{d}"
    );
    assert_eq!(d["hardware"]["screen"]["width"], 480, "{d}");
    assert_eq!(d["hardware"]["printer_columns"], 32, "{d}");
}

/// The reference agent (`eftcloud terminal` with its simulator) does every action, with the
/// simulator's documented answers (docs/device-protocol.md §11).
#[tokio::test]
async fn the_reference_agent_does_every_action() {
    use terminal::TerminalEvent;
    let app = spawn_app().await;
    let (mut t, reg) = paired_terminal(&app, "agent-actions").await;
    let post = |path: &'static str, extra: Vec<(&'static str, &'static str)>| {
        let reg = reg.clone();
        let app = &app;
        async move {
            let mut f = form(&reg, &extra);
            f.push(("wait", "20"));
            let (status, body) = app.post_form(path, &f).await;
            assert_eq!(status, 200, "{path}: {body}");
            body
        }
    };

    // The cart reaches the agent's screen.
    let lines = r#"[{"description":"Flat white","quantity":"2","amount":900}]"#;
    let shown = post(
        "/pos/register/display",
        vec![("Lines", lines), ("AmountTotal", "900")],
    )
    .await;
    assert_eq!(shown["delivered"], true, "{shown}");
    let cart = t
        .wait_for(|e| match e {
            TerminalEvent::Display { cart: Some(c), .. } => Some(c.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        (cart.total, cart.lines[0].description.as_str()),
        (900, "Flat white")
    );

    let done = post(
        "/pos/register/input",
        vec![("InputKind", "email"), ("Prompt", "Email?")],
    )
    .await;
    assert_eq!(
        (
            done["data"]["Result"].as_str(),
            done["data"]["InputValue"].as_str()
        ),
        (Some("OK"), Some("customer@example.com")),
        "{done}"
    );
    let done = post(
        "/pos/register/input",
        vec![
            ("InputKind", "selection"),
            ("Prompt", "Bag?"),
            ("Options", r#"["Paper","Cloth"]"#),
        ],
    )
    .await;
    assert_eq!(
        (
            done["data"]["InputValue"].as_str(),
            done["data"]["InputIndex"].as_str()
        ),
        (Some("Paper"), Some("0")),
        "{done}"
    );
    let done = post(
        "/pos/register/input",
        vec![("InputKind", "signature"), ("Prompt", "Sign")],
    )
    .await;
    assert!(
        done["data"]["InputValue"]
            .as_str()
            .unwrap()
            .starts_with('M'),
        "{done}"
    );
    assert!(
        done["data"]["SignatureViewBox"].as_str().is_some(),
        "{done}"
    );
    let done = post(
        "/pos/register/input",
        vec![
            ("InputKind", "number"),
            ("Prompt", "Bags?"),
            ("Min", "3"),
            ("Max", "9"),
        ],
    )
    .await;
    assert_eq!(done["data"]["InputValue"], "3", "{done}");
    let done = post(
        "/pos/register/input",
        vec![("InputKind", "text"), ("Prompt", "Note #cancel")],
    )
    .await;
    assert_eq!(
        (
            done["data"]["Result"].as_str(),
            done["data"]["CancelReason"].as_str()
        ),
        (Some("CANCELLED"), Some("customer")),
        "{done}"
    );

    let done = post("/pos/register/print", vec![("Lines", r#"[{"kind":"text","text":"Hello"},{"kind":"qr","data":"https://example.com"},{"kind":"cut"}]"#)]).await;
    assert_eq!(
        (
            done["data"]["Result"].as_str(),
            done["data"]["PrinterStatus"].as_str()
        ),
        (Some("OK"), Some("OK")),
        "{done}"
    );
    let slip = t
        .wait_for(|e| match e {
            TerminalEvent::Printed { .. } => Some(format!("{e:?}")),
            _ => None,
        })
        .await;
    assert!(slip.contains("Hello"), "{slip}");
    let done = post(
        "/pos/register/print",
        vec![("Lines", r##"[{"kind":"text","text":"#nopaper"}]"##)],
    )
    .await;
    assert_eq!(
        (
            done["data"]["Result"].as_str(),
            done["data"]["PrinterStatus"].as_str()
        ),
        (Some("FAILED"), Some("NO_PAPER")),
        "{done}"
    );

    let done = post(
        "/pos/register/qr",
        vec![("QrData", "https://example.com/join"), ("Caption", "Join")],
    )
    .await;
    assert_eq!(
        (
            done["data"]["Result"].as_str(),
            done["data"]["QrOutcome"].as_str()
        ),
        (Some("OK"), Some("dismissed")),
        "{done}"
    );

    // A payment reports its receipts as data, beside the fixed-width text.
    let (_, started) = app
        .post_form("/pos/transaction", &purchase(&reg, "1250"))
        .await;
    let paid = poll_until_completed(&app, started["data"]["PollingUrl"].as_str().unwrap()).await;
    let customer = &paid["receipts"]["customer"];
    assert!(
        customer["fields"].as_array().is_some_and(|f| !f.is_empty()),
        "{paid}"
    );
    assert!(paid["receipts"]["merchant"].is_object(), "{paid}");
    assert!(paid["data"]["Receipt"].as_str().is_some());
}

/// A power cut while the customer is answering: the journal knows the input started and has no
/// answer, so the restarted agent reports it ended (never asks again), and the POS is told.
#[tokio::test]
async fn an_input_cut_off_by_a_power_failure_is_reported_once_on_restart() {
    use terminal::TerminalEvent;
    let app = spawn_app().await;
    let (mut t, reg) = paired_terminal(&app, "input-power").await;
    // `#slow`: the simulated customer takes two seconds, time enough to pull the plug.
    let (status, started) = app
        .post_form(
            "/pos/register/input",
            &form(&reg, &[("InputKind", "text"), ("Prompt", "Note? #slow")]),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let id = id_of(&started);
    t.wait_for(|e| {
        matches!(e, TerminalEvent::Prompt { transaction_id, .. } if *transaction_id == id)
            .then_some(())
    })
    .await;
    let (journal, device, secret) = (t.journal.clone(), t.id.clone(), t.secret.clone());
    t.kill().await;
    let mut t = start_terminal(&app, &device, &secret, &journal, fast_simulator()).await;
    let done = poll_until_completed(&app, started["data"]["PollingUrl"].as_str().unwrap()).await;
    t.wait_for(|e| matches!(e, TerminalEvent::Acknowledged { .. }).then_some(()))
        .await;
    assert_eq!(done["data"]["Result"], "CANCELLED", "{done}");
    assert!(done["data"].get("InputValue").is_none(), "{done}");
    // The journal ended it once, and the restarted agent never offered it to the customer.
    let journal = terminal::Journal::open(&journal).unwrap();
    let entry = journal.get(id).unwrap();
    assert_eq!(
        entry.result().map(|r| r.result),
        Some(ResultCode::Cancelled)
    );
}

/// A merchant's key reaches its own registers' screens and no other merchant's.
#[tokio::test]
async fn another_merchants_key_cannot_show_a_cart_or_ask_the_customer() {
    use cloud::domain::accounts::{KeyOwner, Scope, Scopes};
    use cloud::engine::accounts::{Actor, NewApiKey};
    let app = spawn_app().await;
    let (mut d, reg) = counter(&app, "keyed-1").await;
    let own = app
        .engine
        .device(&protocol::DeviceId::parse("keyed-1").unwrap())
        .await
        .unwrap()
        .unwrap()
        .merchant_id;
    let other = app
        .engine
        .create_merchant("Another Shop", &Actor::cli())
        .await
        .unwrap();
    let key = |owner| {
        let engine = app.engine.clone();
        async move {
            engine
                .create_api_key(
                    NewApiKey {
                        owner,
                        scopes: Scopes::of([Scope::PosTransact, Scope::PosRead]),
                        label: String::new(),
                        expires_at: None,
                    },
                    &Actor::cli(),
                )
                .await
                .unwrap()
                .key
        }
    };
    let (mine, foreign) = (
        key(KeyOwner::Merchant(own)).await,
        key(KeyOwner::Merchant(other.id)).await,
    );
    let send = |key: String, path: &'static str, extra: Vec<(&'static str, &'static str)>| {
        let (http, url, f) = (app.http.clone(), app.url(path), form(&reg, &extra));
        let f: Vec<(String, String)> = f
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .form(&f)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let cart = vec![("Lines", "[]"), ("AmountTotal", "5")];
    let ask = vec![("InputKind", "confirmation"), ("Prompt", "Receipt?")];
    let (status, e) = send(foreign.clone(), "/pos/register/display", cart.clone()).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"], protocol::pos_api::NOT_PAIRED, "{e}");
    let (status, e) = send(foreign, "/pos/register/input", ask.clone()).await;
    assert_eq!(status, 400, "{e}");
    d.expect_silence(Duration::from_millis(200)).await;
    let (status, shown) = send(mine.clone(), "/pos/register/display", cart).await;
    assert_eq!(
        (status, shown["delivered"].as_bool()),
        (200, Some(true)),
        "{shown}"
    );
    assert!(matches!(d.recv().await, CloudMessage::Display(_)));
    let (status, _) = send(mine, "/pos/register/input", ask).await;
    assert_eq!(status, 200);
    assert_eq!(offer(&mut d).await.function(), Function::TerminalInput);
}
