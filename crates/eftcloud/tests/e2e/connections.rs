//! Connections the server must not keep waiting on, through real sockets: silent ones, idle
//! keep-alive ones, HTTP/2 prior-knowledge ones, and bodies declared larger than the limit; and
//! requests it must not guess at: a field given twice.

use crate::harness::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The header read timeout of these tests: short, so they run fast, and long enough that a
/// loaded machine still serves a prompt client within it.
const TIMEOUT: Duration = Duration::from_millis(600);

async fn app_with_timeout() -> TestApp {
    spawn_app_with(Opts {
        header_read_timeout: TIMEOUT,
        ..Opts::default()
    })
    .await
}

/// Reads until the server closes the connection (EOF or reset), at most `PATIENCE`; returns
/// what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
                    return;
                }
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
    got
}

/// Asserts the server closes `stream` no sooner than about the timeout after `since` (half of
/// it: only the lower bound of a timer can be trusted on a loaded machine) and within
/// `PATIENCE`.
async fn assert_closed_by_timeout(stream: &mut TcpStream, since: Instant, what: &str) -> Vec<u8> {
    let got = read_until_closed(stream).await;
    let after = since.elapsed();
    assert!(
        after >= TIMEOUT / 2,
        "{what}: closed after {after:?}, too early"
    );
    got
}

