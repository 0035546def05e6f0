//! Receipts by email and SMS (`POST /pos/transaction/{id}/receipt`): email through a real SMTP
//! server started on loopback (Python's aiosmtpd, writing a maildir; the tests say they are
//! skipped when it is not installed), SMS through a webhook receiver run here, retries while
//! the SMTP server is down, and the refusals. Each delivery test runs on SQLite and, when
//! `EFTCLOUD_TEST_DATABASE_URL` is set, on PostgreSQL.

use crate::harness::*;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use eftcloud_testing::FreshDatabase;
use protocol::action::{Receipt, ReceiptField, Receipts};
use protocol::device::{CloudMessage, DeviceMessage, DeviceResult};
use protocol::{RegisterKey, ResultCode, TransactionResult};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FROM: &str = "Toys Shop <receipts@toys.example>";
const SMS_SECRET: &str = "test-sms-webhook-secret";
const BIN: &str = env!("CARGO_BIN_EXE_eftcloud");

/// Runs a test body (given the database: none for SQLite) on SQLite, and again on a fresh
/// PostgreSQL database when one is configured.
macro_rules! on_both_stores {
    ($sqlite:ident, $postgres:ident, $body:ident $(,)?) => {
        #[tokio::test]
        async fn $sqlite() {
            $body(None).await;
        }

        #[cfg_attr(
            not(eftcloud_test_postgres),
            ignore = "needs PostgreSQL: set EFTCLOUD_TEST_DATABASE_URL (.ci/run does)"
        )]
        #[tokio::test]
        async fn $postgres() {
            FreshDatabase::run("PostgreSQL receipts test", |url| async move {
                $body(Some(url)).await;
            })
            .await;
        }
    };
}

/// A cloud with `receipts` settings, on SQLite or on the PostgreSQL database at `url`.
async fn app_with(url: Option<String>, receipts: cloud::receipts::ReceiptSettings) -> TestApp {
    let opts = Opts {
        receipts,
        ..Opts::default()
    };
    match url {
        None => spawn_app_with(opts).await,
        Some(url) => spawn_app_on(url, Arc::new(tempfile::tempdir().unwrap()), opts, None).await,
    }
}

/// Short retries, as the harness has them.
fn quick_retries() -> cloud::receipts::ReceiptSettings {
    Opts::default().receipts
}

fn smtp(port: u16) -> cloud::receipts::SmtpSettings {
    cloud::receipts::SmtpSettings::parse(&format!("smtp://127.0.0.1:{port}"), Some(FROM)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// A real SMTP server: aiosmtpd's Mailbox handler, which stores each message in a maildir.

/// Whether aiosmtpd can be run; says the test is skipped when not.
fn aiosmtpd_or_skip(what: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        // Straight to stderr, past the test harness's capture, so the skip is seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "{what} skipped: Python's aiosmtpd is not installed (python3 -m pip install aiosmtpd)"
        );
    }
    ok
}

/// A free loopback port (nothing listens on it once this returns).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// aiosmtpd on `port`, storing what it receives in `maildir`; killed when dropped.
struct SmtpServer {
    maildir: PathBuf,
    _child: tokio::process::Child,
}

