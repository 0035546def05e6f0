//! Configuration profiles end to end: set at the operator's, a merchant's, a site's and a
//! device's level over the admin API, inherited and overridden field by field, audited, and
//! pushed over the device protocol to devices that declare `config` — at once, on reconnect,
//! and never in the middle of a transaction.

use crate::harness::*;
use cloud::engine::accounts::Actor;
use cloud::engine::devices::NewDevice;
use protocol::device::{capability, CloudMessage, DeviceMessage, DeviceResult};
use protocol::{DeviceId, ResultCode, TransactionResult};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const TOKEN: &str = "admin-token-for-profiles";

fn opts() -> Opts {
    Opts {
        admin_token: Some(TOKEN.into()),
        ..Opts::default()
    }
}

async fn call(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    call_as(app, TOKEN, method, path, body).await
}

async fn call_as(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = app.http.request(method, app.url(path)).bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn put(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, v) = call(app, Method::PUT, path, Some(body)).await;
    assert_eq!(status, 200, "PUT {path}: {v}");
    v
}

/// Enrolls `id` with the merchant (and site) given, returning its secret.
async fn enroll(app: &TestApp, id: &str, merchant: &str, site: Option<&str>) -> String {
    app.engine
        .enroll_device(
            &DeviceId::parse(id).unwrap(),
            &NewDevice {
                vendor: "Acme".into(),
                model: "T1".into(),
                merchant: merchant.into(),
                site: site.map(str::to_string),
            },
        )
        .await
        .unwrap()
}

/// A device that declares `config`, connected, running no settings yet.
async fn configurable(app: &TestApp, id: &str, secret: &str) -> RawDevice {
    configurable_running(app, id, secret, None).await
}

/// A device that declares `config` and says in `hello` which version it runs.
async fn configurable_running(
    app: &TestApp,
    id: &str,
    secret: &str,
    running: Option<u64>,
) -> RawDevice {
    let mut h = hello(id, secret);
    if let DeviceMessage::Hello(h) = &mut h {
        h.capabilities = vec![capability::CONFIG.into()];
        h.config_version = running;
    }
    RawDevice::connect_with(app, h).await
}

/// The next `config` frame: (version, settings as JSON).
async fn next_config(d: &mut RawDevice) -> (u64, Value) {
    match d.recv().await {
        CloudMessage::Config(c) => (c.version, serde_json::to_value(&c.settings).unwrap()),
        other => panic!("expected config, got {other:?}"),
    }
}

/// An approved result of transaction `id`, as a device reports it.
fn approved(id: protocol::TransactionId) -> DeviceMessage {
    DeviceMessage::Result(DeviceResult {
        transaction_id: id,
        transaction_result: Some(TransactionResult::Accepted),
        result: ResultCode::Ok,
        result_text: "APPROVED".into(),
        fields: Default::default(),
        receipts: None,
        settlement: None,
    })
}

