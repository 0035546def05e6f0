//! TLS in the process: the POS client over https and the terminal over wss with a custom CA, a
//! terminal that does not trust the certificate, separate POS and device listeners, slow-loris
//! clients cut off by the header and body read timeouts, and the `serve` TLS flags.

use crate::harness::{fast_simulator, register, start_terminal_with, Terminal, PATIENCE};
use cloud::config::ListenerSettings;
use cloud::tls::TlsSource;
use cloud::{Application, Config};
use pos::{PairingDetails, PosClient, TransactionSpec, WaitOptions};
use protocol::{Cents, DeviceId, Function};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use terminal::TerminalEvent;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A certificate for 127.0.0.1 and localhost, written as PEM files; the certificate is also the
/// CA clients trust.
struct TestCert {
    cert: PathBuf,
    key: PathBuf,
}

fn test_cert(dir: &Path) -> TestCert {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let paths = TestCert {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&paths.cert, cert.pem()).unwrap();
    std::fs::write(&paths.key, key_pair.serialize_pem()).unwrap();
    paths
}

struct TlsApp {
    pos_addr: SocketAddr,
    device_addr: SocketAddr,
    engine: cloud::engine::Engine,
    dir: tempfile::TempDir,
    cert: TestCert,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl TlsApp {
    async fn start(tls: bool, apart: bool, header_read_timeout: Duration) -> TlsApp {
        let dir = tempfile::tempdir().unwrap();
        let cert = test_cert(dir.path());
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let config = Config {
            listen: any,
            database_url: format!("sqlite://{}", dir.path().join("eftcloud.db").display()),
            poll_interval_min: Duration::ZERO,
            listeners: ListenerSettings {
                pos: apart.then_some(any),
                device: apart.then_some(any),
                tls: tls.then(|| TlsSource::Files {
                    cert: cert.cert.clone(),
                    key: cert.key.clone(),
                }),
                header_read_timeout,
                body_read_timeout: header_read_timeout,
                max_connections_per_source: 0,
            },
            ..Config::default()
        };
        let app = Application::build(config).await.unwrap();
        assert_eq!(app.is_tls(), tls);
        let (pos_addr, device_addr) = (app.local_addr(), app.device_addr());
        let engine = app.engine().clone();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let handle = tokio::spawn(async move { app.run_until_stopped(s).await.unwrap() });
        TlsApp {
            pos_addr,
            device_addr,
            engine,
            dir,
            cert,
            stop,
            handle,
        }
    }

    fn scheme(&self) -> &'static str {
        "https"
    }

    fn pos_base(&self) -> String {
        format!("{}://{}", self.scheme(), self.pos_addr)
    }

    fn device_base(&self) -> String {
        format!("{}://{}", self.scheme(), self.device_addr)
    }

    /// A reqwest client that trusts the test certificate.
    fn https(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.cert.cert).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap()
    }

    async fn enroll(&self, id: &str) -> String {
        self.engine
            .enroll_device(
                &DeviceId::parse(id).unwrap(),
                &cloud::engine::devices::NewDevice {
                    vendor: "Acme".into(),
                    model: "T1".into(),
                    merchant: "Toys Shop Pty Ltd".into(),
                    site: None,
                },
            )
            .await
            .unwrap()
    }

    fn terminal(&self, id: &str, secret: &str, ca: bool) -> Terminal {
        let journal = self.dir.path().join(format!("{id}.journal"));
        let ca_cert = ca.then(|| self.cert.cert.clone());
        start_terminal_with(
            &self.device_base(),
            id,
            secret,
            &journal,
            fast_simulator(),
            |c| c.ca_cert = ca_cert,
        )
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(PATIENCE, self.handle)
            .await
            .expect("the cloud stops in time")
            .unwrap();
    }
}

/// Pairs a register through the POS client and runs a purchase to its approval.
async fn pair_and_purchase(app: &TlsApp, t: &mut Terminal, pos: &PosClient) {
    let code = t.next_code().await;
    let reg = register("tls");
    pos.pair(&code, &reg, &PairingDetails::new("Front Desk"))
        .await
        .unwrap();
    t.wait_for(|e| matches!(e, TerminalEvent::Paired { .. }).then_some(()))
        .await;
    let spec = TransactionSpec::new(Function::CardPurchase).with_amount(Cents::new(1200).unwrap());
    let started = pos.start(&reg, &spec).await.unwrap();
    assert!(
        started
            .field(protocol::pos_api::keys::POLLING_URL)
            .is_some_and(|u| u.starts_with(&app.pos_base())),
        "the polling URL is https on the POS port: {started:?}"
    );
    let opts = WaitOptions {
        interval: Duration::from_millis(50),
        timeout: PATIENCE,
    };
    let done = pos
        .wait_for_completion(&started, opts, |_| {})
        .await
        .unwrap();
    assert!(pos::outcome_is_success(&done), "{done:?}");
}

