//! A payment's life by reference through real sockets: referenced refunds from another device
//! of the merchant, never past the amount paid (also when twenty race through two nodes),
//! voids, tip adjustments, pre-authorisation top-ups, capture and release, currencies,
//! capabilities, and power failures during a refund and a void.

use crate::harness::*;
use cloud::domain::accounts::{KeyOwner, Scope, Scopes};
use cloud::engine::accounts::{Actor, NewApiKey};
use pos::PairingDetails;
use protocol::device::CloudMessage;
use protocol::RegisterKey;
use serde_json::Value;
use std::time::Duration;
use terminal::{Exit, TerminalEvent};

/// A terminal of the test merchant, paired with a register of its own.
async fn till(app: &TestApp, id: &str) -> (Terminal, RegisterKey) {
    let secret = app.enroll(id).await;
    let journal = app.dir.path().join(format!("{id}.journal"));
    let mut t = start_terminal(app, id, &secret, &journal, fast_simulator()).await;
    let code = t.next_code().await;
    let reg = register(id);
    app.pos()
        .pair(&code, &reg, &PairingDetails::new(id))
        .await
        .unwrap();
    t.wait_for(|e| matches!(e, TerminalEvent::Paired { .. }).then_some(()))
        .await;
    (t, reg)
}

/// POSTs and waits up to 10 s for the outcome (`wait=10`).
async fn post(app: &TestApp, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let mut f = form.to_vec();
    f.push(("wait", "10"));
    app.post_form(path, &f).await
}