async fn effective(app: &TestApp, device: &str) -> Value {
    let (status, v) = call(
        app,
        Method::GET,
        &format!("/admin/devices/{device}/config"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v
}

#[tokio::test]
async fn each_level_overrides_the_one_above_field_by_field_and_every_change_is_audited() {
    let app = spawn_app_with(opts()).await;
    let merchant = app
        .engine
        .create_merchant("Toys Shop", &Actor::cli())
        .await
        .unwrap();
    let site = app
        .engine
        .create_site(&merchant, "Store 7", &Actor::cli())
        .await
        .unwrap();
    enroll(
        &app,
        "cfg-site",
        merchant.id.as_str(),
        Some(site.id.as_str()),
    )
    .await;
    enroll(&app, "cfg-plain", merchant.id.as_str(), None).await;
    enroll(&app, "cfg-other", "Other Merchant", None).await;

    // Before any profile: the defaults, in the merchant's currency.
    let bare = effective(&app, "cfg-plain").await;
    assert_eq!(bare["settings"]["tipping"], false, "{bare}");
    assert_eq!(bare["settings"]["tipPresets"], json!([10, 15, 20]));
    assert_eq!(bare["settings"]["currency"], "AUD");
    assert_eq!(bare["sources"]["tipping"], "default");
    assert_eq!(bare["supported"], false);

    let op = put(
        &app,
        "/admin/config/operator",
        json!({"tipping": true, "receiptHeader": "eftcloud", "idleText": "Welcome", "language": "en-AU"}),
    )
    .await;
    assert_eq!(
        (op["level"].as_str(), op["version"].as_u64()),
        (Some("operator"), Some(1))
    );
    assert_eq!(op["devicesChanged"], 3, "{op}");
    let m_path = format!("/admin/config/merchants/{}", merchant.id);
    put(
        &app,
        &m_path,
        json!({"receiptHeader": "Toys Shop\n1 Main St", "tipPresets": [5, 10],
               "surcharges": [{"card": "AMEX", "bps": 250, "cap": 300}]}),
    )
    .await;
    put(
        &app,
        &format!("/admin/config/sites/{}", site.id),
        json!({"idleText": "Store 7: tap to pay"}),
    )
    .await;
    let dev = put(
        &app,
        "/admin/config/devices/cfg-site",
        json!({"tipping": false}),
    )
    .await;
    assert_eq!(dev["devicesChanged"], 1);

    let s = effective(&app, "cfg-site").await;
    let settings = &s["settings"];
    assert_eq!(settings["tipping"], false, "{s}");
    assert_eq!(settings["tipPresets"], json!([5, 10]));
    assert_eq!(settings["receiptHeader"], "Toys Shop\n1 Main St");
    assert_eq!(settings["idleText"], "Store 7: tap to pay");
    assert_eq!(settings["language"], "en-AU");
    assert_eq!(settings["surcharges"][0]["cap"], 300);
    assert_eq!(settings["cardTimeoutSecs"], 60);
    let sources = &s["sources"];
    assert_eq!(
        [
            &sources["tipping"],
            &sources["tipPresets"],
            &sources["idleText"],
            &sources["language"],
            &sources["cardTimeoutSecs"]
        ],
        [
            &json!("device"),
            &json!("merchant"),
            &json!("site"),
            &json!("operator"),
            &json!("default")
        ]
    );
    assert_eq!(s["profiles"].as_array().map(Vec::len), Some(4));

    // The device with no site and no profile of its own: operator and merchant only.
    let p = effective(&app, "cfg-plain").await;
    assert_eq!(p["settings"]["tipping"], true, "{p}");
    assert_eq!(p["settings"]["idleText"], "Welcome");
    assert_eq!(p["settings"]["receiptHeader"], "Toys Shop\n1 Main St");
    // Another merchant's device sees only the operator's.
    let o = effective(&app, "cfg-other").await;
    assert_eq!(o["settings"]["receiptHeader"], "eftcloud");
    assert_eq!(o["settings"]["tipPresets"], json!([10, 15, 20]));

    // A profile is replaced as a whole: a field left out is inherited again.
    let v2 = put(&app, &m_path, json!({"tipPresets": [5, 10]})).await;
    assert_eq!(v2["version"], 2);
    let s = effective(&app, "cfg-site").await;
    assert_eq!(s["settings"]["receiptHeader"], "eftcloud", "{s}");
    assert_eq!(s["sources"]["receiptHeader"], "operator");
    assert_eq!(s["settings"]["surcharges"], json!([]));
    let (status, history) = call(&app, Method::GET, &format!("{m_path}/history"), None).await;
    assert_eq!(status, 200);
    let versions: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [2, 1], "{history}");
    assert_eq!(history[1]["profile"]["surcharges"][0]["card"], "AMEX");
    assert_eq!(history[0]["setBy"], "admin-token");
    let (_, current) = call(&app, Method::GET, &m_path, None).await;
    assert_eq!(current["version"], 2);
    let (_, never) = call(&app, Method::GET, "/admin/config/devices/cfg-plain", None).await;
    assert_eq!(
        (never["version"].as_u64(), &never["profile"]),
        (Some(0), &json!({}))
    );

    // Every change is in the audit log, with its version and what it set.
    let (_, audit) = call(&app, Method::GET, "/admin/audit?action=config.set", None).await;
    let entries = audit.as_array().unwrap().clone();
    assert_eq!(entries.len(), 5, "{audit}");
    let newest = &entries[0];
    assert_eq!(
        newest["target"],
        format!("merchant:{}", merchant.id),
        "{newest}"
    );
    let detail = &newest["detail"];
    assert_eq!(detail["version"], 2, "{detail}");
    assert_eq!(detail["profile"]["tipPresets"], json!([5, 10]));

    // Refusals: bad values named, unknown fields, unknown targets, nothing stored.
    for (body, says) in [
        (json!({"tipPresets": [0, 10]}), "tipPresets"),
        (
            json!({"surcharges": [{"card": "VISA", "bps": 5000}]}),
            "bps",
        ),
        (json!({"language": "klingon"}), "language"),
        (json!({"cardTimeoutSecs": 1}), "cardTimeoutSecs"),
        (json!({"tip_presets": [10]}), "unknown field"),
        (json!({"currency": "XYZ"}), "XYZ"),
    ] {
        let (status, v) = call(&app, Method::PUT, &m_path, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains(says),
            "{body}: {v}"
        );
    }
    let (_, still) = call(&app, Method::GET, &m_path, None).await;
    assert_eq!(still["version"], 2);
    let unknown_merchant = format!("/admin/config/merchants/{}", uuid::Uuid::new_v4());
    let (status, v) = call(&app, Method::PUT, &unknown_merchant, Some(json!({}))).await;
    assert_eq!(status, 404, "{v}");
    let (status, _) = call(&app, Method::GET, "/admin/config/planets/x", None).await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &app,
        Method::GET,
        "/admin/config/merchants/not-a-uuid",
        None,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(&app, Method::GET, "/admin/devices/nobody/config", None).await;
    assert_eq!(status, 404);

    // A merchant's key sets its own levels only, never the operator's; another merchant's
    // device does not exist for it.
    let (status, created) = call(
        &app,
        Method::POST,
        "/admin/api-keys",
        Some(json!({"merchantId": merchant.id.as_str(), "scopes": ["devices:manage"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["apiKey"].as_str().unwrap().to_string();
    let (status, v) = call_as(
        &app,
        &key,
        Method::PUT,
        "/admin/config/operator",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    let (status, _) = call_as(
        &app,
        &key,
        Method::PUT,
        "/admin/config/devices/cfg-other",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call_as(
        &app,
        &key,
        Method::GET,
        "/admin/devices/cfg-other/config",
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, v) = call_as(
        &app,
        &key,
        Method::PUT,
        "/admin/config/devices/cfg-plain",
        Some(json!({"idleText": "Mine"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["setBy"].as_str().map(|s| s.starts_with("key:")),
        Some(true)
    );
    let (status, _) = call_as(&app, &key, Method::GET, "/admin/config/operator", None).await;
    assert_eq!(
        status, 200,
        "the operator's profile applies to its devices: it may read it"
    );
    // No credential: 401.
    let r = app
        .http
        .get(app.url("/admin/config/operator"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_device_is_sent_its_settings_when_they_change_and_when_it_reconnects() {
    let app = spawn_app_with(opts()).await;
    let secret = enroll(&app, "cfg-push", "Push Shop", None).await;
    let plain_secret = enroll(&app, "cfg-legacy", "Push Shop", None).await;
    let merchant = app.engine.find_merchant("Push Shop").await.unwrap();
    let m_path = format!("/admin/config/merchants/{}", merchant.id);

    // On connecting, the device is sent the settings it never acknowledged: the defaults.
    let mut d = configurable(&app, "cfg-push", &secret).await;
    let (v1, s) = next_config(&mut d).await;
    assert_eq!(v1, 1);
    assert_eq!(s["tip_presets"], json!([10, 15, 20]), "{s}");
    d.send(&DeviceMessage::ConfigAck { version: v1 }).await;
    let e = eventually("the ack recorded", || async {
        let e = effective(&app, "cfg-push").await;
        (e["acknowledgedVersion"] == 1).then_some(e)
    })
    .await;
    assert_eq!(
        (e["pending"].as_bool(), e["supported"].as_bool()),
        (Some(false), Some(true))
    );
    // A device that does not declare `config` is left alone.
    let mut legacy = RawDevice::connect(&app, "cfg-legacy", &plain_secret).await;

    // A change reaches it at once.
    let set = put(
        &app,
        &m_path,
        json!({"receiptHeader": "Push Shop", "tipping": true}),
    )
    .await;
    assert_eq!(
        (set["devicesChanged"].as_u64(), set["devicesSent"].as_u64()),
        (Some(2), Some(1))
    );
    let (v2, s) = next_config(&mut d).await;
    assert_eq!(v2, 2);
    assert_eq!(
        (s["receipt_header"].as_str(), s["tipping"].as_bool()),
        (Some("Push Shop"), Some(true))
    );
    d.send(&DeviceMessage::ConfigAck { version: v2 }).await;
    legacy.expect_silence(Duration::from_millis(200)).await;
    // A change that changes nothing for it (the same profile again) sends nothing.
    let same = put(
        &app,
        &m_path,
        json!({"receiptHeader": "Push Shop", "tipping": true}),
    )
    .await;
    assert_eq!(
        same["version"], 2,
        "a new version of the profile all the same"
    );
    assert_eq!(same["devicesChanged"], 0, "{same}");
    d.expect_silence(Duration::from_millis(200)).await;

    // Offline, it misses a change; on reconnecting it is sent the new version.
    drop(d);
    eventually("the device offline", || async {
        let (_, v) = call(&app, Method::GET, "/admin/devices/cfg-push", None).await;
        (v["online"] == false).then_some(())
    })
    .await;
    let set = put(&app, &m_path, json!({"receiptHeader": "Push Shop v3"})).await;
    assert_eq!(set["devicesSent"], 0, "{set}");
    let e = effective(&app, "cfg-push").await;
    assert_eq!(
        (e["version"].as_u64(), e["pending"].as_bool()),
        (Some(3), Some(true)),
        "{e}"
    );
    let mut d = configurable(&app, "cfg-push", &secret).await;
    let (v3, s) = next_config(&mut d).await;
    assert_eq!(
        (v3, s["receipt_header"].as_str()),
        (3, Some("Push Shop v3"))
    );
    // Acks are idempotent, and one of a version never sent changes nothing.
    for v in [3, 3, 99] {
        d.send(&DeviceMessage::ConfigAck { version: v }).await;
    }
    eventually("the ack recorded", || async {
        (effective(&app, "cfg-push").await["acknowledgedVersion"] == 3).then_some(())
    })
    .await;
    drop(d);
    // Acknowledged, and the device says it runs them: the next connection is sent nothing.
    let mut d = configurable_running(&app, "cfg-push", &secret, Some(3)).await;
    d.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(effective(&app, "cfg-push").await["acknowledgedVersion"], 3);
    drop(d);
    // A device that lost them (its storage wiped: it runs none, or an older version) is sent
    // them again although it acknowledged them once.
    for running in [None, Some(2)] {
        let mut d = configurable_running(&app, "cfg-push", &secret, running).await;
        let (v, s) = next_config(&mut d).await;
        assert_eq!(
            (v, s["receipt_header"].as_str()),
            (3, Some("Push Shop v3")),
            "{running:?}"
        );
        d.send(&DeviceMessage::ConfigAck { version: v }).await;
        drop(d);
    }
}

#[tokio::test]
async fn settings_are_never_sent_in_the_middle_of_a_transaction() {
    let app = spawn_app_with(opts()).await;
    let secret = enroll(&app, "cfg-busy", "Busy Shop", None).await;
    let mut d = configurable(&app, "cfg-busy", &secret).await;
    let (v1, _) = next_config(&mut d).await;
    d.send(&DeviceMessage::ConfigAck { version: v1 }).await;
    let reg = d.pair(&app).await;

    // A purchase is offered, accepted and started.
    let (status, body) = app
        .post_form("/pos/transaction", &purchase(&reg, "1000"))
        .await;
    assert_eq!(status, 200, "{body}");
    let id = match d.recv().await {
        CloudMessage::Transaction(offer) => offer.transaction_id,
        other => panic!("expected an offer, got {other:?}"),
    };
    // A change while it is offered and while it runs: held, not sent.
    put(
        &app,
        "/admin/config/devices/cfg-busy",
        json!({"idleText": "during the offer"}),
    )
    .await;
    d.expect_silence(Duration::from_millis(200)).await;
    d.send(&DeviceMessage::Accept { transaction_id: id }).await;
    assert_eq!(d.recv().await, CloudMessage::Start { transaction_id: id });
    let newest = put(
        &app,
        "/admin/config/devices/cfg-busy",
        json!({"idleText": "during the payment"}),
    )
    .await;
    assert_eq!(
        newest["devicesSent"], 1,
        "the frame went to the connection, which holds it"
    );
    d.expect_silence(Duration::from_millis(300)).await;
    let e = effective(&app, "cfg-busy").await;
    assert_eq!(e["pending"], true);

    // The result ends it: its ack first, then only the newest settings.
    d.send(&approved(id)).await;
    assert_eq!(
        d.recv().await,
        CloudMessage::ResultAck { transaction_id: id }
    );
    let (v, s) = next_config(&mut d).await;
    assert_eq!(v, v1 + 2);
    assert_eq!(s["idle_text"], "during the payment");
    d.expect_silence(Duration::from_millis(200)).await;

    // An offer that is never run (cancelled before it started, so aborted) releases them too.
    d.send(&DeviceMessage::ConfigAck { version: v }).await;
    let (status, env) = app
        .post_form("/pos/transaction", &purchase(&reg, "1000"))
        .await;
    assert_eq!(status, 200);
    let id = match d.recv().await {
        CloudMessage::Transaction(offer) => offer.transaction_id,
        other => panic!("expected an offer, got {other:?}"),
    };
    put(
        &app,
        "/admin/config/devices/cfg-busy",
        json!({"idleText": "after the abort"}),
    )
    .await;
    let cancel_url = format!(
        "{}/pos/transaction/{id}/cancel?merchantAccessToken={}",
        app.base,
        env["merchantAccessToken"].as_str().unwrap()
    );
    let r = app.http.post(&cancel_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    match d.recv().await {
        CloudMessage::Abort { transaction_id, .. } => assert_eq!(transaction_id, id),
        other => panic!("expected abort, got {other:?}"),
    }
    let (_, s) = next_config(&mut d).await;
    assert_eq!(s["idle_text"], "after the abort");
}

#[tokio::test]
async fn an_input_without_a_timeout_takes_the_devices_configured_one() {
    let app = spawn_app_with(opts()).await;
    let secret = enroll(&app, "cfg-input", "Input Shop", None).await;
    let mut h = hello("cfg-input", &secret);
    if let DeviceMessage::Hello(h) = &mut h {
        h.capabilities = vec![capability::CONFIG.into(), capability::INPUT.into()];
    }
    let mut d = RawDevice::connect_with(&app, h).await;
    let (v1, _) = next_config(&mut d).await;
    d.send(&DeviceMessage::ConfigAck { version: v1 }).await;
    let reg = d.pair(&app).await;
    put(
        &app,
        "/admin/config/devices/cfg-input",
        json!({"inputTimeoutSecs": 30}),
    )
    .await;
    let (v2, _) = next_config(&mut d).await;
    d.send(&DeviceMessage::ConfigAck { version: v2 }).await;

    for (given, expected) in [(None, 30), (Some("10"), 10)] {
        let mut form = register_form(&reg);
        form.extend([("InputKind", "confirmation"), ("Prompt", "Join our club?")]);
        if let Some(t) = given {
            form.push(("TimeoutSeconds", t));
        }
        let (status, started) = app.post_form("/pos/register/input", &form).await;
        assert_eq!(status, 200, "{started}");
        let offer = match d.recv().await {
            CloudMessage::Transaction(o) => o,
            other => panic!("expected the input, got {other:?}"),
        };
        let input = offer.request.input.clone().unwrap();
        assert_eq!(input.timeout_secs, expected, "{given:?}");
        // Done with it: the device's customer cancels.
        d.send(&DeviceMessage::Accept {
            transaction_id: offer.transaction_id,
        })
        .await;
        assert!(matches!(d.recv().await, CloudMessage::Start { .. }));
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("CancelReason".to_string(), "customer".to_string());
        d.send(&DeviceMessage::Result(DeviceResult {
            transaction_id: offer.transaction_id,
            transaction_result: None,
            result: ResultCode::Cancelled,
            result_text: "CANCELLED".into(),
            fields,
            receipts: None,
            settlement: None,
        }))
        .await;
        assert!(matches!(d.recv().await, CloudMessage::ResultAck { .. }));
    }
}

/// A purchase through the POS client, waited for.
async fn purchase_of(
    app: &TestApp,
    reg: &protocol::RegisterKey,
    cents: u64,
) -> pos::TransactionEnvelope {
    let pos = app.pos();
    let spec = pos::TransactionSpec::new(protocol::Function::CardPurchase)
        .with_amount(protocol::Cents::new(cents).unwrap());
    let started = pos.start(reg, &spec).await.unwrap();
    pos.wait_for_completion(&started, quick(), |_| {})
        .await
        .unwrap()
}

/// The reference agent applies a merchant's profile and its simulator pays with it: the first
/// tip preset, the surcharge of the card's type, the receipt's header and footer.
#[tokio::test]
async fn the_reference_agent_pays_with_the_configured_tips_surcharges_and_receipt_text() {
    let app = spawn_app_with(opts()).await;
    let (mut t, reg) = paired_terminal(&app, "cfg-agent").await;
    let device = app
        .engine
        .device(&DeviceId::parse("cfg-agent").unwrap())
        .await
        .unwrap()
        .unwrap();
    let m_path = format!("/admin/config/merchants/{}", device.merchant_id);
    let set = put(
        &app,
        &m_path,
        json!({"tipping": true, "tipPresets": [10, 20],
               "surcharges": [{"card": "*", "bps": 150}, {"card": "NOSUCHCARD", "bps": 900}],
               "receiptHeader": "Joe's Coffee\n1 Main St", "receiptFooter": "See you soon"}),
    )
    .await;
    assert_eq!(set["devicesSent"], 1, "{set}");
    let version = set["version"].as_u64().unwrap();
    let applied = t
        .wait_for(|e| match e {
            terminal::TerminalEvent::ConfigApplied { version, .. } => Some(*version),
            _ => None,
        })
        .await;
    let e = eventually("the agent's ack", || async {
        let e = effective(&app, "cfg-agent").await;
        (e["pending"] == false && e["acknowledgedVersion"].as_u64() == Some(applied)).then_some(e)
    })
    .await;
    assert!(applied >= version, "{e}");

    let done = purchase_of(&app, &reg, 1000).await;
    // 10% of $10.00 is $1.00; 1.5% of $11.00 is 16.5 cents, rounded half up: 17.
    assert_eq!(done.field("AmountTip"), Some("100"), "{done:?}");
    assert_eq!(done.field("AmountSurcharge"), Some("17"));
    assert_eq!(done.field("AmountTotal"), Some("1117"));
    let receipt = done.field("Receipt").unwrap();
    let lines: Vec<&str> = receipt
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.first(), Some(&"Joe's Coffee"), "{receipt}");
    assert_eq!(lines.get(1), Some(&"1 Main St"), "{receipt}");
    assert_eq!(lines.last(), Some(&"See you soon"), "{receipt}");

    // Tipping off at the device's own level: the next purchase has no tip.
    put(
        &app,
        "/admin/config/devices/cfg-agent",
        json!({"tipping": false}),
    )
    .await;
    t.wait_for(|e| matches!(e, terminal::TerminalEvent::ConfigApplied { .. }).then_some(()))
        .await;
    let done = purchase_of(&app, &reg, 1000).await;
    assert_eq!(done.field("AmountTip").unwrap_or("0"), "0", "{done:?}");
    assert_eq!(done.field("AmountTotal"), Some("1015"));
}

/// A change made on one node reaches a device connected to another, through NATS, and waits
/// there for the device's transaction to end.
#[cfg_attr(
    not(all(eftcloud_test_postgres, eftcloud_test_nats)),
    ignore = "needs PostgreSQL and NATS: set EFTCLOUD_TEST_DATABASE_URL and EFTCLOUD_TEST_NATS_URL (.ci/run does)"
)]
#[tokio::test]
async fn a_change_on_one_node_reaches_a_device_on_another() {
    let Some(nats) = nats_url_or_skip("configuration across nodes") else {
        return;
    };
    let Some(db) = eftcloud_testing::FreshDatabase::create("configuration across nodes").await
    else {
        return;
    };
    let node = |name: &str| Opts {
        database_url: Some(db.url.clone()),
        nats_url: Some(nats.clone()),
        node: name.into(),
        admin_token: Some(TOKEN.into()),
        ..Opts::default()
    };
    let a = spawn_app_with(node("cfg-a")).await;
    let b = spawn_app_with(node("cfg-b")).await;
    let secret = enroll(&a, "cfg-far", "Far Shop", None).await;
    let mut d = configurable(&b, "cfg-far", &secret).await;
    let (v1, _) = next_config(&mut d).await;
    d.send(&DeviceMessage::ConfigAck { version: v1 }).await;
    let reg = d.pair(&b).await;

    let set = put(
        &a,
        "/admin/config/devices/cfg-far",
        json!({"idleText": "from node A"}),
    )
    .await;
    assert_eq!(set["devicesSent"], 1, "{set}");
    let (v2, s) = next_config(&mut d).await;
    assert_eq!((v2, s["idle_text"].as_str()), (v1 + 1, Some("from node A")));
    d.send(&DeviceMessage::ConfigAck { version: v2 }).await;
    eventually("the ack seen from node A", || async {
        (effective(&a, "cfg-far").await["acknowledgedVersion"].as_u64() == Some(v2)).then_some(())
    })
    .await;

    // A purchase from A runs on the device on B; a change from A meanwhile waits on B.
    let (status, _) = a
        .post_form("/pos/transaction", &purchase(&reg, "500"))
        .await;
    assert_eq!(status, 200);
    let id = match d.recv().await {
        CloudMessage::Transaction(o) => o.transaction_id,
        other => panic!("expected an offer, got {other:?}"),
    };
    d.send(&DeviceMessage::Accept { transaction_id: id }).await;
    assert_eq!(d.recv().await, CloudMessage::Start { transaction_id: id });
    put(
        &a,
        "/admin/config/devices/cfg-far",
        json!({"idleText": "after the sale"}),
    )
    .await;
    d.expect_silence(Duration::from_millis(300)).await;
    d.send(&approved(id)).await;
    assert_eq!(
        d.recv().await,
        CloudMessage::ResultAck { transaction_id: id }
    );
    let (_, s) = next_config(&mut d).await;
    assert_eq!(s["idle_text"], "after the sale");
}
