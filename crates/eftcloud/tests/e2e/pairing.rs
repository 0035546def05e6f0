//! Pairing through `PUT /POS/Pairing/{code}`.

use crate::harness::*;
use protocol::device::{CloudMessage, DeviceMessage};
use std::time::Duration;

const INVALID: &str = "Invalid Pairing Code. Please make sure you entered the code correctly";

async fn put_pairing(app: &TestApp, path: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let r = app.http.put(app.url(path)).form(form).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or_default())
}

fn pairing_form(r: &protocol::RegisterKey) -> Vec<(&'static str, &str)> {
    let mut f = register_form(r);
    f.push(("POSRegisterName", "Main Register"));
    f
}

#[tokio::test]
async fn pairing_codes_are_single_use_and_replaced() {
    let app = spawn_app().await;
    let secret = app.enroll("dev-pair").await;
    let mut d = RawDevice::connect(&app, "dev-pair", &secret).await;
    let reg = register("a");

    // Unknown code: the vendor's exact error.
    let (s, body) = put_pairing(&app, "/POS/Pairing/12345678", &pairing_form(&reg)).await;
    assert_eq!((s, body["error"].as_str()), (400, Some(INVALID)));
    // Not even a code.
    let (s, body) = put_pairing(&app, "/POS/Pairing/abc", &pairing_form(&reg)).await;
    assert_eq!((s, body["error"].as_str()), (400, Some(INVALID)));

    // A new code invalidates the previous one.
    let old = d.code().await;
    let code = d.code().await;
    assert_eq!(code.len(), 8);
    let (s, _) = put_pairing(&app, &format!("/POS/Pairing/{old}"), &pairing_form(&reg)).await;
    assert_eq!(s, 400);

    // Missing fields are 400s that name the field, and do not consume the code.
    for missing in [
        "POSRegisterID",
        "POSBusinessName",
        "POSVendorName",
        "POSRegisterName",
    ] {
        let form: Vec<_> = pairing_form(&reg)
            .into_iter()
            .filter(|(k, _)| *k != missing)
            .collect();
        let (s, body) = put_pairing(&app, &format!("/POS/Pairing/{code}"), &form).await;
        assert_eq!(s, 400);
        assert!(body["error"].as_str().unwrap().contains(missing), "{body}");
    }

    let mut form = pairing_form(&reg);
    form.extend([
        ("Contact Name", "Jo Bloggs"),
        ("Email", "jo@example.com"),
        ("Unknown", "ignored"),
    ]);
    let (s, body) = put_pairing(&app, &format!("/pos/pairing/{code}"), &form).await;
    assert_eq!((s, body), (200, serde_json::json!({"result": "success"})));
    match d.recv().await {
        CloudMessage::Paired { register } => {
            assert_eq!(register.key, reg);
            assert_eq!(register.register_name, "Main Register");
        }
        other => panic!("{other:?}"),
    }
    let stored = app.engine.register(&reg).await.unwrap().unwrap();
    assert_eq!(
        stored.contact.get("ContactName").map(String::as_str),
        Some("Jo Bloggs")
    );

    // Single use.
    let (s, _) = put_pairing(
        &app,
        &format!("/POS/Pairing/{code}"),
        &pairing_form(&register("b")),
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn pairing_codes_expire() {
    let (app, clock) = spawn_app_on_manual_clock().await;
    let secret = app.enroll("dev-exp").await;
    let mut d = RawDevice::connect(&app, "dev-exp", &secret).await;
    let code = d.code().await;
    clock.advance(Opts::default().pairing_code_ttl + Duration::from_millis(1));
    let (s, body) = put_pairing(
        &app,
        &format!("/POS/Pairing/{code}"),
        &pairing_form(&register("x")),
    )
    .await;
    assert_eq!((s, body["error"].as_str()), (400, Some(INVALID)));
}

#[tokio::test]
async fn register_moves_between_devices_and_device_unpairs() {
    let app = spawn_app().await;
    let s1 = app.enroll("dev-1").await;
    let s2 = app.enroll("dev-2").await;
    let mut d1 = RawDevice::connect(&app, "dev-1", &s1).await;
    let mut d2 = RawDevice::connect(&app, "dev-2", &s2).await;
    let reg = d1.pair(&app).await;

    // Same register pairs with the second device: the first is told it lost it.
    let code = d2.code().await;
    app.pos()
        .pair(&code, &reg, &pos::PairingDetails::new("Main"))
        .await
        .unwrap();
    assert!(matches!(d2.recv().await, CloudMessage::Paired { .. }));
    match d1.recv().await {
        CloudMessage::Unpaired { registers } => assert_eq!(registers, vec![reg.clone()]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        app.engine
            .register(&reg)
            .await
            .unwrap()
            .unwrap()
            .device_id
            .as_str(),
        "dev-2"
    );

    // A changed triple is another register: not paired.
    let mut other = reg.clone();
    other.business_name = "Other Shop".into();
    let (s, body) = app
        .post_form("/POS/Transaction", &purchase(&other, "100"))
        .await;
    assert_eq!(s, 400);
    assert_eq!(body["error"], protocol::pos_api::NOT_PAIRED);

    // Unpairing happens on the device.
    d2.send(&DeviceMessage::Unpair { register: None }).await;
    match d2.recv().await {
        CloudMessage::Unpaired { registers } => assert_eq!(registers, vec![reg.clone()]),
        other => panic!("{other:?}"),
    }
    let (s, body) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some(protocol::pos_api::NOT_PAIRED))
    );
}
