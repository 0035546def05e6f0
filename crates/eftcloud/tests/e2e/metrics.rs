//! `GET /metrics`: the Prometheus numbers move as transactions, rejections, callbacks and
//! device connections happen; and the separate metrics listener.

use crate::harness::*;
use axum::http::StatusCode;

/// The scrape, as text.
pub async fn scrape(http: &reqwest::Client, base: &str) -> String {
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.unwrap()
}

/// The value of one sample (`name{labels}` exactly as exposed), 0 when absent (a labelled
/// counter appears with its first increment).
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse::<f64>().unwrap())
        })
        .unwrap_or(0.0)
}

/// Scrapes until `series` has `want` (gauges follow connections asynchronously).
async fn wait_sample(app: &TestApp, series: &str, want: f64) {
    eventually(&format!("{series} to become {want}"), || async {
        let last = scrape(&app.http, &app.base).await;
        (sample(&last, series) == want).then_some(())
    })
    .await;
}

const STARTED: &str = r#"eftcloud_transactions_started_total{function="Card.Purchase"}"#;
const ACCEPTED: &str =
    r#"eftcloud_transactions_completed_total{function="Card.Purchase",outcome="OK-ACCEPTED"}"#;
const DECLINED: &str =
    r#"eftcloud_transactions_completed_total{function="Card.Purchase",outcome="OK-DECLINED"}"#;

#[tokio::test]
async fn counters_histograms_and_gauges_follow_transactions() {
    let app = spawn_app().await;
    // Labelled families without a sample yet (rejections, per-function counts) are not listed.
    let text = scrape(&app.http, &app.base).await;
    for name in [
        "eftcloud_connected_devices",
        "eftcloud_pending_transactions",
        "eftcloud_post_to_offer_seconds",
        "eftcloud_post_to_completed_seconds",
        "eftcloud_store_operation_seconds",
        "eftcloud_callback_deliveries",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name}:\n{text}");
    }
    assert_eq!(sample(&text, "eftcloud_connected_devices"), 0.0);

    let (term, reg) = paired_terminal(&app, "term-metrics").await;
    wait_sample(&app, "eftcloud_connected_devices", 1.0).await;

    // An approved and a declined purchase.
    for (amount, outcome) in [("500", "OK-ACCEPTED"), ("551", "OK-DECLINED")] {
        let (status, body) = app
            .post_form("/POS/Transaction", &purchase(&reg, amount))
            .await;
        assert_eq!(status, 200, "{body}");
        let url = body["data"]["PollingUrl"].as_str().unwrap().to_string();
        let done = poll_until_completed(&app, &url).await;
        assert_eq!(done["data"]["TransactionResult"], outcome);
    }
    let text = scrape(&app.http, &app.base).await;
    assert_eq!(sample(&text, STARTED), 2.0, "{text}");
    assert_eq!(sample(&text, ACCEPTED), 1.0, "{text}");
    assert_eq!(sample(&text, DECLINED), 1.0, "{text}");
    assert_eq!(sample(&text, "eftcloud_post_to_offer_seconds_count"), 2.0);
    assert_eq!(
        sample(&text, "eftcloud_post_to_completed_seconds_count"),
        2.0
    );
    assert!(sample(&text, "eftcloud_post_to_completed_seconds_sum") > 0.0);
    assert_eq!(sample(&text, "eftcloud_pending_transactions"), 0.0);
    assert!(
        sample(
            &text,
            r#"eftcloud_store_operation_seconds_count{operation="insert_transaction"}"#
        ) >= 2.0,
        "{text}"
    );

    // A slow purchase is pending while it runs; a second one meanwhile is refused as busy.
    let (status, body) = app
        .post_form("/POS/Transaction", &purchase(&reg, "553"))
        .await;
    assert_eq!(status, 200, "{body}");
    let slow = body["data"]["PollingUrl"].as_str().unwrap().to_string();
    let text = scrape(&app.http, &app.base).await;
    assert_eq!(
        sample(&text, "eftcloud_pending_transactions"),
        1.0,
        "{text}"
    );
    let (status, _) = app
        .post_form("/POS/Transaction", &purchase(&reg, "500"))
        .await;
    assert_eq!(status, 429);
    poll_until_completed(&app, &slow).await;
    let text = scrape(&app.http, &app.base).await;
    assert_eq!(
        sample(&text, "eftcloud_pending_transactions"),
        0.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"eftcloud_rejected_requests_total{status="429",reason="busy"}"#
        ),
        1.0,
        "{text}"
    );

    // Rejections by reason: a bad field, an unpaired register, a wrong token.
    let mut bad = purchase(&reg, "500");
    bad.retain(|(k, _)| *k != "AmountTotal");
    let (status, _) = app.post_form("/POS/Transaction", &bad).await;
    assert_eq!(status, 400);
    let stranger = register("stranger");
    let (status, _) = app
        .post_form("/POS/Transaction", &purchase(&stranger, "500"))
        .await;
    assert_eq!(status, 400);
    let forged = format!("{}x", slow);
    let (status, _) = app.get_json(&forged).await;
    assert_eq!(status, 401);
    let text = scrape(&app.http, &app.base).await;
    for (series, want) in [
        (
            r#"eftcloud_rejected_requests_total{status="400",reason="bad_request"}"#,
            1.0,
        ),
        (
            r#"eftcloud_rejected_requests_total{status="400",reason="not_paired"}"#,
            1.0,
        ),
        (
            r#"eftcloud_rejected_requests_total{status="401",reason="unauthorized"}"#,
            1.0,
        ),
    ] {
        assert_eq!(sample(&text, series), want, "{series}:\n{text}");
    }
    // Scrapes themselves are never counted as started transactions.
    assert_eq!(sample(&text, STARTED), 3.0, "{text}");

    term.stop().await;
    wait_sample(&app, "eftcloud_connected_devices", 0.0).await;
}

