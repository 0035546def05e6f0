//! The event catalogue end to end: `/v1/events` replayed from cursors without gaps or repeats
//! across a crash and across two nodes, within each key's audience, with long-poll; webhook
//! endpoints that fail and recover get every event once (by id), in order, signed; rotation,
//! redelivery, disabling after failing too long, and the SSRF rule of production.

use crate::faults::cloud::Cloud;
use crate::harness::*;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use cloud::domain::accounts::{KeyOwner, MerchantId, Scope};
use protocol::RegisterKey;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `GET` with a bearer key: status and JSON body.
async fn get(app: &TestApp, key: Option<&str>, path: &str) -> (u16, serde_json::Value) {
    let mut r = app.http.get(app.url(path));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// A JSON request with a bearer key: status and JSON body.
async fn send(
    app: &TestApp,
    method: reqwest::Method,
    key: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = app
        .http
        .request(method, app.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Every event after `after` the key sees, paged `limit` at a time; the events and the last
/// cursor.
async fn replay(
    app: &TestApp,
    key: &str,
    after: &str,
    limit: u32,
) -> (Vec<serde_json::Value>, String) {
    let mut cursor = after.to_string();
    let mut all = Vec::new();
    loop {
        let (s, page) = get(
            app,
            Some(key),
            &format!("/v1/events?after={cursor}&limit={limit}"),
        )
        .await;
        assert_eq!(s, 200, "{page}");
        let events = page["events"].as_array().unwrap().clone();
        cursor = page["nextCursor"].as_str().unwrap().to_string();
        let more = page["hasMore"].as_bool().unwrap();
        all.extend(events);
        if !more {
            return (all, cursor);
        }
    }
}

/// Starts a held `GET /v1/events?<query>`; resolves to how long it was held and its page.
fn long_poll(
    app: &TestApp,
    key: &str,
    query: &str,
) -> tokio::task::JoinHandle<(Duration, serde_json::Value)> {
    let request = app
        .http
        .get(app.url(&format!("/v1/events?{query}")))
        .bearer_auth(key);
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let page = request.send().await.unwrap().json().await.unwrap();
        (started.elapsed(), page)
    })
}

/// A cursor as its (epoch, seq) pair, to check the order.
fn cursor_of(e: &serde_json::Value) -> (u64, u64) {
    let (a, b) = e["cursor"].as_str().unwrap().split_once('-').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

fn types(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

/// Checks a replay is strictly ordered and repeats nothing.
fn assert_ordered_once(events: &[serde_json::Value]) {
    let mut ids = HashSet::new();
    for w in events.windows(2) {
        assert!(
            cursor_of(&w[0]) < cursor_of(&w[1]),
            "{} then {}",
            w[0],
            w[1]
        );
    }
    for e in events {
        assert!(
            ids.insert(e["id"].as_str().unwrap().to_string()),
            "{e} twice"
        );
        assert_eq!(e["schemaVersion"], 1);
        assert!(e["createdAt"].as_str().unwrap().ends_with('Z'));
    }
}

/// Runs a purchase through `pos` to its completion; its transaction id.
pub(crate) async fn purchase_done(pos: &TestApp, reg: &RegisterKey, amount: &str) -> String {
    let (s, env) = pos
        .post_form("/POS/Transaction", &purchase(reg, amount))
        .await;
    assert_eq!(s, 200, "{env}");
    let done = poll_until_completed(pos, env["data"]["PollingUrl"].as_str().unwrap()).await;
    assert_eq!(done["data"]["TransactionResult"], "OK-ACCEPTED", "{done}");
    env["transactionId"].as_str().unwrap().to_string()
}

/// The merchant the test apps enroll devices for.
async fn merchant_of(app: &TestApp, device: &str) -> MerchantId {
    app.engine
        .device(&protocol::DeviceId::parse(device).unwrap())
        .await
        .unwrap()
        .unwrap()
        .merchant_id
}

/// The `transaction.*` events of one transaction, as types.
fn of_transaction(events: &[serde_json::Value], id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["data"]["transactionId"] == id)
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn events_replay_from_a_cursor_without_gaps_or_repeats_across_a_crash() {
    let cloud = Cloud::start(Opts::default()).await;
    let (mut t, reg) = paired_terminal(&cloud, "dev-events").await;
    let all = key(&cloud, KeyOwner::Installation, &[Scope::PosRead]).await;
    let merchant = merchant_of(&cloud, "dev-events").await;
    let mine = key(
        &cloud,
        KeyOwner::Merchant(merchant.clone()),
        &[Scope::PosRead],
    )
    .await;
    let other_merchant = cloud
        .engine
        .create_merchant("Elsewhere", &cloud::engine::accounts::Actor::cli())
        .await
        .unwrap();
    let theirs = key(
        &cloud,
        KeyOwner::Merchant(other_merchant.id),
        &[Scope::PosRead],
    )
    .await;
    let vendor = key(
        &cloud,
        KeyOwner::Vendor(reg.vendor_name.clone()),
        &[Scope::PosRead],
    )
    .await;

    let first = [
        purchase_done(&cloud, &reg, "1000").await,
        purchase_done(&cloud, &reg, "1100").await,
        purchase_done(&cloud, &reg, "1200").await,
    ];
    // Paged two at a time, the whole log comes once, in order.
    let (before, cursor) = replay(&cloud, &all, "0-0", 2).await;
    assert_ordered_once(&before);
    let kinds = types(&before);
    // The terminal connected, applied its configuration, and was paired.
    assert_eq!(
        &kinds[..3],
        ["device.connected", "config.applied", "pairing.paired"],
        "{kinds:?}"
    );
    for id in &first {
        assert_eq!(
            of_transaction(&before, id),
            vec!["transaction.created", "transaction.completed"]
        );
    }
    let completed = before
        .iter()
        .find(|e| e["type"] == "transaction.completed" && e["data"]["transactionId"] == first[0])
        .unwrap();
    assert_eq!(completed["merchantId"], merchant.as_str());
    let data = &completed["data"];
    assert_eq!(data["transactionStatus"], "COMPLETED");
    assert_eq!(data["transactionResult"], "OK-ACCEPTED");
    assert_eq!(data["function"], "Card.Purchase");
    assert_eq!(data["deviceId"], "dev-events");
    assert_eq!(data["registerId"], reg.register_id.as_str());
    assert_eq!(data["amountTotal"], "1000");
    // One event by id.
    let id = completed["id"].as_str().unwrap();
    let (s, one) = get(&cloud, Some(&mine), &format!("/v1/events/{id}")).await;
    assert_eq!((s, &one["id"]), (200, &completed["id"]));

    // The merchant's key sees all of it (every event here is its merchant's); another
    // merchant's sees nothing, even by id; the vendor's sees its registers' events only.
    let (of_mine, _) = replay(&cloud, &mine, "0-0", 100).await;
    assert_eq!(types(&of_mine), kinds);
    let (of_theirs, _) = replay(&cloud, &theirs, "0-0", 100).await;
    assert!(of_theirs.is_empty(), "{of_theirs:?}");
    assert_eq!(
        get(&cloud, Some(&theirs), &format!("/v1/events/{id}"))
            .await
            .0,
        404
    );
    let (of_vendor, _) = replay(&cloud, &vendor, "0-0", 100).await;
    assert_eq!(
        of_vendor.len(),
        kinds.len() - 2,
        "all but the device's own events"
    );
    assert!(of_vendor
        .iter()
        .all(|e| e["type"] != "device.connected" && e["type"] != "config.applied"));
    // Filters.
    let (s, page) = get(
        &cloud,
        Some(&all),
        "/v1/events?types=transaction.completed,pairing.*",
    )
    .await;
    assert_eq!(s, 200);
    let filtered = types(page["events"].as_array().unwrap());
    assert_eq!(filtered.len(), 4, "{filtered:?}");
    assert!(filtered
        .iter()
        .all(|t| t == "transaction.completed" || t == "pairing.paired"));

    // Bad input, and no key.
    for (query, needle) in [
        ("after=nope", "Malformed cursor"),
        ("after=1-2-3", "Malformed cursor"),
        ("types=transaction.done", "Unknown event type"),
        ("types=nope.*", "Unknown event type"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("wait=61", "wait"),
        ("wait=soon", "wait"),
    ] {
        let (s, body) = get(&cloud, Some(&all), &format!("/v1/events?{query}")).await;
        assert_eq!(s, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(needle),
            "{query}: {body}"
        );
    }
    let (s, body) = get(&cloud, None, "/v1/events").await;
    assert_eq!(s, 401, "{body}");
    let no_read = key(
        &cloud,
        KeyOwner::Merchant(merchant.clone()),
        &[Scope::PosTransact],
    )
    .await;
    assert_eq!(get(&cloud, Some(&no_read), "/v1/events").await.0, 403);

    // A crash: the log and the cursor outlive it.
    let cloud = cloud.restart().await;
    t.wait_for(|e| matches!(e, terminal::TerminalEvent::Connected { .. }).then_some(()))
        .await;
    let later = [
        purchase_done(&cloud, &reg, "1300").await,
        purchase_done(&cloud, &reg, "1400").await,
    ];
    let (after, _) = replay(&cloud, &all, &cursor, 1).await;
    assert_ordered_once(&after);
    let seen: HashSet<&str> = before.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert!(after
        .iter()
        .all(|e| !seen.contains(e["id"].as_str().unwrap())));
    assert!(cursor_of(&after[0]) > cursor_of(before.last().unwrap()));
    for id in &later {
        assert_eq!(
            of_transaction(&after, id),
            vec!["transaction.created", "transaction.completed"]
        );
    }
    // The whole log, replayed again, is the two halves end to end.
    let (whole, last) = replay(&cloud, &all, "0-0", 500).await;
    assert_eq!(whole.len(), before.len() + after.len());
    assert_eq!(&whole[..before.len()], &before[..]);

    // Long-poll: held until the next event, then answered at once.
    let waiting = long_poll(&cloud, &all, &format!("after={last}&wait=20"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "held while nothing happens");
    let id = purchase_done(&cloud, &reg, "1500").await;
    let (took, page) = waiting.await.unwrap();
    assert!(
        took < Duration::from_secs(10),
        "woken, not timed out: {took:?}"
    );
    assert_eq!(page["events"][0]["type"], "transaction.created");
    assert_eq!(page["events"][0]["data"]["transactionId"], id.as_str());
    // With nothing to come, `wait` runs out with an empty page and the same cursor.
    let (s, idle) = get(
        &cloud,
        Some(&vendor),
        &format!(
            "/v1/events?after={}&wait=1&types=device.*",
            page["nextCursor"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(s, 200);
    assert!(idle["events"].as_array().unwrap().is_empty());
    assert_eq!(idle["nextCursor"], page["nextCursor"]);
    t.stop().await;
}

#[cfg_attr(
    not(all(eftcloud_test_postgres, eftcloud_test_nats)),
    ignore = "needs PostgreSQL and NATS: set EFTCLOUD_TEST_DATABASE_URL and EFTCLOUD_TEST_NATS_URL (.ci/run does)"
)]
#[tokio::test]
async fn events_replay_without_gaps_or_repeats_across_two_nodes_writing_at_once() {
    let Some(env) = ClusterEnv::new("events across nodes").await else {
        return;
    };
    let a = spawn_app_with(env.node("node-a")).await;
    let b = spawn_app_with(env.node("node-b")).await;
    let all = key(&a, KeyOwner::Installation, &[Scope::PosRead]).await;
    // Two devices on A, their registers paired and driven through B: every request crosses
    // NATS, and both nodes write events at once (B the creations, A the completions).
    let mut terminals = Vec::new();
    let mut registers = Vec::new();
    for id in ["dev-n1", "dev-n2"] {
        let secret = a.enroll(id).await;
        let journal = a.dir.path().join(format!("{id}.journal"));
        let mut t = start_terminal(&a, id, &secret, &journal, fast_simulator()).await;
        let code = t.next_code().await;
        let reg = register(id);
        b.pos()
            .pair(&code, &reg, &pos::PairingDetails::new("Till"))
            .await
            .unwrap();
        terminals.push(t);
        registers.push(reg);
    }
    // A reader pages through the log while it grows, alternating between the nodes.
    let reader = {
        let (a, b, all) = (a.base.clone(), b.base.clone(), all.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut cursor = "0-0".to_string();
            let mut seen: Vec<serde_json::Value> = Vec::new();
            for round in 0.. {
                let base = if round % 2 == 0 { &a } else { &b };
                let page: serde_json::Value = http
                    .get(format!("{base}/v1/events?after={cursor}&limit=3&wait=1"))
                    .bearer_auth(&all)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                cursor = page["nextCursor"].as_str().unwrap().to_string();
                seen.extend(page["events"].as_array().unwrap().iter().cloned());
                let completed = seen
                    .iter()
                    .filter(|e| e["type"] == "transaction.completed")
                    .count();
                if completed >= 8 {
                    return seen;
                }
                assert!(
                    round < 2000,
                    "the reader never saw all 8 completions: {seen:?}"
                );
            }
            unreachable!()
        })
    };
    let runs = registers.iter().map(|reg| {
        let b = &b;
        async move {
            for amount in ["2000", "2100", "2200", "2300"] {
                purchase_done(b, reg, amount).await;
            }
        }
    });
    futures_util::future::join_all(runs).await;
    let seen = reader.await.unwrap();
    assert_ordered_once(&seen);
    // What the reader saw while the log grew is exactly the log as it stands, from its start,
    // in the same order: nothing was skipped behind its cursor, nothing came twice.
    // (An event is shown once every older transaction on the server has ended: other tests'
    // included, so the last ones may take a moment.)
    let whole = eventually("every creation in the log", || async {
        let (whole, _) = replay(&b, &all, "0-0", 500).await;
        let created = whole
            .iter()
            .filter(|e| e["type"] == "transaction.created")
            .count();
        (created == 8).then_some(whole)
    })
    .await;
    let ids = |v: &[serde_json::Value]| -> Vec<String> {
        v.iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&seen), ids(&whole[..seen.len()]));

    // Long-poll on A, woken by a creation on B (announced over NATS).
    let (_, tail) = replay(&a, &all, "0-0", 500).await;
    let waiting = long_poll(
        &a,
        &all,
        &format!("after={tail}&wait=20&types=transaction.created"),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    purchase_done(&b, &registers[0], "2400").await;
    let (took, page) = waiting.await.unwrap();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(page["events"][0]["type"], "transaction.created");
    for t in terminals {
        t.stop().await;
    }
}

/// A webhook receiver: records every request; answers 500 while `failing` says so.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    pub seen: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    /// Requests still to fail (`usize::MAX`: all of them).
    failing: Arc<Mutex<usize>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    r.seen.lock().unwrap().push((headers, body));
    let mut failing = r.failing.lock().unwrap();
    if *failing > 0 {
        *failing = failing.saturating_sub(1);
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

pub(crate) async fn start_receiver(failing: usize) -> (String, Receiver) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let r = Receiver::default();
    *r.failing.lock().unwrap() = failing;
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, r)
}

impl Receiver {
    pub async fn wait_for(&self, n: usize) -> Vec<(HeaderMap, String)> {
        eventually(&format!("{n} webhook requests"), || async {
            let seen = self.seen.lock().unwrap();
            (seen.len() >= n).then(|| seen.clone())
        })
        .await
    }
}

/// Verifies a delivery's signature against `secrets` as a receiver would (any `v1` matching,
/// a recent `t`): how many of the secrets it was signed with.
fn signed_with(headers: &HeaderMap, body: &str, secrets: &[&str]) -> usize {
    let header = headers["eftcloud-signature"].to_str().unwrap();
    let mut parts = header.split(',');
    let t: i64 = parts
        .next()
        .unwrap()
        .strip_prefix("t=")
        .unwrap()
        .parse()
        .unwrap();
    assert!((chrono::Utc::now().timestamp() - t).abs() < 60);
    let v1: Vec<&str> = parts.map(|p| p.strip_prefix("v1=").unwrap()).collect();
    secrets
        .iter()
        .filter(|s| v1.contains(&cloud::pos_api::callbacks::sign(s, t, body.as_bytes()).as_str()))
        .count()
}

#[tokio::test]
async fn a_webhook_that_fails_then_recovers_gets_every_event_in_order_once_by_id() {
    let app = spawn_app().await;
    let (t, reg) = paired_terminal(&app, "dev-hooks").await;
    let merchant = merchant_of(&app, "dev-hooks").await;
    let manage = key(
        &app,
        KeyOwner::Merchant(merchant.clone()),
        &[Scope::WebhooksManage, Scope::PosRead],
    )
    .await;
    let (url, receiver) = start_receiver(3).await;
    let (s, endpoint) = send(
        &app,
        reqwest::Method::POST,
        &manage,
        "/v1/webhook-endpoints",
        serde_json::json!({"url": url, "description": "till app"}),
    )
    .await;
    assert_eq!(s, 201, "{endpoint}");
    let id = endpoint["id"].as_str().unwrap().to_string();
    let secret = endpoint["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(endpoint["eventTypes"], serde_json::json!(["*"]));
    assert_eq!(endpoint["merchantId"], merchant.as_str());
    // The secret is shown once.
    let (_, listed) = get(&app, Some(&manage), "/v1/webhook-endpoints").await;
    assert_eq!(listed["endpoints"][0]["id"], id.as_str());
    assert!(listed["endpoints"][0].get("secret").is_none());

    // Events from the endpoint's creation on; the receiver fails its first three requests.
    let (_, head) = replay(&app, &manage, "0-0", 500).await;
    for amount in ["1000", "1100", "1200"] {
        purchase_done(&app, &reg, amount).await;
    }
    let (log, _) = replay(&app, &manage, &head, 500).await;
    assert_eq!(log.len(), 6);
    let got = receiver.wait_for(log.len() + 3).await;
    // The head event was retried until it went through: nothing overtook it.
    let order: Vec<String> = got
        .iter()
        .map(|(h, _)| h["eftcloud-event-id"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(order[0], order[1]);
    assert_eq!(order[1], order[2]);
    assert_eq!(order[2], order[3]);
    let mut deduped: Vec<String> = Vec::new();
    for id in &order {
        if deduped.last() != Some(id) {
            deduped.push(id.clone());
        }
    }
    let logged: Vec<String> = log
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        deduped, logged,
        "every event, in the log's order, once by id"
    );
    for (headers, body) in &got {
        assert_eq!(signed_with(headers, body, &[&secret]), 1);
        let event: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            headers["eftcloud-event-type"],
            event["type"].as_str().unwrap()
        );
        assert_eq!(headers["eftcloud-webhook-id"], id.as_str());
        assert_eq!(headers["content-type"], "application/json");
        // A forged body does not verify.
        assert_eq!(signed_with(headers, &format!("{body} "), &[&secret]), 0);
    }

    // The delivery log: the three failures with their 500, then the deliveries.
    let (s, deliveries) = get(
        &app,
        Some(&manage),
        &format!("/v1/webhook-endpoints/{id}/deliveries?limit=100"),
    )
    .await;
    assert_eq!(s, 200, "{deliveries}");
    let mut attempts = deliveries["deliveries"].as_array().unwrap().clone();
    attempts.reverse();
    assert_eq!(attempts.len(), 9);
    for (i, a) in attempts.iter().take(3).enumerate() {
        assert_eq!(a["delivered"], false);
        assert_eq!(a["responseCode"], 500);
        assert_eq!(a["attempt"], i + 1);
    }
    assert_eq!(attempts[3]["delivered"], true);
    assert_eq!(attempts[3]["responseCode"], 204);
    assert_eq!(attempts[3]["attempt"], 4);
    assert!(attempts[4..]
        .iter()
        .all(|a| a["delivered"] == true && a["attempt"] == 1));

    // Redelivery on request: the same event again, once.
    let again = &logged[1];
    let (s, body) = send(
        &app,
        reqwest::Method::POST,
        &manage,
        &format!("/v1/webhook-endpoints/{id}/redeliver"),
        serde_json::json!({"eventId": again}),
    )
    .await;
    assert_eq!((s, &body["queued"]), (202, &serde_json::json!(1)), "{body}");
    let got = receiver.wait_for(10).await;
    assert_eq!(got[9].0["eftcloud-event-id"], again.as_str());

    // Rotation: both secrets sign during the grace period.
    let (s, rotated) = send(
        &app,
        reqwest::Method::POST,
        &manage,
        &format!("/v1/webhook-endpoints/{id}/rotate-secret"),
        serde_json::json!({"graceSeconds": 3600}),
    )
    .await;
    assert_eq!(s, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert!(rotated["previousSecretExpiresAt"].is_string());
    // Only completions from now on.
    let (s, changed) = send(
        &app,
        reqwest::Method::PATCH,
        &manage,
        &format!("/v1/webhook-endpoints/{id}"),
        serde_json::json!({"eventTypes": ["transaction.completed"]}),
    )
    .await;
    assert_eq!(s, 200, "{changed}");
    assert_eq!(
        changed["eventTypes"],
        serde_json::json!(["transaction.completed"])
    );
    let tx = purchase_done(&app, &reg, "1300").await;
    let got = receiver.wait_for(11).await;
    let (headers, body) = &got[10];
    let event: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["type"], "transaction.completed");
    assert_eq!(event["data"]["transactionId"], tx.as_str());
    assert_eq!(signed_with(headers, body, &[&new_secret, &secret]), 2);

    // Another merchant's key neither sees nor touches it; a key without the scope is refused.
    let other = app
        .engine
        .create_merchant("Elsewhere", &cloud::engine::accounts::Actor::cli())
        .await
        .unwrap();
    let theirs = key(&app, KeyOwner::Merchant(other.id), &[Scope::WebhooksManage]).await;
    assert_eq!(
        get(&app, Some(&theirs), &format!("/v1/webhook-endpoints/{id}"))
            .await
            .0,
        404
    );
    let (_, theirs_listed) = get(&app, Some(&theirs), "/v1/webhook-endpoints").await;
    assert_eq!(theirs_listed["endpoints"], serde_json::json!([]));
    let reader = key(
        &app,
        KeyOwner::Merchant(merchant.clone()),
        &[Scope::PosRead],
    )
    .await;
    assert_eq!(
        get(&app, Some(&reader), "/v1/webhook-endpoints").await.0,
        403
    );
    assert_eq!(get(&app, None, "/v1/webhook-endpoints").await.0, 401);
    // Bad input.
    for (body, needle) in [
        (
            serde_json::json!({"url": "ftp://x/y"}),
            "Invalid webhook URL",
        ),
        (
            serde_json::json!({"url": "https://u:p@example.com/"}),
            "credentials",
        ),
        (
            serde_json::json!({"url": url, "eventTypes": ["nope"]}),
            "Unknown event type",
        ),
        (
            serde_json::json!({"url": url, "colour": "red"}),
            "unknown field",
        ),
        (
            serde_json::json!({"url": url, "merchantId": other_id(&merchant)}),
            "installation",
        ),
    ] {
        let (s, answer) = send(
            &app,
            reqwest::Method::POST,
            &manage,
            "/v1/webhook-endpoints",
            body.clone(),
        )
        .await;
        assert!(s == 400 || s == 403, "{body} -> {s} {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(needle),
            "{body} -> {answer}"
        );
    }
    // A field given twice is refused, not silently the last one.
    let r = app
        .http
        .post(app.url("/v1/webhook-endpoints"))
        .bearer_auth(&manage)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"url":"{url}","url":"http://elsewhere.example/"}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("duplicate field"),
        "{answer}"
    );
    // Deleting ends deliveries.
    let (s, _) = send(
        &app,
        reqwest::Method::DELETE,
        &manage,
        &format!("/v1/webhook-endpoints/{id}"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(
        get(&app, Some(&manage), &format!("/v1/webhook-endpoints/{id}"))
            .await
            .0,
        404
    );
    purchase_done(&app, &reg, "1400").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.seen.lock().unwrap().len(), 11);
    t.stop().await;
}

/// A merchant id other than `m` (for an endpoint a merchant's key may not create).
fn other_id(m: &MerchantId) -> String {
    let other = MerchantId::new();
    assert_ne!(&other, m);
    other.as_str().to_string()
}

#[tokio::test]
async fn an_endpoint_failing_too_long_is_disabled_with_a_notice_and_resumes_when_enabled() {
    let mut opts = Opts {
        admin_token: Some("webhooks-admin-token".into()),
        ..Opts::default()
    };
    opts.webhooks.policy.disable_after = Duration::from_millis(600);
    let app = spawn_app_with(opts).await;
    let (t, reg) = paired_terminal(&app, "dev-dead").await;
    let (url, receiver) = start_receiver(usize::MAX).await;
    // The operator's endpoint (admin API, installation-wide), for completions only.
    let admin = |m: reqwest::Method, path: &str| {
        app.http
            .request(m, app.url(path))
            .bearer_auth("webhooks-admin-token")
    };
    let r = admin(reqwest::Method::POST, "/admin/webhooks")
        .json(&serde_json::json!({"url": url, "eventTypes": ["transaction.completed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let endpoint: serde_json::Value = r.json().await.unwrap();
    let id = endpoint["id"].as_str().unwrap().to_string();
    assert_eq!(endpoint["merchantId"], serde_json::Value::Null);
    let tx = purchase_done(&app, &reg, "1000").await;
    let disabled = eventually("the endpoint disabled", || async {
        let e: serde_json::Value = admin(reqwest::Method::GET, &format!("/admin/webhooks/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (e["enabled"] == false).then_some(e)
    })
    .await;
    let reason = disabled["disabledReason"].as_str().unwrap();
    assert!(reason.contains("without a success"), "{reason}");
    assert!(disabled["failingSince"].is_string());
    let tried = receiver.seen.lock().unwrap().len();
    assert!(tried >= 2, "retried before giving up: {tried}");
    // The notice is in the audit log.
    let audit: serde_json::Value =
        admin(reqwest::Method::GET, "/admin/audit?action=webhook.disabled")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let entries = audit.as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "webhook.disabled" && e["target"] == id.as_str()),
        "{audit}"
    );
    // Disabled: nothing more is tried.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.seen.lock().unwrap().len(), tried);
    // The receiver is fixed and the operator enables it again: the held event goes out.
    *receiver.failing.lock().unwrap() = 0;
    let r = admin(reqwest::Method::PATCH, &format!("/admin/webhooks/{id}"))
        .json(&serde_json::json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = receiver.wait_for(tried + 1).await;
    let event: serde_json::Value = serde_json::from_str(&got[tried].1).unwrap();
    assert_eq!(event["data"]["transactionId"], tx.as_str());
    let e: serde_json::Value = admin(reqwest::Method::GET, &format!("/admin/webhooks/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&e["enabled"], &e["disabledReason"]),
        (&serde_json::json!(true), &serde_json::Value::Null)
    );
    t.stop().await;
}

#[tokio::test]
async fn production_refuses_webhook_targets_on_private_networks() {
    let app = spawn_app_with(Opts {
        refuse_private_webhooks: true,
        ..Opts::default()
    })
    .await;
    let manage = key(&app, KeyOwner::Installation, &[Scope::WebhooksManage]).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://192.168.0.10:8080/",
    ] {
        let (s, body) = send(
            &app,
            reqwest::Method::POST,
            &manage,
            "/v1/webhook-endpoints",
            serde_json::json!({"url": url}),
        )
        .await;
        assert_eq!(s, 400, "{url}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("private"),
            "{url}: {body}"
        );
    }
    // A public name is taken (whether it resolves here or not; delivery checks again).
    let (s, body) = send(
        &app,
        reqwest::Method::POST,
        &manage,
        "/v1/webhook-endpoints",
        serde_json::json!({"url": "https://hooks.example.com/eft"}),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    // Nor can an existing endpoint be pointed inside.
    let id = body["id"].as_str().unwrap();
    let (s, body) = send(
        &app,
        reqwest::Method::PATCH,
        &manage,
        &format!("/v1/webhook-endpoints/{id}"),
        serde_json::json!({"url": "http://127.0.0.1/x"}),
    )
    .await;
    assert_eq!(s, 400, "{body}");
}
