//! Accounts end to end: two merchants, two POS vendors, every kind of credential against every
//! `/pos` and `/admin` route, on SQLite and on PostgreSQL; keys created and revoked through the
//! admin API; a key revoked on one node refused by another at once.

use crate::harness::*;
use cloud::domain::accounts::{KeyOwner, MerchantRecord, Scope, Scopes};
use cloud::engine::accounts::{Actor, NewApiKey};
use cloud::engine::devices::NewDevice;
use eftcloud_testing::FreshDatabase;
use pos::PairingDetails;
use protocol::{DeviceId, RegisterKey};
use reqwest::Method;
use std::sync::Arc;
use terminal::TerminalEvent;

const ADMIN_TOKEN: &str = "accounts-admin-token";

/// The credentials of the table, in the order of each row's expectations.
const CREDENTIALS: [&str; 17] = [
    "none",
    "key A",
    "key A read",
    "key B",
    "vendor 1",
    "vendor 2",
    "admin A",
    "operator",
    "reports",
    "revoked",
    "malformed",
    "admin token",
    "owner",
    "operator person",
    "merchant-admin A",
    "viewer A",
    "viewer",
];

/// How a credential is presented.
#[derive(Clone)]
enum Cred {
    None,
    Bearer(String),
    /// A person's session: the cookie, and the CSRF token sent with changes.
    Session {
        cookie: String,
        csrf: String,
    },
}

