//! The client against tiny in-test HTTP servers on 127.0.0.1:0: pairing and starting send the
//! right forms, and waiting rides out 429/5xx but stops on final errors.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Form, Json, Router};
use eftcloud_pos::{
    PairingDetails, PosClient, PosError, RegisterKey, TransactionSpec, WaitOptions,
};
use protocol::pos_api::TransactionEnvelope;
use protocol::{Cents, Function};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Serves `router` on a free port and returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

fn envelope(base: &str, status: &str, data: &[(&str, &str)]) -> Value {
    let mut d = serde_json::Map::new();
    d.insert(
        "PollingUrl".into(),
        json!(format!("{base}/pos/transaction/t-1?merchantAccessToken=k")),
    );
    d.insert("Function".into(), json!("Card.Purchase"));
    for (k, v) in data {
        d.insert((*k).into(), json!(v));
    }
    json!({
        "transactionId": "t-1",
        "transactionTimeStamp": "20240101000000000",
        "merchantId": "m",
        "deviceId": "d",
        "transactionStatus": status,
        "data": d,
        "merchantAccessToken": "k",
    })
}

fn register() -> RegisterKey {
    RegisterKey {
        register_id: "r-1".into(),
        business_name: "Toys Shop".into(),
        vendor_name: "Till2Go".into(),
    }
}

fn client(base: &str) -> PosClient {
    PosClient::new(base).unwrap_or_else(|e| panic!("client: {e}"))
}

fn started(base: &str) -> TransactionEnvelope {
    serde_json::from_value(envelope(base, "PENDING", &[]))
        .unwrap_or_else(|e| panic!("envelope: {e}"))
}

/// The answer to the n-th poll, given the server's base URL.
type Step = dyn Fn(usize, &str) -> Response + Send + Sync;

/// The poll endpoint answers from a script, one response per request, and records when each
/// request arrived.
#[derive(Clone)]
struct Script {
    base: Arc<Mutex<String>>,
    seen: Arc<Mutex<Vec<Instant>>>,
    steps: Arc<Step>,
}

async fn scripted(State(s): State<Script>, Path(id): Path<String>) -> Response {
    assert_eq!(id, "t-1");
    let n = {
        let mut seen = s.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.push(Instant::now());
        seen.len() - 1
    };
    let base = s.base.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (s.steps)(n, &base)
}

async fn scripted_server(
    steps: impl Fn(usize, &str) -> Response + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Instant>>>) {
    let script = Script {
        base: Arc::default(),
        seen: Arc::default(),
        steps: Arc::new(steps),
    };
    let router = Router::new()
        .route("/pos/transaction/{id}", get(scripted))
        .with_state(script.clone());
    let base = serve(router).await;
    *script.base.lock().unwrap_or_else(|e| e.into_inner()) = base.clone();
    (base, script.seen)
}

fn fast() -> WaitOptions {
    WaitOptions {
        interval: Duration::from_millis(20),
        timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn wait_honours_retry_after_and_polls_through_5xx() {
    let (base, seen) = scripted_server(|n, base| match n {
        0 => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            Json(json!({"error": "polling too fast"})),
        )
            .into_response(),
        1 => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "restarting"})),
        )
            .into_response(),
        2 => Json(envelope(
            base,
            "PENDING",
            &[("DisplayText", "present card")],
        ))
        .into_response(),
        _ => Json(envelope(
            base,
            "COMPLETED",
            &[("TransactionResult", "OK-ACCEPTED"), ("Result", "OK")],
        ))
        .into_response(),
    })
    .await;
    let mut updates = Vec::new();
    let done = client(&base)
        .wait_for_completion(&started(&base), fast(), |env| {
            updates.push(env.field("DisplayText").unwrap_or("").to_string());
        })
        .await;
    let done = done.unwrap_or_else(|e| panic!("wait: {e}"));
    assert!(done.is_completed());
    assert!(eftcloud_pos::outcome_is_success(&done));
    assert_eq!(updates, ["present card"]);
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(seen.len(), 4, "429, 503, PENDING, COMPLETED");
    // Retry-After: 1 overrides the 20 ms interval; the 503 does not slow the client down.
    assert!(
        seen[1] - seen[0] >= Duration::from_millis(950),
        "{:?}",
        seen[1] - seen[0]
    );
    assert!(
        seen[2] - seen[1] < Duration::from_millis(900),
        "{:?}",
        seen[2] - seen[1]
    );
}

#[tokio::test]
async fn wait_stops_on_an_expired_token() {
    let (base, seen) = scripted_server(|_, _| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "Token expired"})),
        )
            .into_response()
    })
    .await;
    let r = client(&base)
        .wait_for_completion(&started(&base), fast(), |_| {})
        .await;
    match r {
        Err(PosError::Api { status, message }) => {
            assert_eq!((status, message.as_str()), (401, "Token expired"));
        }
        other => panic!("expected 401, got {other:?}"),
    }
    assert_eq!(seen.lock().unwrap_or_else(|e| e.into_inner()).len(), 1);
}

