//! Completion callbacks: signed, retried from a durable outbox, never blocking the POS.

use crate::harness::*;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A POS's callback receiver: records every request, fails the first `fail_first` of them.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    fail_first: Arc<Mutex<usize>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    r.seen.lock().unwrap().push((headers, body));
    let mut fail = r.fail_first.lock().unwrap();
    if *fail > 0 {
        *fail -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn start_receiver(fail_first: usize) -> (String, Receiver) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    (url, serve_receiver(listener, fail_first))
}

async fn start_receiver_on(port: u16, fail_first: usize) -> Receiver {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    serve_receiver(listener, fail_first)
}

fn serve_receiver(listener: tokio::net::TcpListener, fail_first: usize) -> Receiver {
    let r = Receiver::default();
    *r.fail_first.lock().unwrap() = fail_first;
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    r
}

async fn wait_for_requests(r: &Receiver, n: usize) -> Vec<(HeaderMap, String)> {
    eventually(&format!("{n} callback requests"), || async {
        let seen = r.seen.lock().unwrap();
        (seen.len() >= n).then(|| seen.clone())
    })
    .await
}

/// The callback events of a transaction's timeline, once it has `n` of them (the dispatcher
/// records each attempt just after making it).
async fn callback_events(app: &TestApp, env: &serde_json::Value, n: usize) -> Vec<String> {
    let url = format!(
        "{}/pos/transaction/{}/events?merchantAccessToken={}",
        app.base,
        env["transactionId"].as_str().unwrap(),
        env["merchantAccessToken"].as_str().unwrap()
    );
    eventually(&format!("{n} callback events"), || async {
        let (_, tl) = app.get_json(&url).await;
        let found: Vec<String> = tl["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"].as_str().unwrap().starts_with("callback_"))
            .map(|e| format!("{} {}", e["event"].as_str().unwrap(), e["detail"]))
            .collect();
        (found.len() >= n).then_some(found)
    })
    .await
}

fn verify(headers: &HeaderMap, body: &str) {
    verify_with(CALLBACK_SECRET, headers, body);
}

fn verify_with(secret: &str, headers: &HeaderMap, body: &str) {
    let header = headers["eftcloud-signature"].to_str().unwrap();
    let (t, v1) = header.split_once(',').unwrap();
    let t: i64 = t.strip_prefix("t=").unwrap().parse().unwrap();
    let v1 = v1.strip_prefix("v1=").unwrap();
    assert_eq!(
        v1,
        cloud::pos_api::callbacks::sign(secret, t, body.as_bytes())
    );
    assert!((chrono::Utc::now().timestamp() - t).abs() < 60);
}

#[tokio::test]
async fn callbacks_are_signed_retried_and_delivered_once_accepted() {
    let app = spawn_app().await;
    let (t, reg) = paired_terminal(&app, "dev-hook").await;
    let (url, receiver) = start_receiver(2).await;
    let mut form = purchase(&reg, "1000");
    form.push(("PosNotificationCallbackUrl", &url));
    let (s, env) = app.post_form("/POS/Transaction", &form).await;
    assert_eq!(s, 200);
    let done = poll_until_completed(&app, env["data"]["PollingUrl"].as_str().unwrap()).await;
    let seen = wait_for_requests(&receiver, 3).await;
    for (headers, body) in &seen {
        assert_eq!(headers["content-type"], "application/json");
        verify(headers, body);
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v, done, "the callback carries the completed poll body");
    }
    // Delivered on the third attempt, and not again: recorded as delivered, nothing left due.
    let events = callback_events(&app, &env, 3).await;
    assert!(events[0].starts_with("callback_failed"), "{events:?}");
    assert!(events[1].starts_with("callback_failed"), "{events:?}");
    assert!(events[2].starts_with("callback_delivered"), "{events:?}");
    assert_eq!(app.engine.next_callback_at().await.unwrap(), None);
    assert_eq!(receiver.seen.lock().unwrap().len(), 3);
    t.stop().await;
}

/// How long after `now` the next callback attempt is due.
async fn next_attempt_in(app: &TestApp, now: chrono::DateTime<chrono::Utc>) -> Duration {
    let at = app
        .engine
        .next_callback_at()
        .await
        .unwrap()
        .expect("a retry is due");
    (at - now).to_std().expect("due in the future")
}