/// Signs a person in; their session.
async fn session_of(app: &TestApp, email: &str) -> Cred {
    let r = app
        .http
        .post(app.url("/dashboard/sign-in"))
        .json(&serde_json::json!({ "email": email, "password": PEOPLE_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{email} signs in");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let me: serde_json::Value = r.json().await.unwrap();
    Cred::Session {
        cookie,
        csrf: me["csrfToken"].as_str().unwrap().to_string(),
    }
}

const PEOPLE_PASSWORD: &str = "a long enough password";

/// Whether a credential is confined to merchant A (its lists must show A's things only).
fn confined_to_a(who: &str) -> bool {
    matches!(who, "admin A" | "merchant-admin A" | "viewer A")
}

/// A merchant with a device running a real terminal, a register paired to it (of `vendor`)
/// and one completed purchase made with POS reference `ref`.
struct Shop {
    merchant: MerchantRecord,
    register: RegisterKey,
    transaction_id: String,
    token: String,
    /// A second device of the merchant, never connected (rotating its secret harms no one).
    spare: DeviceId,
    _terminal: Terminal,
}

async fn shop(app: &TestApp, name: &str, vendor: &str, device: &str) -> Shop {
    let engine = &app.engine;
    let merchant = engine.create_merchant(name, &Actor::cli()).await.unwrap();
    let enroll = |id: String| {
        let merchant = merchant.id.to_string();
        async move {
            let id = DeviceId::parse(&id).unwrap();
            let details = NewDevice {
                merchant,
                ..NewDevice::default()
            };
            let secret = engine.enroll_device(&id, &details).await.unwrap();
            (id, secret)
        }
    };
    let (id, secret) = enroll(device.to_string()).await;
    let (spare, _) = enroll(format!("{device}-spare")).await;
    let journal = app.dir.path().join(format!("{device}.journal"));
    let mut t = start_terminal(app, id.as_str(), &secret, &journal, fast_simulator()).await;
    let code = t.next_code().await;
    let register = RegisterKey {
        register_id: format!("till-{}", uuid::Uuid::new_v4()),
        business_name: name.into(),
        vendor_name: vendor.into(),
    };
    app.pos()
        .pair(&code, &register, &PairingDetails::new("Front"))
        .await
        .unwrap();
    t.wait_for(|e| matches!(e, TerminalEvent::Paired { .. }).then_some(()))
        .await;
    let (status, started) = app
        .post_form("/pos/transaction", &purchase_ref(&register))
        .await;
    assert_eq!(status, 200, "{started}");
    let url = started["data"]["PollingUrl"].as_str().unwrap().to_string();
    poll_until_completed(app, &url).await;
    Shop {
        merchant,
        transaction_id: started["transactionId"].as_str().unwrap().into(),
        token: started["merchantAccessToken"].as_str().unwrap().into(),
        register,
        spare,
        _terminal: t,
    }
}

fn purchase_ref(r: &RegisterKey) -> Vec<(&'static str, &str)> {
    let mut f = purchase(r, "1500");
    f.push(("PosReference", "ref-1"));
    f
}

/// One request of the table.
struct Call {
    what: String,
    method: Method,
    path: String,
    form: Vec<(String, String)>,
    /// What a 200 must say beside its status (a check on the JSON body).
    check: Option<fn(&str, &serde_json::Value)>,
}

fn call(method: Method, path: String, form: &[(&str, &str)]) -> Call {
    Call {
        what: format!("{method} {path}"),
        method,
        path,
        form: form
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        check: None,
    }
}

async fn send(app: &TestApp, c: &Call, cred: &Cred) -> (u16, serde_json::Value) {
    let url = app.url(&c.path);
    let mut req = app.http.request(c.method.clone(), &url);
    req = if c.method == Method::GET {
        req.query(&c.form)
    } else if c.path.starts_with("/admin/merchants") && c.method == Method::POST {
        req.json(&serde_json::json!({ "name": format!("New merchant {}", uuid::Uuid::new_v4()) }))
    } else {
        req.form(&c.form)
    };
    match cred {
        Cred::None => {}
        Cred::Bearer(b) => req = req.bearer_auth(b),
        Cred::Session { cookie, csrf } => {
            req = req.header("cookie", cookie);
            if c.method != Method::GET {
                req = req.header("x-csrf-token", csrf);
            }
        }
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// Every credential against every route: status by credential, in [`CREDENTIALS`] order.
async fn credential_table(app: TestApp) {
    let a = shop(&app, "Merchant A", "VendorOne", "dev-a").await;
    let b = shop(&app, "Merchant B", "VendorTwo", "dev-b").await;
    let pos = [Scope::PosTransact, Scope::PosRead];
    let key_a = key(&app, KeyOwner::Merchant(a.merchant.id.clone()), &pos).await;
    let key_a_read = key(
        &app,
        KeyOwner::Merchant(a.merchant.id.clone()),
        &[Scope::PosRead],
    )
    .await;
    let key_b = key(&app, KeyOwner::Merchant(b.merchant.id.clone()), &pos).await;
    let vendor_1 = key(&app, KeyOwner::Vendor("VendorOne".into()), &pos).await;
    let vendor_2 = key(&app, KeyOwner::Vendor("VendorTwo".into()), &pos).await;
    let admin_a = key(
        &app,
        KeyOwner::Merchant(a.merchant.id.clone()),
        &[Scope::Admin],
    )
    .await;
    let operator = key(&app, KeyOwner::Installation, &[Scope::Admin]).await;
    let reports = key(&app, KeyOwner::Installation, &[Scope::ReportsRead]).await;
    let revoked = key(&app, KeyOwner::Installation, &Scope::ALL).await;
    let revoked_id = revoked.split('_').nth(1).unwrap().to_string();
    app.engine
        .revoke_api_key(
            &revoked_id,
            &cloud::domain::accounts::Principal::owner_token(),
            &Actor::cli(),
        )
        .await
        .unwrap();
    let malformed = "eftk_nothing_like_a_key".to_string();
    use cloud::domain::people::Role;
    for (email, role, merchant) in [
        ("owner@example.com", Role::Owner, None),
        ("operator@example.com", Role::Operator, None),
        (
            "admin-a@example.com",
            Role::MerchantAdmin,
            Some(a.merchant.id.clone()),
        ),
        (
            "viewer-a@example.com",
            Role::Viewer,
            Some(a.merchant.id.clone()),
        ),
        ("viewer@example.com", Role::Viewer, None),
    ] {
        app.engine
            .create_user(
                cloud::engine::people::NewUser {
                    email: email.into(),
                    password: PEOPLE_PASSWORD.into(),
                    role,
                    merchant,
                },
                &Actor::cli(),
            )
            .await
            .unwrap();
    }
    let bearer = |k: &str| Cred::Bearer(k.to_string());
    let creds: [Cred; 17] = [
        Cred::None,
        bearer(&key_a),
        bearer(&key_a_read),
        bearer(&key_b),
        bearer(&vendor_1),
        bearer(&vendor_2),
        bearer(&admin_a),
        bearer(&operator),
        bearer(&reports),
        bearer(&revoked),
        bearer(&malformed),
        bearer(ADMIN_TOKEN),
        session_of(&app, "owner@example.com").await,
        session_of(&app, "operator@example.com").await,
        session_of(&app, "admin-a@example.com").await,
        session_of(&app, "viewer-a@example.com").await,
        session_of(&app, "viewer@example.com").await,
    ];

    let triple = register_form(&a.register);
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut f = triple.clone();
        f.extend_from_slice(extra);
        f
    };
    let (tx_a, tx_b) = (a.transaction_id.as_str(), b.transaction_id.as_str());
    let paired = |want: bool| -> fn(&str, &serde_json::Value) {
        if want {
            |who, body| assert_eq!(body["paired"], true, "{who}: {body}")
        } else {
            |who, body| assert_eq!(body["paired"], false, "{who}: {body}")
        }
    };
    let only_a_devices: fn(&str, &serde_json::Value) = |who, body| {
        let ids: Vec<&str> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["deviceId"].as_str().unwrap())
            .collect();
        if confined_to_a(who) {
            assert_eq!(ids, ["dev-a", "dev-a-spare"], "{who}");
        } else {
            assert_eq!(ids.len(), 4, "{who}: {ids:?}");
        }
    };
    let only_a_transactions: fn(&str, &serde_json::Value) = |who, body| {
        let devices: Vec<&str> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["deviceId"].as_str().unwrap())
            .collect();
        if confined_to_a(who) {
            assert_eq!(devices, ["dev-a"], "{who}");
        } else {
            assert_eq!(devices.len(), 2, "{who}: {devices:?}");
        }
    };
    let merchants_seen: fn(&str, &serde_json::Value) = |who, body| {
        let n = body.as_array().unwrap().len();
        if confined_to_a(who) {
            assert_eq!(n, 1, "{who}: {body}");
        } else {
            assert!(n >= 2, "{who}: {body}");
        }
    };

    use Method as M;
    #[rustfmt::skip]
    let rows: Vec<(Call, [u16; 17])> = vec![
        // people (cookies) and bearers that are not eftk_ keys are keyless on the POS API    none key-A A-read key-B vend1 vend2 adm-A oper  repo  revok malf  token owner op   m-a-A view-A view
        (call(M::POST, "/pos/transaction".into(), &purchase_ref(&a.register)),
                                                                [200, 200, 403, 400, 200, 403, 403, 403, 403, 401, 401, 200, 200, 200, 200, 200, 200]),
        (call(M::GET, format!("/pos/transaction/{tx_a}"), &[("merchantAccessToken", &a.token)]),
                                                                [200, 200, 200, 404, 200, 404, 403, 403, 403, 401, 401, 200, 200, 200, 200, 200, 200]),
        (call(M::POST, format!("/pos/transaction/{tx_a}/cancel"), &triple),
                                                                [409, 409, 403, 404, 409, 403, 403, 403, 403, 401, 401, 409, 409, 409, 409, 409, 409]),
        (call(M::GET, format!("/pos/transaction/{tx_a}/events"), &triple),
                                                                [200, 200, 200, 404, 200, 403, 403, 403, 403, 401, 401, 200, 200, 200, 200, 200, 200]),
        (call(M::GET, "/pos/lookup".into(), &with(&[("PosReference", "ref-1")])),
                                                                [200, 200, 200, 404, 200, 403, 403, 403, 403, 401, 401, 200, 200, 200, 200, 200, 200]),
        (Call { check: Some(paired(true)), ..call(M::GET, "/pos/register".into(), &triple) },
                                                                [200, 200, 200, 0, 200, 403, 403, 403, 403, 401, 401, 200, 200, 200, 200, 200, 200]),
        (Call { check: Some(paired(false)), what: "GET /pos/register (as key B)".into(), ..call(M::GET, "/pos/register".into(), &triple) },
                                                                [0, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        (Call { check: Some(only_a_devices), ..call(M::GET, "/admin/devices".into(), &[]) },
                                                                [401, 403, 403, 403, 403, 403, 200, 200, 200, 401, 401, 200, 200, 200, 200, 200, 200]),
        (Call { check: Some(only_a_transactions), ..call(M::GET, "/admin/transactions".into(), &[]) },
                                                                [401, 403, 403, 403, 403, 403, 200, 200, 200, 401, 401, 200, 200, 200, 200, 200, 200]),
        (call(M::GET, format!("/admin/transactions/{tx_a}"), &[]),
                                                                [401, 403, 403, 403, 403, 403, 200, 200, 200, 401, 401, 200, 200, 200, 200, 200, 200]),
        (call(M::GET, format!("/admin/transactions/{tx_b}"), &[]),
                                                                [401, 403, 403, 403, 403, 403, 404, 200, 200, 401, 401, 200, 200, 200, 404, 404, 200]),
        (call(M::POST, format!("/admin/devices/{}/rotate-secret", a.spare), &[]),
                                                                [401, 403, 403, 403, 403, 403, 200, 200, 403, 401, 401, 200, 200, 200, 200, 403, 403]),
        (call(M::POST, format!("/admin/devices/{}/rotate-secret", b.spare), &[]),
                                                                [401, 403, 403, 403, 403, 403, 404, 200, 403, 401, 401, 200, 200, 200, 404, 403, 403]),
        (Call { check: Some(merchants_seen), ..call(M::GET, "/admin/merchants".into(), &[]) },
                                                                [401, 403, 403, 403, 403, 403, 200, 200, 403, 401, 401, 200, 200, 200, 200, 403, 403]),
        (call(M::POST, "/admin/merchants".into(), &[]),
                                                                [401, 403, 403, 403, 403, 403, 403, 201, 403, 401, 401, 201, 201, 201, 403, 403, 403]),
        (call(M::GET, format!("/admin/merchants/{}/sites", a.merchant.id), &[]),
                                                                [401, 403, 403, 403, 403, 403, 200, 200, 403, 401, 401, 200, 200, 200, 200, 403, 403]),
        (call(M::GET, format!("/admin/merchants/{}/sites", b.merchant.id), &[]),
                                                                [401, 403, 403, 403, 403, 403, 404, 200, 403, 401, 401, 200, 200, 200, 404, 403, 403]),
        (call(M::GET, "/admin/api-keys".into(), &[]),
                                                                [401, 403, 403, 403, 403, 403, 200, 200, 403, 401, 401, 200, 200, 200, 200, 403, 403]),
        (call(M::GET, "/admin/audit".into(), &[]),
                                                                [401, 403, 403, 403, 403, 403, 200, 200, 403, 401, 401, 200, 200, 200, 200, 403, 403]),
        (call(M::GET, "/admin/events".into(), &[]),
                                                                [401, 403, 403, 403, 403, 403, 0, 0, 0, 401, 401, 0, 0, 0, 0, 0, 0]),
    ];
    let mut wrong = Vec::new();
    for (c, expected) in &rows {
        for (i, want) in expected.iter().enumerate() {
            if *want == 0 {
                continue;
            }
            let (status, body) = send(&app, c, &creds[i]).await;
            if status != *want {
                wrong.push(format!(
                    "{} as {}: {status} (want {want}) {body}",
                    c.what, CREDENTIALS[i]
                ));
            } else if status == 200 {
                if let Some(check) = c.check {
                    check(CREDENTIALS[i], &body);
                }
            } else if status >= 400 {
                assert!(
                    body["error"].is_string(),
                    "{} as {}: {body}",
                    c.what,
                    CREDENTIALS[i]
                );
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // A merchant's key cannot pair with another merchant's code (as if the code did not
    // exist), and the code stays valid for its own merchant.
    let mut device = RawDevice::connect(&app, "dev-a-spare", &rotate(&app, &a.spare).await).await;
    let code = device.code().await;
    let newcomer = RegisterKey {
        register_id: "till-new".into(),
        business_name: "Merchant A".into(),
        vendor_name: "VendorOne".into(),
    };
    let mut form = register_form(&newcomer);
    form.push(("POSRegisterName", "New"));
    let pair = |bearer: String| {
        let (app, form, code) = (&app, form.clone(), code.clone());
        async move {
            let r = app
                .http
                .put(app.url(&format!("/pos/pairing/{code}")))
                .bearer_auth(bearer)
                .form(&form)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(pair(key_b.clone()).await, 400);
    assert_eq!(pair(key_a.clone()).await, 200);
    app.stop().await;
}

/// A new secret for a device (printed once), through the engine.
async fn rotate(app: &TestApp, id: &DeviceId) -> String {
    app.engine.rotate_secret(id, &Actor::cli()).await.unwrap()
}

fn opts() -> Opts {
    let mut opts = Opts {
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Opts::default()
    };
    // The table presents dozens of wrong credentials from one address on purpose.
    opts.api_limits.admin_tokens.failures_per_source = 10_000;
    opts
}

#[tokio::test]
async fn every_credential_against_every_route_on_sqlite() {
    credential_table(spawn_app_with(opts()).await).await;
}

#[cfg_attr(
    not(eftcloud_test_postgres),
    ignore = "needs PostgreSQL: set EFTCLOUD_TEST_DATABASE_URL (.ci/run does)"
)]
#[tokio::test]
async fn every_credential_against_every_route_on_postgres() {
    FreshDatabase::run("PostgreSQL accounts test", |url| async move {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        credential_table(spawn_app_on(url, dir, opts(), None).await).await;
    })
    .await;
}

/// Keys made and revoked through the admin API; a revocation on one node is refused by
/// another sharing the store, on its next request.
#[cfg_attr(
    not(eftcloud_test_postgres),
    ignore = "needs PostgreSQL: set EFTCLOUD_TEST_DATABASE_URL (.ci/run does)"
)]
#[tokio::test]
async fn a_key_revoked_on_one_node_is_refused_by_another_at_once() {
    FreshDatabase::run("PostgreSQL accounts test", |url| async move {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let node_a = spawn_app_on(url.clone(), dir.clone(), opts(), None).await;
        let node_b = spawn_app_on(url, dir, opts(), None).await;
        let admin = |app: &TestApp, method: Method, path: &str| {
            app.http
                .request(method, app.url(path))
                .bearer_auth(ADMIN_TOKEN)
        };
        let r = admin(&node_a, Method::POST, "/admin/merchants")
            .json(&serde_json::json!({ "name": "Corner Shop" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let merchant: serde_json::Value = r.json().await.unwrap();
        let r = admin(&node_a, Method::POST, "/admin/api-keys")
            .json(&serde_json::json!({
                "merchantId": merchant["merchantId"],
                "scopes": ["pos:read"],
                "label": "till app",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let created: serde_json::Value = r.json().await.unwrap();
        let key = created["apiKey"].as_str().unwrap().to_string();
        let id = created["keyId"].as_str().unwrap().to_string();
        assert!(key.starts_with(created["prefix"].as_str().unwrap()));
        assert_eq!(created["scopes"], serde_json::json!(["pos:read"]));

        let status_on_b = || async {
            node_b
                .http
                .get(node_b.url("/pos/register"))
                .query(&register_form(&register("x")))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        };
        assert_eq!(status_on_b().await, 200);
        let r = admin(
            &node_a,
            Method::POST,
            &format!("/admin/api-keys/{id}/revoke"),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(status_on_b().await, 401);
        // Revoked once: a second revocation is a 404, and the list shows it revoked.
        let r = admin(
            &node_b,
            Method::POST,
            &format!("/admin/api-keys/{id}/revoke"),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 404);
        let keys: serde_json::Value = admin(&node_b, Method::GET, "/admin/api-keys")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(keys[0]["revokedAt"].is_string(), "{keys}");
        assert!(
            keys[0].get("apiKey").is_none(),
            "the key is shown only once"
        );

        // The audit log has both, with the admin token as actor.
        let log: serde_json::Value = admin(&node_b, Method::GET, "/admin/audit?action=api_key.")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let actions: Vec<&str> = log
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["api_key.revoked", "api_key.created"]);
        assert_eq!(log[0]["actor"], "admin-token");
        assert_eq!(log[0]["source"], "127.0.0.1");
        assert_eq!(log[1]["detail"]["scopes"], "pos:read");
        node_a.stop().await;
        node_b.stop().await;
    })
    .await;
}

/// Bad input to the accounts API gets a clear error.
#[tokio::test]
async fn bad_account_requests_are_refused_clearly() {
    let app = spawn_app_with(opts()).await;
    let post = |path: &'static str, body: serde_json::Value| {
        let app = &app;
        async move {
            let r = app
                .http
                .post(app.url(path))
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap();
            (
                status,
                body["error"].as_str().unwrap_or_default().to_string(),
            )
        }
    };
    let (s, e) = post(
        "/admin/api-keys",
        serde_json::json!({"scopes": ["pos:write"]}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        e.contains("unknown scope 'pos:write'") && e.contains("pos:transact"),
        "{e}"
    );
    let (s, e) = post("/admin/api-keys", serde_json::json!({"scopes": []})).await;
    assert_eq!(s, 400, "{e}");
    let (s, e) = post(
        "/admin/api-keys",
        serde_json::json!({"vendor": "Till2Go", "scopes": ["admin"]}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(e.contains("pos:*"), "{e}");
    let (s, _) = post(
        "/admin/api-keys",
        serde_json::json!({"merchantId": uuid::Uuid::new_v4(), "scopes": ["pos:read"]}),
    )
    .await;
    assert_eq!(s, 404);
    let (s, e) = post(
        "/admin/api-keys",
        serde_json::json!({"scopes": ["admin"], "expiresAt": "2001-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(e.contains("future"), "{e}");
    let (s, _) = post("/admin/merchants", serde_json::json!({"name": "Dup"})).await;
    assert_eq!(s, 201);
    let (s, e) = post("/admin/merchants", serde_json::json!({"name": " Dup "})).await;
    assert_eq!(s, 409);
    assert!(e.contains("already exists"), "{e}");
    let (s, _) = post("/admin/merchants", serde_json::json!({"name": ""})).await;
    assert_eq!(s, 400);
    let (s, e) = post("/admin/merchants", serde_json::json!({"nom": "x"})).await;
    assert_eq!(s, 400);
    assert!(e.contains("invalid JSON body"), "{e}");
    app.stop().await;
}

mod people {
    use super::*;
    use cloud::domain::people::Role;
    use cloud::engine::people::NewUser;

    const PASSWORD: &str = "correct horse battery staple";

    async fn person(app: &TestApp, email: &str, role: Role, merchant: Option<&MerchantRecord>) {
        app.engine
            .create_user(
                NewUser {
                    email: email.into(),
                    password: PASSWORD.into(),
                    role,
                    merchant: merchant.map(|m| m.id.clone()),
                },
                &Actor::cli(),
            )
            .await
            .unwrap();
    }

    /// Signs in; returns the status, the session cookie (`name=value`) and the body.
    async fn sign_in(
        app: &TestApp,
        email: &str,
        password: &str,
    ) -> (
        u16,
        Option<String>,
        reqwest::header::HeaderMap,
        serde_json::Value,
    ) {
        let r = app
            .http
            .post(app.url("/dashboard/sign-in"))
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let cookie = headers
            .get("set-cookie")
            .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string());
        (status, cookie, headers, r.json().await.unwrap())
    }

    fn with_cookie(
        app: &TestApp,
        method: Method,
        path: &str,
        cookie: &str,
    ) -> reqwest::RequestBuilder {
        app.http
            .request(method, app.url(path))
            .header("cookie", cookie)
    }

    #[tokio::test]
    async fn people_sign_in_with_a_session_that_needs_its_csrf_token_for_changes() {
        let app = spawn_app_with(opts()).await;
        let shop = app
            .engine
            .create_merchant("Corner Shop", &Actor::cli())
            .await
            .unwrap();
        person(&app, "Owner@Example.com", Role::Owner, None).await;
        person(&app, "viewer@example.com", Role::Viewer, Some(&shop)).await;
        let id = DeviceId::parse("till-1").unwrap();
        app.engine
            .enroll_device(
                &id,
                &NewDevice {
                    merchant: shop.id.to_string(),
                    ..NewDevice::default()
                },
            )
            .await
            .unwrap();

        // Wrong password and unknown email: the same generic 401.
        let (s, cookie, _, body) = sign_in(&app, "owner@example.com", "wrong password!!").await;
        assert_eq!((s, cookie.is_none()), (401, true));
        let (s2, _, _, body2) = sign_in(&app, "nobody@example.com", PASSWORD).await;
        assert_eq!(s2, 401);
        assert_eq!(body, body2);
        assert_eq!(body["error"], "wrong email or password");

        // The email is matched in any case; the cookie is HttpOnly and SameSite=Strict.
        let (s, cookie, headers, me) = sign_in(&app, "OWNER@example.com", PASSWORD).await;
        assert_eq!(s, 200, "{me}");
        let set_cookie = headers["set-cookie"].to_str().unwrap();
        assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
        assert!(!set_cookie.contains("Secure"), "plain HTTP: no Secure flag");
        assert_eq!(me["role"], "owner");
        assert_eq!(me["email"], "owner@example.com");
        let cookie = cookie.unwrap();
        let csrf = me["csrfToken"].as_str().unwrap().to_string();

        let r = with_cookie(&app, Method::GET, "/admin/devices", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let rotate = format!("/admin/devices/{id}/rotate-secret");
        let r = with_cookie(&app, Method::POST, &rotate, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "a change without the CSRF token");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("CSRF"), "{body}");
        let r = with_cookie(&app, Method::POST, &rotate, &cookie)
            .header("x-csrf-token", "not-the-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = with_cookie(&app, Method::POST, &rotate, &cookie)
            .header("x-csrf-token", &csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = with_cookie(&app, Method::GET, "/dashboard/session", &cookie)
            .send()
            .await
            .unwrap();
        let me: serde_json::Value = r.json().await.unwrap();
        assert_eq!(me["csrfToken"], csrf.as_str());

        // A viewer reads but changes nothing.
        let (_, viewer, _, vme) = sign_in(&app, "viewer@example.com", PASSWORD).await;
        let viewer = viewer.unwrap();
        let r = with_cookie(&app, Method::GET, "/admin/transactions", &viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = with_cookie(&app, Method::POST, &rotate, &viewer)
            .header("x-csrf-token", vme["csrfToken"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = with_cookie(&app, Method::GET, "/admin/api-keys", &viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);

        // Sign-out ends the session on the server: the same cookie opens nothing after.
        let r = with_cookie(&app, Method::POST, "/dashboard/sign-out", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "sign-out is a change too");
        let r = with_cookie(&app, Method::POST, "/dashboard/sign-out", &cookie)
            .header("x-csrf-token", &csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert!(r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"));
        let r = with_cookie(&app, Method::GET, "/admin/devices", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);

        // Everything was recorded, failures included, with the source.
        let log = app
            .engine
            .audit_log(
                &cloud::domain::accounts::Principal::owner_token(),
                cloud::domain::accounts::AuditQuery {
                    action: Some("user.".into()),
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "user.signed_out",
                "user.signed_in",
                "user.signed_in",
                "user.sign_in_failed",
                "user.added",
                "user.added"
            ]
        );
        assert_eq!(log[0].source.as_deref(), Some("127.0.0.1"));
        app.stop().await;
    }

    #[cfg_attr(
        not(eftcloud_test_postgres),
        ignore = "needs PostgreSQL: set EFTCLOUD_TEST_DATABASE_URL (.ci/run does)"
    )]
    #[tokio::test]
    async fn wrong_passwords_lock_the_account_on_every_node_and_sessions_expire() {
        FreshDatabase::run("PostgreSQL accounts test", |url| async move {
            let clock = manual_clock();
            let dir = Arc::new(tempfile::tempdir().unwrap());
            let mut o = opts();
            o.clock = clock.clone();
            o.session_idle = std::time::Duration::from_secs(600);
            o.session_ttl = std::time::Duration::from_secs(3600);
            let node_a = spawn_app_on(url.clone(), dir.clone(), o.clone(), None).await;
            let node_b = spawn_app_on(url, dir, o, None).await;
            person(&node_a, "ana@example.com", Role::Operator, None).await;

            // A session made on one node holds on the other.
            let (_, cookie, _, _) = sign_in(&node_a, "ana@example.com", PASSWORD).await;
            let cookie = cookie.unwrap();
            async fn devices(app: &TestApp, cookie: &str) -> u16 {
                with_cookie(app, Method::GET, "/admin/devices", cookie)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
            let status = |app| devices(app, &cookie);
            assert_eq!(status(&node_b).await, 200);
            // Idle expiry: used within ten minutes it lives; ten idle minutes end it.
            clock.advance(std::time::Duration::from_secs(599));
            assert_eq!(status(&node_b).await, 200);
            clock.advance(std::time::Duration::from_secs(599));
            assert_eq!(status(&node_a).await, 200);
            clock.advance(std::time::Duration::from_secs(600));
            assert_eq!(status(&node_a).await, 401);

            // Absolute expiry: however busy, an hour after sign-in.
            let (_, busy, _, _) = sign_in(&node_a, "ana@example.com", PASSWORD).await;
            let busy = busy.unwrap();
            for _ in 0..6 {
                clock.advance(std::time::Duration::from_secs(590));
                let s = with_cookie(&node_b, Method::GET, "/admin/devices", &busy)
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(s, 200);
            }
            clock.advance(std::time::Duration::from_secs(60));
            let s = with_cookie(&node_b, Method::GET, "/admin/devices", &busy)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(s, 401, "an hour after sign-in");

            // Five wrong passwords, spread over both nodes, lock the account everywhere,
            // the right password included, with Retry-After; the lock ends on its own.
            for i in 0..5 {
                let node = if i % 2 == 0 { &node_a } else { &node_b };
                let (s, ..) = sign_in(node, "ana@example.com", "not the password").await;
                assert_eq!(s, 401);
            }
            let (s, _, headers, body) = sign_in(&node_b, "ana@example.com", PASSWORD).await;
            assert_eq!(s, 429, "{body}");
            let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=900).contains(&retry), "{retry}");
            clock.advance(std::time::Duration::from_secs(901));
            let (s, ..) = sign_in(&node_a, "ana@example.com", PASSWORD).await;
            assert_eq!(s, 200);
            node_a.stop().await;
            node_b.stop().await;
        })
        .await;
    }

    #[tokio::test]
    async fn too_many_failed_sign_ins_from_one_address_are_refused() {
        let mut o = opts();
        o.api_limits.sign_ins.failures_per_source = 3;
        let app = spawn_app_with(o).await;
        for _ in 0..3 {
            let (s, ..) = sign_in(&app, "x@example.com", "nope nope nope").await;
            assert_eq!(s, 401);
        }
        let (s, _, headers, _) = sign_in(&app, "x@example.com", "nope nope nope").await;
        assert_eq!(s, 429);
        assert!(headers.contains_key("retry-after"));
        app.stop().await;
    }

    #[tokio::test]
    async fn the_setup_link_creates_the_first_owner_once() {
        let app = spawn_app_with(Opts {
            first_run_setup: true,
            ..opts()
        })
        .await;
        let link = url::Url::parse(app.setup_url.as_deref().unwrap()).unwrap();
        assert_eq!(link.path(), "/dashboard/setup");
        let token = link
            .query_pairs()
            .find(|(k, _)| k == "token")
            .unwrap()
            .1
            .to_string();
        let page = app.http.get(link.as_str()).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let wrong = app
            .http
            .get(app.url("/dashboard/setup?token=wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 404);
        let setup = |password: &'static str, token: String| {
            let app = &app;
            async move {
                let r = app
                    .http
                    .post(app.url("/dashboard/setup"))
                    .json(&serde_json::json!({
                        "token": token, "email": "first@example.com", "password": password
                    }))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let cookie = r.headers().get("set-cookie").is_some();
                (status, cookie, r.json::<serde_json::Value>().await.unwrap())
            }
        };
        // A weak password is refused without spending the link.
        let (s, _, body) = setup("short", token.clone()).await;
        assert_eq!(s, 400);
        assert!(
            body["error"].as_str().unwrap().contains("12 characters"),
            "{body}"
        );
        let (s, cookie, body) = setup(PASSWORD, token.clone()).await;
        assert_eq!((s, cookie), (201, true), "{body}");
        assert_eq!(body["role"], "owner");
        // Used: neither the page nor the form works again.
        let (s, _, _) = setup(PASSWORD, token.clone()).await;
        assert_eq!(s, 404);
        let again = app.http.get(link.as_str()).send().await.unwrap();
        assert_eq!(again.status(), 404);
        let (s, ..) = sign_in(&app, "first@example.com", PASSWORD).await;
        assert_eq!(s, 200);
        app.stop().await;
    }
}

/// `--require-pos-keys VENDOR`: that vendor's registers must send a key (everything of theirs,
/// polling by token included); other vendors stay keyless, as SmartConnect clients are.
#[tokio::test]
async fn keys_required_of_one_vendor_leave_the_others_keyless() {
    let app = spawn_app_with(opts()).await;
    let a = shop(&app, "Merchant A", "VendorOne", "dev-a").await;
    let b = shop(&app, "Merchant B", "VendorTwo", "dev-b").await;
    let dir = app.dir.clone();
    app.stop().await;
    // The same store, now with keys required of VendorOne.
    let url = format!("sqlite://{}", dir.path().join("eftcloud.db").display());
    let app = spawn_app_on(
        url,
        dir,
        Opts {
            require_pos_keys: vec!["VendorOne".into()],
            ..opts()
        },
        None,
    )
    .await;
    let get = |path: String, form: Vec<(&'static str, String)>, key: Option<String>| {
        let app = &app;
        async move {
            let mut r = app.http.get(app.url(&path)).query(&form);
            if let Some(k) = key {
                r = r.bearer_auth(k);
            }
            r.send().await.unwrap().status().as_u16()
        }
    };
    let triple = |r: &RegisterKey| -> Vec<(&'static str, String)> {
        register_form(r)
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect()
    };
    assert_eq!(
        get("/pos/register".into(), triple(&a.register), None).await,
        401
    );
    let poll_a = format!("/pos/transaction/{}", a.transaction_id);
    let token_a = vec![("merchantAccessToken", a.token.clone())];
    assert_eq!(get(poll_a.clone(), token_a.clone(), None).await, 401);
    assert_eq!(
        get("/pos/register".into(), triple(&b.register), None).await,
        200
    );
    let poll_b = format!("/pos/transaction/{}", b.transaction_id);
    let token_b = vec![("merchantAccessToken", b.token.clone())];
    assert_eq!(get(poll_b, token_b, None).await, 200);
    let vendor_key = key(
        &app,
        KeyOwner::Vendor("VendorOne".into()),
        &[Scope::PosTransact, Scope::PosRead],
    )
    .await;
    assert_eq!(
        get(
            "/pos/register".into(),
            triple(&a.register),
            Some(vendor_key.clone())
        )
        .await,
        200
    );
    assert_eq!(get(poll_a, token_a, Some(vendor_key)).await, 200);
    app.stop().await;
}

/// `--require-pos-keys` alone (all vendors): any keyless POS request is refused before it is
/// read, with `WWW-Authenticate: Bearer`; the API description stays public.
#[tokio::test]
async fn keys_required_of_all_vendors_refuse_every_keyless_request() {
    let app = spawn_app_with(Opts {
        require_pos_keys: vec!["all".into()],
        ..opts()
    })
    .await;
    let r = app
        .http
        .get(app.url("/pos/register"))
        .query(&register_form(&register("x")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("API key"),
        "{body}"
    );
    let r = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

/// A key with an expiry opens nothing from that moment on; its last use is recorded (at most
/// once a minute).
#[tokio::test]
async fn keys_expire_on_the_cloud_clock_and_record_their_last_use() {
    let (app, clock) = spawn_app_on_manual_clock().await;
    let created = app
        .engine
        .create_api_key(
            NewApiKey {
                owner: KeyOwner::Installation,
                scopes: Scopes::of([Scope::PosRead]),
                label: "expires".into(),
                expires_at: Some(app.engine.now() + chrono::Duration::hours(1)),
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    let status = || async {
        app.http
            .get(app.url("/pos/register"))
            .query(&register_form(&register("x")))
            .bearer_auth(&created.key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let last_used = || async {
        app.engine
            .api_keys(&cloud::domain::accounts::Principal::owner_token())
            .await
            .unwrap()[0]
            .last_used_at
    };
    assert_eq!(last_used().await, None);
    assert_eq!(status().await, 200);
    let first = last_used().await.expect("recorded");
    clock.advance(std::time::Duration::from_secs(30));
    assert_eq!(status().await, 200);
    assert_eq!(
        last_used().await,
        Some(first),
        "not rewritten within the minute"
    );
    clock.advance(std::time::Duration::from_secs(3600 - 30 - 1));
    assert_eq!(status().await, 200, "a second before expiry");
    assert!(last_used().await > Some(first));
    clock.advance(std::time::Duration::from_secs(1));
    assert_eq!(status().await, 401, "expired");
    app.stop().await;
}

/// A bearer token that is not an eftcloud key (a proxy's, a client's own) leaves a SmartConnect
/// request keyless, as before keys existed; where keys are required it is no key.
#[tokio::test]
async fn a_foreign_bearer_token_is_not_a_key() {
    for (required, want) in [(vec![], 200), (vec!["all".to_string()], 401)] {
        let app = spawn_app_with(Opts {
            require_pos_keys: required,
            ..opts()
        })
        .await;
        let r = app
            .http
            .get(app.url("/pos/register"))
            .query(&register_form(&register("x")))
            .bearer_auth("proxy-session-0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want);
        app.stop().await;
    }
}
