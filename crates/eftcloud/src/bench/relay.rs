//! The baseline relay: the floor any cloud hop costs on this machine. An axum server with a
//! WebSocket endpoint speaking the device protocol's frames and one HTTP route: `POST /tx`
//! sends a `transaction` frame to the named device's socket, answers its `accept` with `start`
//! (statelessly, so the device sees the same frames as from the cloud), and the device's
//! `result` completes the HTTP response. No persistence, no state machine, no authentication,
//! no heartbeats: only the network path and the JSON.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::device::PROTOCOL_VERSION;
use protocol::device::{CloudMessage, DeviceMessage, DeviceResult, TransactionOffer};
use protocol::TransactionRequest;
use protocol::{Cents, DeviceId, Function, RegisterInfo, RegisterKey, TransactionId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long `POST /tx` waits for the device's result.
const RESULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Read buffer of one device connection.
const RELAY_BUFFER_BYTES: usize = 4 * 1024;
/// Frames queued for one device's socket.
const OUTBOUND_BUFFER: usize = 16;

#[derive(Default)]
struct Relay {
    devices: Mutex<HashMap<String, mpsc::Sender<CloudMessage>>>,
    pending: Mutex<HashMap<TransactionId, oneshot::Sender<DeviceResult>>>,
}

type Shared = Arc<Relay>;

/// `eftcloud bench relay`: serves until killed.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<ExitCode> {
    let app = Router::new()
        .route(protocol::device::PATH, get(upgrade))
        .route("/tx", post(transact))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Shared::default());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("relay listening on http://{}", listener.local_addr()?);
    // As the cloud does: small frames must not wait for delayed ACKs (Nagle).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(ExitCode::SUCCESS)
}

/// The `POST /tx` form: which device, and how much.
#[derive(serde::Deserialize)]
struct TxForm {
    device: String,
    amount: u64,
}

async fn transact(State(relay): State<Shared>, Form(form): Form<TxForm>) -> Response {
    let fail = |status: StatusCode, e: String| {
        (status, Json(serde_json::json!({ "error": e }))).into_response()
    };
    let Some(outbound) = lock(&relay.devices).get(&form.device).cloned() else {
        return fail(StatusCode::NOT_FOUND, "device not connected".into());
    };
    let (Ok(device), Ok(amount)) = (DeviceId::parse(&form.device), Cents::new(form.amount)) else {
        return fail(StatusCode::BAD_REQUEST, "bad device or amount".into());
    };
    let id = TransactionId::new();
    let (done, result) = oneshot::channel();
    lock(&relay.pending).insert(id, done);
    let offer = CloudMessage::Transaction(TransactionOffer {
        transaction_id: id,
        register: RegisterInfo {
            key: RegisterKey {
                register_id: device.as_str().to_string(),
                business_name: "Bench".into(),
                vendor_name: "eftcloud".into(),
            },
            register_name: "Bench".into(),
        },
        request: TransactionRequest {
            amount_total: Some(amount),
            ..TransactionRequest::of(Function::CardPurchase)
        },
        request_timestamp: "20250101000000".into(),
    });
    if outbound.send(offer).await.is_err() {
        lock(&relay.pending).remove(&id);
        return fail(StatusCode::BAD_GATEWAY, "device went away".into());
    }
    match tokio::time::timeout(RESULT_TIMEOUT, result).await {
        Ok(Ok(r)) => Json(serde_json::json!({
            "transactionId": id.to_string(),
            "transactionStatus": "COMPLETED",
            "data": {
                "TransactionResult": r.transaction_result.map(|t| t.as_str()).unwrap_or(""),
                "Result": r.result.as_str(),
                "ResultText": r.result_text,
                "fields": r.fields,
            }
        }))
        .into_response(),
        _ => {
            lock(&relay.pending).remove(&id);
            fail(
                StatusCode::GATEWAY_TIMEOUT,
                "no result from the device".into(),
            )
        }
    }
}

async fn upgrade(State(relay): State<Shared>, ws: WebSocketUpgrade) -> Response {
    // Frames are small: 4 KiB buffers instead of tungstenite's 128 KiB defaults, which would
    // dominate the memory of an idle fleet.
    ws.read_buffer_size(RELAY_BUFFER_BYTES)
        .write_buffer_size(0)
        .on_upgrade(move |socket| connection(socket, relay))
}

async fn connection(mut socket: WebSocket, relay: Shared) {
    let Some(Ok(Message::Text(first))) = socket.recv().await else {
        return;
    };
    let Ok(DeviceMessage::Hello(hello)) = serde_json::from_str::<DeviceMessage>(first.as_str())
    else {
        return;
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        return;
    }
    let device = hello.device_id;
    let (tx, mut outbound) = mpsc::channel(OUTBOUND_BUFFER);
    lock(&relay.devices).insert(device.as_str().to_string(), tx.clone());
    let welcome = CloudMessage::Welcome {
        device_id: device.clone(),
        registers: Vec::new(),
        heartbeat_ms: 3_600_000,
        accepts: Vec::new(),
    };
    if send(&mut socket, &welcome).await.is_ok() {
        loop {
            tokio::select! {
                frame = socket.recv() => {
                    let Some(Ok(frame)) = frame else { break };
                    let Message::Text(text) = frame else { continue };
                    let reply = match serde_json::from_str::<DeviceMessage>(text.as_str()) {
                        Ok(DeviceMessage::Accept { transaction_id }) => {
                            Some(CloudMessage::Start { transaction_id })
                        }
                        Ok(DeviceMessage::Result(r)) => {
                            let id = r.transaction_id;
                            if let Some(done) = lock(&relay.pending).remove(&id) {
                                let _ = done.send(r);
                            }
                            Some(CloudMessage::ResultAck { transaction_id: id })
                        }
                        _ => None,
                    };
                    if let Some(reply) = reply {
                        if send(&mut socket, &reply).await.is_err() {
                            break;
                        }
                    }
                }
                out = outbound.recv() => {
                    let Some(msg) = out else { break };
                    if send(&mut socket, &msg).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    // Only forget the device if no newer connection took its place.
    let mut devices = lock(&relay.devices);
    if devices
        .get(device.as_str())
        .is_some_and(|current| current.same_channel(&tx))
    {
        devices.remove(device.as_str());
    }
}

async fn send(socket: &mut WebSocket, msg: &CloudMessage) -> Result<(), ()> {
    let text = serde_json::to_string(msg).map_err(|_| ())?;
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|_| ())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
