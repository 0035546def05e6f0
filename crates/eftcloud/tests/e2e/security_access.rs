//! Who may get device credentials and how hard one may guess: self-enrollment from the
//! virtual terminal page (on only for a local cloud without credentials, rate-limited, unused
//! devices removed), refused device handshakes and wrong admin tokens throttled per source,
//! pairing-code requests limited per device.

use crate::harness::*;
use cloud::config::VirtualTerminals;
use cloud::pos_api::pairing_guard::PairingGuardSettings;
use cloud::pos_api::ApiLimits;
use futures_util::{SinkExt, StreamExt};
use protocol::device::{close, CloudMessage, DeviceMessage};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A budget of `n` per `window` from one source, no global one.
fn budget(n: u32, window: Duration) -> PairingGuardSettings {
    PairingGuardSettings {
        failures_per_source: n,
        failures_global: 0,
        window,
        trust_forwarded_for: false,
    }
}

/// HTTP budgets that count sources by `X-Forwarded-For`, so one test can be several sources.
fn forwarded(limits: ApiLimits) -> ApiLimits {
    ApiLimits {
        pairing: PairingGuardSettings {
            trust_forwarded_for: true,
            ..limits.pairing.clone()
        },
        ..limits
    }
}

/// `POST /virtual-terminal/devices`, as if from `from` when given: status, Retry-After, body.
async fn create(app: &TestApp, from: Option<&str>) -> (u16, Option<u64>, serde_json::Value) {
    let mut req = app.http.post(app.url("/virtual-terminal/devices"));
    if let Some(ip) = from {
        req = req.header("X-Forwarded-For", ip);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (status, retry, r.json().await.unwrap_or_default())
}

/// Opens `/device/v1` (as if from `from`), sends `hello` and returns the close the cloud sends,
/// or `None` when it welcomed the device.
async fn hello_from(
    app: &TestApp,
    from: Option<&str>,
    id: &str,
    secret: &str,
) -> Option<(u16, String)> {
    let mut req = format!("ws://{}/device/v1", app.addr)
        .into_client_request()
        .unwrap();
    if let Some(ip) = from {
        req.headers_mut()
            .insert("x-forwarded-for", ip.parse().unwrap());
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    // The cloud may close before reading it (a refused source): a failed send is fine.
    let _ = ws
        .send(Message::text(
            serde_json::to_string(&hello(id, secret)).unwrap(),
        ))
        .await;
    tokio::time::timeout(PATIENCE, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let m: CloudMessage = serde_json::from_str(t.as_str()).unwrap();
                    if matches!(m, CloudMessage::Welcome { .. }) {
                        return None;
                    }
                }
                Some(Ok(Message::Close(Some(f)))) => {
                    return Some((u16::from(f.code), f.reason.to_string()))
                }
                Some(Ok(_)) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("answer in time")
}

#[tokio::test]
async fn enrollment_is_off_once_a_credential_is_set_or_the_cloud_is_public_unless_the_flag_says_so()
{
    let admin = Some("admin-token-for-tests".to_string());
    let key = vec!["Till2Go=0123456789abcdef".to_string()];
    let cases: Vec<(&str, Opts, Option<&str>, u16)> = vec![
        (
            "local, no credential",
            Opts {
                virtual_terminals: VirtualTerminals::Auto,
                ..Opts::default()
            },
            None,
            201,
        ),
        (
            "admin token",
            Opts {
                virtual_terminals: VirtualTerminals::Auto,
                admin_token: admin.clone(),
                ..Opts::default()
            },
            None,
            403,
        ),
        (
            "POS API key",
            Opts {
                virtual_terminals: VirtualTerminals::Auto,
                pos_api_keys: key.clone(),
                ..Opts::default()
            },
            None,
            403,
        ),
        (
            "listening on every address",
            Opts {
                virtual_terminals: VirtualTerminals::Auto,
                ..Opts::default()
            },
            Some("0.0.0.0:0"),
            403,
        ),
        (
            "--production",
            Opts {
                virtual_terminals: VirtualTerminals::Off,
                ..Opts::default()
            },
            None,
            403,
        ),
        (
            "--virtual-terminals with credentials",
            Opts {
                virtual_terminals: VirtualTerminals::On,
                admin_token: admin.clone(),
                pos_api_keys: key.clone(),
                ..Opts::default()
            },
            None,
            201,
        ),
    ];
    for (what, opts, listen, want) in cases {
        let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
        let app = spawn_app_in(dir, opts, listen.map(|a| a.parse().unwrap())).await;
        let (status, _, body) = create(&app, None).await;
        assert_eq!(status, want, "{what}: {body}");
        let page = app
            .http
            .get(app.url("/virtual-terminal"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let flag = format!("data-virtual-terminals=\"{}\"", want == 201);
        assert!(page.contains(&flag), "{what}: the page says so too");
        if want == 403 {
            let error = body["error"].as_str().unwrap();
            assert!(
                error.contains("--virtual-terminals") && error.contains("eftcloud device add"),
                "{what}: says how to turn it on: {error}"
            );
            assert!(
                app.engine.devices().await.unwrap().is_empty(),
                "{what}: nothing enrolled"
            );
        } else {
            let id = body["deviceId"].as_str().unwrap();
            assert!(id.starts_with("virtual-"), "{what}: {body}");
            let d = RawDevice::connect(&app, id, body["secret"].as_str().unwrap()).await;
            drop(d);
        }
    }
}

#[tokio::test]
async fn enrollment_is_rate_limited_per_source() {
    let app = spawn_app_with(Opts {
        api_limits: forwarded(ApiLimits {
            enrollment: PairingGuardSettings {
                failures_global: 5,
                ..budget(3, Duration::from_secs(60))
            },
            ..ApiLimits::default()
        }),
        ..Opts::default()
    })
    .await;
    for i in 0..3 {
        let (s, _, body) = create(&app, Some("198.51.100.1")).await;
        assert_eq!(s, 201, "enrollment {i}: {body}");
    }
    let (s, retry, body) = create(&app, Some("198.51.100.1")).await;
    assert_eq!(s, 429, "{body}");
    let retry = retry.expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(
        body["error"].as_str().unwrap().contains("retry in"),
        "{body}"
    );
    // Another source has its own budget, until the global one is spent.
    for (from, want) in [
        ("198.51.100.2", 201),
        ("198.51.100.2", 201),
        ("198.51.100.3", 429),
    ] {
        let (s, _, body) = create(&app, Some(from)).await;
        assert_eq!(s, want, "{from}: {body}");
    }
    assert_eq!(app.engine.devices().await.unwrap().len(), 5);
}

#[tokio::test]
async fn unused_virtual_terminals_are_removed_and_operator_devices_stay() {
    // The default lifetime, passed on the cloud's clock, not waited for; the test runs the
    // sweep itself.
    let ttl = Opts::default().virtual_terminal_ttl;
    let (app, clock) = spawn_app_on_manual_clock().await;
    let (_, _, never) = create(&app, None).await;
    let (_, _, used) = create(&app, None).await;
    let operator_secret = app.enroll("shop-till-1").await;
    let used_id = used["deviceId"].as_str().unwrap().to_string();
    let used_secret = used["secret"].as_str().unwrap().to_string();
    let mut d = RawDevice::connect(&app, &used_id, &used_secret).await;
    let reg = d.pair(&app).await;
    clock.advance(ttl + Duration::from_secs(1));

    // The never-connected one goes; the connected one and the operator's stay.
    assert_eq!(app.engine.purge_unused_virtual_devices().await, 1);
    let never_id = never["deviceId"].as_str().unwrap();
    assert_eq!(
        hello_from(&app, None, never_id, never["secret"].as_str().unwrap())
            .await
            .map(|c| c.0),
        Some(close::AUTH_FAILED)
    );
    d.expect_silence(Duration::from_millis(50)).await;

    // Once it has been gone for the lifetime it is unused too, paired register or not.
    drop(d);
    let dev = protocol::DeviceId::parse(&used_id).unwrap();
    eventually("the disconnect recorded", || async {
        let d = app.engine.device(&dev).await.unwrap().unwrap();
        d.connected_at.is_none().then_some(())
    })
    .await;
    assert_eq!(
        app.engine.purge_unused_virtual_devices().await,
        0,
        "just seen"
    );
    clock.advance(ttl - Duration::from_secs(1));
    assert_eq!(app.engine.purge_unused_virtual_devices().await, 0);
    clock.advance(Duration::from_secs(2));
    assert_eq!(app.engine.purge_unused_virtual_devices().await, 1);
    assert!(app.engine.register(&reg).await.unwrap().is_none());
    assert_eq!(
        hello_from(&app, None, &used_id, &used_secret)
            .await
            .map(|c| c.0),
        Some(close::AUTH_FAILED)
    );
    // The operator's device, never connected either, is untouched.
    assert_eq!(
        hello_from(&app, None, "shop-till-1", &operator_secret).await,
        None
    );
    assert_eq!(app.engine.purge_unused_virtual_devices().await, 0);
}

#[tokio::test]
async fn refused_hellos_from_one_source_are_throttled() {
    let window = Duration::from_millis(800);
    let app = spawn_app_with(Opts {
        hello_failures: budget(3, window),
        // The gateway takes sources from X-Forwarded-For when the HTTP side does.
        api_limits: forwarded(ApiLimits::default()),
        ..Opts::default()
    })
    .await;
    let secret = app.enroll("dev-guess").await;
    let attacker = Some("203.0.113.66");
    // Good hellos never count, however many.
    for _ in 0..5 {
        assert_eq!(hello_from(&app, attacker, "dev-guess", &secret).await, None);
    }
    for i in 0..3 {
        let wrong = format!("{:064x}", i);
        let (code, _) = hello_from(&app, attacker, "dev-guess", &wrong)
            .await
            .unwrap();
        assert_eq!(code, close::AUTH_FAILED, "guess {i}");
    }
    // The budget is spent: refused before the secret is even looked at, right one included.
    let (code, reason) = hello_from(&app, attacker, "dev-guess", &secret)
        .await
        .unwrap();
    assert_eq!(code, close::TOO_MANY_ATTEMPTS, "{reason}");
    assert!(
        reason.contains("too many") && reason.contains("retry in"),
        "{reason}"
    );
    // Other sources are not affected.
    assert_eq!(
        hello_from(&app, Some("203.0.113.67"), "dev-guess", &secret).await,
        None
    );
    // The window ends (refusals do not extend it; its length is the guard's unit tests' job).
    eventually("the end of the lockout", || async {
        hello_from(&app, attacker, "dev-guess", &secret)
            .await
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_oversized_hello_is_closed_as_too_large() {
    let app = spawn_app().await;
    let big = "x".repeat(protocol::device::MAX_FRAME_BYTES + 1);
    let mut ws = ws_connect(&app).await;
    let _ = ws.send(Message::text(big)).await;
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, close::FRAME_TOO_LARGE, "{reason}");
}

/// GET /admin/devices with a token, as if from `from`: status and Retry-After.
async fn admin_get(app: &TestApp, token: &str, from: &str) -> (u16, Option<u64>) {
    let r = app
        .http
        .get(app.url("/admin/devices"))
        .bearer_auth(token)
        .header("X-Forwarded-For", from)
        .send()
        .await
        .unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (r.status().as_u16(), retry)
}

#[tokio::test]
async fn wrong_admin_tokens_are_throttled_per_source() {
    const TOKEN: &str = "admin-token-for-tests";
    let app = spawn_app_with(Opts {
        admin_token: Some(TOKEN.into()),
        api_limits: forwarded(ApiLimits {
            admin_tokens: budget(3, Duration::from_secs(60)),
            ..ApiLimits::default()
        }),
        ..Opts::default()
    })
    .await;
    let ip = "192.0.2.10";
    // Right tokens are refunded: they never use up the budget.
    for _ in 0..5 {
        assert_eq!(admin_get(&app, TOKEN, ip).await.0, 200);
    }
    for i in 0..3 {
        assert_eq!(admin_get(&app, &format!("guess-{i}"), ip).await.0, 401);
    }
    let (status, retry) = admin_get(&app, "guess-4", ip).await;
    assert_eq!(status, 429);
    assert!(retry.is_some_and(|r| (1..=60).contains(&r)), "{retry:?}");
    // A lockout refuses the right token too, so guessing cannot go on.
    assert_eq!(admin_get(&app, TOKEN, ip).await.0, 429);
    let r = app
        .http
        .post(app.url("/admin/devices/x/revoke"))
        .bearer_auth(TOKEN)
        .header("X-Forwarded-For", ip)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "every admin endpoint");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("admin token"),
        "{body}"
    );
    // The operator elsewhere is not locked out.
    assert_eq!(admin_get(&app, TOKEN, "192.0.2.11").await.0, 200);
}

#[tokio::test]
async fn pairing_code_requests_are_limited_per_device() {
    let app = spawn_app_with(Opts {
        pairing_code_requests: budget(3, Duration::from_secs(60)),
        ..Opts::default()
    })
    .await;
    let secret = app.enroll("dev-codes").await;
    let mut d = RawDevice::connect(&app, "dev-codes", &secret).await;
    let mut last = String::new();
    for _ in 0..3 {
        last = d.code().await;
    }
    for _ in 0..5 {
        d.send(&DeviceMessage::PairingCodeRequest).await;
        match d.recv().await {
            CloudMessage::Error { message } => assert!(
                message.contains("too many pairing code requests")
                    && message.contains("ask again in"),
                "{message}"
            ),
            other => panic!("expected an error frame, got {other:?}"),
        }
    }
    // The connection stays up and the last code still pairs.
    let reg = register("codes");
    app.pos()
        .pair(&last, &reg, &pos::PairingDetails::new("Front"))
        .await
        .unwrap();
    assert!(matches!(d.recv().await, CloudMessage::Paired { .. }));
    // Other devices have their own budget.
    let (mut other, _) = RawDevice::paired(&app, "dev-codes-2").await;
    other.code().await;
}