#[tokio::test]
async fn pos_client_and_terminal_over_tls() {
    let app = TlsApp::start(true, false, Duration::from_secs(10)).await;
    let secret = app.enroll("tls-1").await;
    let mut t = app.terminal("tls-1", &secret, true);
    let pos = PosClient::with_ca_cert(&app.pos_base(), &app.cert.cert).unwrap();
    pair_and_purchase(&app, &mut t, &pos).await;

    // Without the CA the POS client refuses the certificate.
    let untrusting = PosClient::new(&app.pos_base()).unwrap();
    let err = untrusting
        .pair("12345678", &register("x"), &PairingDetails::new("X"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, pos::PosError::Transport(_)),
        "refused before any HTTP: {err}"
    );
    assert!(err.to_string().contains("certificate"), "{err}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert!(reqwest::get(format!("http://{}/healthz", app.pos_addr))
        .await
        .is_err());

    t.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_terminal_that_does_not_trust_the_certificate_is_refused() {
    let app = TlsApp::start(true, false, Duration::from_secs(10)).await;
    let secret = app.enroll("tls-2").await;
    let mut t = app.terminal("tls-2", &secret, false);
    // It keeps retrying, and every attempt fails on the certificate: no pairing code ever.
    for _ in 0..3 {
        let reason = t
            .wait_for(|e| match e {
                TerminalEvent::Disconnected { reason } => Some(reason.clone()),
                TerminalEvent::PairingCode { .. } | TerminalEvent::Connected { .. } => {
                    panic!("an untrusted cloud was accepted: {e:?}")
                }
                _ => None,
            })
            .await;
        assert!(
            reason.contains("certificate") || reason.contains("UnknownIssuer"),
            "{reason}"
        );
    }
    t.stop().await;

    // A CA file that is not a certificate stops the agent with a clear error.
    let bad = app.dir.path().join("bad-ca.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let mut config = terminal::TerminalConfig::new(
        app.device_base().parse().unwrap(),
        DeviceId::parse("tls-2").unwrap(),
        &secret,
        app.dir.path().join("tls-2b.journal"),
    );
    config.ca_cert = Some(bad);
    let (etx, _erx) = tokio::sync::mpsc::channel(8);
    let (_ctx, crx) = tokio::sync::mpsc::channel(8);
    let err = terminal::run(
        config,
        std::sync::Arc::new(terminal::Simulator::new(fast_simulator())),
        etx,
        crx,
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("bad-ca.pem"), "{err}");
    app.stop().await;
}

#[tokio::test]
async fn separate_pos_and_device_listeners() {
    let app = TlsApp::start(true, true, Duration::from_secs(10)).await;
    assert_ne!(app.pos_addr, app.device_addr);
    let http = app.https();
    let status = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    // Each port serves only its part; health checks are on both.
    assert_eq!(
        status(format!("{}/openapi.json", app.pos_base())).await,
        200
    );
    assert_eq!(
        status(format!("{}/openapi.json", app.device_base())).await,
        404
    );
    assert_eq!(
        status(format!("{}/POS/Transaction/abc", app.device_base())).await,
        404
    );
    assert_eq!(status(format!("{}/device/v1", app.pos_base())).await, 404);
    assert_ne!(
        status(format!("{}/device/v1", app.device_base())).await,
        404
    );
    for base in [app.pos_base(), app.device_base()] {
        assert_eq!(status(format!("{base}/healthz")).await, 200);
    }

    // A terminal on the device port and the POS on its own port still meet.
    let secret = app.enroll("tls-3").await;
    let mut t = app.terminal("tls-3", &secret, true);
    let pos = PosClient::with_ca_cert(&app.pos_base(), &app.cert.cert).unwrap();
    pair_and_purchase(&app, &mut t, &pos).await;
    t.stop().await;
    app.stop().await;
}

/// Reads until the server closes the connection; returns what it sent and when it closed.
async fn read_until_closed(stream: &mut TcpStream) -> (String, Instant) {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut got))
        .await
        .expect("the server closes the connection in time");
    (String::from_utf8_lossy(&got).into_owned(), Instant::now())
}

