//! `eftcloud config …` and `eftcloud update …` through the real binary against a running cloud:
//! a merchant's profile set and a device's effective settings read back, an update campaign
//! registered, started, shown and paused; bad input refused with a clear message and exit code.

use crate::harness::*;
use protocol::device::{capability, CloudMessage, DeviceMessage};
use protocol::update::SigningKey;

const TOKEN: &str = "admin-token-for-the-cli";

async fn eftcloud(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    admin_command(app, TOKEN, args).await
}

#[tokio::test]
async fn profiles_and_campaigns_from_the_command_line() {
    let app = spawn_app_with(Opts {
        admin_token: Some(TOKEN.into()),
        ..Opts::default()
    })
    .await;
    let secret = app.enroll("cli-upd").await;
    let merchant = app
        .engine
        .device(&protocol::DeviceId::parse("cli-upd").unwrap())
        .await
        .unwrap()
        .unwrap()
        .merchant_id;
    let mut h = hello("cli-upd", &secret);
    if let DeviceMessage::Hello(h) = &mut h {
        h.capabilities = vec![capability::UPDATE.into()];
    }
    let mut d = RawDevice::connect_with(&app, h).await;

    // A profile set and read back.
    let (code, out, err) = eftcloud(
        &app,
        &[
            "config",
            "set",
            "--merchant",
            merchant.as_str(),
            "--json",
            r#"{"tipping": true, "idleText": "Hello from the CLI"}"#,
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("merchant profile version 1"), "{out}");
    let (code, out, _) = eftcloud(&app, &["config", "device", "cli-upd"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("idleText")
            && out.contains("Hello from the CLI")
            && out.contains("(merchant)"),
        "{out}"
    );
    assert!(out.contains("does not declare `config`"), "{out}");
    let (code, out, _) = eftcloud(
        &app,
        &["config", "history", "--merchant", merchant.as_str()],
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.starts_with("v1  "), "{out}");
    // Refusals say what is wrong.
    let (code, _, err) = eftcloud(
        &app,
        &[
            "config",
            "set",
            "--merchant",
            merchant.as_str(),
            "--json",
            r#"{"tipPresets": [0]}"#,
        ],
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("400") && err.contains("tipPresets"), "{err}");
    let (code, _, err) = eftcloud(&app, &["config", "set", "--json", "not json"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("not JSON"), "{err}");

    // An update: key, signed artifact uploaded, campaign, shown, paused.
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = SigningKey::generate().unwrap();
    let file = b"agent 5.0.0".to_vec();
    let s = key.sign("5.0.0", &file).unwrap();
    let signed = dir.path().join("signed.json");
    std::fs::write(
        &signed,
        serde_json::json!({"version": "5.0.0", "size": file.len(), "sha256": s.sha256,
                           "signature": s.signature, "keyId": s.key_id})
        .to_string(),
    )
    .unwrap();
    let artifact_file = dir.path().join("agent-5.0.0");
    std::fs::write(&artifact_file, &file).unwrap();
    let public = key.public().to_hex();
    let (code, out, err) = eftcloud(
        &app,
        &[
            "update",
            "key",
            "add",
            "--name",
            "ops",
            "--public-key",
            &public,
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&key.public().id()), "{out}");
    let (code, out, err) = eftcloud(
        &app,
        &[
            "update",
            "artifact",
            "add",
            "--signed",
            signed.to_str().unwrap(),
            "--file",
            artifact_file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let artifact = out.split_whitespace().nth(1).unwrap().to_string();
    let (code, out, _) = eftcloud(&app, &["update", "artifact", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&artifact) && !out.contains("not uploaded"),
        "{out}"
    );
    let (code, out, err) = eftcloud(
        &app,
        &[
            "update",
            "campaign",
            "create",
            "--name",
            "five",
            "--artifact",
            &artifact,
            "--device",
            "cli-upd",
            "--window",
            "00:00-23:59",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("over 1 device"), "{out}");
    let campaign = out.split_whitespace().nth(1).unwrap().to_string();
    match d.recv().await {
        CloudMessage::Update(u) => {
            assert_eq!(u.campaign_id, campaign);
            assert_eq!(u.artifact.url, format!("/device/v1/artifacts/{artifact}"));
        }
        other => panic!("expected the update, got {other:?}"),
    }
    let (code, out, _) = eftcloud(&app, &["update", "campaign", "show", &campaign]).await;
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["devices"][0]["state"], "offered", "{shown}");
    assert_eq!(shown["window"], "00:00-23:59");
    let (code, out, _) = eftcloud(&app, &["update", "campaign", "pause", &campaign]).await;
    assert_eq!(code, 0);
    assert!(out.ends_with("paused\n"), "{out}");
    let (code, _, err) = eftcloud(&app, &["update", "campaign", "pause", &campaign]).await;
    assert_ne!(code, 0);
    assert!(err.contains("409") && err.contains("paused"), "{err}");
    let (code, _, err) = eftcloud(
        &app,
        &[
            "update",
            "campaign",
            "create",
            "--name",
            "x",
            "--artifact",
            &artifact,
            "--window",
            "soon",
        ],
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("HH:MM-HH:MM"), "{err}");
    let (code, out, _) = eftcloud(&app, &["update", "campaign", "list"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(&campaign) && out.contains("paused"), "{out}");
}

#[tokio::test]
async fn webhooks_and_the_event_log_from_the_command_line() {
    let app = spawn_app_with(Opts {
        admin_token: Some(TOKEN.into()),
        ..Opts::default()
    })
    .await;
    let (terminal, reg) = paired_terminal(&app, "cli-hooks").await;
    let (url, receiver) = crate::events::start_receiver(0).await;
    let (code, out, err) = eftcloud(
        &app,
        &[
            "webhook",
            "create",
            &url,
            "--types",
            "transaction.*",
            "--description",
            "tills",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let id = out.split_whitespace().next().unwrap().to_string();
    assert!(id.starts_with("we_"), "{out}");
    assert!(
        out.contains("[transaction.*]") && out.contains("installation") && out.contains("enabled"),
        "{out}"
    );
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("signing secret (shown once): "))
        .unwrap()
        .to_string();
    assert!(secret.starts_with("whsec_"));
    let (code, out, _) = eftcloud(&app, &["webhook", "list"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(&id) && !out.contains(&secret), "{out}");

    let tx = crate::events::purchase_done(&app, &reg, "1000").await;
    let got = receiver.wait_for(2).await;
    assert!(got.iter().all(|(_, body)| body.contains(&tx)));
    let (code, out, _) = eftcloud(&app, &["webhook", "deliveries", &id]).await;
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().filter(|l| l.contains("delivered 204")).count(),
        2,
        "{out}"
    );
    let event = out
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let (code, out, err) = eftcloud(&app, &["webhook", "redeliver", &id, &event]).await;
    assert_eq!(code, 0, "{out}{err}");
    receiver.wait_for(3).await;
    let (code, out, _) = eftcloud(
        &app,
        &["webhook", "rotate-secret", &id, "--grace-seconds", "60"],
    )
    .await;
    assert_eq!(code, 0);
    assert!(
        out.contains("new signing secret") && out.contains("previous secret signs too until"),
        "{out}"
    );
    let (code, out, _) = eftcloud(&app, &["webhook", "update", &id, "--disable"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("disabled"), "{out}");

    // The event log, a page at a time, from where the last page ended.
    let (code, out, _) = eftcloud(&app, &["events", "--limit", "2"]).await;
    assert_eq!(code, 0);
    let next = out
        .lines()
        .find_map(|l| l.strip_prefix("next cursor: "))
        .unwrap()
        .to_string();
    assert_eq!(out.lines().count(), 3, "{out}");
    let (code, out, _) = eftcloud(
        &app,
        &["events", "--after", &next, "--types", "transaction.*"],
    )
    .await;
    assert_eq!(code, 0);
    assert!(
        out.contains("transaction.created")
            && out.contains("transaction.completed")
            && out.contains(&tx),
        "{out}"
    );
    // Bad input: a clear message and a non-zero exit.
    let (code, _, err) = eftcloud(&app, &["events", "--after", "nope"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("Malformed cursor"), "{err}");
    let (code, _, err) = eftcloud(&app, &["webhook", "create", "ftp://x/y"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("Invalid webhook URL"), "{err}");
    let (code, out, err) = eftcloud(&app, &["webhook", "delete", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = eftcloud(&app, &["webhook", "delete", &id]).await;
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");
    terminal.stop().await;
}