/// One HTTP/1.1 response with a `Content-Length` body, read without waiting for the close.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    return text;
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "closed before a whole response: {text}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("a response in time")
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let app = app_with_timeout().await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let got = assert_closed_by_timeout(&mut silent, started, "silent").await;
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));

    // Part of the HTTP/2 preface leaves the server unable to tell HTTP/1 from HTTP/2; it must
    // not wait for the rest forever either.
    let started = Instant::now();
    let mut partial = TcpStream::connect(app.addr).await.unwrap();
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    assert_closed_by_timeout(&mut partial, started, "partial preface").await;

    // The server still serves (the closed connections took nothing with them).
    let (status, _) = app.get_json(&app.url("/healthz")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_between_requests() {
    let app = app_with_timeout().await;
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    // Two requests on one connection: keep-alive works...
    for _ in 0..2 {
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_response(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // ...and once idle, the connection has the header read timeout to send the next request.
    let idle_since = Instant::now();
    let got = assert_closed_by_timeout(&mut conn, idle_since, "idle keep-alive").await;
    assert!(
        !String::from_utf8_lossy(&got).contains("200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

/// The HTTP/2 client preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/2 frame: 24-bit length, type, flags, stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const PING: u8 = 0x6;

/// The frames in `bytes` as (type, stream id, payload); a cut-off last frame is left out.
fn frames(bytes: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        if rest.len() < 9 + len {
            break;
        }
        let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
        out.push((rest[3], stream, rest[9..9 + len].to_vec()));
        rest = &rest[9 + len..];
    }
    out
}

#[tokio::test]
async fn http2_prior_knowledge_connections_are_bounded_too() {
    let app = app_with_timeout().await;

    // The preface alone, and the preface with the client's settings but no request: closed
    // like a silent HTTP/1 connection.
    for (what, hello) in [
        ("preface only", PREFACE.to_vec()),
        (
            "preface and settings",
            [PREFACE, &frame(SETTINGS, 0, 0, &[])].concat(),
        ),
    ] {
        let started = Instant::now();
        let mut conn = TcpStream::connect(app.addr).await.unwrap();
        conn.write_all(&hello).await.unwrap();
        let got = assert_closed_by_timeout(&mut conn, started, what).await;
        assert!(
            !frames(&got).iter().any(|(kind, ..)| *kind == HEADERS),
            "{what}: answered a request it never got"
        );
    }

    // A request is served over HTTP/2; then the client goes quiet and ignores the server's
    // ping, as a vanished peer would: the server pings it and closes the connection.
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    // GET /healthz: `:method GET`, `:scheme http` (indexed), `:path` (literal, name indexed).
    let mut block = vec![0x82, 0x86, 0x04, 8];
    block.extend(b"/healthz");
    let hello = [
        PREFACE,
        &frame(SETTINGS, 0, 0, &[]),
        &frame(HEADERS, 0x1 | 0x4, 1, &block),
    ]
    .concat();
    let sent = Instant::now();
    conn.write_all(&hello).await.unwrap();
    let got = read_until_closed(&mut conn).await;
    let frames = frames(&got);
    let response = frames
        .iter()
        .position(|(kind, stream, payload)| {
            // `:status 200`, indexed.
            *kind == HEADERS && *stream == 1 && payload.first() == Some(&0x88)
        })
        .unwrap_or_else(|| panic!("no 200 on stream 1: {frames:?}"));
    assert!(
        frames[response..].iter().any(|(kind, ..)| *kind == PING),
        "closed without a ping: {frames:?}"
    );
    // Pinged after the timeout of silence, closed after another without an answer.
    assert!(
        sent.elapsed() >= TIMEOUT,
        "closed after {:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn a_declared_oversized_body_is_refused_before_it_is_read() {
    // A long body timeout: an answer that waited for the body would come far too late.
    let app = spawn_app_with(Opts {
        body_read_timeout: Duration::from_secs(30),
        ..Opts::default()
    })
    .await;
    for (path, method) in [
        ("/POS/Transaction", "POST"),
        ("/POS/Pairing/12345678", "PUT"),
    ] {
        let mut conn = TcpStream::connect(app.addr).await.unwrap();
        let started = Instant::now();
        // Ten megabytes announced, a few bytes sent, and then nothing.
        conn.write_all(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: 10000000\r\n\r\nPOSRegisterID="
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let answer = read_response(&mut conn).await;
        let took = started.elapsed();
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(
            answer.contains(r#"{"error":"Request body too large: at most 65536 bytes"}"#),
            "{answer}"
        );
        assert!(took < Duration::from_secs(5), "{path}: 413 after {took:?}");
    }
    // A declared length within the limit is read as usual (and refused for what it says).
    let (status, body) = app
        .post_form("/POS/Transaction", &[("TransactionType", "Card.Purchase")])
        .await;
    assert_eq!(status, 400, "{body}");
}

/// A form body from pairs, URL-encoded (repeats kept, which reqwest's `.form` cannot be told).
fn form_body(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Sends `body` as `content_type`: status and JSON body.
async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    content_type: &str,
    body: String,
) -> (u16, serde_json::Value) {
    let r = app
        .http
        .request(method, app.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

fn assert_refused_naming(answer: &(u16, serde_json::Value), field: &str) {
    let (status, body) = answer;
    assert_eq!(*status, 400, "{body}");
    assert_eq!(
        body["error"],
        format!("Field {field} given more than once"),
        "{body}"
    );
}

#[tokio::test]
async fn a_duplicated_amount_is_refused_and_creates_no_transaction() {
    let app = spawn_app().await;
    let (mut device, reg) = RawDevice::paired(&app, "dev-dup-amount").await;
    let form = "application/x-www-form-urlencoded";
    let mut twice = purchase(&reg, "100");
    twice.push(("AmountTotal", "200"));

    let answer = send(
        &app,
        reqwest::Method::POST,
        "/POS/Transaction",
        form,
        form_body(&twice),
    )
    .await;
    assert_refused_naming(&answer, "AmountTotal");

    // JSON: serde_json would keep the last value of a repeated key, so the body is written
    // out by hand.
    let json = format!(
        r#"{{"POSRegisterID": "{}", "POSBusinessName": "{}", "POSVendorName": "{}",
            "TransactionMode": "ASYNC", "TransactionType": "Card.Purchase",
            "AmountTotal": "100", "AmountTotal": "200"}}"#,
        reg.register_id, reg.business_name, reg.vendor_name
    );
    let answer = send(
        &app,
        reqwest::Method::POST,
        "/POS/Transaction",
        "application/json",
        json,
    )
    .await;
    assert_refused_naming(&answer, "AmountTotal");

    // The query string is read too, and refused the same way.
    let without_amount: Vec<_> = purchase(&reg, "100")
        .into_iter()
        .filter(|(k, _)| *k != "AmountTotal")
        .collect();
    let answer = send(
        &app,
        reqwest::Method::POST,
        "/POS/Transaction?AmountTotal=100&AmountTotal=200",
        form,
        form_body(&without_amount),
    )
    .await;
    assert_refused_naming(&answer, "AmountTotal");

    // Nothing was stored, and nothing reached the device.
    let stored = app
        .engine
        .search_transactions(
            &cloud::domain::accounts::Principal::owner_token(),
            &cloud::store::TransactionQuery {
                register: Some(reg.register_id.clone()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(stored.is_empty(), "{stored:?}");
    device.expect_silence(Duration::from_millis(200)).await;

    // The same register's well-formed request goes through.
    let (status, body) = app
        .post_form("/POS/Transaction", &purchase(&reg, "100"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["AmountTotal"], "100");

    // A repeated polling token is refused too.
    let url = body["data"]["PollingUrl"].as_str().unwrap();
    let (status, body) = app.get_json(&format!("{url}&merchantAccessToken=x")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"],
        "Field merchantAccessToken given more than once"
    );
}

#[tokio::test]
async fn a_duplicated_register_id_does_not_pair() {
    let app = spawn_app().await;
    let secret = app.enroll("dev-dup-pair").await;
    let mut device = RawDevice::connect(&app, "dev-dup-pair", &secret).await;
    let code = device.code().await;
    let reg = register("dup-pair");
    let path = format!("/POS/Pairing/{code}");
    let mut pairs = register_form(&reg);
    pairs.push(("POSRegisterName", "Main Register"));
    let mut twice = pairs.clone();
    twice.push(("POSRegisterID", "someone-else"));

    let answer = send(
        &app,
        reqwest::Method::PUT,
        &path,
        "application/x-www-form-urlencoded",
        form_body(&twice),
    )
    .await;
    assert_refused_naming(&answer, "POSRegisterID");
    let json = format!(
        r#"{{"POSRegisterID": "{}", "POSRegisterID": "someone-else", "POSBusinessName": "{}",
            "POSVendorName": "{}", "POSRegisterName": "Main Register"}}"#,
        reg.register_id, reg.business_name, reg.vendor_name
    );
    let answer = send(&app, reqwest::Method::PUT, &path, "application/json", json).await;
    assert_refused_naming(&answer, "POSRegisterID");
    device.expect_silence(Duration::from_millis(200)).await;

    // The code was not used up: the well-formed request pairs with it.
    let (status, body) = send(
        &app,
        reqwest::Method::PUT,
        &path,
        "application/x-www-form-urlencoded",
        form_body(&pairs),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    match device.recv().await {
        protocol::device::CloudMessage::Paired { register } => assert_eq!(register.key, reg),
        other => panic!("expected paired, got {other:?}"),
    }
}

/// After a failover the terminal says which cloud it is connected to: the fallback, not the
/// primary it could not reach.
#[tokio::test]
async fn the_terminal_reports_the_url_it_actually_connected_to() {
    let app = spawn_app().await;
    let secret = app.enroll("failover-1").await;
    // A port nothing listens on: the primary is down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let primary = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let journal = app.dir.path().join("failover-1.journal");
    let fallback: url::Url = app.base.parse().unwrap();
    let mut t = start_terminal_with(
        &primary,
        "failover-1",
        &secret,
        &journal,
        fast_simulator(),
        |c| c.fallback_urls = vec![fallback.clone()],
    );
    let url = t
        .wait_for(|e| match e {
            terminal::TerminalEvent::Connected { url, .. } => Some(url.clone()),
            _ => None,
        })
        .await;
    assert!(url.starts_with(&format!("ws://{}", app.addr)), "{url}");
    assert!(
        !url.contains(primary.trim_start_matches("http://")),
        "{url}"
    );
    t.stop().await;
    app.stop().await;
}