/// A POS's callback receiver that answers `status` to every request.
async fn receiver(status: StatusCode) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app =
        axum::Router::new().route("/hook", axum::routing::post(move || async move { status }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn callback_deliveries_and_failures_are_counted() {
    let app = spawn_app().await;
    let (_term, reg) = paired_terminal(&app, "term-metrics-cb").await;
    let good = receiver(StatusCode::OK).await;
    let bad = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
    for url in [&good, &bad] {
        let mut form = purchase(&reg, "500");
        form.push(("PosNotificationCallbackUrl", url));
        let (status, body) = app.post_form("/POS/Transaction", &form).await;
        assert_eq!(status, 200, "{body}");
        poll_until_completed(&app, body["data"]["PollingUrl"].as_str().unwrap()).await;
    }
    // The test apps retry every 50 ms up to 1 s, at most 5 attempts, then give up.
    wait_sample(&app, "eftcloud_callback_deliveries_total", 1.0).await;
    wait_sample(&app, "eftcloud_callbacks_given_up_total", 1.0).await;
    let text = scrape(&app.http, &app.base).await;
    assert_eq!(
        sample(&text, "eftcloud_callback_failures_total"),
        5.0,
        "{text}"
    );
}

#[tokio::test]
async fn metrics_on_their_own_listener_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = cloud::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", dir.path().join("eftcloud.db").display()),
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..cloud::Config::default()
    };
    let app = cloud::Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let metrics = format!("http://{}", app.metrics_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(stop.clone()));
    let http = reqwest::Client::new();

    let text = scrape(&http, &metrics).await;
    assert!(text.contains("eftcloud_connected_devices 0"), "{text}");
    let main = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(main.status(), 404, "not on the public listener");
    // That 404 is itself a rejection, visible on the metrics listener.
    let text = scrape(&http, &metrics).await;
    assert_eq!(
        sample(
            &text,
            r#"eftcloud_rejected_requests_total{status="404",reason="not_found"}"#
        ),
        1.0,
        "{text}"
    );

    stop.cancel();
    running.await.unwrap().unwrap();
}