impl SmtpServer {
    /// `dir` must exist; the maildir is made inside it.
    async fn start(port: u16, dir: &Path) -> SmtpServer {
        let maildir = dir.join("maildir");
        let child = tokio::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        eventually("the SMTP server to listen", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        SmtpServer {
            maildir,
            _child: child,
        }
    }

    /// The messages received so far, parsed by Python's own MIME parser, oldest first.
    fn messages(&self) -> Vec<Value> {
        const PARSE: &str = r#"
import email, email.policy, json, os, sys
new = os.path.join(sys.argv[1], "new")
files = sorted(os.listdir(new), key=lambda f: os.path.getmtime(os.path.join(new, f))) if os.path.isdir(new) else []
out = []
for f in files:
    with open(os.path.join(new, f), "rb") as fh:
        m = email.message_from_binary_file(fh, policy=email.policy.default)
    text = m.get_body(preferencelist=("plain",))
    html = m.get_body(preferencelist=("html",))
    out.append({
        "from": str(m["From"]), "to": str(m["To"]), "subject": str(m["Subject"]),
        "message_id": str(m["Message-ID"]), "content_type": m.get_content_type(),
        "text": text.get_content().replace("\r\n", "\n") if text else None,
        "html": html.get_content().replace("\r\n", "\n") if html else None,
    })
print(json.dumps(out))
"#;
        let out = std::process::Command::new("python3")
            .args(["-c", PARSE])
            .arg(&self.maildir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
    }

    async fn wait_for_messages(&self, n: usize) -> Vec<Value> {
        eventually(&format!("{n} emails"), || async {
            let m = self.messages();
            (m.len() >= n).then_some(m)
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// A transaction completed by a hand-driven device with the receipts the test chooses.

fn customer_copy() -> Receipt {
    Receipt {
        header: vec!["TOYS & GAMES <CITY>".into(), "1 Main St".into()],
        fields: vec![
            ReceiptField {
                label: "Card".into(),
                value: "VISA ...1234".into(),
            },
            ReceiptField {
                label: "Total".into(),
                value: "AUD 10.00".into(),
            },
            ReceiptField {
                label: "Auth".into(),
                value: "<A1B2>".into(),
            },
        ],
        footer: vec!["Customer copy".into(), "Thank you".into()],
    }
}

const FIXED_WIDTH: &str = "      TOYS SHOP\nPURCHASE    AUD 10.00\nAPPROVED\n";

/// A register paired to a raw device, and one purchase it completed with `receipts` (and the
/// fixed-width `Receipt` text); the envelope of the POST.
async fn completed_purchase(
    app: &TestApp,
    id: &str,
    receipts: Option<Receipts>,
    fixed_width: Option<&str>,
) -> (RawDevice, RegisterKey, Value) {
    let (mut d, reg) = RawDevice::paired(app, id).await;
    let (s, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "1000"))
        .await;
    assert_eq!(s, 200, "{env}");
    let tx = match d.recv().await {
        CloudMessage::Transaction(o) => o.transaction_id,
        other => panic!("{other:?}"),
    };
    d.send(&DeviceMessage::Accept { transaction_id: tx }).await;
    assert_eq!(d.recv().await, CloudMessage::Start { transaction_id: tx });
    let mut fields = BTreeMap::from([("AmountTotal".to_string(), "1000".to_string())]);
    if let Some(text) = fixed_width {
        fields.insert("Receipt".into(), text.into());
    }
    d.send(&DeviceMessage::Result(DeviceResult {
        transaction_id: tx,
        transaction_result: Some(TransactionResult::Accepted),
        result: ResultCode::Ok,
        result_text: "APPROVED".into(),
        fields,
        receipts,
        settlement: None,
    }))
    .await;
    assert_eq!(
        d.recv().await,
        CloudMessage::ResultAck { transaction_id: tx }
    );
    poll_until_completed(app, env["data"]["PollingUrl"].as_str().unwrap()).await;
    (d, reg, env)
}

fn receipt_path(env: &Value) -> String {
    format!(
        "/pos/transaction/{}/receipt",
        env["transactionId"].as_str().unwrap()
    )
}

/// `POST .../receipt` as the register, with `extra` fields.
async fn ask(
    app: &TestApp,
    reg: &RegisterKey,
    env: &Value,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut form = register_form(reg);
    form.extend_from_slice(extra);
    app.post_form(&receipt_path(env), &form).await
}

/// `GET .../receipt` with the polling token.
async fn shown(app: &TestApp, env: &Value) -> Value {
    let url = format!(
        "{}?merchantAccessToken={}",
        app.url(&receipt_path(env)),
        env["merchantAccessToken"].as_str().unwrap()
    );
    let (s, body) = app.get_json(&url).await;
    assert_eq!(s, 200, "{body}");
    body
}

/// The receipt events of the transaction's timeline, once there are `n`.
async fn receipt_events(app: &TestApp, env: &Value, n: usize) -> Vec<(String, String)> {
    let url = format!(
        "{}/pos/transaction/{}/events?merchantAccessToken={}",
        app.base,
        env["transactionId"].as_str().unwrap(),
        env["merchantAccessToken"].as_str().unwrap()
    );
    eventually(&format!("{n} receipt events"), || async {
        let (_, tl) = app.get_json(&url).await;
        let found: Vec<(String, String)> = tl["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"].as_str().unwrap().starts_with("receipt_"))
            .map(|e| {
                (
                    e["event"].as_str().unwrap().to_string(),
                    e["detail"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (found.len() >= n).then_some(found)
    })
    .await
}

/// Waits until the delivery `index` of the transaction is in `state`; the receipt view then.
async fn delivery_in(app: &TestApp, env: &Value, index: usize, state: &str) -> Value {
    eventually(&format!("delivery {index} {state}"), || async {
        let v = shown(app, env).await;
        (v["deliveries"][index]["state"] == state).then_some(v)
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Email.

async fn email_receipt_is_sent_as_text_and_html(url: Option<String>) {
    if !aiosmtpd_or_skip("email receipt test") {
        return;
    }
    let maildir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = SmtpServer::start(port, maildir.path()).await;
    let app = app_with(
        url,
        cloud::receipts::ReceiptSettings {
            smtp: Some(smtp(port)),
            ..quick_retries()
        },
    )
    .await;
    let receipts = Receipts {
        merchant: None,
        customer: Some(customer_copy()),
    };
    let (_d, reg, env) =
        completed_purchase(&app, "dev-mail", Some(receipts.clone()), Some(FIXED_WIDTH)).await;

    let (s, body) = ask(&app, &reg, &env, &[("Email", "Ann.Lee@Example.COM")]).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["transactionId"], env["transactionId"]);
    let d = &body["deliveries"][0];
    assert_eq!(body["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(d["channel"], "email");
    assert_eq!(
        d["address"], "A***@example.com",
        "masked, domain lower-cased"
    );
    assert_eq!(d["copy"], "customer");
    assert_eq!(d["state"], "pending");
    assert_eq!(d["attempts"], 0);
    assert_eq!(d["replayed"], false);
    let delivery_id = d["id"].as_str().unwrap().to_string();

    // The message as the mail server stored it.
    let messages = server.wait_for_messages(1).await;
    let m = &messages[0];
    assert_eq!(m["from"], FROM);
    assert_eq!(m["to"], "Ann.Lee@example.com");
    assert_eq!(m["subject"], "Your receipt from Toys Shop Pty Ltd");
    assert_eq!(m["content_type"], "multipart/alternative");
    assert_eq!(
        m["message_id"],
        format!("<{delivery_id}@toys.example>"),
        "the delivery's own id"
    );
    let text = m["text"].as_str().unwrap();
    assert_eq!(text.trim_end(), customer_copy().to_text(40).trim_end());
    assert!(
        text.contains("VISA ...1234") && text.contains("<A1B2>"),
        "{text}"
    );
    let html = m["html"].as_str().unwrap();
    assert!(
        html.contains("TOYS &amp; GAMES &lt;CITY&gt;<br>1 Main St"),
        "{html}"
    );
    assert!(
        html.contains(">Card</th>") && html.contains(">VISA ...1234</td>"),
        "{html}"
    );
    assert!(
        html.contains(">&lt;A1B2&gt;</td>"),
        "values are escaped: {html}"
    );
    assert!(html.contains("Customer copy<br>Thank you"), "{html}");
    assert!(
        !html.contains("<A1B2>") && !html.contains("<CITY>"),
        "{html}"
    );

    // Recorded as sent, on the timeline too.
    let v = delivery_in(&app, &env, 0, "sent").await;
    let d = &v["deliveries"][0];
    assert_eq!(d["attempts"], 1);
    assert!(d["sentAt"].is_string(), "{v}");
    assert!(d["nextAttemptAt"].is_null());
    assert!(d.get("replayed").is_none());
    assert_eq!(v["receipts"], serde_json::to_value(&receipts).unwrap());
    assert_eq!(v["receiptText"], FIXED_WIDTH);
    let events = receipt_events(&app, &env, 2).await;
    assert_eq!(events[0].0, "receipt_queued");
    assert_eq!(events[0].1, "email to A***@example.com (customer copy)");
    assert_eq!(events[1].0, "receipt_sent");
    assert!(
        events[1]
            .1
            .starts_with("email to A***@example.com (customer copy): 250"),
        "{events:?}"
    );

    // Asked again (a POS retrying): the same delivery, nothing new is sent.
    let (s, again) = ask(&app, &reg, &env, &[("Email", "Ann.Lee@example.com")]).await;
    assert_eq!(s, 202, "{again}");
    assert_eq!(again["deliveries"][0]["id"], delivery_id.as_str());
    assert_eq!(again["deliveries"][0]["state"], "sent");
    assert_eq!(again["deliveries"][0]["replayed"], true);
    assert_eq!(
        shown(&app, &env).await["deliveries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The merchant copy was not reported as data: the fixed-width text goes, in a <pre>.
    let (s, body) = ask(
        &app,
        &reg,
        &env,
        &[("Email", "boss@toys.example"), ("Copy", "merchant")],
    )
    .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["deliveries"][0]["copy"], "merchant");
    let messages = server.wait_for_messages(2).await;
    let m = messages
        .iter()
        .find(|m| m["to"] == "boss@toys.example")
        .unwrap();
    assert_eq!(
        m["text"].as_str().unwrap().trim_end(),
        FIXED_WIDTH.trim_end()
    );
    assert!(m["html"]
        .as_str()
        .unwrap()
        .contains("<pre style=\"font-family: monospace;\">      TOYS SHOP\nPURCHASE    AUD 10.00"));
    delivery_in(&app, &env, 1, "sent").await;
    assert_eq!(server.messages().len(), 2, "one email per delivery");

    // SMS is not configured on this server: refused, nothing queued.
    let (s, body) = ask(&app, &reg, &env, &[("Phone", "+61412345678")]).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (409, Some("SMS delivery is not configured on this server"))
    );
    assert_eq!(
        shown(&app, &env).await["deliveries"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    app.stop().await;
}

on_both_stores!(
    email_receipt_on_sqlite,
    email_receipt_on_postgres,
    email_receipt_is_sent_as_text_and_html,
);

async fn email_is_retried_until_the_mail_server_is_up(url: Option<String>) {
    if !aiosmtpd_or_skip("email retry test") {
        return;
    }
    let port = free_port();
    let app = app_with(
        url,
        cloud::receipts::ReceiptSettings {
            smtp: Some(smtp(port)),
            // Enough attempts to outlast the mail server's start, whatever the machine.
            max_attempts: 100,
            retry_max: Duration::from_millis(300),
            ..quick_retries()
        },
    )
    .await;
    let receipts = Receipts {
        merchant: None,
        customer: Some(customer_copy()),
    };
    let (_d, reg, env) = completed_purchase(&app, "dev-retry", Some(receipts), None).await;
    let (s, body) = ask(&app, &reg, &env, &[("Email", "ann@example.com")]).await;
    assert_eq!(s, 202, "{body}");

    // Nothing listens yet: the attempt fails and is retried.
    let events = receipt_events(&app, &env, 2).await;
    assert_eq!(events[1].0, "receipt_failed", "{events:?}");
    assert!(
        events[1].1.contains("SMTP") && events[1].1.contains("retry in"),
        "{events:?}"
    );
    let v = shown(&app, &env).await;
    assert_eq!(v["deliveries"][0]["state"], "pending", "{v}");
    assert!(
        v["deliveries"][0]["lastError"]
            .as_str()
            .unwrap()
            .contains("SMTP"),
        "{v}"
    );

    // The mail server comes up: the next attempt delivers it.
    let maildir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(port, maildir.path()).await;
    let messages = server.wait_for_messages(1).await;
    assert_eq!(messages[0]["to"], "ann@example.com");
    let v = delivery_in(&app, &env, 0, "sent").await;
    let d = &v["deliveries"][0];
    assert!(d["attempts"].as_u64().unwrap() >= 2, "{v}");
    assert!(
        d["lastError"].as_str().unwrap().contains("SMTP"),
        "the failure before is kept: {v}"
    );
    let events = receipt_events(&app, &env, 3).await;
    assert_eq!(events.last().unwrap().0, "receipt_sent", "{events:?}");
    assert!(events[1..events.len() - 1]
        .iter()
        .all(|e| e.0 == "receipt_failed"));
    app.stop().await;
}

on_both_stores!(
    email_retry_on_sqlite,
    email_retry_on_postgres,
    email_is_retried_until_the_mail_server_is_up,
);

/// The outbox is durable: a delivery that could not be sent before the cloud stopped is sent by
/// the next start on the same data.
#[tokio::test]
async fn a_pending_email_receipt_survives_a_restart() {
    if !aiosmtpd_or_skip("email restart test") {
        return;
    }
    let port = free_port();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let settings = cloud::receipts::ReceiptSettings {
        smtp: Some(smtp(port)),
        ..quick_retries()
    };
    let opts = Opts {
        receipts: settings.clone(),
        ..Opts::default()
    };
    let app = spawn_app_in(dir.clone(), opts, None).await;
    let receipts = Receipts {
        merchant: None,
        customer: Some(customer_copy()),
    };
    let (d, reg, env) = completed_purchase(&app, "dev-restart", Some(receipts), None).await;
    let (s, body) = ask(&app, &reg, &env, &[("Email", "ann@example.com")]).await;
    assert_eq!(s, 202, "{body}");
    // Tried while no mail server listens, then the cloud stops.
    receipt_events(&app, &env, 2).await;
    drop(d);
    app.stop().await;

    // Started again later (past any lease the first run held), with the mail server up.
    let maildir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(port, maildir.path()).await;
    let clock = manual_clock();
    // A minute on: past the lease (two timeouts and 5 s), short of the test retention (1 h).
    clock.advance(Duration::from_secs(60));
    let app = spawn_app_in(
        dir,
        Opts {
            receipts: settings,
            clock: clock.clone(),
            ..Opts::default()
        },
        None,
    )
    .await;
    let messages = server.wait_for_messages(1).await;
    assert_eq!(messages[0]["to"], "ann@example.com");
    let v = eventually("the delivery recorded as sent", || async {
        let r = app
            .http
            .get(app.url(&receipt_path(&env)))
            .query(&register_form(&reg))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        (v["deliveries"][0]["state"] == "sent").then_some(v)
    })
    .await;
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 1, "{v}");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// SMS.

/// An SMS provider's webhook: records every request, refuses the first `fail_first`.
#[derive(Clone, Default)]
struct Provider {
    seen: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    fail_first: Arc<Mutex<usize>>,
}

async fn provide(State(p): State<Provider>, headers: HeaderMap, body: String) -> StatusCode {
    p.seen.lock().unwrap().push((headers, body));
    let mut fail = p.fail_first.lock().unwrap();
    if *fail > 0 {
        *fail -= 1;
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

async fn start_provider(fail_first: usize) -> (String, Provider) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    let p = Provider::default();
    *p.fail_first.lock().unwrap() = fail_first;
    let app = axum::Router::new()
        .route("/sms", post(provide))
        .with_state(p.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, p)
}

async fn sms_receipt_is_posted_signed_to_the_provider(url: Option<String>) {
    let (hook, provider) = start_provider(1).await;
    let app = app_with(
        url,
        cloud::receipts::ReceiptSettings {
            sms: Some(cloud::receipts::SmsSettings::parse(&hook, Some(SMS_SECRET)).unwrap()),
            ..quick_retries()
        },
    )
    .await;
    // A real terminal agent: its simulator reports structured receipts.
    let (t, reg) = paired_terminal(&app, "dev-sms").await;
    let (s, env) = app
        .post_form("/POS/Transaction", &purchase(&reg, "1000"))
        .await;
    assert_eq!(s, 200, "{env}");
    let done = poll_until_completed(&app, env["data"]["PollingUrl"].as_str().unwrap()).await;
    assert_eq!(done["data"]["TransactionResult"], "OK-ACCEPTED");
    let before = shown(&app, &env).await;
    let fields = before["receipts"]["customer"]["fields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !fields.is_empty(),
        "the simulator reports the customer copy: {before}"
    );

    let (s, body) = ask(&app, &reg, &env, &[("Phone", "+61 412 345 678")]).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["deliveries"][0]["channel"], "sms");
    assert_eq!(body["deliveries"][0]["address"], "+61******678");

    // Refused once by the provider (503), then taken.
    let v = delivery_in(&app, &env, 0, "sent").await;
    assert_eq!(v["deliveries"][0]["attempts"], 2, "{v}");
    assert_eq!(
        v["deliveries"][0]["lastError"],
        "SMS webhook answered HTTP 503"
    );
    let seen = provider.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (headers, body) in &seen {
        assert_eq!(headers["content-type"], "application/json");
        let signature = headers["eftcloud-signature"].to_str().unwrap();
        let (t, v1) = signature.split_once(',').unwrap();
        let t: i64 = t.strip_prefix("t=").unwrap().parse().unwrap();
        assert_eq!(
            v1.strip_prefix("v1=").unwrap(),
            cloud::pos_api::callbacks::sign(SMS_SECRET, t, body.as_bytes())
        );
        assert!((chrono::Utc::now().timestamp() - t).abs() < 60);
    }
    let sms: Value = serde_json::from_str(&seen[1].1).unwrap();
    assert_eq!(sms["to"], "+61412345678");
    let text = sms["text"].as_str().unwrap();
    assert!(
        text.starts_with("Toys Shop Pty Ltd: Purchase AUD 10.00 - "),
        "{text}"
    );
    assert!(text.chars().count() <= 600, "{text}");
    let first = &fields[0];
    assert!(
        text.contains(&format!(
            "{}: {}",
            first["label"].as_str().unwrap(),
            first["value"].as_str().unwrap()
        )),
        "a few of the receipt's fields: {text}"
    );
    let events = receipt_events(&app, &env, 3).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(kinds, ["receipt_queued", "receipt_failed", "receipt_sent"]);
    assert_eq!(events[2].1, "SMS to +61******678 (customer copy): HTTP 200");

    // Email is not configured on this server.
    let (s, body) = ask(&app, &reg, &env, &[("Email", "ann@example.com")]).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (409, Some("email delivery is not configured on this server"))
    );
    t.stop().await;
    app.stop().await;
}

on_both_stores!(
    sms_receipt_on_sqlite,
    sms_receipt_on_postgres,
    sms_receipt_is_posted_signed_to_the_provider,
);

/// A provider that refuses the message for good (400): given up at once, `failed`, and the
/// POS may ask again.
#[tokio::test]
async fn receipts_refused_by_the_sms_provider_fail_at_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/sms", listener.local_addr().unwrap());
    let calls = Arc::new(Mutex::new(0usize));
    let counted = calls.clone();
    let router = axum::Router::new().route(
        "/sms",
        post(move || {
            let counted = counted.clone();
            async move {
                *counted.lock().unwrap() += 1;
                StatusCode::BAD_REQUEST
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let app = app_with(
        None,
        cloud::receipts::ReceiptSettings {
            sms: Some(cloud::receipts::SmsSettings::parse(&hook, None).unwrap()),
            ..quick_retries()
        },
    )
    .await;
    let receipts = Receipts {
        merchant: None,
        customer: Some(customer_copy()),
    };
    let (_d, reg, env) = completed_purchase(&app, "dev-sms-400", Some(receipts), None).await;
    let (s, _) = ask(&app, &reg, &env, &[("Phone", "+61412345678")]).await;
    assert_eq!(s, 202);
    let v = delivery_in(&app, &env, 0, "failed").await;
    assert_eq!(v["deliveries"][0]["attempts"], 1, "{v}");
    assert_eq!(
        v["deliveries"][0]["lastError"],
        "SMS webhook answered HTTP 400"
    );
    let events = receipt_events(&app, &env, 2).await;
    assert_eq!(
        events[1],
        (
            "receipt_failed".to_string(),
            "SMS to +61******678 (customer copy): SMS webhook answered HTTP 400; giving up after 1 attempt".to_string()
        )
    );
    assert_eq!(*calls.lock().unwrap(), 1);
    // A failed delivery may be asked for again: a new one.
    let (s, body) = ask(&app, &reg, &env, &[("Phone", "+61412345678")]).await;
    assert_eq!(s, 202);
    assert_eq!(body["deliveries"][0]["replayed"], false);
    assert_ne!(body["deliveries"][0]["id"], v["deliveries"][0]["id"]);
    delivery_in(&app, &env, 1, "failed").await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Refusals and access.

#[tokio::test]
async fn receipts_are_refused_with_a_reason_and_nothing_is_queued() {
    // SMS "configured" to a webhook that is never reached: every request here is refused.
    let sms = cloud::receipts::SmsSettings::parse("http://127.0.0.1:9/never", None).unwrap();
    let app = app_with(
        None,
        cloud::receipts::ReceiptSettings {
            sms: Some(sms),
            ..quick_retries()
        },
    )
    .await;
    // A transaction whose device reported no receipt at all.
    let (mut d, reg, env) = completed_purchase(&app, "dev-norcpt", None, None).await;
    /// The fields sent, the status and the error expected.
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![],
            400,
            "Missing required field: Email or Phone (where to send the receipt)",
        ),
        (
            vec![("Email", "ann at example.com")],
            400,
            "Invalid Email: expected an address such as name@example.com",
        ),
        (
            vec![("Email", "ann@example.com\r\nBcc: all@example.com")],
            400,
            "Invalid Email: expected an address such as name@example.com",
        ),
        (
            vec![("Phone", "0412 345 678")],
            400,
            "Invalid Phone: expected + and 6 to 15 digits, such as +61412345678",
        ),
        (
            vec![("Phone", "+61412345678"), ("Copy", "both")],
            400,
            "Invalid Copy: customer or merchant",
        ),
        (
            vec![("Email", "ann@example.com")],
            409,
            "email delivery is not configured on this server",
        ),
        (
            vec![("Phone", "+61412345678"), ("Email", "ann@example.com")],
            409,
            "email delivery is not configured on this server",
        ),
        (
            vec![("Phone", "+61412345678")],
            409,
            "the transaction has no receipt to send (its device reported none)",
        ),
    ];
    for (fields, status, error) in cases {
        let (s, body) = ask(&app, &reg, &env, &fields).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (status, Some(error)),
            "{fields:?}"
        );
    }

    // JSON bodies are read as well.
    let mut json = serde_json::json!({"Phone": "+61412345678"});
    for (k, v) in register_form(&reg) {
        json[k] = v.into();
    }
    let r = app
        .http
        .post(app.url(&receipt_path(&env)))
        .json(&json)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    // Not completed yet: refused until it is.
    let (s, running) = app
        .post_form("/POS/Transaction", &purchase(&reg, "500"))
        .await;
    assert_eq!(s, 200);
    let _ = d.recv().await;
    let (s, body) = ask(&app, &reg, &running, &[("Phone", "+61412345678")]).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (
            409,
            Some("the transaction has not completed yet; its receipt can be sent once it has")
        )
    );

    // Access as for the payment view: a wrong token, an unknown id, another merchant's
    // register.
    let path = receipt_path(&env);
    let (s, _) = app
        .post_form(
            &path,
            &[("merchantAccessToken", "wrong"), ("Phone", "+61412345678")],
        )
        .await;
    assert_eq!(s, 401);
    let (s, body) = app
        .post_form(
            "/pos/transaction/3f1c1c2e-0000-4000-8000-000000000000/receipt",
            &[("merchantAccessToken", "x"), ("Phone", "+61412345678")],
        )
        .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (404, Some("Transaction not found"))
    );
    let (s, _) = app
        .post_form(
            "/pos/transaction/not-an-id/receipt",
            &[("Phone", "+61412345678")],
        )
        .await;
    assert_eq!(s, 404);
    let other = register("unpaired");
    let mut form = register_form(&other);
    form.push(("Phone", "+61412345678"));
    let (s, _) = app.post_form(&path, &form).await;
    assert_eq!(s, 404, "a register of no merchant of this transaction");
    let (s, body) = app
        .get_json(&format!("{}?merchantAccessToken=wrong", app.url(&path)))
        .await;
    assert_eq!((s, body["error"].as_str()), (401, Some("Invalid token")));

    // Nothing was queued by any of it.
    let v = shown(&app, &env).await;
    assert_eq!(v["deliveries"], serde_json::json!([]));
    assert!(v["receipts"].is_null() && v["receiptText"].is_null(), "{v}");
    let (s, tl) = app
        .get_json(&format!(
            "{}/pos/transaction/{}/events?merchantAccessToken={}",
            app.base,
            env["transactionId"].as_str().unwrap(),
            env["merchantAccessToken"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, 200);
    assert!(!tl.to_string().contains("receipt_"), "{tl}");
    app.stop().await;
}

/// `serve`'s flags: checked before the port is bound, the SMTP URL never shown.
#[tokio::test]
async fn receipt_flags_are_checked_by_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let run = |args: &'static [&'static str]| {
        let data = data.clone();
        async move {
            let out = tokio::process::Command::new(BIN)
                .arg("config")
                .arg("check")
                .arg("--data-dir")
                .arg(&data)
                .args(args)
                .env_remove("EFTCLOUD_DATA_DIR")
                .env_remove("EFTCLOUD_DATABASE_URL")
                .stdin(Stdio::null())
                .output()
                .await
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (ok, out, err) = run(&[
        "--smtp-url",
        "smtp://mailer:s3cret@127.0.0.1:2525?tls=opportunistic",
        "--smtp-from",
        "Shop <receipts@example.com>",
        "--sms-webhook-url",
        "https://sms.example/send",
        "--sms-webhook-secret",
        "sms-secret-xyz",
        "--receipt-retry-min",
        "5s",
    ])
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("smtp-url = (set, hidden)"), "{out}");
    assert!(out.contains("sms-webhook-secret = (set, hidden)"), "{out}");
    assert!(
        !out.contains("s3cret") && !out.contains("sms-secret-xyz"),
        "{out}"
    );
    assert!(out.contains("receipt-retry-min = 5s"), "{out}");

    let (ok, _, err) = run(&["--smtp-url", "smtp://127.0.0.1:2525"]).await;
    assert!(!ok);
    assert!(
        err.contains("--smtp-from is required with --smtp-url"),
        "{err}"
    );
    let (ok, _, err) = run(&[
        "--smtp-url",
        "http://127.0.0.1",
        "--smtp-from",
        "a@b.example",
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("invalid --smtp-url"), "{err}");
    let (ok, _, err) = run(&[
        "--smtp-url",
        "smtp://127.0.0.1",
        "--smtp-from",
        "not an address",
    ])
    .await;
    assert!(!ok);
    assert!(
        err.contains("invalid --smtp-from 'not an address'"),
        "{err}"
    );
    let (ok, _, err) = run(&["--sms-webhook-url", "ftp://sms.example"]).await;
    assert!(!ok);
    assert!(
        err.contains("invalid --sms-webhook-url 'ftp://sms.example'"),
        "{err}"
    );
}
