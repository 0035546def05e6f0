//! Software update campaigns end to end, with devices that speak the protocol by hand: release
//! keys and signed artifacts (a bad signature refused), a canary then waves, a pause when
//! failures reach the threshold, a rollback, maintenance windows, progress that survives a
//! restart, and a campaign driven from one node while its devices are on another.

use crate::harness::*;
use protocol::device::{capability, CloudMessage, DeviceMessage};
use protocol::update::{SigningKey, UpdateOffer, UpdateStep};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "admin-token-for-updates";

fn opts() -> Opts {
    Opts {
        admin_token: Some(TOKEN.into()),
        ..Opts::default()
    }
}

async fn call(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = app.http.request(method, app.url(path)).bearer_auth(TOKEN);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn ok(app: &TestApp, method: Method, path: &str, body: Value) -> Value {
    let (status, v) = call(app, method, path, Some(body)).await;
    assert!((200..300).contains(&status), "{path}: {status} {v}");
    v
}

/// A release key, registered.
async fn release_key(app: &TestApp) -> SigningKey {
    let (_, key) = SigningKey::generate().unwrap();
    ok(
        app,
        Method::POST,
        "/admin/release-keys",
        json!({"name": "release 2026", "publicKey": key.public().to_hex()}),
    )
    .await;
    key
}

/// An artifact of `version` downloaded from a URL, signed by `key`; its id.
async fn artifact(app: &TestApp, key: &SigningKey, version: &str) -> String {
    let file = format!("agent {version}").into_bytes();
    let s = key.sign(version, &file).unwrap();
    let v = ok(
        app,
        Method::POST,
        "/admin/artifacts",
        json!({"version": version, "url": format!("https://updates.example.com/agent-{version}"),
               "size": file.len(), "sha256": s.sha256, "signature": s.signature, "keyId": s.key_id}),
    )
    .await;
    v["artifactId"].as_str().unwrap().to_string()
}

/// A device that declares `update`, connected.
async fn updatable(app: &TestApp, id: &str) -> RawDevice {
    let secret = app.enroll(id).await;
    updatable_with(app, id, &secret).await
}

async fn updatable_with(app: &TestApp, id: &str, secret: &str) -> RawDevice {
    let mut h = hello(id, secret);
    if let DeviceMessage::Hello(h) = &mut h {
        h.capabilities = vec![capability::UPDATE.into()];
    }
    RawDevice::connect_with(app, h).await
}

async fn offered(d: &mut RawDevice) -> UpdateOffer {
    match d.recv().await {
        CloudMessage::Update(u) => u,
        other => panic!("expected an update, got {other:?}"),
    }
}

async fn report(
    d: &mut RawDevice,
    offer: &UpdateOffer,
    steps: &[UpdateStep],
    reason: Option<&str>,
) {
    for step in steps {
        d.send(&DeviceMessage::UpdateStatus {
            campaign_id: offer.campaign_id.clone(),
            version: offer.artifact.version.clone(),
            step: *step,
            reason: reason
                .filter(|_| *step == UpdateStep::Failed)
                .map(str::to_string),
        })
        .await;
    }
}

const INSTALL: [UpdateStep; 4] = [
    UpdateStep::Downloading,
    UpdateStep::Verified,
    UpdateStep::Installing,
    UpdateStep::Installed,
];

async fn campaign(app: &TestApp, id: &str) -> Value {
    let (status, v) = call(app, Method::GET, &format!("/admin/campaigns/{id}"), None).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn campaign_in(app: &TestApp, id: &str, state: &str) -> Value {
    eventually(&format!("campaign {state}"), || async {
        let v = campaign(app, id).await;
        (v["state"] == state).then_some(v)
    })
    .await
}

fn device_state<'a>(c: &'a Value, device: &str) -> &'a Value {
    c["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deviceId"] == device)
        .map(|d| &d["state"])
        .unwrap()
}

