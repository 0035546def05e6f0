//! Reconciliation end to end: a device's cutover reports its batch, and the cloud compares it
//! with its own records of the period. A device speaking the protocol by hand leaves one
//! transaction out and reports another for a different amount: exactly those two are listed.
//! The real simulator's cutover, after purchases, a refund, a void and a tip adjustment,
//! reconciles clean; the exports (CSV and JSON, also through the real binary) and the daily
//! report agree with it; a merchant's key sees only its own settlements.

use crate::harness::*;
use protocol::device::{CloudMessage, DeviceMessage, DeviceResult};
use protocol::settlement::{BatchTransaction, CardTotals, SettlementBatch};
use protocol::{Function, ResultCode, TransactionId, TransactionResult};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const TOKEN: &str = "admin-token-for-reconciliation";

async fn app() -> TestApp {
    spawn_app_with(Opts {
        admin_token: Some(TOKEN.into()),
        ..Opts::default()
    })
    .await
}

/// An admin request with `credential`.
async fn get_as(app: &TestApp, credential: &str, path: &str) -> (u16, Value) {
    let r = app
        .http
        .get(app.url(path))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    get_as(app, TOKEN, path).await
}

/// The raw body and content headers of an export.
async fn export(app: &TestApp, path: &str) -> (u16, String, String, String) {
    let r = app
        .http
        .get(app.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let header = |h: &str| {
        r.headers()
            .get(h)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (ct, cd) = (header("content-type"), header("content-disposition"));
    (r.status().as_u16(), ct, cd, r.text().await.unwrap())
}

/// Rows of a CSV export as header → value maps.
fn csv_rows(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// Runs a POS request to its offer on `d`, starts it, and reports `result`.
async fn run_on(
    d: &mut RawDevice,
    app: &TestApp,
    form: &[(&str, &str)],
    result: impl FnOnce(TransactionId) -> DeviceResult,
) -> TransactionId {
    let (status, body) = app.post_form("/POS/Transaction", form).await;
    assert_eq!(status, 200, "{body}");
    let id = match d.recv().await {
        CloudMessage::Transaction(o) => o.transaction_id,
        other => panic!("{other:?}"),
    };
    d.send(&DeviceMessage::Accept { transaction_id: id }).await;
    assert_eq!(d.recv().await, CloudMessage::Start { transaction_id: id });
    d.send(&DeviceMessage::Result(result(id))).await;
    assert!(
        matches!(d.recv().await, CloudMessage::ResultAck { transaction_id } if transaction_id == id)
    );
    id
}

fn approved(id: TransactionId, amount: u64, card: &str) -> DeviceResult {
    DeviceResult {
        transaction_id: id,
        transaction_result: Some(TransactionResult::Accepted),
        result: ResultCode::Ok,
        result_text: "APPROVED".into(),
        fields: BTreeMap::from([
            ("CardType".to_string(), card.to_string()),
            ("AmountTotal".to_string(), amount.to_string()),
        ]),
        receipts: None,
        settlement: None,
    }
}

fn cutover_result(id: TransactionId, batch: SettlementBatch) -> DeviceResult {
    DeviceResult {
        transaction_id: id,
        transaction_result: None,
        result: ResultCode::Ok,
        result_text: "CUTOVER COMPLETE".into(),
        fields: BTreeMap::new(),
        receipts: None,
        settlement: Some(Box::new(batch)),
    }
}

fn item(id: TransactionId, card: &str, amount: u64) -> BatchTransaction {
    BatchTransaction {
        transaction_id: id,
        function: Function::CardPurchase,
        card_type: card.into(),
        amount,
    }
}

fn batch(items: Vec<BatchTransaction>) -> SettlementBatch {
    let mut totals: BTreeMap<String, CardTotals> = BTreeMap::new();
    for i in &items {
        totals
            .entry(i.card_type.clone())
            .or_insert_with(|| CardTotals {
                card_type: i.card_type.clone(),
                ..CardTotals::default()
            })
            .add(i.kind(), i.amount);
    }
    SettlementBatch {
        period_start: None,
        period_end: "20261204120000".into(),
        totals: totals.into_values().collect(),
        transactions: Some(items),
    }
}

fn reasons(m: &Value) -> Vec<&str> {
    m["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_reconciliation_lists_exactly_the_missing_and_the_mismatching_transaction() {
    let app = app().await;
    let (mut d, reg) = RawDevice::paired(&app, "recon-raw").await;
    let cutover_form = {
        let mut f = register_form(&reg);
        f.extend([
            ("TransactionMode", "ASYNC"),
            ("TransactionType", "Acquirer.Settlement.Cutover"),
        ]);
        f
    };
    let mut ids = Vec::new();
    for (amount, card) in [(1000, "VISA"), (2000, "VISA"), (3000, "MASTERCARD")] {
        let a = amount.to_string();
        ids.push(
            run_on(&mut d, &app, &purchase(&reg, &a), |id| {
                approved(id, amount, card)
            })
            .await,
        );
    }
    // A declined one is in neither batch.
    let declined = run_on(&mut d, &app, &purchase(&reg, "4000"), |id| DeviceResult {
        transaction_result: Some(TransactionResult::Declined),
        ..approved(id, 4000, "VISA")
    })
    .await;
    // The terminal's batch leaves the second out and has the third for 35.00.
    let reported = batch(vec![
        item(ids[0], "VISA", 1000),
        item(ids[2], "MASTERCARD", 3500),
    ]);
    let cut = run_on(&mut d, &app, &cutover_form, |id| {
        cutover_result(id, reported)
    })
    .await;

    let (status, list) = get(&app, "/admin/settlements?device=recon-raw").await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["transactionId"], cut.to_string());
    assert_eq!(list[0]["status"], "unbalanced");
    assert_eq!(list[0]["mismatchCount"], 2);
    assert_eq!(
        list[0]["periodStart"],
        Value::Null,
        "the device's first period"
    );

    let (status, r) = get(&app, &format!("/admin/settlements/{cut}/reconciliation")).await;
    assert_eq!(status, 200, "{r}");
    let mismatches = r["mismatches"].as_array().unwrap();
    assert_eq!(mismatches.len(), 2, "{r:#}");
    assert_eq!(mismatches[0]["transactionId"], ids[2].to_string());
    assert_eq!(reasons(&mismatches[0]), ["amount_differs"]);
    assert_eq!(mismatches[0]["terminal"]["amount"], 3500);
    assert_eq!(mismatches[0]["cloud"]["amount"], 3000);
    assert_eq!(mismatches[1]["transactionId"], ids[1].to_string());
    assert_eq!(reasons(&mismatches[1]), ["missing_on_terminal"]);
    assert_eq!(mismatches[1]["terminal"], Value::Null);
    assert!(!r.to_string().contains(&declined.to_string()));
    assert_eq!(r["terminalConsistent"], true);
    assert_eq!(
        r["differences"],
        json!([
            {"cardType": "MASTERCARD", "purchaseCount": 0, "purchaseAmount": 500, "refundCount": 0, "refundAmount": 0, "net": 500},
            {"cardType": "VISA", "purchaseCount": -1, "purchaseAmount": -2000, "refundCount": 0, "refundAmount": 0, "net": -2000},
        ])
    );
    assert_eq!(r["cloudTotals"]["purchaseAmount"], 6000);
    assert_eq!(r["terminalTotals"]["purchaseAmount"], 4500);

    // The next period starts after this cutover: a transaction of the last one, listed again,
    // is missing in the cloud's batch (with why), and so is one the cloud never saw.
    let fourth = run_on(&mut d, &app, &purchase(&reg, "700"), |id| {
        approved(id, 700, "EFTPOS")
    })
    .await;
    let stranger = TransactionId::new();
    let again = batch(vec![
        item(ids[0], "VISA", 1000),
        item(fourth, "EFTPOS", 700),
        item(stranger, "VISA", 100),
    ]);
    let cut2 = run_on(&mut d, &app, &cutover_form, |id| cutover_result(id, again)).await;
    let (_, r2) = get(&app, &format!("/admin/settlements/{cut2}/reconciliation")).await;
    let m2 = r2["mismatches"].as_array().unwrap();
    assert_eq!(m2.len(), 2, "{r2:#}");
    assert_eq!(m2[0]["transactionId"], ids[0].to_string());
    assert_eq!(reasons(&m2[0]), ["missing_in_cloud"]);
    assert!(
        m2[0]["note"]
            .as_str()
            .unwrap()
            .contains("another settlement period"),
        "{r2:#}"
    );
    assert_eq!(m2[1]["transactionId"], stranger.to_string());
    assert!(
        m2[1]["note"].as_str().unwrap().contains("no transaction"),
        "{r2:#}"
    );
    assert_eq!(r2["periodStart"], list[0]["periodEnd"]);
    // Newest first.
    let (_, both) = get(&app, "/admin/settlements?device=recon-raw").await;
    let both: Vec<&str> = both
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["transactionId"].as_str().unwrap())
        .collect();
    assert_eq!(both, [cut2.to_string(), cut.to_string()]);

    // A settlement without a batch (an older device) is unreported, the cloud's side shown.
    let (status, _) = app
        .post_form("/POS/Transaction", &purchase(&reg, "900"))
        .await;
    assert_eq!(status, 200);
    let old = run_after_offer(&mut d, |id| approved(id, 900, "VISA")).await;
    let cut3 = run_on(&mut d, &app, &cutover_form, |id| DeviceResult {
        settlement: None,
        ..cutover_result(id, batch(vec![]))
    })
    .await;
    let (_, r3) = get(&app, &format!("/admin/settlements/{cut3}/reconciliation")).await;
    assert_eq!(r3["status"], "unreported");
    assert_eq!(r3["cloudTotals"]["purchaseAmount"], 900, "{r3:#} {old}");
    assert_eq!(r3["terminalTotals"], Value::Null);

    // A merchant's key sees its own merchant's settlements; another merchant's key none.
    let merchant = app
        .engine
        .device(&protocol::DeviceId::parse("recon-raw").unwrap())
        .await
        .unwrap()
        .unwrap()
        .merchant_id
        .to_string();
    let own = key_for(&app, &merchant).await;
    let (_, mine) = get_as(&app, &own, "/admin/settlements").await;
    assert_eq!(mine.as_array().unwrap().len(), 3);
    let other = create_merchant(&app, "Other Shop").await;
    let foreign = key_for(&app, &other).await;
    let (status, theirs) = get_as(&app, &foreign, "/admin/settlements").await;
    assert_eq!((status, theirs), (200, json!([])));
    let (status, _) = get_as(
        &app,
        &foreign,
        &format!("/admin/settlements/{cut}/reconciliation"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = get_as(
        &app,
        &foreign,
        &format!("/admin/reports/daily?merchant={merchant}&date=2026-12-04"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = get_as(&app, &own, &format!("/admin/settlements?merchant={other}")).await;
    assert_eq!(status, 200);

    // Bad input is a 400 with the reason.
    for path in [
        "/admin/settlements?since=yesterday",
        "/admin/settlements?device=bad%20id",
        "/admin/settlements?limit=0",
        "/admin/reports/daily?merchant=m",
        "/admin/reports/daily?merchant=m&date=2026-13-01",
        "/admin/exports/transactions?format=xml",
    ] {
        let (status, body) = get(&app, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
    }
    let (status, body) = get(
        &app,
        &format!("/admin/reports/daily?merchant={merchant}&date=2026-12-04&timeZone=Mars/Olympus"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("time zone"));
    let (status, _) = get(&app, "/admin/settlements/not-an-id/reconciliation").await;
    assert_eq!(status, 404);
    // Not a settlement: a purchase's id.
    let (status, _) = get(
        &app,
        &format!("/admin/settlements/{}/reconciliation", ids[0]),
    )
    .await;
    assert_eq!(status, 404);
    let r = app
        .http
        .get(app.url("/admin/settlements"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Waits for the offer of a request already posted, runs it and reports `result`.
async fn run_after_offer(
    d: &mut RawDevice,
    result: impl FnOnce(TransactionId) -> DeviceResult,
) -> TransactionId {
    let id = match d.recv().await {
        CloudMessage::Transaction(o) => o.transaction_id,
        other => panic!("{other:?}"),
    };
    d.send(&DeviceMessage::Accept { transaction_id: id }).await;
    assert_eq!(d.recv().await, CloudMessage::Start { transaction_id: id });
    d.send(&DeviceMessage::Result(result(id))).await;
    assert!(matches!(d.recv().await, CloudMessage::ResultAck { .. }));
    id
}

async fn create_merchant(app: &TestApp, name: &str) -> String {
    let r = app
        .http
        .request(Method::POST, app.url("/admin/merchants"))
        .bearer_auth(TOKEN)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["merchantId"].as_str().unwrap().to_string()
}

async fn key_for(app: &TestApp, merchant: &str) -> String {
    let r = app
        .http
        .request(Method::POST, app.url("/admin/api-keys"))
        .bearer_auth(TOKEN)
        .json(&json!({ "merchantId": merchant, "scopes": ["reports:read"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["apiKey"].as_str().unwrap().to_string()
}

/// POSTs a follow-up and waits for its approval.
async fn follow_up(app: &TestApp, path: &str, reg: &protocol::RegisterKey, extra: &[(&str, &str)]) {
    let mut form = register_form(reg);
    form.extend_from_slice(extra);
    form.push(("wait", "10"));
    let (status, body) = app.post_form(path, &form).await;
    assert_eq!(status, 200, "{path}: {body}");
    let done = if body["transactionStatus"] == "COMPLETED" {
        body
    } else {
        poll_until_completed(app, body["data"]["PollingUrl"].as_str().unwrap()).await
    };
    assert_eq!(
        done["data"]["TransactionResult"], "OK-ACCEPTED",
        "{path}: {done}"
    );
}

async fn paid(app: &TestApp, reg: &protocol::RegisterKey, amount: &str) -> (String, Value) {
    let (status, started) = app
        .post_form("/POS/Transaction", &purchase(reg, amount))
        .await;
    assert_eq!(status, 200, "{started}");
    let done = poll_until_completed(app, started["data"]["PollingUrl"].as_str().unwrap()).await;
    (done["transactionId"].as_str().unwrap().to_string(), done)
}

async fn eftcloud(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    admin_command(app, TOKEN, args).await
}

#[tokio::test]
async fn the_simulators_cutover_reconciles_clean_and_the_exports_and_the_day_agree() {
    let app = app().await;
    let (t, reg) = paired_terminal(&app, "recon-sim").await;
    let (tipped, _) = paid(&app, &reg, "1000").await;
    let (voided, _) = paid(&app, &reg, "2000").await;
    let (refunded, _) = paid(&app, &reg, "3000").await;
    // A surcharge (..55): the terminal charges 10.71, and settles that.
    let (surcharged, s) = paid(&app, &reg, "1055").await;
    assert_eq!(s["data"]["AmountTotal"], "1071");
    let (declined, d) = paid(&app, &reg, "1251").await;
    assert_eq!(d["data"]["TransactionResult"], "OK-DECLINED");
    follow_up(
        &app,
        &format!("/pos/transaction/{tipped}/adjust"),
        &reg,
        &[("AmountTip", "200")],
    )
    .await;
    follow_up(&app, &format!("/pos/transaction/{voided}/void"), &reg, &[]).await;
    follow_up(
        &app,
        &format!("/pos/transaction/{refunded}/refund"),
        &reg,
        &[("AmountTotal", "500")],
    )
    .await;

    let mut form = register_form(&reg);
    form.extend([
        ("TransactionMode", "ASYNC"),
        ("TransactionType", "Acquirer.Settlement.Cutover"),
    ]);
    let (status, started) = app.post_form("/POS/Transaction", &form).await;
    assert_eq!(status, 200, "{started}");
    let cut = poll_until_completed(&app, started["data"]["PollingUrl"].as_str().unwrap()).await;
    assert_eq!(cut["data"]["Result"], "OK", "{cut}");
    let cut_id = cut["transactionId"].as_str().unwrap().to_string();

    let (status, r) = get(&app, &format!("/admin/settlements/{cut_id}/reconciliation")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["status"], "balanced", "{r:#}");
    assert_eq!(r["itemised"], true);
    // The event log has the settlement, with the terminal's batch and where its report is.
    let (status, log) = get(&app, "/admin/event-log?types=settlement.completed").await;
    assert_eq!(status, 200, "{log}");
    let settled = &log["events"][0]["data"];
    assert_eq!(settled["transactionId"], cut_id.as_str(), "{log:#}");
    assert_eq!(
        settled["reconciliation"],
        format!("/admin/settlements/{cut_id}/reconciliation")
    );
    let by_card = settled["totalsByCardType"].as_array().unwrap();
    let purchases: u64 = by_card
        .iter()
        .map(|t| t["purchaseCount"].as_u64().unwrap())
        .sum();
    assert_eq!(purchases, 3, "{settled:#}");
    assert_eq!(r["terminalConsistent"], true);
    assert_eq!(r["mismatches"], json!([]));
    assert_eq!(r["differences"], json!([]));
    // 10.00 + 2.00 tip, 30.00, 10.71 (the void took 20.00 out); one refund of 5.00.
    assert_eq!(r["cloudTotals"]["purchaseCount"], 3, "{r:#}");
    assert_eq!(r["cloudTotals"]["purchaseAmount"], 1200 + 3000 + 1071);
    assert_eq!(r["cloudTotals"]["refundCount"], 1);
    assert_eq!(r["cloudTotals"]["refundAmount"], 500);
    assert_eq!(r["terminalTotals"], r["cloudTotals"]);
    assert_eq!(r["terminalByCardType"], r["cloudByCardType"]);
    // The simulator's flat fields say the same.
    assert_eq!(
        cut["data"]["PurchaseTotal"],
        (1200 + 3000 + 1071).to_string()
    );
    assert_eq!(
        cut["data"]["NetTotal"],
        (1200 + 3000 + 1071 - 500).to_string()
    );

    // The transactions export, CSV and JSON, row for row.
    let (status, ct, cd, text) = export(&app, "/admin/exports/transactions?format=csv").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(ct, "text/csv; charset=utf-8");
    assert_eq!(cd, "attachment; filename=\"transactions.csv\"");
    let rows = csv_rows(&text);
    let (status, ct, _, json_text) = export(&app, "/admin/exports/transactions?format=json").await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let json_rows: Vec<Value> = serde_json::from_str(&json_text).unwrap();
    assert_eq!(rows.len(), json_rows.len());
    // Five purchases, three follow-ups, the cutover, and the pairing's nothing.
    assert_eq!(rows.len(), 9, "{text}");
    for (c, j) in rows.iter().zip(&json_rows) {
        assert_eq!(c["transactionId"], j["transactionId"].as_str().unwrap());
        assert_eq!(c["function"], j["function"].as_str().unwrap());
        assert_eq!(c["outcome"], j["outcome"].as_str().unwrap());
    }
    let row = |id: &str| rows.iter().find(|r| r["transactionId"] == id).unwrap();
    assert_eq!(row(&tipped)["amountSettled"], "1200");
    assert_eq!(row(&tipped)["amount"], "1000");
    assert_eq!(row(&voided)["voided"], "true");
    assert_eq!(row(&voided)["amountSettled"], "0");
    assert_eq!(row(&surcharged)["amount"], "1071");
    assert_eq!(row(&declined)["outcome"], "OK-DECLINED");
    assert_eq!(row(&declined)["amountSettled"], "");
    assert_eq!(row(&cut_id)["function"], "Acquirer.Settlement.Cutover");
    // A window with nothing in it has the header alone.
    let (_, _, _, empty) = export(
        &app,
        "/admin/exports/transactions?format=csv&until=2000-01-01",
    )
    .await;
    assert!(
        empty.starts_with("transactionId,createdAt,completedAt,") && empty.lines().count() == 1,
        "{empty}"
    );

    // The settlements export.
    let (status, _, cd, text) = export(
        &app,
        "/admin/exports/settlements?format=csv&device=recon-sim",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(cd, "attachment; filename=\"settlements.csv\"");
    let settlements = csv_rows(&text);
    assert_eq!(settlements.len(), 1, "{text}");
    assert_eq!(settlements[0]["transactionId"], cut_id);
    assert_eq!(settlements[0]["status"], "balanced");
    assert_eq!(
        settlements[0]["cloudPurchaseAmount"],
        (1200 + 3000 + 1071).to_string()
    );
    assert_eq!(settlements[0]["terminalRefundAmount"], "500");

    // The day's report (the merchant has no site: UTC).
    let merchant = r["merchantId"].as_str().unwrap();
    let date = &r["periodEnd"].as_str().unwrap()[..10];
    let (status, day) = get(
        &app,
        &format!("/admin/reports/daily?merchant={merchant}&date={date}"),
    )
    .await;
    assert_eq!(status, 200, "{day}");
    assert_eq!(day["timeZone"], "UTC");
    assert_eq!(day["settlements"].as_array().unwrap().len(), 1);
    assert_eq!(day["settlements"][0]["status"], "balanced");
    assert_eq!(day["settlementsUnbalanced"], 0);
    // Unless the test ran across midnight, the day holds every transaction.
    if row(&tipped)["completedAt"].starts_with(date) {
        assert_eq!(day["transactionCount"], 9);
        assert_eq!(day["totals"], r["cloudByCardType"]);
    }
    let (_, sydney) = get(
        &app,
        &format!("/admin/reports/daily?merchant={merchant}&date={date}&timeZone=Australia/Sydney"),
    )
    .await;
    assert_eq!(sydney["timeZone"], "Australia/Sydney");

    // The same export through the real binary, to a file; and its refusals.
    let file = app.dir.path().join("transactions.csv");
    let (code, _, err) = eftcloud(
        &app,
        &[
            "export",
            "transactions",
            "--format",
            "csv",
            "--output",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(csv_rows(&written), rows);
    let (code, _, err) = eftcloud(
        &app,
        &["export", "transactions", "--output", file.to_str().unwrap()],
    )
    .await;
    assert_ne!(code, 0, "never over an existing file");
    assert!(err.contains("cannot create"), "{err}");
    let (code, out, err) = eftcloud(&app, &["settlement", "show", &cut_id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("balanced"), "{out}");
    let (code, out, err) = eftcloud(&app, &["settlement", "list", "--device", "recon-sim"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&cut_id), "{out}");
    let (code, out, err) = eftcloud(
        &app,
        &["report", "daily", "--merchant", merchant, "--date", date],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 settlement(s), 0 not balanced"), "{out}");
    let (code, _, err) = eftcloud(
        &app,
        &["settlement", "show", &uuid::Uuid::new_v4().to_string()],
    )
    .await;
    assert_ne!(code, 0);
    assert!(
        err.contains("404") && err.contains("Settlement not found"),
        "{err}"
    );
    t.stop().await;
}

#[tokio::test]
async fn a_device_declaring_nothing_new_is_reconciled_and_card_types_compare_in_any_case() {
    // Reconciliation asks no capability of a device: one that declares none reports a batch.
    let app = app().await;
    let (mut d, reg) = RawDevice::paired(&app, "recon-plain").await;
    let sale = run_on(&mut d, &app, &purchase(&reg, "1500"), |id| {
        approved(id, 1500, "AMEX")
    })
    .await;
    let mut form = register_form(&reg);
    form.extend([
        ("TransactionMode", "ASYNC"),
        ("TransactionType", "Acquirer.Settlement.Cutover"),
    ]);
    let listed = batch(vec![item(sale, "amex", 1500)]);
    let cut = run_on(&mut d, &app, &form, |id| cutover_result(id, listed)).await;
    let (_, r) = get(&app, &format!("/admin/settlements/{cut}/reconciliation")).await;
    // Card types compare without regard to case.
    assert_eq!(r["status"], "balanced", "{r:#}");
}