#[tokio::test]
async fn slow_clients_are_disconnected() {
    let timeout = Duration::from_millis(400);
    let app = TlsApp::start(false, false, timeout).await;

    // Half a request header, then nothing: cut off after the header read timeout.
    let started = Instant::now();
    let mut slow = TcpStream::connect(app.pos_addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut slow).await;
    assert!(closed - started >= timeout, "closed too early: {answer}");
    assert!(!answer.contains("200 OK"), "{answer}");

    // A body that stops arriving: the request fails after the body read timeout.
    let mut slow = TcpStream::connect(app.pos_addr).await.unwrap();
    slow.write_all(
        b"POST /POS/Transaction HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nPOSRegisterID=",
    )
    .await
    .unwrap();
    let (answer, _) = read_until_closed(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("timeout"), "{answer}");

    // A prompt client is served as usual.
    let mut quick = TcpStream::connect(app.pos_addr).await.unwrap();
    quick
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut quick).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    app.stop().await;

    // With TLS, a client that never finishes the handshake is cut off too.
    let app = TlsApp::start(true, false, timeout).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(app.pos_addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut silent).await;
    assert!(closed - started >= timeout);
    app.stop().await;
}

const BIN: &str = env!("CARGO_BIN_EXE_eftcloud");

async fn serve_output(args: &[&str]) -> (i32, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(BIN)
            .arg("serve")
            .args(args)
            .env_remove("EFTCLOUD_DATA_DIR")
            .env_remove("EFTCLOUD_DATABASE_URL")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn serve_refuses_unusable_tls_flags() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let cert = test_cert(dir.path());
    let (code, err) = serve_output(&[
        "--data-dir",
        data,
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.cert.to_str().unwrap(),
    ])
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("--tls-key"), "{err}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let (code, err) = serve_output(&[
        "--data-dir",
        data,
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        garbage.to_str().unwrap(),
        "--tls-key",
        cert.key.to_str().unwrap(),
    ])
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("garbage.pem"), "{err}");

    let missing = dir.path().join("missing-key.pem");
    let (code, err) = serve_output(&[
        "--data-dir",
        data,
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.cert.to_str().unwrap(),
        "--tls-key",
        missing.to_str().unwrap(),
    ])
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("missing-key.pem"), "{err}");
}

#[tokio::test]
async fn serve_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--tls-self-signed", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data)
        .env_remove("EFTCLOUD_DATA_DIR")
        .env_remove("EFTCLOUD_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut listening = String::new();
    let mut cert = String::new();
    tokio::time::timeout(PATIENCE, async {
        while listening.is_empty() || cert.is_empty() {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("serve still writing");
            if let Some(rest) = line.strip_prefix("eftcloud listening on ") {
                listening = rest.to_string();
            }
            if let Some(rest) = line.strip_prefix("self-signed TLS certificate: ") {
                cert = rest.split(' ').next().unwrap().to_string();
            }
        }
    })
    .await
    .expect("serve prints its address and certificate");
    assert!(listening.starts_with("https://127.0.0.1:"), "{listening}");
    assert!(listening.contains("wss://127.0.0.1:"), "{listening}");
    assert_eq!(Path::new(&cert), data.join("tls").join("dev-cert.pem"));
    let base = listening.split(' ').next().unwrap();
    let pem = std::fs::read(&cert).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    child.kill().await.unwrap();
}

/// `http://` or `ws://` to a port that speaks TLS: the POS client and the terminal say so and
/// what to use, instead of an HTTP parser's complaint alone.
#[tokio::test]
async fn plain_http_to_a_tls_port_says_to_use_https() {
    let app = TlsApp::start(true, false, Duration::from_secs(10)).await;
    let plain = format!("http://{}", app.device_addr);
    let pos = PosClient::new(&plain).unwrap();
    let err = pos
        .pair("12345678", &register("x"), &PairingDetails::new("X"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("this server speaks TLS: use https://"),
        "{err}"
    );
    let secret = app.enroll("tls-plain").await;
    let journal = app.dir.path().join("tls-plain.journal");
    let mut t = start_terminal_with(
        &plain,
        "tls-plain",
        &secret,
        &journal,
        fast_simulator(),
        |_| {},
    );
    let reason = t
        .wait_for(|e| match e {
            TerminalEvent::Disconnected { reason } => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.contains("this server speaks TLS"), "{reason}");
    t.stop().await;
    app.stop().await;
}
