//! Abuse limits of the POS API: pairing brute force, body size, field count and length,
//! SaleData size and depth. Each gives a clear `{"error": ...}` with the right status.

use crate::harness::*;
use cloud::pos_api::pairing_guard::PairingGuardSettings;
use cloud::pos_api::ApiLimits;
use std::time::Duration;

fn opts_with(limits: ApiLimits) -> Opts {
    Opts {
        api_limits: limits,
        ..Opts::default()
    }
}

fn pairing_limits(per_source: u32, global: u32, window: Duration, xff: bool) -> ApiLimits {
    ApiLimits {
        pairing: PairingGuardSettings {
            failures_per_source: per_source,
            failures_global: global,
            window,
            trust_forwarded_for: xff,
        },
        ..ApiLimits::default()
    }
}

fn pairing_form(r: &protocol::RegisterKey) -> Vec<(&'static str, &str)> {
    let mut f = register_form(r);
    f.push(("POSRegisterName", "Main Register"));
    f
}

/// PUT /POS/Pairing/{code}, optionally as if forwarded for `from`: status, Retry-After, body.
async fn pair(
    app: &TestApp,
    code: &str,
    reg: &protocol::RegisterKey,
    from: Option<&str>,
) -> (u16, Option<u64>, serde_json::Value) {
    let mut req = app
        .http
        .put(app.url(&format!("/POS/Pairing/{code}")))
        .form(&pairing_form(reg));
    if let Some(ip) = from {
        req = req.header("X-Forwarded-For", format!("203.0.113.9, {ip}"));
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

#[tokio::test]
async fn pairing_brute_force_is_refused_after_ten_failures_from_a_source() {
    // The default settings: 10 failures per source per minute.
    let app = spawn_app().await;
    let secret = app.enroll("dev-bf").await;
    let mut d = RawDevice::connect(&app, "dev-bf", &secret).await;
    let code = d.code().await;
    let reg = register("bf");
    let wrong = if code == "00000000" {
        "00000001"
    } else {
        "00000000"
    };
    for i in 0..10 {
        let (s, _, body) = pair(&app, wrong, &reg, None).await;
        assert_eq!(s, 400, "attempt {i}: {body}");
    }
    let (s, retry, body) = pair(&app, wrong, &reg, None).await;
    assert_eq!(s, 429, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("Too many"),
        "{body}"
    );
    let retry = retry.expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    // Locked out: even the right code is refused, and it stays usable for later.
    let (s, _, _) = pair(&app, &code, &reg, None).await;
    assert_eq!(s, 429);
    // Malformed codes are guesses too; they are refused the same way.
    let (s, _, _) = pair(&app, "abc", &reg, None).await;
    assert_eq!(s, 429);
}

#[tokio::test]
async fn the_lockout_ends_with_the_window_and_successes_do_not_count() {
    let app = spawn_app_with(opts_with(pairing_limits(
        2,
        1000,
        Duration::from_millis(700),
        false,
    )))
    .await;
    let secret = app.enroll("dev-win").await;
    let mut d = RawDevice::connect(&app, "dev-win", &secret).await;
    let reg = register("win");
    // Three successful pairings in a row (each with a fresh code) are not failures.
    for _ in 0..3 {
        let code = d.code().await;
        let (s, _, body) = pair(&app, &code, &reg, None).await;
        assert_eq!(s, 200, "{body}");
        let paired = d.recv().await;
        assert!(
            matches!(paired, protocol::device::CloudMessage::Paired { .. }),
            "{paired:?}"
        );
    }
    let wrong = "99999999";
    assert_eq!(pair(&app, wrong, &reg, None).await.0, 400);
    assert_eq!(pair(&app, wrong, &reg, None).await.0, 400);
    let (s, retry, _) = pair(&app, wrong, &reg, None).await;
    assert_eq!((s, retry), (429, Some(1)));
    // Once the window has passed, the source may try again.
    eventually("the lockout's end", || async {
        (pair(&app, wrong, &reg, None).await.0 == 400).then_some(())
    })
    .await;
}

#[tokio::test]
async fn sources_are_counted_apart_and_a_global_budget_stops_distributed_guessing() {
    let app = spawn_app_with(opts_with(pairing_limits(
        2,
        5,
        Duration::from_secs(60),
        true,
    )))
    .await;
    let reg = register("dist");
    // Behind a trusted proxy, each forwarded address is its own source.
    wrong_codes_from(
        &app,
        &reg,
        &[
            ("198.51.100.1", 400),
            ("198.51.100.1", 400),
            ("198.51.100.1", 429),
            ("198.51.100.2", 400),
            ("198.51.100.3", 400),
            ("198.51.100.4", 400),
        ],
    )
    .await;
    // Five failures in all: a new source is refused too.
    let (s, retry, body) = pair(&app, "11111111", &reg, Some("198.51.100.5")).await;
    assert_eq!(s, 429, "{body}");
    assert!(retry.is_some());
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_trusted() {
    let app = spawn_app_with(opts_with(pairing_limits(
        2,
        1000,
        Duration::from_secs(60),
        false,
    )))
    .await;
    let reg = register("xff");
    // A client cannot escape its budget by inventing X-Forwarded-For addresses: the third
    // attempt is refused whatever address it claims.
    wrong_codes_from(
        &app,
        &reg,
        &[
            ("198.51.100.1", 400),
            ("198.51.100.2", 400),
            ("198.51.100.3", 429),
        ],
    )
    .await;
}

/// Tries a wrong pairing code once from each forwarded source in turn, expecting each status.
async fn wrong_codes_from(app: &TestApp, reg: &protocol::RegisterKey, attempts: &[(&str, u16)]) {
    for (i, (source, expected)) in attempts.iter().enumerate() {
        let (status, _, body) = pair(app, "11111111", reg, Some(source)).await;
        assert_eq!(status, *expected, "attempt {} from {source}: {body}", i + 1);
    }
}

/// Sends `body` with `method` to `path`: status and JSON body.
async fn send_raw(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let r = app
        .http
        .request(method, app.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn oversized_bodies_get_413_json_on_every_endpoint() {
    let app = spawn_app().await;
    let form = "application/x-www-form-urlencoded";
    let id = uuid::Uuid::new_v4();
    // Just over the default 64 KiB limit, and far over it.
    for size in [64 * 1024 + 1, 3 * 1024 * 1024] {
        let body = format!("SaleData={}", "x".repeat(size));
        for (method, path) in [
            (reqwest::Method::PUT, "/POS/Pairing/12345678".to_owned()),
            (reqwest::Method::POST, "/POS/Transaction".to_owned()),
            (
                reqwest::Method::POST,
                format!("/pos/transaction/{id}/cancel"),
            ),
            (
                reqwest::Method::GET,
                format!("/pos/transaction/{id}/events"),
            ),
            (reqwest::Method::GET, "/pos/lookup".to_owned()),
            (reqwest::Method::GET, "/pos/register".to_owned()),
        ] {
            let (s, b) = send_raw(&app, method.clone(), &path, form, body.clone().into()).await;
            assert_eq!(s, 413, "{method} {path}: {b}");
            let e = b["error"].as_str().unwrap();
            assert!(e.contains("too large") && e.contains("65536"), "{e}");
        }
    }
    // JSON bodies too.
    let json = format!(r#"{{"SaleData": "{}"}}"#, "x".repeat(70 * 1024));
    let (s, _) = send_raw(
        &app,
        reqwest::Method::POST,
        "/POS/Transaction",
        "application/json",
        json.into(),
    )
    .await;
    assert_eq!(s, 413);
}

#[tokio::test]
async fn the_body_limit_is_configurable() {
    let app = spawn_app_with(opts_with(ApiLimits {
        max_body_bytes: 2048,
        ..ApiLimits::default()
    }))
    .await;
    let reg = register("small");
    let mut form: Vec<(&str, String)> = purchase(&reg, "500")
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
    form.push(("Notes", "n".repeat(3000)));
    let r = app
        .http
        .post(app.url("/POS/Transaction"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let b: serde_json::Value = r.json().await.unwrap();
    assert!(b["error"].as_str().unwrap().contains("2048"), "{b}");
}

#[tokio::test]
async fn too_many_or_too_long_fields_are_400() {
    let app = spawn_app().await;
    let reg = register("fields");
    let form = "application/x-www-form-urlencoded";
    let base: Vec<String> = purchase(&reg, "500")
        .into_iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();

    let mut many = base.clone();
    many.extend((0..100).map(|i| format!("Extra{i}=1")));
    let (s, b) = send_raw(
        &app,
        reqwest::Method::POST,
        "/POS/Transaction",
        form,
        many.join("&").into(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        b["error"].as_str().unwrap().contains("Too many fields"),
        "{b}"
    );

    let mut long_key = base.clone();
    long_key.push(format!("{}=1", "K".repeat(65)));
    let (s, b) = send_raw(
        &app,
        reqwest::Method::POST,
        "/POS/Transaction",
        form,
        long_key.join("&").into(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        b["error"].as_str().unwrap().contains("Field name too long"),
        "{b}"
    );

    // The query string counts as well.
    let query: Vec<String> = (0..101).map(|i| format!("q{i}=1")).collect();
    let (s, b) = app
        .get_json(&app.url(&format!("/pos/lookup?{}", query.join("&"))))
        .await;
    assert_eq!(s, 400);
    assert!(
        b["error"].as_str().unwrap().contains("Too many fields"),
        "{b}"
    );

    // A JSON body with too many keys.
    let mut obj = serde_json::Map::new();
    for i in 0..101 {
        obj.insert(format!("k{i}"), "v".into());
    }
    let (s, _) = send_raw(
        &app,
        reqwest::Method::PUT,
        "/POS/Pairing/12345678",
        "application/json",
        serde_json::to_vec(&obj).unwrap(),
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn sale_data_size_and_depth_are_limited() {
    let app = spawn_app().await;
    let reg = register("sale");
    let nested = |levels: usize| {
        format!(
            r#"{{"saleData":{{"totalAmount":"5","totalTax":"0","x":{}1{}}}}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        )
    };
    let post = |sale: String| {
        let mut form: Vec<(&str, String)> = purchase(&reg, "500")
            .into_iter()
            .map(|(k, v)| (k, v.to_owned()))
            .collect();
        form.push(("SaleData", sale));
        let app = &app;
        async move {
            let r = app
                .http
                .post(app.url("/POS/Transaction"))
                .form(&form)
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let (s, b) = post(nested(15)).await;
    assert_eq!(s, 400);
    assert!(
        b["error"].as_str().unwrap().contains("nested deeper"),
        "{b}"
    );
    // Within the body limit, beyond SaleData's own.
    let big = format!(
        r#"{{"saleData":{{"totalAmount":"5","totalTax":"0","x":"{}"}}}}"#,
        "x".repeat(50 * 1024)
    );
    let (s, b) = post(big).await;
    assert_eq!(s, 400);
    assert!(b["error"].as_str().unwrap().contains("larger than"), "{b}");
    // A reasonable basket passes the checks and gets as far as the pairing check.
    let (s, b) = post(nested(3)).await;
    assert_eq!(s, 400);
    assert!(b["error"].as_str().unwrap().contains("not paired"), "{b}");
}

fn urlencode(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

#[tokio::test]
async fn connections_per_source_are_bounded_websockets_included() {
    let app = spawn_app_with(Opts {
        max_connections_per_source: 2,
        ..Opts::default()
    })
    .await;
    let secret = app.enroll("dev-conn-limit").await;
    // Two device connections (upgraded WebSockets) hold both slots...
    let d1 = RawDevice::connect(&app, "dev-conn-limit", &secret).await;
    let mut second = ws_connect(&app).await;
    // ...so a third connection from the same address is closed before any HTTP.
    let refused = reqwest::Client::new().get(app.url("/healthz")).send().await;
    assert!(refused.is_err(), "third connection served: {refused:?}");
    // Closing one gives its slot back.
    drop(d1);
    let _ = futures_util::SinkExt::close(&mut second).await;
    drop(second);
    let r = eventually("a free connection slot", || async {
        reqwest::Client::new()
            .get(app.url("/healthz"))
            .send()
            .await
            .ok()
    })
    .await;
    assert_eq!(r.status(), 200);
}