/// A completed, approved purchase of `amount` on `reg`; its `transactionId`.
async fn paid(app: &TestApp, reg: &RegisterKey, amount: &str, extra: &[(&str, &str)]) -> String {
    paid_envelope(app, reg, amount, extra).await["transactionId"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Like [`paid`], the whole completed envelope.
async fn paid_envelope(
    app: &TestApp,
    reg: &RegisterKey,
    amount: &str,
    extra: &[(&str, &str)],
) -> Value {
    let mut form = purchase(reg, amount);
    form.extend_from_slice(extra);
    let (status, started) = app.post_form("/pos/transaction", &form).await;
    assert_eq!(status, 200, "{started}");
    let done = poll_until_completed(app, started["data"]["PollingUrl"].as_str().unwrap()).await;
    assert_eq!(done["data"]["TransactionResult"], "OK-ACCEPTED", "{done}");
    done
}

async fn payment(app: &TestApp, id: &str, reg: &RegisterKey) -> Value {
    let q = format!(
        "/pos/transaction/{id}/payment?POSRegisterID={}&POSBusinessName=Toys%20Shop&POSVendorName=Till2Go",
        reg.register_id
    );
    let (status, body) = app.get_json(&app.url(&q)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Completes a follow-up's envelope: the answer of a `wait`, else polled.
async fn outcome(app: &TestApp, answer: &Value) -> Value {
    if answer["transactionStatus"] == "COMPLETED" {
        return answer.clone();
    }
    poll_until_completed(app, answer["data"]["PollingUrl"].as_str().unwrap()).await
}

#[tokio::test]
async fn a_purchase_is_refunded_in_parts_from_another_device_never_past_what_was_paid() {
    let app = spawn_app().await;
    let (_a, front) = till(&app, "pay-front").await;
    let (_b, back) = till(&app, "pay-back").await;
    let original = paid_envelope(&app, &front, "1000", &[("PosReference", "sale-1")]).await;
    let sale = original["transactionId"].as_str().unwrap().to_string();

    // 6.00 back on the other device, by transactionId.
    let path = format!("/pos/transaction/{sale}/refund");
    let mut form = register_form(&back);
    form.push(("AmountTotal", "600"));
    let (status, refund) = post(&app, &path, &form).await;
    assert_eq!(status, 200, "{refund}");
    let refund = outcome(&app, &refund).await;
    assert_eq!(
        refund["data"]["TransactionResult"], "OK-ACCEPTED",
        "{refund}"
    );
    assert_eq!(refund["data"]["Function"], "Card.Refund");
    assert_eq!(refund["data"]["OriginalTransactionId"], sale.as_str());
    assert_eq!(refund["deviceId"], "pay-back");
    // The original's card, not a new one.
    assert_eq!(refund["data"]["CardPan"], original["data"]["CardPan"]);

    // 5.00 more would pass the 10.00 paid: refused before the device hears of it.
    let mut too_much = register_form(&back);
    too_much.push(("AmountTotal", "500"));
    let (status, refused) = post(&app, &path, &too_much).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["amountRefundable"], "400");
    assert!(
        refused["error"].as_str().unwrap().contains("refundable"),
        "{refused}"
    );

    // The rest through SmartConnect's Card.Refund, by the POS's own reference.
    let mut smart = register_form(&back);
    smart.extend([
        ("TransactionMode", "ASYNC"),
        ("TransactionType", "Card.Refund"),
        ("AmountTotal", "400"),
        ("OriginalPosReference", "sale-1"),
    ]);
    let (status, rest) = app.post_form("/pos/transaction", &smart).await;
    assert_eq!(status, 200, "{rest}");
    let rest = outcome(&app, &rest).await;
    assert_eq!(rest["data"]["TransactionResult"], "OK-ACCEPTED", "{rest}");

    let p = payment(&app, &sale, &back).await;
    assert_eq!(p["amountTotal"], "1000", "{p}");
    assert_eq!(p["amountRefunded"], "1000", "{p}");
    assert_eq!(p["amountRefundable"], "0", "{p}");
    assert_eq!(p["followUps"].as_array().unwrap().len(), 2, "{p}");
    assert!(p["followUps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["state"] == "approved" && f["function"] == "Card.Refund"));

    // A declined refund (..51) holds nothing: the next one still fits.
    let sale2 = paid(&app, &front, "2000", &[]).await;
    let path2 = format!("/pos/transaction/{sale2}/refund");
    let mut declined = register_form(&front);
    declined.push(("AmountTotal", "1951"));
    let (_, d) = post(&app, &path2, &declined).await;
    assert_eq!(
        outcome(&app, &d).await["data"]["TransactionResult"],
        "OK-DECLINED"
    );
    let mut all = register_form(&front);
    all.push(("AmountTotal", "2000"));
    let (_, ok) = post(&app, &path2, &all).await;
    assert_eq!(
        outcome(&app, &ok).await["data"]["TransactionResult"],
        "OK-ACCEPTED"
    );

    // An unreferenced Card.Refund works as it always did.
    let mut plain = register_form(&front);
    plain.extend([
        ("TransactionMode", "ASYNC"),
        ("TransactionType", "Card.Refund"),
        ("AmountTotal", "99999"),
    ]);
    let (status, plain) = app.post_form("/pos/transaction", &plain).await;
    assert_eq!(status, 200, "{plain}");
    assert!(plain["data"].get("OriginalTransactionId").is_none());
    assert_eq!(
        outcome(&app, &plain).await["data"]["TransactionResult"],
        "OK-ACCEPTED"
    );
}

#[tokio::test]
async fn follow_ups_are_refused_where_they_do_not_belong() {
    let app = spawn_app().await;
    let (_a, front) = till(&app, "pay-rules").await;
    let sale = paid(&app, &front, "1000", &[]).await;
    let mut form = register_form(&front);
    form.push(("AmountTotal", "1"));

    // Unknown or malformed ids are not found; bad amounts are 400.
    let (status, _) = post(&app, "/pos/transaction/not-an-id/refund", &form).await;
    assert_eq!(status, 404);
    let unknown = format!("/pos/transaction/{}/refund", uuid::Uuid::new_v4());
    assert_eq!(post(&app, &unknown, &form).await.0, 404);
    let mut zero = register_form(&front);
    zero.push(("AmountTotal", "0"));
    let (status, body) = post(&app, &format!("/pos/transaction/{sale}/refund"), &zero).await;
    assert_eq!(status, 400, "{body}");
    // Without a register, the original's token is the credential.
    let (status, _) = post(
        &app,
        &format!("/pos/transaction/{sale}/refund"),
        &[("AmountTotal", "1"), ("merchantAccessToken", "wrong")],
    )
    .await;
    assert_eq!(status, 401);
    // Follow-ups are not SmartConnect TransactionTypes.
    let mut smart = register_form(&front);
    smart.extend([
        ("TransactionType", "Card.Void"),
        ("TransactionMode", "ASYNC"),
    ]);
    let (status, body) = app.post_form("/pos/transaction", &smart).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("/void"), "{body}");
    // A currency other than the original's.
    let mut yen = register_form(&front);
    yen.extend([("AmountTotal", "1"), ("Currency", "JPY")]);
    let (status, body) = post(&app, &format!("/pos/transaction/{sale}/refund"), &yen).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("Currency"),
        "{body}"
    );
    // A refund of a refund, a void of a pre-authorisation, a top-up of a purchase.
    let (_, r) = post(&app, &format!("/pos/transaction/{sale}/refund"), &form).await;
    let refund_id = outcome(&app, &r).await["transactionId"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = post(&app, &format!("/pos/transaction/{refund_id}/refund"), &form).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = post(&app, &format!("/pos/transaction/{sale}/increment"), &form).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("pre-authorisation"));
}

#[tokio::test]
async fn a_void_reverses_once_and_only_before_settlement() {
    let app = spawn_app().await;
    let (_a, front) = till(&app, "pay-void").await;
    let sale = paid(&app, &front, "1000", &[]).await;
    let path = format!("/pos/transaction/{sale}/void");
    let (status, v) = post(&app, &path, &register_form(&front)).await;
    assert_eq!(status, 200, "{v}");
    let v = outcome(&app, &v).await;
    assert_eq!(v["data"]["TransactionResult"], "OK-ACCEPTED", "{v}");
    assert_eq!(v["data"]["Function"], "Card.Void");
    // Once.
    let (status, again) = post(&app, &path, &register_form(&front)).await;
    assert_eq!(status, 409, "{again}");
    assert!(
        again["error"].as_str().unwrap().contains("voided"),
        "{again}"
    );
    let mut refund = register_form(&front);
    refund.push(("AmountTotal", "1"));
    let (status, r) = post(&app, &format!("/pos/transaction/{sale}/refund"), &refund).await;
    assert_eq!(status, 409, "{r}");
    assert_eq!(r["amountRefundable"], "0");
    let p = payment(&app, &sale, &front).await;
    assert_eq!(p["voided"], true, "{p}");
    assert_eq!(p["amountRefundable"], "0");

    // After the device settles, a sale can only be refunded.
    let later = paid(&app, &front, "700", &[]).await;
    let mut cutover = register_form(&front);
    cutover.extend([
        ("TransactionMode", "ASYNC"),
        ("TransactionType", "Acquirer.Settlement.Cutover"),
    ]);
    let (_, c) = app.post_form("/pos/transaction", &cutover).await;
    assert_eq!(outcome(&app, &c).await["data"]["Result"], "OK");
    let (status, settled) = post(
        &app,
        &format!("/pos/transaction/{later}/void"),
        &register_form(&front),
    )
    .await;
    assert_eq!(status, 409, "{settled}");
    assert!(
        settled["error"].as_str().unwrap().contains("settled"),
        "{settled}"
    );
    assert_eq!(payment(&app, &later, &front).await["settled"], true);
}

#[tokio::test]
async fn a_tip_is_adjusted_within_the_merchant_maximum() {
    let app = spawn_app().await;
    let (_a, front) = till(&app, "pay-tip").await;
    let sale = paid(&app, &front, "1000", &[]).await;
    let path = format!("/pos/transaction/{sale}/adjust");
    // The default maximum is 30 % of the amount asked for.
    let mut over = register_form(&front);
    over.push(("AmountTip", "301"));
    let (status, body) = post(&app, &path, &over).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("30%"), "{body}");
    let mut bad = register_form(&front);
    bad.push(("AmountTip", "-5"));
    assert_eq!(post(&app, &path, &bad).await.0, 400);
    for tip in ["300", "150"] {
        let mut form = register_form(&front);
        form.push(("AmountTip", tip));
        let (status, a) = post(&app, &path, &form).await;
        assert_eq!(status, 200, "{a}");
        let a = outcome(&app, &a).await;
        assert_eq!(a["data"]["TransactionResult"], "OK-ACCEPTED", "{a}");
        assert_eq!(a["data"]["AmountTip"], tip);
    }
    let p = payment(&app, &sale, &front).await;
    assert_eq!(
        (p["amountTip"].as_str(), p["amountTotal"].as_str()),
        (Some("150"), Some("1150")),
        "{p}"
    );
    assert_eq!(p["amountRefundable"], "1150");
}

#[tokio::test]
async fn a_pre_authorisation_is_topped_up_then_captured_up_to_what_is_held() {
    let app = spawn_app().await;
    let (_a, front) = till(&app, "pay-hotel").await;
    let mut auth = register_form(&front);
    auth.extend([
        ("TransactionMode", "ASYNC"),
        ("TransactionType", "Card.Authorise"),
        ("AmountAuth", "10000"),
        ("TransactionReference", "room-12"),
    ]);
    let (_, a) = app.post_form("/pos/transaction", &auth).await;
    let a = outcome(&app, &a).await;
    assert_eq!(a["data"]["TransactionResult"], "OK-ACCEPTED", "{a}");
    let id = a["transactionId"].as_str().unwrap().to_string();
    let step = |route: &str| format!("/pos/transaction/{id}/{route}");

    for (amount, result) in [("5000", "OK-ACCEPTED"), ("2051", "OK-DECLINED")] {
        let mut f = register_form(&front);
        f.push(("AmountTotal", amount));
        let (status, t) = post(&app, &step("increment"), &f).await;
        assert_eq!(status, 200, "{t}");
        assert_eq!(outcome(&app, &t).await["data"]["TransactionResult"], result);
    }
    assert_eq!(
        payment(&app, &id, &front).await["amountAuthorised"],
        "15000"
    );
    // A retried top-up (same PosReference) after it completed is the same top-up, though what
    // the authorisation holds has changed since.
    let mut once = register_form(&front);
    once.extend([("AmountTotal", "1000"), ("PosReference", "topup-1")]);
    let (_, first) = post(&app, &step("increment"), &once).await;
    assert_eq!(
        outcome(&app, &first).await["data"]["TransactionResult"],
        "OK-ACCEPTED"
    );
    let (status, retry) = post(&app, &step("increment"), &once).await;
    assert_eq!(status, 200, "{retry}");
    assert_eq!(retry["transactionId"], first["transactionId"]);
    assert_eq!(
        payment(&app, &id, &front).await["amountAuthorised"],
        "16000"
    );
    let mut over = register_form(&front);
    over.push(("AmountFinal", "16001"));
    let (status, body) = post(&app, &step("capture"), &over).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("authorised"),
        "{body}"
    );
    // The completion through SmartConnect's Card.Finalise, by reference.
    let mut fin = register_form(&front);
    fin.extend([
        ("TransactionMode", "ASYNC"),
        ("TransactionType", "Card.Finalise"),
        ("AmountFinal", "14000"),
        ("TransactionReference", "room-12"),
        ("OriginalTransactionId", id.as_str()),
    ]);
    let (status, f) = app.post_form("/pos/transaction", &fin).await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(
        outcome(&app, &f).await["data"]["TransactionResult"],
        "OK-ACCEPTED"
    );
    let p = payment(&app, &id, &front).await;
    assert_eq!(p["amountCaptured"], "14000", "{p}");
    assert_eq!(p["amountAuthorised"], "16000", "{p}");
    let (status, body) = post(&app, &step("release"), &register_form(&front)).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("completed"),
        "{body}"
    );

    // Another one is released instead.
    let mut auth2 = auth.clone();
    auth2.retain(|(k, _)| *k != "TransactionReference");
    auth2.push(("TransactionReference", "car-7"));
    let (_, a2) = app.post_form("/pos/transaction", &auth2).await;
    let id2 = outcome(&app, &a2).await["transactionId"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, r) = post(
        &app,
        &format!("/pos/transaction/{id2}/release"),
        &register_form(&front),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        outcome(&app, &r).await["data"]["TransactionResult"],
        "OK-ACCEPTED"
    );
    assert_eq!(payment(&app, &id2, &front).await["amountReleased"], "10000");
}

