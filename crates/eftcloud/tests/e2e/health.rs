//! Devices' health: reported over the device protocol (only to a cloud that accepts it), kept
//! with a bounded history, shown to the operator, counted in the metrics.

use crate::harness::*;
use crate::metrics::{sample, scrape};
use futures_util::{SinkExt, StreamExt};
use protocol::device::{accepts, CloudMessage, DeviceMessage};
use protocol::health::{Battery, Health, Network, NetworkKind, PaperState};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "admin-token-for-health";

async fn admin_get(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app
        .http
        .get(app.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn report(version: &str, battery: u8, paper: PaperState) -> Health {
    Health {
        agent_version: version.into(),
        software_version: Some("pay-app 4.2".into()),
        firmware_version: Some("fw 1.0.7".into()),
        battery: Some(Battery {
            level_percent: battery,
            charging: false,
        }),
        network: Some(Network {
            kind: NetworkKind::Cellular,
            signal_percent: Some(61),
        }),
        printer_paper: Some(paper),
        storage_free_bytes: Some(1 << 30),
        uptime_secs: Some(3600),
    }
}

#[tokio::test]
async fn health_reports_reach_the_operator_and_the_metrics() {
    let app = spawn_app_with(Opts {
        admin_token: Some(TOKEN.into()),
        ..Opts::default()
    })
    .await;
    let secret = app.enroll("healthy-1").await;
    // The cloud says it accepts health in its welcome.
    let mut ws = ws_connect(&app).await;
    ws.send(Message::text(
        serde_json::to_string(&hello("healthy-1", &secret)).unwrap(),
    ))
    .await
    .unwrap();
    let welcome = loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            break serde_json::from_str::<CloudMessage>(t.as_str()).unwrap();
        }
    };
    let CloudMessage::Welcome {
        accepts: listed, ..
    } = welcome
    else {
        panic!("expected welcome, got {welcome:?}")
    };
    assert_eq!(listed, [accepts::HEALTH]);
    drop(ws);

    let mut d = RawDevice::connect(&app, "healthy-1", &secret).await;
    d.send(&DeviceMessage::Health(report("1.4.0", 80, PaperState::Ok)))
        .await;
    d.send(&DeviceMessage::Health(report("1.4.0", 12, PaperState::Out)))
        .await;
    let detail = eventually("the second report stored", || async {
        let (status, v) = admin_get(&app, "/admin/devices/healthy-1").await;
        assert_eq!(status, 200, "{v}");
        (v["healthHistory"].as_array().map(Vec::len) == Some(2)).then_some(v)
    })
    .await;
    let h = &detail["health"];
    assert_eq!(h["agent_version"], "1.4.0", "{detail}");
    assert_eq!(h["battery"]["level_percent"], 12);
    assert_eq!(
        (h["lowBattery"].as_bool(), h["outOfPaper"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(h["network"]["kind"], "cellular");
    assert_eq!(h["storage_free_bytes"], 1u64 << 30);
    assert_eq!(
        detail["healthHistory"][1]["battery"]["level_percent"], 80,
        "newest first"
    );
    assert_eq!(detail["deviceId"], "healthy-1");

    let text = scrape(&app.http, &app.base).await;
    assert_eq!(
        sample(
            &text,
            r#"eftcloud_devices_by_agent_version{agent_version="1.4.0"}"#
        ),
        1.0,
        "{text}"
    );
    assert_eq!(sample(&text, "eftcloud_devices_low_battery"), 1.0);
    assert_eq!(sample(&text, "eftcloud_devices_out_of_paper"), 1.0);

    // A report out of range is refused and not stored; the connection stays up.
    let mut bad = report("1.4.0", 50, PaperState::Ok);
    bad.network = Some(Network {
        kind: NetworkKind::Wifi,
        signal_percent: Some(140),
    });
    d.send(&DeviceMessage::Health(bad)).await;
    match d.recv().await {
        CloudMessage::Error { message } => assert!(message.contains("signal"), "{message}"),
        other => panic!("expected error, got {other:?}"),
    }
    let (_, again) = admin_get(&app, "/admin/devices/healthy-1").await;
    assert_eq!(again["healthHistory"].as_array().map(Vec::len), Some(2));

    // Gone: no longer counted on this node.
    drop(d);
    eventually("the gauges to forget the device", || async {
        let text = scrape(&app.http, &app.base).await;
        (sample(&text, "eftcloud_devices_low_battery") == 0.0).then_some(())
    })
    .await;

    let (status, _) = admin_get(&app, "/admin/devices/nobody").await;
    assert_eq!(status, 404);
    let r = app
        .http
        .get(app.url("/admin/devices/healthy-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// The reference agent reports its health on connecting: its version, the machine's uptime,
/// the free space where its journal lives, its printer's paper.
#[tokio::test]
async fn the_reference_agent_reports_its_health_on_connecting() {
    let app = spawn_app_with(Opts {
        admin_token: Some(TOKEN.into()),
        ..Opts::default()
    })
    .await;
    let secret = app.enroll("agent-health").await;
    let journal = app.dir.path().join("agent-health.journal");
    let _t = start_terminal(&app, "agent-health", &secret, &journal, fast_simulator()).await;
    let h = eventually("the agent's health report", || async {
        let (_, v) = admin_get(&app, "/admin/devices/agent-health").await;
        (!v["health"].is_null()).then(|| v["health"].clone())
    })
    .await;
    assert!(!h["agent_version"].as_str().unwrap_or("").is_empty(), "{h}");
    assert!(h["uptime_secs"].as_u64().is_some(), "{h}");
    assert!(
        h["storage_free_bytes"].as_u64().is_some_and(|b| b > 0),
        "{h}"
    );
    assert_eq!(h["printer_paper"], "ok", "{h}");
    assert_eq!(h["lowBattery"], false);
}