#[tokio::test]
async fn callback_retries_back_off_on_the_cloud_clock_doubling_each_time() {
    use cloud::domain::Clock;
    let clock = manual_clock();
    let min = Duration::from_secs(60);
    let app = spawn_app_with(Opts {
        clock: clock.clone(),
        callback_retry_min: min,
        callback_retry_max: Duration::from_secs(3600),
        ..Opts::default()
    })
    .await;
    let (t, reg) = paired_terminal(&app, "dev-hook-backoff").await;
    let (url, receiver) = start_receiver(2).await;
    let mut form = purchase(&reg, "1000");
    form.push(("PosNotificationCallbackUrl", &url));
    let (_, env) = app.post_form("/POS/Transaction", &form).await;
    poll_until_completed(&app, env["data"]["PollingUrl"].as_str().unwrap()).await;

    // The first attempt fails; the next is due `retry_min` later (±20% jitter) by the cloud's
    // clock, which has not moved: no real time passing makes it due.
    let events = callback_events(&app, &env, 1).await;
    assert!(events[0].contains("HTTP 500; retry in"), "{events:?}");
    let first = next_attempt_in(&app, clock.now()).await;
    assert!(
        first >= min.mul_f64(0.8) && first <= min.mul_f64(1.2),
        "{first:?}"
    );
    clock.advance(first - Duration::from_millis(1));
    assert!(app.engine.next_callback_at().await.unwrap().is_some());
    assert_eq!(receiver.seen.lock().unwrap().len(), 1, "retried early");

    // Once due, the dispatcher (asleep on the same clock) retries at once; the delay doubles.
    clock.advance(Duration::from_millis(1));
    wait_for_requests(&receiver, 2).await;
    callback_events(&app, &env, 2).await;
    let second = next_attempt_in(&app, clock.now()).await;
    assert!(
        second >= (min * 2).mul_f64(0.8) && second <= (min * 2).mul_f64(1.2),
        "{second:?}"
    );
    clock.advance(second);
    wait_for_requests(&receiver, 3).await;
    let events = callback_events(&app, &env, 3).await;
    assert!(events[2].starts_with("callback_delivered"), "{events:?}");
    assert_eq!(app.engine.next_callback_at().await.unwrap(), None);
    t.stop().await;
}

#[tokio::test]
async fn a_pending_callback_survives_a_restart() {
    let opts = Opts {
        callback_retry_min: Duration::from_millis(500),
        ..Opts::default()
    };
    let app = crate::faults::cloud::Cloud::start(opts.clone()).await;
    let (d, reg) = RawDevice::paired(&app, "dev-hook-restart").await;
    // The POS's receiver is down for now: take a free port and leave it closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let mut form = purchase(&reg, "1000");
    form.push(("PosNotificationCallbackUrl", &url));
    let (_, env) = app.post_form("/POS/Transaction", &form).await;
    drop(d);
    poll_until_completed(&app, env["data"]["PollingUrl"].as_str().unwrap()).await;
    let (dir, addr, opts) = app.kill().await;

    // The receiver comes back; so does the cloud, which still has the callback to deliver.
    let receiver = start_receiver_on(port, 0).await;
    let app = crate::faults::cloud::Cloud::start_in(dir, opts, Some(addr)).await;
    let seen = wait_for_requests(&receiver, 1).await;
    verify(&seen[0].0, &seen[0].1);
    let v: serde_json::Value = serde_json::from_str(&seen[0].1).unwrap();
    assert_eq!(v["transactionId"], env["transactionId"]);
    assert_eq!(v["data"]["Result"], "FAILED-INTERFACE");
    drop(app);
}

#[tokio::test]
async fn a_callback_url_must_be_http() {
    let app = spawn_app().await;
    let (t, reg) = paired_terminal(&app, "dev-hook-bad").await;
    for bad in [
        "ftp://example.com/x",
        "javascript:alert(1)",
        "not a url",
        "/relative",
    ] {
        let mut form = purchase(&reg, "1000");
        form.push(("PosNotificationCallbackUrl", bad));
        let (s, b) = app.post_form("/POS/Transaction", &form).await;
        assert_eq!(s, 400, "{bad}: {b}");
    }
    t.stop().await;
}

#[tokio::test]
async fn an_idle_dispatcher_sleeps_rather_than_polling_the_store() {
    use crate::metrics::{sample, scrape};
    let app = spawn_app_with(Opts {
        clock: manual_clock(),
        ..Opts::default()
    })
    .await;
    let claims = || async {
        let text = scrape(&app.http, &app.base).await;
        sample(
            &text,
            r#"eftcloud_store_operation_seconds_count{operation="claim_callbacks"}"#,
        )
    };
    eventually("the dispatcher's first pass", || async {
        (claims().await >= 1.0).then_some(())
    })
    .await;
    // Nothing completes and its clock stands still: it waits to be woken. (A dispatcher that
    // polled would have claimed again within these 200 ms, hundreds of times if it spun.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(claims().await, 1.0);
}

#[tokio::test]
async fn without_a_configured_secret_callbacks_are_signed_with_one_generated_and_kept() {
    let app = spawn_app_with(Opts {
        callback_secret: None,
        ..Opts::default()
    })
    .await;
    // Generated at start-up and stored: asking again finds it, and does not generate another.
    let name = cloud::pos_api::callbacks::SECRET_NAME;
    let kept = app
        .engine
        .secret(name, &|| "generated again".to_string())
        .await
        .unwrap();
    assert_eq!(kept.len(), 64, "{kept}");
    assert!(kept.chars().all(|c| c.is_ascii_hexdigit()), "{kept}");
    let (t, reg) = paired_terminal(&app, "dev-hook-secret").await;
    let (url, receiver) = start_receiver(0).await;
    let mut form = purchase(&reg, "1000");
    form.push(("PosNotificationCallbackUrl", &url));
    let (_, env) = app.post_form("/POS/Transaction", &form).await;
    poll_until_completed(&app, env["data"]["PollingUrl"].as_str().unwrap()).await;
    let seen = wait_for_requests(&receiver, 1).await;
    verify_with(&kept, &seen[0].0, &seen[0].1);
    t.stop().await;
}