#[tokio::test]
async fn a_device_that_does_not_declare_a_capability_is_never_sent_it() {
    let app = spawn_app().await;
    let (_t, front) = till(&app, "pay-modern").await;
    let sale = paid(&app, &front, "1000", &[]).await;
    // An old device of the same merchant (its hello declares nothing).
    let (mut old, old_reg) = RawDevice::paired(&app, "pay-old").await;
    let mut refund = register_form(&old_reg);
    refund.push(("AmountTotal", "100"));
    let (status, body) = post(&app, &format!("/pos/transaction/{sale}/refund"), &refund).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("refund.referenced"),
        "{body}"
    );
    // A currency other than AUD needs `currency`.
    let mut yen = purchase(&old_reg, "500");
    yen.push(("Currency", "JPY"));
    let (status, body) = app.post_form("/pos/transaction", &yen).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("currency"),
        "{body}"
    );
    old.expect_silence(Duration::from_millis(200)).await;
    // What it always did still reaches it.
    let (status, _) = app
        .post_form("/pos/transaction", &purchase(&old_reg, "500"))
        .await;
    assert_eq!(status, 200);
    assert!(matches!(old.recv().await, CloudMessage::Transaction(_)));
}

#[tokio::test]
async fn amounts_travel_in_the_currency_of_the_request() {
    let app = spawn_app().await;
    let (_t, front) = till(&app, "pay-yen").await;
    let env = paid_envelope(&app, &front, "1234", &[("Currency", "jpy")]).await;
    let sale = env["transactionId"].as_str().unwrap().to_string();
    assert_eq!(env["data"]["Currency"], "JPY", "{env}");
    let receipt = env["data"]["Receipt"].as_str().unwrap();
    assert!(receipt.contains("JPY      1234"), "{receipt}");
    // AUD stays implicit: SmartConnect clients see the keys they always saw.
    let aud = paid(&app, &front, "500", &[]).await;
    let p = payment(&app, &aud, &front).await;
    assert_eq!(p["currency"], "AUD");
    let mut bad = purchase(&front, "500");
    bad.push(("Currency", "ZZZ"));
    let (status, body) = app.post_form("/pos/transaction", &bad).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("ISO 4217"),
        "{body}"
    );
    assert_eq!(payment(&app, &sale, &front).await["currency"], "JPY");
}