#[tokio::test]
async fn a_canary_then_waves_a_pause_on_failures_and_a_rollback() {
    let app = spawn_app_with(opts()).await;
    let key = release_key(&app).await;
    let v2 = artifact(&app, &key, "2.0.0").await;
    let v1 = artifact(&app, &key, "1.0.0").await;
    let mut d1 = updatable(&app, "upd-1").await;
    let mut d2 = updatable(&app, "upd-2").await;
    let mut d3 = updatable(&app, "upd-3").await;
    let mut d4 = updatable(&app, "upd-4").await;
    // A device that cannot update is left out of the campaign.
    let _legacy = RawDevice::paired(&app, "upd-legacy").await;

    let created = ok(
        &app,
        Method::POST,
        "/admin/campaigns",
        json!({"name": "2.0.0 rollout", "artifactId": v2, "canary": 1, "waveSize": 2,
               "failureThreshold": 1,
               "target": {"deviceIds": ["upd-1", "upd-2", "upd-3", "upd-4", "upd-legacy"]}}),
    )
    .await;
    let id = created["campaignId"].as_str().unwrap().to_string();
    assert_eq!(created["state"], "running");
    let waves: Vec<(&str, u64)> = created["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["deviceId"].as_str().unwrap(), d["wave"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        waves,
        [("upd-1", 0), ("upd-2", 1), ("upd-3", 1), ("upd-4", 2)]
    );

    // The canary alone first.
    let o1 = offered(&mut d1).await;
    assert_eq!(o1.campaign_id, id);
    assert_eq!(o1.artifact.version, "2.0.0");
    assert_eq!(o1.artifact.url, "https://updates.example.com/agent-2.0.0");
    d2.expect_silence(Duration::from_millis(300)).await;
    report(&mut d1, &o1, &INSTALL, None).await;

    // Then the first wave, both at once; the second waits for it.
    let o2 = offered(&mut d2).await;
    let o3 = offered(&mut d3).await;
    report(&mut d2, &o2, &INSTALL, None).await;
    // Its report lands first (frames of two devices race otherwise), then the failure.
    eventually("upd-2 installed", || async {
        (device_state(&campaign(&app, &id).await, "upd-2") == "installed").then_some(())
    })
    .await;
    report(
        &mut d3,
        &o3,
        &[UpdateStep::Downloading, UpdateStep::Failed],
        Some("signature: the signature does not verify"),
    )
    .await;
    // One failure reaches the threshold: paused, and the last wave is never offered.
    let paused = campaign_in(&app, &id, "paused").await;
    assert_eq!(device_state(&paused, "upd-3"), "failed");
    assert_eq!(device_state(&paused, "upd-4"), "pending");
    assert_eq!(paused["counts"]["installed"], 2, "{paused}");
    let failed = paused["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deviceId"] == "upd-3")
        .unwrap();
    assert!(
        failed["reason"].as_str().unwrap().starts_with("signature"),
        "{failed}"
    );
    d4.expect_silence(Duration::from_millis(500)).await;
    // Every step is on record, in order.
    let steps: Vec<(&str, &str)> = paused["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["deviceId"] == "upd-1")
        .map(|s| (s["version"].as_str().unwrap(), s["step"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("2.0.0", "downloading"),
            ("2.0.0", "verified"),
            ("2.0.0", "installing"),
            ("2.0.0", "installed")
        ]
    );
    // Resuming a paused campaign is possible; pausing it again refused as it is.
    let (status, v) = call(
        &app,
        Method::POST,
        &format!("/admin/campaigns/{id}/pause"),
        None,
    )
    .await;
    assert_eq!(status, 409, "{v}");

    // Rolled back: the two that installed get 1.0.0; the failed one and the untouched one not.
    let rolling = ok(
        &app,
        Method::POST,
        &format!("/admin/campaigns/{id}/rollback"),
        json!({"artifactId": v1}),
    )
    .await;
    assert_eq!(rolling["state"], "rolling_back");
    let r1 = offered(&mut d1).await;
    let r2 = offered(&mut d2).await;
    assert_eq!(
        (r1.artifact.version.as_str(), r2.artifact.version.as_str()),
        ("1.0.0", "1.0.0")
    );
    d3.expect_silence(Duration::from_millis(300)).await;
    d4.expect_silence(Duration::from_millis(100)).await;
    // A late report of the old version moves nothing.
    report(&mut d1, &o1, &[UpdateStep::Installed], None).await;
    report(&mut d1, &r1, &INSTALL, None).await;
    report(&mut d2, &r2, &INSTALL, None).await;
    let done = campaign_in(&app, &id, "rolled_back").await;
    assert_eq!(device_state(&done, "upd-1"), "rolled_back");
    assert_eq!(device_state(&done, "upd-2"), "rolled_back");
    assert_eq!(device_state(&done, "upd-3"), "failed");

    // The operator's actions and the automatic pause are audited.
    let (_, audit) = call(&app, Method::GET, "/admin/audit?action=campaign.", None).await;
    let mut actions: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    actions.reverse();
    assert_eq!(
        actions,
        [
            ("campaign.created", "admin-token"),
            ("campaign.paused", "campaign"),
            ("campaign.rolled_back", "admin-token"),
            ("campaign.rolled_back", "campaign"),
        ],
        "{audit}"
    );
}

#[tokio::test]
async fn signatures_are_checked_and_stored_files_served_only_to_devices() {
    let app = spawn_app_with(opts()).await;
    let key = release_key(&app).await;
    let file = b"agent 3.0.0 build".to_vec();
    let s = key.sign("3.0.0", &file).unwrap();
    let body = |version: &str, signature: &str, key_id: &str| {
        json!({"version": version, "size": file.len(), "sha256": s.sha256,
               "signature": signature, "keyId": key_id})
    };
    // Not signed by a registered key, a signature for another version, a tampered one.
    let (_, stranger) = SigningKey::generate().unwrap();
    let by_stranger = stranger.sign("3.0.0", &file).unwrap();
    let mut tampered = s.signature.clone();
    tampered.replace_range(0..2, if &tampered[0..2] == "00" { "11" } else { "00" });
    for (b, says) in [
        (
            body("3.0.0", &by_stranger.signature, &by_stranger.key_id),
            "not one this device trusts",
        ),
        (body("3.0.1", &s.signature, &s.key_id), "does not verify"),
        (body("3.0.0", &tampered, &s.key_id), "does not verify"),
        (body("3 0", &s.signature, &s.key_id), "version"),
    ] {
        let (status, v) = call(&app, Method::POST, "/admin/artifacts", Some(b)).await;
        assert_eq!(status, 400, "{v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{says}: {v}");
    }
    let (status, v) = call(&app, Method::GET, "/admin/artifacts", None).await;
    assert_eq!(
        (status, v.as_array().map(Vec::len)),
        (200, Some(0)),
        "nothing stored"
    );

    // A stored artifact: not offered before its file is uploaded, and only the signed file.
    let a = ok(
        &app,
        Method::POST,
        "/admin/artifacts",
        body("3.0.0", &s.signature, &s.key_id),
    )
    .await;
    let id = a["artifactId"].as_str().unwrap().to_string();
    assert_eq!(
        (a["stored"].as_bool(), a["ready"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(a["url"], format!("/device/v1/artifacts/{id}"));
    let _d = updatable(&app, "upd-files").await;
    let (status, v) = call(
        &app,
        Method::POST,
        "/admin/campaigns",
        Some(json!({"name": "x", "artifactId": id, "target": {"deviceIds": ["upd-files"]}})),
    )
    .await;
    assert_eq!(status, 409, "{v}");
    let upload = |bytes: Vec<u8>| {
        app.http
            .put(app.url(&format!("/admin/artifacts/{id}/file")))
            .bearer_auth(TOKEN)
            .body(bytes)
            .send()
    };
    let mut wrong = file.clone();
    wrong[0] ^= 1;
    let r = upload(wrong).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("SHA-256"));
    let r = upload(file.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = upload(file.clone()).await.unwrap();
    assert_eq!(r.status(), 409, "uploaded once");

    // Devices download it with their credentials; nobody else.
    let secret = app.enroll("upd-reader").await;
    let url = app.url(&format!("/device/v1/artifacts/{id}"));
    let r = app
        .http
        .get(&url)
        .basic_auth("upd-reader", Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), file);
    for (user, pass) in [("upd-reader", "wrong"), ("nobody", "x")] {
        let r = app
            .http
            .get(&url)
            .basic_auth(user, Some(pass))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{user}");
    }
    assert_eq!(app.http.get(&url).send().await.unwrap().status(), 401);
    let r = app
        .http
        .get(app.url("/device/v1/artifacts/nope"))
        .basic_auth("upd-reader", Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Refusals of the rest of the API.
    let (status, _) = call(
        &app,
        Method::POST,
        "/admin/release-keys",
        Some(json!({"name": "k", "publicKey": "abc"})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(
        &app,
        Method::POST,
        "/admin/release-keys",
        Some(json!({"name": "again", "publicKey": key.public().to_hex()})),
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = call(&app, Method::GET, "/admin/campaigns/nope", None).await;
    assert_eq!(status, 404);
    let (status, v) = call(
        &app,
        Method::POST,
        "/admin/campaigns",
        Some(json!({"name": "none", "artifactId": id, "target": {"deviceIds": ["upd-reader"]}})),
    )
    .await;
    assert_eq!(status, 400, "upd-reader does not declare update: {v}");
    let (status, _) = call(
        &app,
        Method::POST,
        "/admin/campaigns",
        Some(json!({"name": "w", "artifactId": id, "window": {"start": "25:00", "end": "01:00"}})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        app.http
            .get(app.url("/admin/campaigns"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn offers_wait_for_the_sites_window_and_a_postponed_update_comes_back() {
    let app = spawn_app_with(opts()).await;
    let key = release_key(&app).await;
    let v2 = artifact(&app, &key, "2.1.0").await;
    let merchant = app
        .engine
        .create_merchant("Window Shop", &cloud::engine::accounts::Actor::cli())
        .await
        .unwrap();
    let site = app
        .engine
        .create_site(&merchant, "Harbour", &cloud::engine::accounts::Actor::cli())
        .await
        .unwrap();
    let secret = app
        .engine
        .enroll_device(
            &protocol::DeviceId::parse("upd-window").unwrap(),
            &cloud::engine::devices::NewDevice {
                vendor: "Acme".into(),
                model: "T1".into(),
                merchant: merchant.id.to_string(),
                site: Some(site.id.to_string()),
            },
        )
        .await
        .unwrap();
    let mut d = updatable_with(&app, "upd-window", &secret).await;
    // The site is in Kathmandu (UTC+05:45); the window is the hour from now there, and
    // closed an hour ago in UTC terms would be another hour entirely.
    let (status, v) = call(
        &app,
        Method::PATCH,
        &format!("/admin/sites/{}", site.id),
        Some(json!({"timeZone": "Asia/Kathmandu"})),
    )
    .await;
    assert_eq!(
        (status, v["timeZone"].as_str()),
        (200, Some("Asia/Kathmandu")),
        "{v}"
    );
    let (status, _) = call(
        &app,
        Method::PATCH,
        &format!("/admin/sites/{}", site.id),
        Some(json!({"timeZone": "Mars/Olympus"})),
    )
    .await;
    assert_eq!(status, 400);
    let tz: chrono_tz::Tz = "Asia/Kathmandu".parse().unwrap();
    let local = chrono::Utc::now().with_timezone(&tz);
    let hhmm = |t: chrono::DateTime<chrono_tz::Tz>| t.format("%H:%M").to_string();
    // Closed now: it opens in two hours.
    let later = ok(
        &app,
        Method::POST,
        "/admin/campaigns",
        json!({"name": "later", "artifactId": v2, "target": {"deviceIds": ["upd-window"]},
               "window": {"start": hhmm(local + chrono::Duration::hours(2)),
                          "end": hhmm(local + chrono::Duration::hours(3))}}),
    )
    .await;
    d.expect_silence(Duration::from_millis(600)).await;
    assert_eq!(
        device_state(
            &campaign(&app, later["campaignId"].as_str().unwrap()).await,
            "upd-window"
        ),
        "pending"
    );
    ok(
        &app,
        Method::POST,
        &format!(
            "/admin/campaigns/{}/cancel",
            later["campaignId"].as_str().unwrap()
        ),
        json!({}),
    )
    .await;

    // Open now, in the site's time: offered, to be installed before the window closes.
    let now_campaign = ok(
        &app,
        Method::POST,
        "/admin/campaigns",
        json!({"name": "now", "artifactId": v2, "target": {"deviceIds": ["upd-window"]},
               "window": {"start": hhmm(local - chrono::Duration::minutes(30)),
                          "end": hhmm(local + chrono::Duration::minutes(90))}}),
    )
    .await;
    let o = offered(&mut d).await;
    assert_eq!(o.campaign_id, now_campaign["campaignId"]);
    let before = chrono::DateTime::parse_from_rfc3339(&o.install_before).unwrap();
    let left = before.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        left > chrono::Duration::minutes(88) && left <= chrono::Duration::minutes(90),
        "the window closes in 90 minutes: {left}"
    );
    // Postponed (the device was busy until the window closed): offered again.
    report(
        &mut d,
        &o,
        &[
            UpdateStep::Downloading,
            UpdateStep::Verified,
            UpdateStep::Postponed,
        ],
        None,
    )
    .await;
    let again = offered(&mut d).await;
    assert_eq!(again.campaign_id, o.campaign_id);
    report(
        &mut d,
        &again,
        &[UpdateStep::Installing, UpdateStep::Installed],
        None,
    )
    .await;
    campaign_in(&app, o.campaign_id.as_str(), "completed").await;
}

#[tokio::test]
async fn an_offer_survives_a_restart_of_the_cloud() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_app_in(dir.clone(), opts(), None).await;
    let key = release_key(&app).await;
    let v2 = artifact(&app, &key, "2.2.0").await;
    let secret = app.enroll("upd-restart").await;
    let mut d = updatable_with(&app, "upd-restart", &secret).await;
    let c = ok(
        &app,
        Method::POST,
        "/admin/campaigns",
        json!({"name": "restart", "artifactId": v2, "target": {"deviceIds": ["upd-restart"]}}),
    )
    .await;
    let o = offered(&mut d).await;
    report(&mut d, &o, &[UpdateStep::Downloading], None).await;
    eventually("the step stored", || async {
        (campaign(&app, c["campaignId"].as_str().unwrap()).await["devices"][0]["step"]
            == "downloading")
            .then_some(())
    })
    .await;
    drop(d);
    app.stop().await;

    let app = spawn_app_in(dir, opts(), None).await;
    let mut d = updatable_with(&app, "upd-restart", &secret).await;
    let again = offered(&mut d).await;
    assert_eq!(again, o, "the same offer, made again");
    report(&mut d, &again, &INSTALL[1..], None).await;
    let done = campaign_in(&app, &o.campaign_id, "completed").await;
    assert_eq!(device_state(&done, "upd-restart"), "installed");
}

/// A campaign created on node A rolls out to devices connected to node B (B's loop offers
/// them, woken by A's announcement through NATS), and follows a device that moves to A
/// mid-update.
#[cfg_attr(
    not(all(eftcloud_test_postgres, eftcloud_test_nats)),
    ignore = "needs PostgreSQL and NATS: set EFTCLOUD_TEST_DATABASE_URL and EFTCLOUD_TEST_NATS_URL (.ci/run does)"
)]
#[tokio::test]
async fn a_campaign_driven_from_one_node_while_its_devices_are_on_another() {
    let Some(nats) = nats_url_or_skip("update campaigns across nodes") else {
        return;
    };
    let Some(db) = eftcloud_testing::FreshDatabase::create("update campaigns across nodes").await
    else {
        return;
    };
    let node = |name: &str| Opts {
        database_url: Some(db.url.clone()),
        nats_url: Some(nats.clone()),
        node: name.into(),
        admin_token: Some(TOKEN.into()),
        // No help from the clock: each node's loop moves when another announces a change.
        update_tick: Duration::from_secs(600),
        ..Opts::default()
    };
    let a = spawn_app_with(node("upd-a")).await;
    let b = spawn_app_with(node("upd-b")).await;
    let key = release_key(&a).await;
    let v2 = artifact(&a, &key, "2.3.0").await;
    let s1 = a.enroll("upd-far-1").await;
    let s2 = a.enroll("upd-far-2").await;
    let mut d1 = updatable_with(&b, "upd-far-1", &s1).await;
    let mut d2 = updatable_with(&b, "upd-far-2", &s2).await;
    let c = ok(
        &a,
        Method::POST,
        "/admin/campaigns",
        json!({"name": "cluster", "artifactId": v2, "canary": 1, "waveSize": 5,
               "target": {"deviceIds": ["upd-far-1", "upd-far-2"]}}),
    )
    .await;
    let id = c["campaignId"].as_str().unwrap().to_string();
    let o1 = offered(&mut d1).await;
    report(&mut d1, &o1, &INSTALL, None).await;
    let o2 = offered(&mut d2).await;
    report(&mut d2, &o2, &[UpdateStep::Downloading], None).await;
    // upd-far-2 moves to node A mid-update: A offers it again and hears the rest.
    drop(d2);
    let mut d2 = updatable_with(&a, "upd-far-2", &s2).await;
    let again = offered(&mut d2).await;
    assert_eq!(again.campaign_id, id);
    report(&mut d2, &again, &INSTALL[1..], None).await;
    let done = campaign_in(&b, &id, "completed").await;
    assert_eq!(done["counts"]["installed"], 2, "{done}");
}
