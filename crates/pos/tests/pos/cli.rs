//! `eftcloud pos ...` end to end against a tiny fake cloud: exit codes follow the outcome.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Form, Json, Router};
use clap::Parser;
use eftcloud_pos::cli::{run, CliError, PosArgs};
use eftcloud_pos::PosError;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    pos: PosArgs,
}

/// The fake cloud: a transaction's outcome is fixed by its amount (500 approves, 51 declines)
/// and it completes on the second poll.
#[derive(Clone, Default)]
struct Cloud {
    base: Arc<Mutex<String>>,
    polls: Arc<Mutex<HashMap<String, usize>>>,
}

fn envelope(base: &str, id: &str, status: &str, data: &[(&str, &str)]) -> Value {
    let mut d = serde_json::Map::new();
    d.insert(
        "PollingUrl".into(),
        json!(format!("{base}/pos/transaction/{id}?merchantAccessToken=k")),
    );
    d.insert("Function".into(), json!("Card.Purchase"));
    for (k, v) in data {
        d.insert((*k).into(), json!(v));
    }
    json!({
        "transactionId": id, "transactionTimeStamp": "20240101000000000", "merchantId": "m",
        "deviceId": "d", "transactionStatus": status, "data": d, "merchantAccessToken": "k",
    })
}

async fn start(State(c): State<Cloud>, Form(f): Form<HashMap<String, String>>) -> Response {
    if f.get("POSRegisterID").map(String::as_str) != Some("paired") {
        let error = protocol::pos_api::NOT_PAIRED;
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
    }
    let base = c.base.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let id = f.get("AmountTotal").cloned().unwrap_or_default();
    Json(envelope(&base, &id, "PENDING", &[])).into_response()
}

async fn poll(State(c): State<Cloud>, Path(id): Path<String>) -> Response {
    let base = c.base.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let n = {
        let mut polls = c.polls.lock().unwrap_or_else(|e| e.into_inner());
        let n = polls.entry(id.clone()).or_default();
        *n += 1;
        *n
    };
    if n < 2 {
        return Json(envelope(
            &base,
            &id,
            "PENDING",
            &[("DisplayText", "present card")],
        ))
        .into_response();
    }
    let result = if id == "500" {
        "OK-ACCEPTED"
    } else {
        "OK-DECLINED"
    };
    let data = [
        ("TransactionResult", result),
        ("Result", "OK"),
        ("AmountTotal", id.as_str()),
        ("Receipt", "RECEIPT"),
    ];
    Json(envelope(&base, &id, "COMPLETED", &data)).into_response()
}

async fn pair(Path(code): Path<String>) -> Response {
    if code == "12345678" {
        Json(json!({"result": "success"})).into_response()
    } else {
        let error = protocol::pos_api::INVALID_PAIRING_CODE;
        (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
    }
}

async fn cloud() -> String {
    let c = Cloud::default();
    let router = Router::new()
        .route("/POS/Transaction", post(start))
        .route("/pos/transaction/{id}", get(poll))
        .route("/POS/Pairing/{code}", put(pair))
        .with_state(c.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let base = format!("http://{addr}");
    *c.base.lock().unwrap_or_else(|e| e.into_inner()) = base.clone();
    base
}

async fn eftcloud_pos(base: &str, args: &[&str]) -> Result<ExitCode, CliError> {
    let argv = ["eftcloud-pos", "--cloud", base]
        .into_iter()
        .chain(args.iter().copied());
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
    run(cli.pos).await
}

fn transact(register: &'static str, amount: &'static str) -> Vec<&'static str> {
    vec![
        "transact",
        "Card.Purchase",
        "--amount",
        amount,
        "--register-id",
        register,
        "--business",
        "Shop",
        "--vendor",
        "V",
        "--poll-interval",
        "10ms",
        "--timeout",
        "5s",
    ]
}

#[tokio::test]
async fn accepted_exits_0_and_declined_exits_1() {
    let base = cloud().await;
    let code = eftcloud_pos(&base, &transact("paired", "500")).await;
    assert_eq!(code.ok(), Some(ExitCode::SUCCESS));
    let mut json = transact("paired", "51");
    json.push("--json");
    let code = eftcloud_pos(&base, &json).await;
    assert_eq!(code.ok(), Some(ExitCode::from(1)));
}

#[tokio::test]
async fn api_errors_carry_the_cloud_message() {
    let base = cloud().await;
    let r = eftcloud_pos(&base, &transact("stranger", "500")).await;
    match r {
        Err(e @ CliError::Pos(PosError::Api { status: 400, .. })) => {
            assert_eq!(
                e.to_string(),
                "400: This register is not paired to a device, please pair it first."
            );
            assert_eq!(e.exit_code(), ExitCode::from(2));
        }
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[tokio::test]
async fn pair_prints_paired_or_fails_with_the_reason() {
    let base = cloud().await;
    let args = |code: &'static str| {
        vec![
            "pair",
            code,
            "--register-id",
            "r",
            "--register-name",
            "Main",
            "--business",
            "S",
            "--vendor",
            "V",
            "--contact-name",
            "Ann",
        ]
    };
    let ok = eftcloud_pos(&base, &args("1234 5678")).await;
    assert_eq!(ok.ok(), Some(ExitCode::SUCCESS));
    let bad = eftcloud_pos(&base, &args("00000000")).await;
    assert!(matches!(
        bad,
        Err(CliError::Pos(PosError::Api { status: 400, .. }))
    ));
    let usage = eftcloud_pos(&base, &args("12")).await;
    assert!(matches!(usage, Err(CliError::Usage(_))), "{usage:?}");
}