#[tokio::test]
async fn wait_gives_up_at_the_timeout() {
    let (base, _) = scripted_server(|_, base| {
        Json(envelope(
            base,
            "PENDING",
            &[
                ("TransactionResult", "OK-DELAYED"),
                ("Result", "DELAYED-TRANSACTION"),
            ],
        ))
        .into_response()
    })
    .await;
    let opts = WaitOptions {
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(200),
    };
    let mut updates = 0;
    let r = client(&base)
        .wait_for_completion(&started(&base), opts, |_| updates += 1)
        .await;
    assert!(matches!(r, Err(PosError::Timeout)), "{r:?}");
    assert!(updates >= 2, "kept polling through OK-DELAYED: {updates}");
}

#[tokio::test]
async fn wait_keeps_going_when_the_cloud_is_down_for_a_moment() {
    // A port nobody listens on: every poll is a transport error until the timeout.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let a = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
        format!("http://{a}")
    };
    let opts = WaitOptions {
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(150),
    };
    let r = client(&dead)
        .wait_for_completion(&started(&dead), opts, |_| {})
        .await;
    assert!(matches!(r, Err(PosError::Timeout)), "{r:?}");
}

type Seen = Arc<Mutex<Vec<(String, HashMap<String, String>)>>>;

async fn record_pair(
    State(seen): State<Seen>,
    Path(code): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((code.clone(), form));
    if code == "12345678" {
        Json(json!({"result": "success"})).into_response()
    } else {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": protocol::pos_api::INVALID_PAIRING_CODE})),
        )
            .into_response()
    }
}

#[tokio::test]
async fn pair_puts_the_form_to_the_code() {
    let seen: Seen = Arc::default();
    let router = Router::new()
        .route("/POS/Pairing/{code}", put(record_pair))
        .with_state(seen.clone());
    let base = serve(router).await;
    let mut details = PairingDetails::new("Main Register");
    details.contact_name = Some("Ann Lee".into());
    let c = client(&format!("{base}/POS"));
    let r = c.pair("1234-5678", &register(), &details).await;
    assert!(r.is_ok(), "{r:?}");
    let r = c.pair("00000000", &register(), &details).await;
    assert!(
        matches!(&r, Err(PosError::Api { status: 400, message }) if message.starts_with("Invalid Pairing Code")),
        "{r:?}"
    );
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (code, form) = &seen[0];
    assert_eq!(code, "12345678");
    assert_eq!(
        form.get("Contact Name").map(String::as_str),
        Some("Ann Lee")
    );
    assert_eq!(
        form.get("POSRegisterName").map(String::as_str),
        Some("Main Register")
    );
    assert_eq!(
        form.get("POSVendorName").map(String::as_str),
        Some("Till2Go")
    );
}

#[derive(Clone)]
struct StartState {
    base: Arc<Mutex<String>>,
    form: Arc<Mutex<Option<HashMap<String, String>>>>,
}

async fn start_handler(
    State(s): State<StartState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let base = s.base.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let reply = match form.get("PosReference").map(String::as_str) {
        Some("no-polling-url") => {
            let mut e = envelope(&base, "PENDING", &[]);
            if let Some(d) = e["data"].as_object_mut() {
                d.remove("PollingUrl");
            }
            Json(e).into_response()
        }
        Some("relative") => Json(envelope("", "PENDING", &[])).into_response(),
        Some("not-paired") => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": protocol::pos_api::NOT_PAIRED})),
        )
            .into_response(),
        _ => Json(envelope(&base, "PENDING", &[])).into_response(),
    };
    assert!(headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded")));
    *s.form.lock().unwrap_or_else(|e| e.into_inner()) = Some(form);
    reply
}

#[tokio::test]
async fn start_posts_async_and_checks_the_answer() {
    let state = StartState {
        base: Arc::default(),
        form: Arc::default(),
    };
    let router = Router::new()
        .route("/POS/Transaction", post(start_handler))
        .with_state(state.clone());
    let base = serve(router).await;
    *state.base.lock().unwrap_or_else(|e| e.into_inner()) = base.clone();
    let c = client(&base);
    let amount = Cents::new(500).unwrap_or_else(|e| panic!("{e}"));
    let spec = TransactionSpec::new(Function::CardPurchase).with_amount(amount);

    let env = c.start(&register(), &spec).await;
    assert_eq!(env.map(|e| e.transaction_id).ok(), Some("t-1".to_string()));
    let form = state
        .form
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default();
    let get = |k: &str| form.get(k).map(String::as_str);
    assert_eq!(get("TransactionMode"), Some("ASYNC"));
    assert_eq!(get("TransactionType"), Some("Card.Purchase"));
    assert_eq!(get("AmountTotal"), Some("500"));
    assert_eq!(get("POSRegisterID"), Some("r-1"));

    for reference in ["no-polling-url", "relative"] {
        let r = c
            .start(&register(), &spec.clone().with_pos_reference(reference))
            .await;
        assert!(
            matches!(r, Err(PosError::BadResponse(_))),
            "{reference}: {r:?}"
        );
    }
    let r = c
        .start(&register(), &spec.clone().with_pos_reference("not-paired"))
        .await
        .map(|_| ());
    assert_eq!(
        r.map_err(|e| e.to_string()),
        Err("400: This register is not paired to a device, please pair it first.".to_string())
    );
}
