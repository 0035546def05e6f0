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
    tokio::time::timeout(PATIENCE, async {
        loop {
            {
                let seen = r.seen.lock().unwrap();
                if seen.len() >= n {
                    return seen.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("callbacks in time")
}

fn verify(headers: &HeaderMap, body: &str) {
    let header = headers["eftcloud-signature"].to_str().unwrap();
    let (t, v1) = header.split_once(',').unwrap();
    let t: i64 = t.strip_prefix("t=").unwrap().parse().unwrap();
    let v1 = v1.strip_prefix("v1=").unwrap();
    assert_eq!(
        v1,
        cloud::pos_api::callbacks::sign(CALLBACK_SECRET, t, body.as_bytes())
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
    // Delivered on the third attempt, and not again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.seen.lock().unwrap().len(), 3);
    let id = env["transactionId"].as_str().unwrap();
    let (_, tl) = app
        .get_json(&format!(
            "{}/pos/transaction/{id}/events?merchantAccessToken={}",
            app.base,
            env["merchantAccessToken"].as_str().unwrap()
        ))
        .await;
    let kinds: Vec<&str> = tl["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "callback_failed").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"callback_delivered"));
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