#[tokio::test]
async fn another_merchants_key_cannot_refund_and_a_key_needs_pos_refund() {
    let app = spawn_app().await;
    let (_t, front) = till(&app, "pay-keys").await;
    let sale = paid(&app, &front, "1000", &[]).await;
    let own = app
        .engine
        .device(&protocol::DeviceId::parse("pay-keys").unwrap())
        .await
        .unwrap()
        .unwrap()
        .merchant_id;
    let other = app
        .engine
        .create_merchant("Another Shop", &Actor::cli())
        .await
        .unwrap();
    let key = |owner, scopes: &[Scope]| {
        let engine = app.engine.clone();
        let scopes = Scopes::of(scopes.iter().copied());
        async move {
            engine
                .create_api_key(
                    NewApiKey {
                        owner,
                        scopes,
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
    let foreign = key(
        KeyOwner::Merchant(other.id),
        &[Scope::PosTransact, Scope::PosRefund],
    )
    .await;
    let no_refund = key(KeyOwner::Merchant(own.clone()), &[Scope::PosTransact]).await;
    let refunder = key(
        KeyOwner::Merchant(own),
        &[Scope::PosTransact, Scope::PosRefund],
    )
    .await;
    let mut form = register_form(&front);
    form.push(("AmountTotal", "100"));
    let send = |key: String, path: String, form: Vec<(&'static str, String)>| {
        let http = app.http.clone();
        let url = app.url(&path);
        async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .form(&form)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let owned: Vec<(&'static str, String)> =
        form.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let path = format!("/pos/transaction/{sale}/refund");
    assert_eq!(
        send(foreign.clone(), path.clone(), owned.clone()).await.0,
        404
    );
    assert_eq!(
        send(no_refund.clone(), path.clone(), owned.clone()).await.0,
        403
    );
    let mut smart = owned.clone();
    smart.extend([
        ("TransactionType", "Card.Refund".to_string()),
        ("TransactionMode", "ASYNC".to_string()),
        ("OriginalTransactionId", sale.clone()),
    ]);
    assert_eq!(
        send(no_refund, "/pos/transaction".into(), smart.clone())
            .await
            .0,
        403
    );
    assert_eq!(send(foreign, "/pos/transaction".into(), smart).await.0, 404);
    let (status, ok) = send(refunder, path, owned).await;
    assert_eq!(status, 200, "{ok}");
}

#[tokio::test]
async fn a_refund_interrupted_by_a_power_failure_is_reversed_and_can_be_asked_again() {
    let app = spawn_app().await;
    let (t, front) = till(&app, "pay-power").await;
    let sale = paid(&app, &front, "1000", &[]).await;
    let path = format!("/pos/transaction/{sale}/refund");
    let mut form = register_form(&front);
    form.push(("AmountTotal", "654"));
    let (status, started) = app.post_form(&path, &form).await;
    assert_eq!(status, 200, "{started}");
    let (journal, id, secret) = (t.journal.clone(), t.id.clone(), t.secret.clone());
    assert_eq!(t.exited().await, Exit::PowerFailure);
    // While it is away the refund holds its amount.
    assert_eq!(
        payment(&app, &sale, &front).await["amountRefundable"],
        "346"
    );
    let mut t = start_terminal(&app, &id, &secret, &journal, fast_simulator()).await;
    let done = poll_until_completed(&app, started["data"]["PollingUrl"].as_str().unwrap()).await;
    t.wait_for(|e| matches!(e, TerminalEvent::Acknowledged { .. }).then_some(()))
        .await;
    assert_eq!(done["data"]["TransactionResult"], "CANCELLED", "{done}");
    assert_eq!(done["data"]["Reversed"], "true");
    // Reversed, so nothing was refunded: the whole amount is refundable again, once.
    let p = payment(&app, &sale, &front).await;
    assert_eq!(
        (p["amountRefunded"].as_str(), p["amountRefundable"].as_str()),
        (Some("0"), Some("1000"))
    );
    let mut again = register_form(&front);
    again.push(("AmountTotal", "1000"));
    let (_, r) = post(&app, &path, &again).await;
    assert_eq!(
        outcome(&app, &r).await["data"]["TransactionResult"],
        "OK-ACCEPTED"
    );
    assert_eq!(payment(&app, &sale, &front).await["amountRefunded"], "1000");
}

#[tokio::test]
async fn a_void_interrupted_by_a_power_failure_is_reversed_and_reported_on_restart() {
    let app = spawn_app().await;
    let (t, front) = till(&app, "pay-void-power").await;
    // 54.00: a void of it loses power (the simulator's rule for follow-ups without an amount).
    let sale = paid(&app, &front, "5400", &[]).await;
    let (status, started) = app
        .post_form(
            &format!("/pos/transaction/{sale}/void"),
            &register_form(&front),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let (journal, id, secret) = (t.journal.clone(), t.id.clone(), t.secret.clone());
    assert_eq!(t.exited().await, Exit::PowerFailure);
    let mut t = start_terminal(&app, &id, &secret, &journal, fast_simulator()).await;
    let done = poll_until_completed(&app, started["data"]["PollingUrl"].as_str().unwrap()).await;
    t.wait_for(|e| matches!(e, TerminalEvent::Acknowledged { .. }).then_some(()))
        .await;
    assert_eq!(done["data"]["TransactionResult"], "CANCELLED", "{done}");
    let p = payment(&app, &sale, &front).await;
    assert_eq!(p["voided"], false, "{p}");
    assert_eq!(p["amountRefundable"], "5400");
    // The journal ran the void once and never again.
    let journal = terminal::Journal::open(&journal).unwrap();
    let entry = journal
        .get(done["transactionId"].as_str().unwrap().parse().unwrap())
        .unwrap();
    assert_eq!(
        entry.result().map(|r| r.fields.get("Reversed").cloned()),
        Some(Some("true".into()))
    );
}

/// Twenty partial refunds of 3.00 against a 10.00 sale, each on its own device, all at once:
/// exactly three fit and are approved; the rest are refused with what is refundable.
async fn twenty_concurrent_refunds(pos: [&TestApp; 2], devices: &TestApp) {
    let (_first, front) = till(devices, "race-0").await;
    let sale = paid(pos[0], &front, "1000", &[]).await;
    let mut tills = Vec::new();
    for i in 1..=20 {
        tills.push(till(devices, &format!("race-{i}")).await);
    }
    let path = format!("/pos/transaction/{sale}/refund");
    let answers = futures_util::future::join_all(tills.iter().enumerate().map(|(i, (_, reg))| {
        let app = pos[i % 2];
        let path = path.clone();
        async move {
            let mut form = register_form(reg);
            form.push(("AmountTotal", "300"));
            app.post_form(&path, &form).await
        }
    }))
    .await;
    let accepted: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    let refused = answers.iter().filter(|(s, _)| *s == 409).count();
    assert_eq!((accepted.len(), refused), (3, 17), "{answers:?}");
    for (s, b) in &answers {
        if *s == 409 {
            let left: u64 = b["amountRefundable"].as_str().unwrap().parse().unwrap();
            assert!(left < 300, "{b}");
        }
    }
    for a in accepted {
        let done = outcome(pos[1], a).await;
        assert_eq!(done["data"]["TransactionResult"], "OK-ACCEPTED", "{done}");
    }
    let p = payment(pos[1], &sale, &front).await;
    assert_eq!(
        (p["amountRefunded"].as_str(), p["amountRefundable"].as_str()),
        (Some("900"), Some("100")),
        "{p}"
    );
}

#[tokio::test]
async fn twenty_racing_refunds_on_one_node_approve_exactly_those_that_fit() {
    let app = spawn_app().await;
    twenty_concurrent_refunds([&app, &app], &app).await;
}

#[cfg_attr(
    not(all(eftcloud_test_postgres, eftcloud_test_nats)),
    ignore = "needs PostgreSQL and NATS: set EFTCLOUD_TEST_DATABASE_URL and EFTCLOUD_TEST_NATS_URL (.ci/run does)"
)]
#[tokio::test]
async fn twenty_racing_refunds_through_two_nodes_approve_exactly_those_that_fit() {
    let Some(env) = ClusterEnv::new("racing refunds").await else {
        return;
    };
    let a = spawn_app_with(env.node("node-a")).await;
    let b = spawn_app_with(env.node("node-b")).await;
    // The devices on A; the POS requests alternate between A and B.
    twenty_concurrent_refunds([&a, &b], &a).await;
}

#[tokio::test]
async fn an_order_is_paid_by_three_tenders_on_two_devices_and_never_overpaid() {
    let app = spawn_app().await;
    let (_a, front) = till(&app, "order-front").await;
    let (_b, back) = till(&app, "order-back").await;
    let mut form = register_form(&front);
    form.extend([("AmountTotal", "10000"), ("PosReference", "table-4")]);
    let (status, order) = app.post_form("/pos/orders", &form).await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(
        (order["state"].as_str(), order["currency"].as_str()),
        (Some("open"), Some("AUD"))
    );
    let id = order["orderId"].as_str().unwrap().to_string();
    // The same reference is the same order.
    let (_, again) = app.post_form("/pos/orders", &form).await;
    assert_eq!(again["orderId"], id.as_str());

    let tender = |reg: &RegisterKey, amount: &'static str| {
        let mut f = purchase(reg, amount);
        f.push(("OrderId", id.as_str()));
        f.into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect::<Vec<_>>()
    };
    let app = &app;
    let send = |f: Vec<(&'static str, String)>| async move {
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        app.post_form("/pos/transaction", &f).await
    };
    for (reg, amount) in [(&front, "3000"), (&back, "2500")] {
        let (status, t) = send(tender(reg, amount)).await;
        assert_eq!(status, 200, "{t}");
        assert_eq!(
            outcome(app, &t).await["data"]["TransactionResult"],
            "OK-ACCEPTED"
        );
    }
    // 45.01 would pay more than the 45.00 left.
    let (status, over) = send(tender(&back, "4501")).await;
    assert_eq!(status, 409, "{over}");
    assert_eq!(over["amountRemaining"], "4500");
    // A declined tender pays nothing.
    let (_, declined) = send(tender(&front, "4451")).await;
    assert_eq!(
        outcome(app, &declined).await["data"]["TransactionResult"],
        "OK-DECLINED"
    );
    let (_, last) = send(tender(&back, "4500")).await;
    assert_eq!(
        outcome(app, &last).await["data"]["TransactionResult"],
        "OK-ACCEPTED"
    );
    let q = format!(
        "/pos/orders/{id}?POSRegisterID={}&POSBusinessName=Toys%20Shop&POSVendorName=Till2Go",
        back.register_id
    );
    let (status, paid) = app.get_json(&app.url(&q)).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["state"], "paid", "{paid}");
    assert_eq!(
        (
            paid["amountPaid"].as_str(),
            paid["amountRemaining"].as_str()
        ),
        (Some("10000"), Some("0"))
    );
    let tenders = paid["tenders"].as_array().unwrap();
    assert_eq!(tenders.len(), 4, "{paid}");
    let devices: std::collections::BTreeSet<&str> = tenders
        .iter()
        .map(|t| t["deviceId"].as_str().unwrap())
        .collect();
    assert_eq!(devices.len(), 2);
    let (status, more) = send(tender(&front, "1")).await;
    assert_eq!(status, 409, "{more}");
    assert!(more["error"].as_str().unwrap().contains("paid"), "{more}");
    // Unknown and malformed orders.
    let mut bad = purchase(&front, "100");
    bad.push(("OrderId", "nope"));
    assert_eq!(app.post_form("/pos/transaction", &bad).await.0, 400);
    let unknown = uuid::Uuid::new_v4().to_string();
    let mut missing = purchase(&front, "100");
    missing.push(("OrderId", unknown.as_str()));
    assert_eq!(app.post_form("/pos/transaction", &missing).await.0, 404);
    let (status, _) = app
        .get_json(&app.url(&format!("/pos/orders/{unknown}")))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_cancelled_order_takes_no_tender_and_its_tenders_are_reversed_once() {
    let app = spawn_app().await;
    let (_a, front) = till(&app, "order-cancel").await;
    let mut form = register_form(&front);
    form.push(("AmountTotal", "5000"));
    let (_, order) = app.post_form("/pos/orders", &form).await;
    let id = order["orderId"].as_str().unwrap().to_string();
    let mut tender = purchase(&front, "2000");
    tender.push(("OrderId", id.as_str()));
    let (_, t) = app.post_form("/pos/transaction", &tender).await;
    let paid = outcome(&app, &t).await;
    assert_eq!(paid["data"]["TransactionResult"], "OK-ACCEPTED");
    let tender_id = paid["transactionId"].as_str().unwrap().to_string();

    let path = format!("/pos/orders/{id}/cancel");
    let mut cancel = register_form(&front);
    cancel.push(("Reverse", "true"));
    let (status, cancelled) = app.post_form(&path, &cancel).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    let reversals = cancelled["reversals"].as_array().unwrap();
    assert_eq!(reversals.len(), 1, "{cancelled}");
    assert_eq!(reversals[0]["function"], "Card.Void");
    assert_eq!(reversals[0]["tenderTransactionId"], tender_id.as_str());
    let void = reversals[0]["transactionId"].as_str().unwrap().to_string();
    eventually("the void approved", || async {
        let p = payment(&app, &tender_id, &front).await;
        (p["voided"] == true).then_some(())
    })
    .await;
    // Cancelling again reverses nothing twice.
    let (status, again) = app.post_form(&path, &cancel).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["reversals"][0]["transactionId"],
        void.as_str(),
        "{again}"
    );
    assert_eq!(
        payment(&app, &tender_id, &front).await["followUps"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (status, refused) = app.post_form("/pos/transaction", &tender).await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("cancelled"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_merchants_default_currency_and_tip_limit_apply_to_its_requests() {
    let app = spawn_app().await;
    let (_t, front) = till(&app, "terms").await;
    let merchant = app.engine.find_merchant("Toys Shop Pty Ltd").await.unwrap();
    app.engine
        .set_merchant_terms(
            &merchant,
            protocol::Currency::parse("NZD").ok(),
            Some(10),
            &Actor::cli(),
        )
        .await
        .unwrap();
    let env = paid_envelope(&app, &front, "1000", &[]).await;
    assert_eq!(env["data"]["Currency"], "NZD", "{env}");
    assert!(env["data"]["Receipt"].as_str().unwrap().contains("NZD"));
    let sale = env["transactionId"].as_str().unwrap();
    let mut tip = register_form(&front);
    tip.push(("AmountTip", "101"));
    let (status, body) = post(&app, &format!("/pos/transaction/{sale}/adjust"), &tip).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("10%"), "{body}");
    // A refused follow-up leaves no trace on the original; an accepted one is noted there,
    // and so is its outcome.
    let mut ok = register_form(&front);
    ok.push(("AmountTip", "100"));
    let (_, a) = post(&app, &format!("/pos/transaction/{sale}/adjust"), &ok).await;
    let adjusted = outcome(&app, &a).await;
    let q = format!(
        "/pos/transaction/{sale}/events?POSRegisterID={}&POSBusinessName=Toys%20Shop&POSVendorName=Till2Go",
        front.register_id
    );
    let events = eventually("the follow-up noted on the original", || async {
        let (_, t) = app.get_json(&app.url(&q)).await;
        let done = t["events"]
            .as_array()
            .is_some_and(|es| es.iter().any(|e| e["event"] == "follow_up_completed"));
        done.then_some(t)
    })
    .await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "follow_up").count(),
        1,
        "{events}"
    );
    let id = adjusted["transactionId"].as_str().unwrap();
    assert!(events.to_string().contains(id), "{events}");
    // Bad terms are refused.
    assert!(app
        .engine
        .set_merchant_terms(&merchant, None, Some(101), &Actor::cli())
        .await
        .is_err());
}

#[tokio::test]
async fn a_smartconnect_completion_is_linked_to_its_authorisation_by_reference() {
    let app = spawn_app().await;
    let (_t, front) = till(&app, "pay-link").await;
    let smart = |f: &[(&'static str, &'static str)]| {
        let mut form = register_form(&front);
        form.push(("TransactionMode", "ASYNC"));
        form.extend_from_slice(f);
        form
    };
    let (_, a) = app
        .post_form(
            "/pos/transaction",
            &smart(&[
                ("TransactionType", "Card.Authorise"),
                ("AmountAuth", "8000"),
                ("TransactionReference", "car-42"),
            ]),
        )
        .await;
    let auth = outcome(&app, &a).await;
    assert_eq!(auth["data"]["TransactionResult"], "OK-ACCEPTED");
    let id = auth["transactionId"].as_str().unwrap();
    let finalise = |amount: &'static str| {
        smart(&[
            ("TransactionType", "Card.Finalise"),
            ("AmountFinal", amount),
            ("TransactionReference", "car-42"),
        ])
    };
    // More than is held is refused before the device hears of it.
    let (status, body) = app.post_form("/pos/transaction", &finalise("8001")).await;
    assert_eq!(status, 409, "{body}");
    let (status, f) = app.post_form("/pos/transaction", &finalise("7500")).await;
    assert_eq!(status, 200, "{f}");
    let done = outcome(&app, &f).await;
    assert_eq!(done["data"]["TransactionResult"], "OK-ACCEPTED", "{done}");
    assert_eq!(done["data"]["OriginalTransactionId"], id);
    assert_eq!(done["data"]["TransactionReference"], "car-42");
    assert_eq!(done["data"]["CardPan"], auth["data"]["CardPan"]);
    let p = payment(&app, id, &front).await;
    assert_eq!(p["amountCaptured"], "7500", "{p}");
    // A reference no authorisation has completes unlinked, as SmartConnect has it.
    let (status, plain) = app
        .post_form(
            "/pos/transaction",
            &smart(&[
                ("TransactionType", "Card.Finalise"),
                ("AmountFinal", "100"),
                ("TransactionReference", "unknown-ref"),
            ]),
        )
        .await;
    assert_eq!(status, 200, "{plain}");
    assert!(plain["data"].get("OriginalTransactionId").is_none());
}
