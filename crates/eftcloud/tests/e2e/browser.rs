//! Browser tests: the virtual terminal page in headless Chromium, driven through chromedriver
//! (WebDriver) with fantoccini. The page is a real device: it pairs through the POS API and runs
//! transactions the test approves, declines, cancels and unplugs by clicking.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); without them the
//! tests print "skipped" and pass. `EFTCLOUD_SCREENSHOTS=<dir>` also saves screenshots of the
//! main states there (`EFTCLOUD_SCREENSHOTS=docs/screenshots` refreshes the README's).

use crate::harness::{
    eventually, paired_terminal, poll_until_completed, purchase, register, register_form,
    spawn_app_with, Opts, PATIENCE,
};
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use pos::PairingDetails;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

const CHROMIUM: &[&str] = &["/usr/bin/chromium", "/usr/bin/chromium-browser"];
const CHROMEDRIVER: &[&str] = &["/usr/bin/chromedriver"];

/// A headless Chromium session; chromedriver is killed when this is dropped.
struct Browser {
    client: Client,
    _driver: Child,
    _profile: tempfile::TempDir,
}

fn find_binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Starts chromedriver on a free port and opens a session, or says why the test is skipped.
async fn browser() -> Option<Browser> {
    let (Some(chromium), Some(driver)) = (
        find_binary("EFTCLOUD_CHROMIUM", CHROMIUM),
        find_binary("EFTCLOUD_CHROMEDRIVER", CHROMEDRIVER),
    ) else {
        eprintln!(
            "skipped: chromium/chromedriver not installed \
             (apt-get install chromium chromium-driver; .ci/run does)"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let webdriver = format!("http://127.0.0.1:{port}");
    eventually("chromedriver to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await;
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            // As root on a machine without network: no sandbox, no background traffic.
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&webdriver)
        .await
        .expect("chromium session");
    Some(Browser {
        client,
        _driver: driver,
        _profile: profile,
    })
}

/// Runs a scenario in a fresh browser and always ends the session (so no Chromium outlives the
/// test), then re-raises a failure.
async fn with_browser<F, Fut>(scenario: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(b) = browser().await else { return };
    let outcome = std::panic::AssertUnwindSafe(scenario(b.client.clone()))
        .catch_unwind()
        .await;
    let _ = b.client.clone().close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Evaluates `expr` in the page until `ok` accepts its value; returns that value.
async fn wait_js(c: &Client, what: &str, expr: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let script = format!("return ({expr});");
    let mut last = Value::Null;
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            last = c.execute(&script, vec![]).await.unwrap_or(Value::Null);
            if ok(&last) {
                return last.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}: {expr} was {last}"))
}

async fn click(c: &Client, id: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click #{id}: {e}"));
}

/// Clicks the element `css` selects, once it is there. In the page's own JavaScript, so a live
/// re-render between finding the element and clicking it (the dashboard redraws its tables on
/// every change) cannot leave a stale reference.
async fn click_css(c: &Client, css: &str) {
    let selector = serde_json::to_string(css).unwrap_or_default();
    let expr = format!(
        "(() => {{ const e = document.querySelector({selector}); if (!e) return false; e.click(); return true; }})()"
    );
    wait_js(c, &format!("{css} to click"), &expr, |v| v == &json!(true)).await;
}

async fn text_of(c: &Client, id: &str) -> String {
    c.find(Locator::Id(id)).await.unwrap().text().await.unwrap()
}

async fn enabled(c: &Client, id: &str) {
    wait_js(
        c,
        &format!("#{id} enabled"),
        &format!("!document.getElementById('{id}').disabled"),
        |v| v == &json!(true),
    )
    .await;
}

async fn screen_is(c: &Client, screen: &str) {
    wait_js(
        c,
        &format!("screen {screen}"),
        "document.getElementById('screen').dataset.screen",
        |v| v == &json!(screen),
    )
    .await;
}

async fn pairing_code(c: &Client) -> String {
    let v = wait_js(
        c,
        "a pairing code",
        "document.getElementById('pairing-code').dataset.code || ''",
        |v| v.as_str().is_some_and(|s| s.len() == 8),
    )
    .await;
    v.as_str().unwrap().to_string()
}

/// Saves a screenshot when `EFTCLOUD_SCREENSHOTS` names a directory (a relative one is taken
/// from the workspace root).
async fn screenshot(c: &Client, name: &str) {
    let Ok(dir) = std::env::var("EFTCLOUD_SCREENSHOTS") else {
        return;
    };
    let png = c.screenshot().await.unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The POS: posts a purchase and returns its polling URL and cancel URL.
async fn post_purchase(
    app: &crate::harness::TestApp,
    reg: &protocol::RegisterKey,
    amount: &str,
) -> (String, String) {
    let (status, env) = app
        .post_form("/POS/Transaction", &purchase(reg, amount))
        .await;
    assert_eq!(status, 200, "{env}");
    let cancel = format!(
        "{}/pos/transaction/{}/cancel?merchantAccessToken={}",
        app.base,
        env["transactionId"].as_str().unwrap(),
        env["merchantAccessToken"].as_str().unwrap()
    );
    (
        env["data"]["PollingUrl"].as_str().unwrap().to_string(),
        cancel,
    )
}

/// Waits until the page shows a started transaction (the card buttons come alive).
async fn started(c: &Client) {
    screen_is(c, "transaction").await;
    enabled(c, "btn-cancel").await;
}

#[tokio::test]
async fn virtual_terminal_pairs_and_runs_purchases_by_clicks() {
    let app = spawn_app_with(Opts {
        delayed_after: Duration::from_secs(1),
        ..Opts::default()
    })
    .await;
    with_browser(|c| async move {
        c.goto(&app.url("/virtual-terminal")).await.unwrap();
        assert!(c.title().await.unwrap().contains("Virtual terminal"));
        screenshot(&c, "virtual-terminal-setup").await;

        // One click enrolls a device and the page connects with it and shows a code.
        click(&c, "create-device").await;
        let code = pairing_code(&c).await;
        // Shown in two groups, but what is copied (the text) is the 8 digits.
        assert_eq!(text_of(&c, "pairing-code").await, code);
        let device = text_of(&c, "device-id").await;
        assert!(device.starts_with("virtual-"), "{device}");
        assert!(text_of(&c, "pairing-countdown")
            .await
            .starts_with("Expires in"));
        screenshot(&c, "virtual-terminal-pairing").await;

        let reg = register("browser");
        app.pos()
            .pair(&code, &reg, &PairingDetails::new("Main Register"))
            .await
            .unwrap();
        screen_is(&c, "idle").await;
        wait_js(
            &c,
            "the register name",
            "document.getElementById('device-registers').textContent",
            |v| v == &json!("Main Register"),
        )
        .await;

        // Approve, with a tip: the POS gets the device's result and sees its prompts meanwhile.
        let (poll, _) = post_purchase(&app, &reg, "1250").await;
        started(&c).await;
        assert_eq!(text_of(&c, "tx-function").await, "Card.Purchase");
        assert_eq!(text_of(&c, "tx-amount").await, "AUD 12.50");
        click(&c, "btn-present-card").await;
        let (_, pending) = app.get_json(&poll).await;
        assert_eq!(pending["transactionStatus"], "PENDING");
        let tip = c.find(Locator::Id("tip-amount")).await.unwrap();
        tip.send_keys("2.00").await.unwrap();
        click(&c, "btn-tip").await;
        wait_js(
            &c,
            "the amount with tip",
            "document.getElementById('tx-amount').textContent",
            |v| v == &json!("AUD 14.50"),
        )
        .await;
        screenshot(&c, "virtual-terminal-transaction").await;
        // The prompt travels page -> WebSocket -> cloud -> store: wait for it to land.
        eventually("the tip prompt to reach the cloud", || async {
            let display = app.get_json(&poll).await.1["data"]["DisplayText"].clone();
            display
                .as_str()
                .unwrap_or("")
                .contains("Tip AUD 2.00")
                .then_some(())
        })
        .await;
        click(&c, "btn-approve").await;
        let done = poll_until_completed(&app, &poll).await;
        let data = &done["data"];
        assert_eq!(data["TransactionResult"], "OK-ACCEPTED", "{done}");
        assert_eq!(data["Result"], "OK");
        assert_eq!(data["AmountTotal"], "1450");
        assert_eq!(data["AmountTip"], "200");
        assert_eq!(data["AmountSurcharge"], "0");
        assert!(data["CardPan"].as_str().unwrap().starts_with("...."));
        assert_eq!(data["AuthId"].as_str().unwrap().len(), 6);
        assert_eq!(data["Timestamp"].as_str().unwrap().len(), 14);
        for f in ["CardType", "AccountType", "AcquirerRef", "TerminalRef"] {
            assert!(data[f].is_string(), "{f} missing: {done}");
        }
        let receipt = data["Receipt"].as_str().unwrap();
        assert!(
            receipt.lines().all(|l| l.chars().count() <= 30),
            "{receipt}"
        );
        assert!(receipt.contains("APPROVED") && receipt.contains("TIP"));
        screen_is(&c, "result").await;
        wait_js(
            &c,
            "the acknowledgement",
            "document.getElementById('result-delivery').textContent",
            |v| v == &json!("Result delivered to the cloud"),
        )
        .await;
        assert!(text_of(&c, "receipt").await.contains("APPROVED"));
        screenshot(&c, "virtual-terminal-receipt").await;
        click(&c, "done").await;

        // Decline.
        let (poll, _) = post_purchase(&app, &reg, "1000").await;
        started(&c).await;
        click(&c, "btn-present-card").await;
        click(&c, "btn-decline").await;
        let done = poll_until_completed(&app, &poll).await;
        assert_eq!(done["data"]["TransactionResult"], "OK-DECLINED", "{done}");
        assert_eq!(done["data"]["Result"], "OK");
        assert_eq!(done["data"]["AmountTotal"], "1000");

        // Cancelled on the device by the customer.
        let (poll, _) = post_purchase(&app, &reg, "1100").await;
        started(&c).await;
        click(&c, "btn-cancel").await;
        let done = poll_until_completed(&app, &poll).await;
        assert_eq!(done["data"]["TransactionResult"], "CANCELLED", "{done}");
        assert_eq!(done["data"]["Result"], "CANCELLED");
        assert_eq!(done["data"]["ResultText"], "CANCELLED ON DEVICE");

        // Cancelled by the POS while the device runs it: the page ends it and reports.
        let (poll, cancel) = post_purchase(&app, &reg, "1200").await;
        started(&c).await;
        let r = app.http.post(&cancel).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let done = poll_until_completed(&app, &poll).await;
        assert_eq!(done["data"]["TransactionResult"], "CANCELLED", "{done}");
        assert_eq!(done["data"]["ResultText"], "CANCELLED BY POS");
        screen_is(&c, "result").await;

        // Unplugged after start: the POS waits (PENDING, then OK-DELAYED); the customer pays
        // offline; plugged back in, the journaled result arrives in hello.
        let (poll, _) = post_purchase(&app, &reg, "1300").await;
        started(&c).await;
        click(&c, "plugged").await;
        wait_js(&c, "unplugged", "document.body.dataset.connection", |v| {
            v == &json!("unplugged")
        })
        .await;
        let delayed = eventually("OK-DELAYED while unplugged", || async {
            let (_, body) = app.get_json(&poll).await;
            assert_eq!(body["transactionStatus"], "PENDING", "{body}");
            (body["data"]["TransactionResult"] == "OK-DELAYED").then_some(body)
        })
        .await;
        assert_eq!(delayed["data"]["Result"], "DELAYED-TRANSACTION");
        click(&c, "btn-present-card").await;
        click(&c, "btn-approve").await;
        let kept = wait_js(
            &c,
            "the offline result in the journal",
            "Object.keys(localStorage).filter(k => k.startsWith('eftcloud.vt.journal.'))\
             .map(k => JSON.parse(localStorage.getItem(k)))[0]\
             .filter(e => e.state === 'completed').length",
            |v| v == &json!(1),
        )
        .await;
        assert_eq!(kept, json!(1));
        let (_, still) = app.get_json(&poll).await;
        assert_eq!(still["transactionStatus"], "PENDING");
        click(&c, "plugged").await;
        let done = poll_until_completed(&app, &poll).await;
        assert_eq!(done["data"]["TransactionResult"], "OK-ACCEPTED", "{done}");
        assert_eq!(done["data"]["AmountTotal"], "1300");
        wait_js(
            &c,
            "the acknowledgement after reconnecting",
            "document.getElementById('result-delivery').textContent",
            |v| v == &json!("Result delivered to the cloud"),
        )
        .await;

        // A phone-sized view of the same page, for the README.
        c.set_window_size(390, 844).await.unwrap();
        click(&c, "done").await;
        c.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
        screenshot(&c, "virtual-terminal-phone").await;
    })
    .await;
}

#[tokio::test]
async fn two_tabs_are_two_terminals() {
    // Fast heartbeats: the page must answer every ping to stay connected.
    let app = spawn_app_with(Opts {
        heartbeat: Duration::from_millis(300),
        ..Opts::default()
    })
    .await;
    with_browser(|c| async move {
        c.goto(&app.url("/virtual-terminal")).await.unwrap();
        click(&c, "create-device").await;
        let first_code = pairing_code(&c).await;
        let first = text_of(&c, "device-id").await;
        let first_window = c.window().await.unwrap();
        let tab = c.new_window(true).await.unwrap();
        c.switch_to_window(tab.handle).await.unwrap();
        c.goto(&app.url("/virtual-terminal")).await.unwrap();
        click(&c, "create-device").await;
        let second_code = pairing_code(&c).await;
        let second = text_of(&c, "device-id").await;
        assert_ne!(first, second);
        assert_ne!(first_code, second_code);

        // Each tab pairs its own register and only sees its own transactions.
        let reg2 = register("tab2");
        app.pos()
            .pair(&second_code, &reg2, &PairingDetails::new("Counter 2"))
            .await
            .unwrap();
        screen_is(&c, "idle").await;
        c.switch_to_window(first_window).await.unwrap();
        let reg1 = register("tab1");
        app.pos()
            .pair(&first_code, &reg1, &PairingDetails::new("Counter 1"))
            .await
            .unwrap();
        screen_is(&c, "idle").await;
        let (poll, _) = post_purchase(&app, &reg1, "500").await;
        started(&c).await;
        click(&c, "btn-present-card").await;
        click(&c, "btn-approve").await;
        let done = poll_until_completed(&app, &poll).await;
        assert_eq!(done["data"]["TransactionResult"], "OK-ACCEPTED");
        assert_eq!(done["data"]["DeviceID"], first.as_str());

        // A reload keeps the tab's device (sessionStorage) and its pairing.
        c.refresh().await.unwrap();
        wait_js(
            &c,
            "online again",
            "document.body.dataset.connection",
            |v| v == &json!("online"),
        )
        .await;
        assert_eq!(text_of(&c, "device-id").await, first);
        assert_eq!(text_of(&c, "device-registers").await, "Counter 1");

        // Pongs keep it connected through many heartbeats (three silent ones would close it).
        let pongs = "document.querySelectorAll('#log li[data-type=pong]').length";
        wait_js(&c, "ten pongs", pongs, |v| {
            v.as_u64().is_some_and(|n| n >= 10)
        })
        .await;
        assert_eq!(
            c.execute("return document.body.dataset.connection", vec![])
                .await
                .unwrap(),
            json!("online")
        );

        // A reload mid-transaction is the terminal's power cut: the payment is reversed and
        // reported, as the reference agent does after a restart.
        let (poll, _) = post_purchase(&app, &reg1, "600").await;
        started(&c).await;
        click(&c, "btn-present-card").await;
        c.refresh().await.unwrap();
        let done = poll_until_completed(&app, &poll).await;
        assert_eq!(done["data"]["TransactionResult"], "CANCELLED", "{done}");
        assert_eq!(
            done["data"]["ResultText"],
            "Transaction reversed after power failure"
        );
        assert_eq!(done["data"]["Reversed"], "true");
    })
    .await;
}

/// Approves the transaction the page shows, by clicks, and returns the POS's completed envelope.
async fn approve(app: &crate::harness::TestApp, c: &Client, poll: &str) -> Value {
    started(c).await;
    click(c, "btn-present-card").await;
    click(c, "btn-approve").await;
    let done = poll_until_completed(app, poll).await;
    assert_eq!(done["data"]["TransactionResult"], "OK-ACCEPTED", "{done}");
    click(c, "done").await;
    done
}

#[tokio::test]
async fn virtual_terminal_runs_follow_ups_on_the_original_card_and_shows_each_currency() {
    let app = spawn_app_with(Opts::default()).await;
    with_browser(|c| async move {
        c.goto(&app.url("/virtual-terminal")).await.unwrap();
        click(&c, "create-device").await;
        let code = pairing_code(&c).await;
        let reg = register("follow-ups");
        app.pos()
            .pair(&code, &reg, &PairingDetails::new("Returns Desk"))
            .await
            .unwrap();
        screen_is(&c, "idle").await;

        let (poll, _) = post_purchase(&app, &reg, "1000").await;
        let sale = approve(&app, &c, &poll).await;
        let sale_id = sale["transactionId"].as_str().unwrap();
        let pan = sale["data"]["CardPan"].as_str().unwrap();

        // A referenced refund: shown as one, on the original's card, with nothing to present.
        let mut form = register_form(&reg);
        form.push(("AmountTotal", "600"));
        let (status, refund) = app
            .post_form(&format!("/pos/transaction/{sale_id}/refund"), &form)
            .await;
        assert_eq!(status, 200, "{refund}");
        started(&c).await;
        assert_eq!(text_of(&c, "tx-function").await, "Card.Refund");
        assert_eq!(text_of(&c, "tx-amount").await, "AUD 6.00");
        let prompt = text_of(&c, "tx-prompt").await;
        assert!(
            prompt.starts_with("REFUND of AUD 10.00 — AUD 6.00") && prompt.contains(pan),
            "{prompt}"
        );
        let original = text_of(&c, "tx-original").await;
        assert!(original.contains(pan), "{original}");
        enabled(&c, "btn-approve").await;
        let present = c.find(Locator::Id("btn-present-card")).await.unwrap();
        assert!(!present.is_enabled().await.unwrap());
        click(&c, "btn-approve").await;
        let poll = refund["data"]["PollingUrl"].as_str().unwrap();
        let done = poll_until_completed(&app, poll).await;
        let data = &done["data"];
        assert_eq!(data["TransactionResult"], "OK-ACCEPTED", "{done}");
        assert_eq!(data["Function"], "Card.Refund");
        assert_eq!(data["CardPan"], pan);
        assert_eq!(data["OriginalTransactionId"], sale_id);
        assert_eq!(data["AmountTotal"], "600");
        let receipt = data["Receipt"].as_str().unwrap();
        assert!(
            receipt.contains("REFUND APPROVED") && receipt.contains(pan),
            "{receipt}"
        );
        screen_is(&c, "result").await;
        click(&c, "done").await;

        // Yen have no minor units: 1234 is JPY 1234 on the screen and the receipt.
        let mut yen = purchase(&reg, "1234");
        yen.push(("Currency", "JPY"));
        let (status, env) = app.post_form("/POS/Transaction", &yen).await;
        assert_eq!(status, 200, "{env}");
        started(&c).await;
        assert_eq!(text_of(&c, "tx-amount").await, "JPY 1234");
        assert_eq!(text_of(&c, "tip-currency").await, "JPY");
        let poll = env["data"]["PollingUrl"].as_str().unwrap();
        let paid = approve(&app, &c, poll).await;
        let receipt = paid["data"]["Receipt"].as_str().unwrap();
        assert!(
            receipt
                .lines()
                .any(|l| l.starts_with("TOTAL") && l.ends_with("JPY      1234")),
            "{receipt}"
        );

        // Its void: the whole original, on its card, in its currency.
        let paid_id = paid["transactionId"].as_str().unwrap();
        let (status, void) = app
            .post_form(
                &format!("/pos/transaction/{paid_id}/void"),
                &register_form(&reg),
            )
            .await;
        assert_eq!(status, 200, "{void}");
        started(&c).await;
        assert_eq!(text_of(&c, "tx-function").await, "Card.Void");
        assert!(text_of(&c, "tx-prompt").await.starts_with("VOID JPY 1234"));
        click(&c, "btn-approve").await;
        let poll = void["data"]["PollingUrl"].as_str().unwrap();
        let done = poll_until_completed(&app, poll).await;
        let data = &done["data"];
        assert_eq!(data["TransactionResult"], "OK-ACCEPTED", "{done}");
        assert_eq!(data["AmountTotal"], "1234");
        assert_eq!(data["CardPan"], paid["data"]["CardPan"]);
        assert_eq!(data["OriginalTransactionId"], paid_id);
        screen_is(&c, "result").await;
        click(&c, "done").await;

        // The page's cutover reports its batch: the sale less its refund (the yen sale was
        // voided), and the cloud reconciles it clean.
        let mut cutover = register_form(&reg);
        cutover.extend([
            ("TransactionMode", "ASYNC"),
            ("TransactionType", "Acquirer.Settlement.Cutover"),
        ]);
        let (status, env) = app.post_form("/POS/Transaction", &cutover).await;
        assert_eq!(status, 200, "{env}");
        started(&c).await;
        click(&c, "btn-approve").await;
        let done = poll_until_completed(&app, env["data"]["PollingUrl"].as_str().unwrap()).await;
        assert_eq!(done["data"]["Result"], "OK", "{done}");
        assert_eq!(done["data"]["PurchaseTotal"], "1000", "{done}");
        assert_eq!(done["data"]["RefundTotal"], "600", "{done}");
        let id: protocol::TransactionId = done["transactionId"].as_str().unwrap().parse().unwrap();
        let settlement = app
            .engine
            .settlement(&cloud::domain::accounts::Principal::owner_token(), &id)
            .await
            .unwrap()
            .expect("an approved cutover is a settlement");
        let items = settlement
            .batch
            .as_ref()
            .and_then(|b| b.transactions.clone())
            .unwrap_or_default();
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(
            settlement.reconciliation.status,
            cloud::domain::reconciliation::Status::Balanced,
            "{:#?}",
            settlement.reconciliation
        );
    })
    .await;
}

/// A cloud with settings the shared harness does not offer (virtual terminals off, an admin
/// token), on a temporary SQLite file.
struct CustomApp {
    base: String,
    engine: cloud::engine::Engine,
    http: reqwest::Client,
    stop: tokio_util::sync::CancellationToken,
    running: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn spawn_custom(virtual_terminals: bool, admin_token: Option<&str>) -> CustomApp {
    let dir = tempfile::tempdir().unwrap();
    let config = cloud::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", dir.path().join("eftcloud.db").display()),
        poll_interval_min: Duration::ZERO,
        virtual_terminals: if virtual_terminals {
            cloud::config::VirtualTerminals::On
        } else {
            cloud::config::VirtualTerminals::Off
        },
        admin_token: admin_token.map(str::to_string),
        engine: cloud::engine::EngineSettings {
            accept_timeout: Duration::from_secs(2),
            ..Default::default()
        },
        ..cloud::Config::default()
    };
    let app = cloud::Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let engine = app.engine().clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(stop.clone()));
    CustomApp {
        base,
        engine,
        http: reqwest::Client::new(),
        stop,
        running,
        _dir: dir,
    }
}

impl CustomApp {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn admin(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Stops the cloud; it must shut down promptly even with a dashboard's live stream open.
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(PATIENCE, self.running)
            .await
            .expect("cloud stops in time")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn without_virtual_terminals_the_page_takes_an_enrolled_device() {
    let app = spawn_custom(false, None).await;
    let r = app
        .http
        .post(app.url("/virtual-terminal/devices"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("--virtual-terminals"),
        "{body}"
    );
    // No admin token configured: the dashboard is served all the same (people sign in to
    // it), but the admin API takes no token and says how to configure one.
    let r = app.http.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"password-form\""), "{html}");
    let (status, body) = app.admin("/admin/devices", Some("anything")).await;
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().contains("--admin-token"),
        "{body}"
    );

    let id = protocol::DeviceId::parse("shop-till-7").unwrap();
    let secret = app
        .engine
        .enroll_device(&id, &Default::default())
        .await
        .unwrap();
    let page = app.url("/virtual-terminal");
    with_browser(|c| async move {
        c.goto(&page).await.unwrap();
        let notice = c.find(Locator::Id("vt-disabled")).await.unwrap();
        assert!(notice.is_displayed().await.unwrap());
        assert!(notice.text().await.unwrap().contains("--virtual-terminals"));
        let create = c.find(Locator::Id("create-device")).await.unwrap();
        assert!(!create.is_displayed().await.unwrap());
        screenshot(&c, "virtual-terminal-disabled").await;
        c.find(Locator::Id("device-id-input"))
            .await
            .unwrap()
            .send_keys("shop-till-7")
            .await
            .unwrap();
        c.find(Locator::Id("secret-input"))
            .await
            .unwrap()
            .send_keys(&secret)
            .await
            .unwrap();
        c.find(Locator::Css("#credentials-form button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        pairing_code(&c).await;
        assert_eq!(text_of(&c, "device-id").await, "shop-till-7");
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn the_page_says_when_this_address_created_too_many_terminals() {
    let app = spawn_app_with(Opts {
        api_limits: cloud::pos_api::ApiLimits {
            enrollment: cloud::pos_api::pairing_guard::PairingGuardSettings {
                failures_per_source: 1,
                failures_global: 0,
                window: Duration::from_secs(60),
                trust_forwarded_for: false,
            },
            ..Default::default()
        },
        ..Opts::default()
    })
    .await;
    let page = app.url("/virtual-terminal");
    with_browser(|c| async move {
        c.goto(&page).await.unwrap();
        click(&c, "create-device").await;
        pairing_code(&c).await;
        // A fresh tab state: the page offers to create another one, and the cloud says no.
        c.execute("sessionStorage.clear();", vec![]).await.unwrap();
        c.goto(&page).await.unwrap();
        click(&c, "create-device").await;
        let shown = wait_js(
            &c,
            "the refusal",
            "document.getElementById('setup-error').textContent",
            |v| v.as_str().is_some_and(|t| t.contains("Too many")),
        )
        .await;
        assert!(shown.as_str().unwrap().contains("retry in"), "{shown}");
        // Creating stays offered: the refusal is for now, not for good.
        let create = c.find(Locator::Id("create-device")).await.unwrap();
        assert!(create.is_displayed().await.unwrap());
    })
    .await;
    app.stop().await;
}

const ADMIN_TOKEN: &str = "test-admin-token";

#[tokio::test]
async fn admin_api_needs_the_token_and_filters_transactions() {
    let app = spawn_custom(true, Some(ADMIN_TOKEN)).await;
    let (status, body) = app.admin("/admin/devices", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = app.admin("/admin/devices", Some("wrong")).await;
    assert_eq!(status, 401);
    let (status, _) = app.admin("/admin/events", Some("wrong")).await;
    assert_eq!(status, 401);

    // A device with a transaction in progress shows up busy, and the transaction is listed.
    let secret = app
        .engine
        .enroll_device(
            &protocol::DeviceId::parse("dash-1").unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "{}/device/v1",
        app.base.replacen("http", "ws", 1)
    ))
    .await
    .unwrap();
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let hello = serde_json::to_string(&crate::harness::hello("dash-1", &secret)).unwrap();
    ws.send(Message::text(hello)).await.unwrap();
    ws.send(Message::text(r#"{"type":"pairing_code_request"}"#))
        .await
        .unwrap();
    let code = loop {
        let Some(Ok(Message::Text(t))) = ws.next().await else {
            panic!("socket closed")
        };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        if v["type"] == "pairing_code" {
            break v["code"].as_str().unwrap().to_string();
        }
    };
    let reg = register("dash");
    pos::PosClient::new(&app.base)
        .unwrap()
        .pair(&code, &reg, &PairingDetails::new("Front Counter"))
        .await
        .unwrap();
    let mut form = purchase(&reg, "777");
    form.push(("PosReference", "order-4711"));
    let r = app
        .http
        .post(app.url("/POS/Transaction"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let env: Value = r.json().await.unwrap();
    let id = env["transactionId"].as_str().unwrap().to_string();

    let (status, devices) = app.admin("/admin/devices", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{devices}");
    let d = &devices[0];
    assert_eq!(d["deviceId"], "dash-1");
    assert_eq!(d["online"], true);
    assert_eq!(d["busy"], true);
    assert_eq!(d["activeTransactionId"], id.as_str());
    assert_eq!(d["registers"][0]["registerName"], "Front Counter");

    let (status, list) = app
        .admin(
            "/admin/transactions?reference=order-4711",
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["transactionId"], id.as_str());
    assert_eq!(list[0]["phase"], "offered");
    assert_eq!(list[0]["amountCents"], 777);
    for q in [
        "reference=nothing-like-it",
        "outcome=OK-ACCEPTED",
        "device=someone-else",
        "since=2999-01-01",
    ] {
        let (_, none) = app
            .admin(&format!("/admin/transactions?{q}"), Some(ADMIN_TOKEN))
            .await;
        assert_eq!(none.as_array().unwrap().len(), 0, "{q}: {none}");
    }
    let (status, bad) = app
        .admin("/admin/transactions?since=yesterday", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, 400, "{bad}");

    // The device never accepts: the cloud ends it, and the list and the timeline say so.
    let done = eventually("the cloud to end it at the accept deadline", || async {
        let (_, list) = app
            .admin("/admin/transactions?outcome=CANCELLED", Some(ADMIN_TOKEN))
            .await;
        list.as_array()
            .is_some_and(|l| !l.is_empty())
            .then_some(list)
    })
    .await;
    assert_eq!(done[0]["completedBy"], "cloud");
    assert!(done[0]["durationMs"].as_i64().unwrap() >= 0);
    let (status, detail) = app
        .admin(&format!("/admin/transactions/{id}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, 200, "{detail}");
    let events: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events.first(), Some(&"received"));
    assert!(events.contains(&"completed"), "{events:?}");
    let (status, _) = app
        .admin(
            "/admin/transactions/00000000-0000-4000-8000-000000000000",
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(status, 404);

    // The live stream starts with a snapshot, and does not hold up shutdown.
    let mut live = app
        .http
        .get(app.url("/admin/events"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert!(live.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut first = String::new();
    while !first.contains("\n\n") {
        let chunk = tokio::time::timeout(PATIENCE, live.chunk())
            .await
            .unwrap()
            .unwrap()
            .expect("a snapshot");
        first.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(first.starts_with("event: snapshot"), "{first}");
    assert!(first.contains("dash-1") && first.contains(&id), "{first}");
    app.stop().await;
}

#[tokio::test]
async fn dashboard_follows_a_virtual_terminal_live() {
    let app = spawn_custom(true, Some(ADMIN_TOKEN)).await;
    let base = app.base.clone();
    let http = app.http.clone();
    with_browser(|c| async move {
        // Tab 1: a virtual terminal, paired.
        c.goto(&format!("{base}/virtual-terminal")).await.unwrap();
        click(&c, "create-device").await;
        let code = pairing_code(&c).await;
        let device = text_of(&c, "device-id").await;
        let terminal = c.window().await.unwrap();
        let reg = register("dash");
        pos::PosClient::new(&base)
            .unwrap()
            .pair(&code, &reg, &PairingDetails::new("Front Counter"))
            .await
            .unwrap();
        screen_is(&c, "idle").await;

        // Tab 2: the dashboard, signed in with the token.
        let tab = c.new_window(true).await.unwrap();
        c.switch_to_window(tab.handle.clone()).await.unwrap();
        c.goto(&format!("{base}/dashboard")).await.unwrap();
        sign_in_with_token(&c, ADMIN_TOKEN).await;
        signed_in_as(&c, "owner").await;
        let device_state = format!(
            "(document.querySelector('#devices tr[data-device=\"{device}\"] [data-state]') || {{}}).dataset?.state || ''"
        );
        wait_js(&c, "the device online", &device_state, |v| v == &json!("online")).await;
        wait_js(&c, "live", "document.body.dataset.live", |v| v == &json!("on")).await;

        // A purchase appears in progress, and the device busy, without a reload.
        let r = http
            .post(format!("{base}/POS/Transaction"))
            .form(&purchase(&reg, "4250"))
            .send()
            .await
            .unwrap();
        let env: Value = r.json().await.unwrap();
        let id = env["transactionId"].as_str().unwrap().to_string();
        let poll = env["data"]["PollingUrl"].as_str().unwrap().to_string();
        let row = format!(
            "(document.querySelector('#transactions tr[data-transaction=\"{id}\"]') || {{}}).dataset?.outcome || ''"
        );
        wait_js(&c, "the transaction in progress", &row, |v| v == &json!("pending")).await;
        wait_js(&c, "the device busy", &device_state, |v| v == &json!("busy")).await;

        // The customer pays on the terminal; the dashboard shows the outcome.
        c.switch_to_window(terminal.clone()).await.unwrap();
        started(&c).await;
        click(&c, "btn-present-card").await;
        click(&c, "btn-approve").await;
        c.switch_to_window(tab.handle.clone()).await.unwrap();
        wait_js(&c, "the transaction approved", &row, |v| v == &json!("OK-ACCEPTED")).await;
        wait_js(&c, "the device idle", &device_state, |v| v == &json!("online")).await;
        let done = http.get(&poll).send().await.unwrap().json::<Value>().await.unwrap();
        assert_eq!(done["data"]["TransactionResult"], "OK-ACCEPTED");

        // The row shows the part of the id that differs (UUIDv7 ids of one minute share their
        // head) and the time with its date.
        let cells = wait_js(
            &c,
            "the row's id and time",
            &format!(
                "(r => r ? [r.querySelector('button').textContent, r.cells[0].textContent] : null)\
                 (document.querySelector('#transactions tr[data-transaction=\"{id}\"]'))"
            ),
            |v| v.is_array(),
        )
        .await;
        assert_eq!(cells[0], json!(format!("…{}", &id[id.len() - 12..])));
        let when = cells[1].as_str().unwrap();
        assert!(
            when.len() == 19 && when.starts_with("20") && when.as_bytes()[10] == b' ',
            "{when}"
        );
        // Its timeline, one click away.
        click_css(&c, &format!("#transactions tr[data-transaction=\"{id}\"] button")).await;
        wait_js(
            &c,
            "the timeline",
            "Array.from(document.querySelectorAll('#timeline .ev')).map(e => e.textContent).join(' ')",
            |v| v.as_str().is_some_and(|s| s.contains("received") && s.contains("result_acknowledged")),
        )
        .await;
        // A decline and a cancel on the terminal, for the outcome mix.
        for (amount, button) in [("1999", "btn-decline"), ("2500", "btn-cancel")] {
            let r = http
                .post(format!("{base}/POS/Transaction"))
                .form(&purchase(&reg, amount))
                .send()
                .await
                .unwrap();
            let env: Value = r.json().await.unwrap();
            let poll = env["data"]["PollingUrl"].as_str().unwrap().to_string();
            c.switch_to_window(terminal.clone()).await.unwrap();
            started(&c).await;
            click(&c, "btn-present-card").await;
            click(&c, button).await;
            c.switch_to_window(tab.handle.clone()).await.unwrap();
            let done = eventually("the transaction's completion", || async {
                let v: Value = http.get(&poll).send().await.unwrap().json().await.unwrap();
                (v["transactionStatus"] == "COMPLETED").then_some(v)
            })
            .await;
            assert_ne!(done["data"]["TransactionResult"], "OK-ACCEPTED");
        }
        let rows = "document.querySelectorAll('#transactions tbody tr').length";
        wait_js(&c, "three transactions", rows, |v| v == &json!(3)).await;
        // Searching narrows the list.
        c.find(Locator::Id("f-outcome"))
            .await
            .unwrap()
            .select_by_value("OK-DECLINED")
            .await
            .unwrap();
        wait_js(&c, "the decline only", rows, |v| v == &json!(1)).await;
        c.find(Locator::Id("f-register"))
            .await
            .unwrap()
            .send_keys("no such register")
            .await
            .unwrap();
        wait_js(&c, "an empty list", rows, |v| v == &json!(0)).await;
        c.find(Locator::Css("#filters button[type=reset]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_js(&c, "the list back", rows, |v| v == &json!(3)).await;
        c.set_window_size(1280, 1700).await.unwrap();
        c.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
        screenshot(&c, "dashboard").await;

        // A partial refund by reference, approved on the terminal: the purchase's payment panel
        // says what was refunded and what still may be, and the refund names its original.
        let mut form = register_form(&reg);
        form.push(("AmountTotal", "1250"));
        let r = http
            .post(format!("{base}/pos/transaction/{id}/refund"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let env: Value = r.json().await.unwrap();
        let refund = env["transactionId"].as_str().unwrap().to_string();
        c.switch_to_window(terminal.clone()).await.unwrap();
        started(&c).await;
        click(&c, "btn-approve").await;
        c.switch_to_window(tab.handle.clone()).await.unwrap();
        click_css(&c, &format!("#transactions tr[data-transaction=\"{id}\"] button")).await;
        let follow_up = format!(
            "(document.querySelector('#payment-follow-ups tr[data-transaction=\"{refund}\"]') || {{}}).dataset?.state || ''"
        );
        wait_js(&c, "the refund approved in the payment panel", &follow_up, |v| v == &json!("approved")).await;
        let field = |name: &str| {
            format!("(document.querySelector('#payment [data-field={name}] dd') || {{}}).textContent || ''")
        };
        wait_js(&c, "the amount refunded", &field("refunded"), |v| v == &json!("AUD 12.50")).await;
        wait_js(&c, "the amount refundable", &field("refundable"), |v| v == &json!("AUD 30.00")).await;
        assert_eq!(
            c.execute(&format!("return {}", field("amount")), vec![]).await.unwrap(),
            json!("AUD 42.50")
        );
        let link = format!(
            "(document.querySelector('#transactions tr[data-transaction=\"{refund}\"] .original button') || {{}}).title || ''"
        );
        wait_js(&c, "the refund's link to its original", &link, |v| {
            v.as_str().is_some_and(|s| s.starts_with(&id))
        })
        .await;
        // The follow-up opens from the panel; a follow-up has no payment panel of its own.
        click_css(&c, &format!("#payment-follow-ups tr[data-transaction=\"{refund}\"] button")).await;
        wait_js(
            &c,
            "the refund's timeline",
            "[document.getElementById('timeline-title').textContent, document.getElementById('timeline-original').textContent, document.getElementById('payment').hidden]",
            |v| v == &json!([format!("Timeline of {refund}"), format!("Follow-up of …{}", &id[id.len() - 12..]), true]),
        )
        .await;

        // A cutover on the terminal: the Settlements view lists it reconciled, opens its
        // reconciliation, and downloads the exports with the board's own credential.
        c.switch_to_window(terminal.clone()).await.unwrap();
        screen_is(&c, "result").await;
        click(&c, "done").await;
        let mut cutover = register_form(&reg);
        cutover.extend([("TransactionMode", "ASYNC"), ("TransactionType", "Acquirer.Settlement.Cutover")]);
        let r = http.post(format!("{base}/POS/Transaction")).form(&cutover).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let env: Value = r.json().await.unwrap();
        let cut = env["transactionId"].as_str().unwrap().to_string();
        started(&c).await;
        click(&c, "btn-approve").await;
        click(&c, "done").await;
        c.switch_to_window(tab.handle.clone()).await.unwrap();
        click(&c, "tab-settlements").await;
        let status = format!(
            "(document.querySelector('#settlements tr[data-settlement=\"{cut}\"]') || {{dataset: {{}}}}).dataset.status || ''"
        );
        wait_js(&c, "the cutover listed, balanced", &status, |v| v == &json!("balanced")).await;
        click(&c, &format!("settlement-open-{cut}")).await;
        wait_js(
            &c,
            "its reconciliation",
            "[document.getElementById('settlement-panel').hidden, document.getElementById('settlement-balanced').hidden, document.querySelectorAll('#settlement-totals tbody tr').length > 0]",
            |v| v == &json!([false, false, true]),
        )
        .await;
        click(&c, "export-transactions-csv").await;
        click(&c, "export-settlements-json").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(text_of(&c, "settlements-error").await, "");
        click(&c, "tab-overview").await;

        // The terminal unplugged: the dashboard shows it offline.
        c.switch_to_window(terminal).await.unwrap();
        click(&c, "plugged").await;
        c.switch_to_window(tab.handle).await.unwrap();
        wait_js(&c, "the device offline", &device_state, |v| v == &json!("offline")).await;
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_tenders_detail_shows_its_order_and_opens_the_other_tender() {
    let app = spawn_app_with(Opts {
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Opts::default()
    })
    .await;
    let (_till, reg) = paired_terminal(&app, "order-till").await;
    let mut form = register_form(&reg);
    form.extend([("AmountTotal", "5000"), ("PosReference", "table-7")]);
    let (status, order) = app.post_form("/pos/orders", &form).await;
    assert_eq!(status, 200, "{order}");
    let order_id = order["orderId"].as_str().unwrap().to_string();
    // 30.00 and 20.00, one after the other on the one till, both approved.
    let mut tenders = Vec::new();
    for amount in ["3000", "2000"] {
        let mut tender = purchase(&reg, amount);
        tender.push(("OrderId", order_id.as_str()));
        let (status, env) = app.post_form("/pos/transaction", &tender).await;
        assert_eq!(status, 200, "{env}");
        let done = if env["transactionStatus"] == "COMPLETED" {
            env
        } else {
            poll_until_completed(&app, env["data"]["PollingUrl"].as_str().unwrap()).await
        };
        assert_eq!(done["data"]["TransactionResult"], "OK-ACCEPTED", "{done}");
        tenders.push(done["transactionId"].as_str().unwrap().to_string());
    }
    let (first, second) = (tenders[0].clone(), tenders[1].clone());
    let base = app.base.clone();
    with_browser(|c| async move {
        c.goto(&format!("{base}/dashboard")).await.unwrap();
        sign_in_with_token(&c, ADMIN_TOKEN).await;
        signed_in_as(&c, "owner").await;
        // The tender's row names its order by the tail of its id.
        let label = format!(
            "(document.querySelector('#transactions tr[data-transaction=\"{first}\"] .order') || {{}}).textContent || ''"
        );
        wait_js(&c, "the tender's order label", &label, |v| {
            v == &json!(format!(" order …{}", &order_id[order_id.len() - 8..]))
        })
        .await;
        click_css(&c, &format!("#transactions tr[data-transaction=\"{first}\"] button")).await;
        let panel = "(() => { const o = document.getElementById('order'); \
             const f = (k) => (o.querySelector(`[data-field=${k}] dd`) || {}).textContent || ''; \
             return { hidden: o.hidden, total: f('total'), paid: f('paid'), remaining: f('remaining'), \
               state: f('state'), inFlight: f('in-flight'), \
               tenders: Array.from(o.querySelectorAll('#order-tenders tbody tr')).map(r => \
                 [r.dataset.transaction, r.dataset.state, r.cells[3].textContent, r.className]) }; })()";
        let shown = wait_js(&c, "the order panel", panel, |v| {
            v["hidden"] == json!(false) && v["tenders"].as_array().is_some_and(|t| t.len() == 2)
        })
        .await;
        assert_eq!(shown["total"], "AUD 50.00", "{shown}");
        assert_eq!(shown["paid"], "AUD 50.00", "{shown}");
        assert_eq!(shown["remaining"], "AUD 0.00", "{shown}");
        assert_eq!(shown["state"], "paid", "{shown}");
        assert_eq!(shown["inFlight"], "", "nothing in flight: {shown}");
        assert_eq!(
            shown["tenders"],
            json!([
                [first, "approved", "AUD 30.00", "current"],
                [second, "approved", "AUD 20.00", ""],
            ])
        );
        // The other tender opens from the panel, and shows the same order.
        click_css(&c, &format!("#order-tenders tr[data-transaction=\"{second}\"] button")).await;
        wait_js(
            &c,
            "the second tender's timeline",
            "[document.getElementById('timeline-title').textContent, \
              (document.querySelector('#order-tenders tr.current') || {}).dataset?.transaction || '']",
            |v| v == &json!([format!("Timeline of {second}"), second.clone()]),
        )
        .await;
    })
    .await;
    app.stop().await;
}

// ---- signing in to the dashboard -------------------------------------------------------------

const PASSWORD: &str = "correct horse battery staple";

/// Waits for the sign-in panel: shown once the page found no session to resume.
async fn sign_in_panel(c: &Client) {
    wait_js(
        c,
        "the sign-in panel",
        "!document.getElementById('login').hidden && document.getElementById('board').hidden",
        |v| v == &json!(true),
    )
    .await;
}

async fn type_into(c: &Client, id: &str, text: &str) {
    let e = c
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"));
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

/// Signs in with the secondary form: an admin token or API key.
async fn sign_in_with_token(c: &Client, token: &str) {
    sign_in_panel(c).await;
    click(c, "token-login-summary").await;
    type_into(c, "token", token).await;
    click(c, "token-submit").await;
}

async fn sign_in_with_password(c: &Client, email: &str, password: &str) {
    sign_in_panel(c).await;
    type_into(c, "email", email).await;
    type_into(c, "password", password).await;
    click(c, "sign-in-submit").await;
}

/// Waits until the board is open for someone of `role`.
async fn signed_in_as(c: &Client, role: &str) {
    wait_js(
        c,
        &format!("signed in as {role}"),
        "document.getElementById('board').hidden ? '' : document.body.dataset.role",
        |v| v == &json!(role),
    )
    .await;
}

/// Whether an element with this id is in the page at all.
async fn present(c: &Client, id: &str) -> bool {
    c.execute(
        "return document.getElementById(arguments[0]) !== null",
        vec![json!(id)],
    )
    .await
    .unwrap()
        == json!(true)
}

/// The device ids of the devices table, in order, once it lists `n`.
async fn device_rows(c: &Client, n: usize) -> Vec<String> {
    let v = wait_js(
        c,
        &format!("{n} device rows"),
        "Array.from(document.querySelectorAll('#devices tbody tr')).map(r => r.dataset.device)",
        |v| v.as_array().is_some_and(|a| a.len() == n),
    )
    .await;
    serde_json::from_value(v).unwrap()
}

/// A request from the page itself (its cookies, its origin), answering its status;
/// `csrf` adds the session's token as the dashboard does.
async fn page_fetch(c: &Client, method: &str, path: &str, csrf: bool) -> u16 {
    let status = c
        .execute(
            "const [method, path, csrf] = arguments;
             const headers = {};
             const go = () => fetch(path, { method, headers }).then(r => r.status);
             if (!csrf) return go();
             return fetch('/dashboard/session').then(r => r.json())
               .then(s => { headers['X-CSRF-Token'] = s.csrfToken; return go(); });",
            vec![json!(method), json!(path), json!(csrf)],
        )
        .await
        .unwrap();
    status.as_u64().unwrap() as u16
}

/// Two merchants, "Alpha Foods" and "Beta Books", with a device each (`alpha-1`, `beta-1`).
async fn two_merchants(
    app: &crate::harness::TestApp,
) -> (
    cloud::domain::accounts::MerchantRecord,
    cloud::domain::accounts::MerchantRecord,
) {
    let cli = cloud::engine::accounts::Actor::cli();
    let alpha = app
        .engine
        .create_merchant("Alpha Foods", &cli)
        .await
        .unwrap();
    let beta = app
        .engine
        .create_merchant("Beta Books", &cli)
        .await
        .unwrap();
    for (id, m) in [("alpha-1", &alpha), ("beta-1", &beta)] {
        app.engine
            .enroll_device(
                &protocol::DeviceId::parse(id).unwrap(),
                &cloud::engine::devices::NewDevice {
                    merchant: m.id.to_string(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    (alpha, beta)
}

async fn add_person(
    app: &crate::harness::TestApp,
    email: &str,
    role: cloud::domain::people::Role,
    merchant: Option<&cloud::domain::accounts::MerchantRecord>,
) {
    app.engine
        .create_user(
            cloud::engine::people::NewUser {
                email: email.into(),
                password: PASSWORD.into(),
                role,
                merchant: merchant.map(|m| m.id.clone()),
            },
            &cloud::engine::accounts::Actor::cli(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn the_setup_link_creates_the_owner_and_signs_them_in_once() {
    let app = spawn_app_with(Opts {
        first_run_setup: true,
        ..Opts::default()
    })
    .await;
    let link = app.setup_url.clone().expect("a setup link on a new cloud");
    let page = link.clone();
    with_browser(|c| async move {
        c.goto(&page).await.unwrap();
        type_into(&c, "setup-email", "owner@example.com").await;
        type_into(&c, "setup-password", PASSWORD).await;
        click(&c, "setup-submit").await;
        signed_in_as(&c, "owner").await;
        assert!(c
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/dashboard"));
        assert_eq!(text_of(&c, "whoami-email").await, "owner@example.com");
        for tab in ["tab-api-keys", "tab-audit", "tab-users"] {
            assert!(present(&c, tab).await, "#{tab}");
        }
        // The owner is a person now: the people view lists them.
        click(&c, "tab-users").await;
        wait_js(
            &c,
            "the owner listed",
            "Array.from(document.querySelectorAll('#users tbody tr'))\
             .map(r => r.dataset.email + ' ' + r.dataset.role).join()",
            |v| v == &json!("owner@example.com owner"),
        )
        .await;
    })
    .await;
    // Used: the link opens nothing any more.
    let r = app.http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn people_sign_in_and_out_with_email_and_password() {
    let app = spawn_app_with(Opts::default()).await;
    let (alpha, _) = two_merchants(&app).await;
    add_person(
        &app,
        "olivia@example.com",
        cloud::domain::people::Role::Owner,
        None,
    )
    .await;
    let dashboard = app.url("/dashboard");
    with_browser(|c| async move {
        c.goto(&dashboard).await.unwrap();
        sign_in_with_password(&c, "olivia@example.com", "not the password").await;
        wait_js(
            &c,
            "the refusal",
            "document.getElementById('login-error').textContent",
            |v| v == &json!("Wrong email or password."),
        )
        .await;
        screenshot(&c, "dashboard-sign-in").await;
        let board = c.find(Locator::Id("board")).await.unwrap();
        assert!(!board.is_displayed().await.unwrap());

        sign_in_with_password(&c, "olivia@example.com", PASSWORD).await;
        signed_in_as(&c, "owner").await;
        assert_eq!(text_of(&c, "whoami-email").await, "olivia@example.com");
        assert_eq!(text_of(&c, "whoami-role").await, "owner");
        let mut both = device_rows(&c, 2).await;
        both.sort();
        assert_eq!(both, ["alpha-1", "beta-1"]);
        // The owner sees every merchant, and may narrow the view to one.
        let options = c
            .execute(
                "return Array.from(document.querySelectorAll('#merchant-filter option'))\
                 .map(o => o.textContent)",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            options,
            json!(["All merchants", "Alpha Foods", "Beta Books"])
        );
        c.find(Locator::Id("merchant-filter"))
            .await
            .unwrap()
            .select_by_value(alpha.id.as_str())
            .await
            .unwrap();
        assert_eq!(device_rows(&c, 1).await, ["alpha-1"]);
        screenshot(&c, "dashboard-signed-in").await;

        // A reload resumes the session from its cookie.
        c.refresh().await.unwrap();
        signed_in_as(&c, "owner").await;
        assert_eq!(page_fetch(&c, "GET", "/admin/devices", false).await, 200);

        click(&c, "sign-out").await;
        sign_in_panel(&c).await;
        // The cookie no longer opens anything, and a reload asks again.
        assert_eq!(page_fetch(&c, "GET", "/admin/devices", false).await, 401);
        c.refresh().await.unwrap();
        sign_in_panel(&c).await;
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_change_without_the_csrf_token_is_refused() {
    let app = spawn_app_with(Opts::default()).await;
    let (alpha, _) = two_merchants(&app).await;
    add_person(
        &app,
        "mia@example.com",
        cloud::domain::people::Role::MerchantAdmin,
        Some(&alpha),
    )
    .await;
    let dashboard = app.url("/dashboard");
    let engine = app.engine.clone();
    with_browser(|c| async move {
        c.goto(&dashboard).await.unwrap();
        sign_in_with_password(&c, "mia@example.com", PASSWORD).await;
        signed_in_as(&c, "merchant-admin").await;
        let rotate = "/admin/devices/alpha-1/rotate-secret";
        assert_eq!(page_fetch(&c, "POST", rotate, false).await, 403);
        assert_eq!(page_fetch(&c, "POST", rotate, true).await, 200);
        // Another merchant's device does not exist for her, token or not.
        assert_eq!(
            page_fetch(&c, "POST", "/admin/devices/beta-1/rotate-secret", true).await,
            404
        );

        // The page's own button sends the token: a first click arms it, a second rotates.
        device_rows(&c, 1).await;
        for _ in 0..2 {
            c.execute("document.getElementById('rotate-alpha-1').click()", vec![])
                .await
                .unwrap();
        }
        let secret = wait_js(
            &c,
            "the new secret, shown once",
            "document.getElementById('device-secret').hidden ? '' \
             : document.getElementById('device-secret-value').textContent",
            |v| v.as_str().is_some_and(|s| s.len() == 64),
        )
        .await;
        assert_eq!(text_of(&c, "device-error").await, "");
        click(&c, "device-secret-dismiss").await;
        assert_eq!(text_of(&c, "device-secret-value").await, "");
        // The secret shown is the device's secret now.
        let id = protocol::DeviceId::parse("alpha-1").unwrap();
        assert!(engine
            .authenticate(&id, secret.as_str().unwrap())
            .await
            .is_ok());
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_merchant_admin_sees_its_merchant_only_and_a_viewer_changes_nothing() {
    let app = spawn_app_with(Opts::default()).await;
    let (alpha, _) = two_merchants(&app).await;
    add_person(
        &app,
        "mia@example.com",
        cloud::domain::people::Role::MerchantAdmin,
        Some(&alpha),
    )
    .await;
    add_person(
        &app,
        "victor@example.com",
        cloud::domain::people::Role::Viewer,
        None,
    )
    .await;
    let dashboard = app.url("/dashboard");
    with_browser(|c| async move {
        c.goto(&dashboard).await.unwrap();
        sign_in_with_password(&c, "mia@example.com", PASSWORD).await;
        signed_in_as(&c, "merchant-admin").await;
        assert_eq!(device_rows(&c, 1).await, ["alpha-1"]);
        assert!(!present(&c, "merchant-filter").await);
        assert!(present(&c, "rotate-alpha-1").await && present(&c, "revoke-alpha-1").await);
        assert!(present(&c, "tab-api-keys").await && present(&c, "tab-audit").await);
        click(&c, "sign-out").await;

        sign_in_with_password(&c, "victor@example.com", PASSWORD).await;
        signed_in_as(&c, "viewer").await;
        let mut both = device_rows(&c, 2).await;
        both.sort();
        assert_eq!(both, ["alpha-1", "beta-1"]);
        let buttons = c
            .execute(
                "return document.querySelectorAll('#devices button, #devices th').length",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(buttons, json!(6), "only the six columns, no actions");
        for id in [
            "rotate-alpha-1",
            "revoke-alpha-1",
            "merchant-filter",
            "tab-api-keys",
            "tab-audit",
            "tab-users",
        ] {
            assert!(!present(&c, id).await, "#{id} is not for a viewer");
        }
        screenshot(&c, "dashboard-viewer").await;
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn an_owner_creates_a_key_sees_it_once_revokes_it_and_pages_the_audit_log() {
    let app = spawn_app_with(Opts::default()).await;
    let (alpha, _) = two_merchants(&app).await;
    add_person(
        &app,
        "olivia@example.com",
        cloud::domain::people::Role::Owner,
        None,
    )
    .await;
    // More entries than a page of the audit log.
    let cli = cloud::engine::accounts::Actor::cli();
    for i in 0..50 {
        app.engine
            .create_merchant(&format!("Shop {i:02}"), &cli)
            .await
            .unwrap();
    }
    let dashboard = app.url("/dashboard");
    let base = app.base.clone();
    let http = app.http.clone();
    with_browser(|c| async move {
        c.goto(&dashboard).await.unwrap();
        sign_in_with_password(&c, "olivia@example.com", PASSWORD).await;
        signed_in_as(&c, "owner").await;

        click(&c, "tab-api-keys").await;
        let count = "document.getElementById('api-keys-count').textContent";
        wait_js(&c, "the empty key list", count, |v| v == &json!("(0)")).await;
        c.find(Locator::Id("key-merchant"))
            .await
            .unwrap()
            .select_by_value(alpha.id.as_str())
            .await
            .unwrap();
        click(&c, "key-scope-pos-transact").await;
        click(&c, "key-scope-pos-read").await;
        type_into(&c, "key-label", "Front tills").await;
        click(&c, "key-create").await;
        let key = wait_js(
            &c,
            "the new key",
            "document.getElementById('new-key').hidden ? '' \
             : document.getElementById('new-key-value').textContent",
            |v| v.as_str().is_some_and(|s| s.starts_with("eftk_")),
        )
        .await;
        let key = key.as_str().unwrap().to_string();
        screenshot(&c, "dashboard-api-keys").await;
        click(&c, "new-key-copy").await;
        let copy = "document.getElementById('new-key-copy').textContent";
        wait_js(&c, "copied", copy, |v| v != &json!("Copy")).await;
        let row = wait_js(
            &c,
            "the key listed",
            "Array.from(document.querySelectorAll('#api-keys tbody tr'))\
             .map(r => [r.dataset.key, r.dataset.status, r.textContent])",
            |v| v.as_array().is_some_and(|a| a.len() == 1),
        )
        .await;
        let key_id = row[0][0].as_str().unwrap().to_string();
        assert_eq!(row[0][1], "active");
        let text = row[0][2].as_str().unwrap();
        assert!(text.contains("merchant Alpha Foods"), "{text}");
        assert!(text.contains("pos:transact pos:read"), "{text}");
        assert!(
            text.contains("Front tills") && !text.contains(&key),
            "{text}"
        );
        // A real key: recognised (403: it lacks the admin scope) until it is revoked (401).
        let pos_status = || {
            let (http, base, key) = (http.clone(), base.clone(), key.clone());
            async move {
                http.get(format!("{base}/admin/devices"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        assert_eq!(pos_status().await, 403, "a POS key is not an admin key");
        // Shown once: dismissed, it is gone from the page.
        click(&c, "new-key-dismiss").await;
        assert_eq!(text_of(&c, "new-key-value").await, "");

        let revoke = format!("document.getElementById('revoke-key-{key_id}').click()");
        for _ in 0..2 {
            c.execute(&revoke, vec![]).await.unwrap();
        }
        wait_js(
            &c,
            "the key revoked",
            &format!(
                "(document.querySelector('#api-keys tr[data-key=\"{key_id}\"]') || {{}})\
                 .dataset?.status"
            ),
            |v| v == &json!("revoked"),
        )
        .await;
        assert!(!present(&c, &format!("revoke-key-{key_id}")).await);
        assert_eq!(pos_status().await, 401, "a revoked key opens nothing");

        // The audit log: newest first, a page at a time, filtered by action.
        click(&c, "tab-audit").await;
        let actions =
            "Array.from(document.querySelectorAll('#audit tbody tr')).map(r => r.dataset.action)";
        let first = wait_js(&c, "a page of the audit log", actions, |v| {
            v.as_array().is_some_and(|a| a.len() == 50)
        })
        .await;
        assert_eq!(first[0], "api_key.revoked");
        assert_eq!(first[1], "api_key.created");
        let seqs = "Array.from(document.querySelectorAll('#audit tbody tr'))\
                    .map(r => Number(r.dataset.seq))";
        let page1 = c.execute(&format!("return {seqs}"), vec![]).await.unwrap();
        let page1: Vec<i64> = serde_json::from_value(page1).unwrap();
        assert!(page1.windows(2).all(|w| w[0] > w[1]), "{page1:?}");
        click(&c, "audit-older").await;
        let page2 = wait_js(&c, "the older page", seqs, |v| {
            let newest = v.as_array().and_then(|a| a.first()).and_then(Value::as_i64);
            newest.is_some_and(|n| Some(n) < page1.last().copied())
        })
        .await;
        let page2: Vec<i64> = serde_json::from_value(page2).unwrap();
        assert!(page2.len() < 50, "the rest: {page2:?}");
        let older = c.find(Locator::Id("audit-older")).await.unwrap();
        assert!(!older.is_enabled().await.unwrap(), "no older entries");
        type_into(&c, "audit-action", "api_key.").await;
        click(&c, "audit-search").await;
        wait_js(&c, "the key's entries only", actions, |v| {
            v == &json!(["api_key.revoked", "api_key.created"])
        })
        .await;
        screenshot(&c, "dashboard-audit").await;
    })
    .await;
    app.stop().await;
}

// ---- terminal actions on the virtual terminal -----------------------------------------------

/// Opens the page, creates its device and pairs `name` with it; returns the register and the
/// device's id.
async fn paired_page(
    app: &crate::harness::TestApp,
    c: &Client,
    name: &str,
) -> (protocol::RegisterKey, String) {
    c.goto(&app.url("/virtual-terminal")).await.unwrap();
    click(c, "create-device").await;
    let code = pairing_code(c).await;
    let reg = register(name);
    app.pos()
        .pair(&code, &reg, &PairingDetails::new("Counter"))
        .await
        .unwrap();
    screen_is(c, "idle").await;
    (reg, text_of(c, "device-id").await)
}

/// A register's form with `extra` fields.
fn action_form<'a>(
    reg: &'a protocol::RegisterKey,
    extra: &[(&'static str, &'a str)],
) -> Vec<(&'static str, &'a str)> {
    let mut f = register_form(reg);
    f.extend_from_slice(extra);
    f
}

/// The POS asks for a terminal action at `path`; returns its polling URL and id.
async fn post_action(
    app: &crate::harness::TestApp,
    path: &str,
    form: &[(&str, &str)],
) -> (String, String) {
    let (status, env) = app.post_form(path, form).await;
    assert_eq!(status, 200, "{path}: {env}");
    (
        env["data"]["PollingUrl"].as_str().unwrap().to_string(),
        env["transactionId"].as_str().unwrap().to_string(),
    )
}

/// The text of every element `css` selects, in order.
async fn texts(c: &Client, css: &str) -> Vec<String> {
    let selector = serde_json::to_string(css).unwrap_or_default();
    let v = c
        .execute(
            &format!(
                "return Array.from(document.querySelectorAll({selector}), e => e.textContent)"
            ),
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

async fn wait_text(c: &Client, id: &str, expected: &str) {
    wait_js(
        c,
        &format!("#{id} to read {expected:?}"),
        &format!("document.getElementById('{id}').textContent"),
        |v| v == &json!(expected),
    )
    .await;
}

async fn cart_shown(c: &Client, shown: bool) {
    wait_js(
        c,
        "the cart panel",
        "!document.getElementById('cart-panel').hidden",
        |v| v == &json!(shown),
    )
    .await;
}

#[tokio::test]
async fn virtual_terminal_shows_the_cart_beside_a_payment() {
    let app = spawn_app_with(Opts::default()).await;
    with_browser(|c| async move {
        let (reg, device) = paired_page(&app, &c, "cart").await;
        // The page declared what it can do and its hardware.
        let record = app
            .engine
            .device(&protocol::DeviceId::parse(&device).unwrap())
            .await
            .unwrap()
            .unwrap();
        // Every capability but `update`: a page does not install software.
        for cap in protocol::device::capability::ALL {
            if cap != protocol::device::capability::UPDATE {
                assert!(record.can(cap), "{cap} not declared: {record:?}");
            }
        }
        assert!(!record.can(protocol::device::capability::UPDATE));
        let hardware = record.hardware.expect("hardware declared");
        assert_eq!(hardware.printer_columns, Some(32));
        let screen = hardware.screen.expect("a screen");
        assert!(screen.width > 100 && screen.height > 100, "{screen:?}");

        // The POS shows the basket as the clerk scans.
        let lines = r#"[{"description":"Flat white","quantity":"2","unitPrice":450,"amount":900},
                       {"description":"Muffin","amount":350}]"#;
        let (status, shown) = app
            .post_form(
                "/pos/register/display",
                &action_form(
                    &reg,
                    &[
                        ("Lines", lines),
                        ("AmountTotal", "1250"),
                        ("AmountTax", "114"),
                    ],
                ),
            )
            .await;
        assert_eq!(status, 200, "{shown}");
        cart_shown(&c, true).await;
        wait_text(&c, "cart-total", "AUD 12.50").await;
        assert_eq!(
            texts(&c, "#cart-lines .cart-description").await,
            ["Flat white2 × 4.50", "Muffin"]
        );
        assert_eq!(texts(&c, "#cart-lines .cart-quantity").await, ["2", "1"]);
        assert_eq!(
            texts(&c, "#cart-lines .cart-amount").await,
            ["9.00", "3.50"]
        );
        assert_eq!(text_of(&c, "cart-tax").await, "AUD 1.14");
        assert_eq!(text_of(&c, "idle-cart").await, "Total AUD 12.50");
        screenshot(&c, "virtual-terminal-cart").await;

        // Three decimals in dinars, none in yen.
        for (currency, total, shown) in [("KWD", "1234", "KWD 1.234"), ("JPY", "1234", "JPY 1234")]
        {
            let lines = format!(r#"[{{"description":"Kunafa","amount":{total}}}]"#);
            let (status, body) = app
                .post_form(
                    "/pos/register/display",
                    &action_form(
                        &reg,
                        &[
                            ("Lines", &lines),
                            ("AmountTotal", total),
                            ("Currency", currency),
                        ],
                    ),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            wait_text(&c, "cart-total", shown).await;
            assert!(
                text_of(&c, "cart-tax-row").await.is_empty(),
                "no tax given"
            );
        }

        // A payment never gives way to the cart: the payment screen stays and the new cart is
        // beside it.
        let (poll, _) = post_purchase(&app, &reg, "1500").await;
        started(&c).await;
        let lines = r#"[{"description":"Croissant","amount":500}]"#;
        let (status, _) = app
            .post_form(
                "/pos/register/display",
                &action_form(&reg, &[("Lines", lines), ("AmountTotal", "500")]),
            )
            .await;
        assert_eq!(status, 200);
        wait_text(&c, "cart-total", "AUD 5.00").await;
        screen_is(&c, "transaction").await;
        assert_eq!(text_of(&c, "tx-amount").await, "AUD 15.00");
        approve(&app, &c, &poll).await;

        // A payment's own basket (SaleData) is shown with it; the display's cart comes back
        // after.
        let sale = r#"{"version":"1.0.0","saleData":{"totalAmount":"1150","totalTax":"105",
            "lineItems":[{"productName":"Flat white","quantity":"2","unitPrice":"450","totalPrice":"900"},
                         {"productName":"Muffin","quantity":"1","unitPrice":"250","totalPrice":"250"}]}}"#;
        let mut form = purchase(&reg, "1150");
        form.push(("SaleData", sale));
        let (status, env) = app.post_form("/POS/Transaction", &form).await;
        assert_eq!(status, 200, "{env}");
        started(&c).await;
        wait_text(&c, "cart-title", "Basket of this payment").await;
        assert_eq!(text_of(&c, "cart-total").await, "AUD 11.50");
        assert_eq!(
            texts(&c, "#cart-lines .cart-amount").await,
            ["9.00", "2.50"]
        );
        screenshot(&c, "virtual-terminal-basket").await;
        let poll = env["data"]["PollingUrl"].as_str().unwrap().to_string();
        let paid = approve(&app, &c, &poll).await;
        // Its receipt comes as data too: both copies, the same labelled values.
        let receipts = &paid["receipts"];
        assert_eq!(receipts["merchant"]["fields"], receipts["customer"]["fields"], "{paid}");
        let total = json!({"label": "TOTAL", "value": "AUD 11.50"});
        assert!(
            receipts["customer"]["fields"].as_array().unwrap().contains(&total),
            "{paid}"
        );
        assert_eq!(
            receipts["customer"]["footer"],
            json!(["APPROVED", "CUSTOMER COPY"])
        );
        wait_text(&c, "cart-title", "Customer display").await;
        assert_eq!(text_of(&c, "cart-total").await, "AUD 5.00");

        // Cleared: nothing on the customer's display.
        let (status, _) = app
            .post_form(
                "/pos/register/display",
                &action_form(&reg, &[("Clear", "true")]),
            )
            .await;
        assert_eq!(status, 200);
        cart_shown(&c, false).await;
    })
    .await;
}

/// Draws a stroke on the signature pad with a pointer of `kind` through WebDriver actions:
/// real pointerdown, pointermove and pointerup events in the page.
async fn draw_stroke(c: &Client, pointer: &str, points: &[(f64, f64)]) {
    use fantoccini::actions::{
        InputSource, MouseActions, PenActions, PointerAction, MOUSE_BUTTON_LEFT,
    };
    let pad = c.find(Locator::Id("signature-pad")).await.unwrap();
    let (x0, y0) = points[0];
    let mut steps = vec![
        PointerAction::MoveToElement {
            element: pad,
            duration: None,
            x: x0,
            y: y0,
        },
        PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        },
    ];
    for w in points.windows(2) {
        steps.push(PointerAction::MoveBy {
            duration: Some(Duration::from_millis(30)),
            x: w[1].0 - w[0].0,
            y: w[1].1 - w[0].1,
        });
    }
    steps.push(PointerAction::Up {
        button: MOUSE_BUTTON_LEFT,
    });
    if pointer == "pen" {
        let mut pen = PenActions::new("pen".into());
        for s in steps {
            pen = pen.then(s);
        }
        c.perform_actions(pen).await.unwrap();
    } else {
        let mut mouse = MouseActions::new("mouse".into());
        for s in steps {
            mouse = mouse.then(s);
        }
        c.perform_actions(mouse).await.unwrap();
    }
    c.release_actions().await.unwrap();
}

#[tokio::test]
async fn virtual_terminal_takes_a_signature_a_choice_and_typed_answers() {
    let app = spawn_app_with(Opts::default()).await;
    with_browser(|c| async move {
        let (reg, _) = paired_page(&app, &c, "input").await;

        // A signature, drawn with a pen and then a mouse, comes back as the SVG path shown.
        let (poll, _) = post_action(
            &app,
            "/pos/register/input",
            &action_form(&reg, &[("InputKind", "signature"), ("Prompt", "Sign here")]),
        )
        .await;
        screen_is(&c, "input").await;
        assert_eq!(text_of(&c, "input-prompt").await, "Sign here");
        let ok = c.find(Locator::Id("input-ok")).await.unwrap();
        assert!(!ok.is_enabled().await.unwrap(), "nothing drawn yet");
        draw_stroke(
            &c,
            "pen",
            &[(-80.0, 10.0), (-50.0, -15.0), (-20.0, 12.0), (10.0, -10.0)],
        )
        .await;
        draw_stroke(&c, "mouse", &[(30.0, 5.0), (60.0, -5.0), (90.0, 8.0)]).await;
        enabled(&c, "input-ok").await;
        let drawn = c
            .execute(
                "return document.querySelector('#signature-pad .signature-ink').getAttribute('d')",
                vec![],
            )
            .await
            .unwrap();
        let view_box = c
            .execute(
                "return document.getElementById('signature-pad').getAttribute('viewBox')",
                vec![],
            )
            .await
            .unwrap();
        screenshot(&c, "virtual-terminal-signature").await;
        click(&c, "input-ok").await;
        let done = poll_until_completed(&app, &poll).await;
        let data = &done["data"];
        assert_eq!(data["Result"], "OK", "{done}");
        let path = data["InputValue"].as_str().unwrap();
        assert_eq!(json!(path), drawn);
        assert_eq!(data["SignatureViewBox"], view_box);
        // Two strokes: "M x y L x y ...", numbers only, each starting with a move.
        let strokes: Vec<&str> = path.split('M').skip(1).collect();
        assert_eq!(strokes.len(), 2, "{path}");
        for s in &strokes {
            let mut parts = s.split(" L");
            let start = parts.next().unwrap();
            let points: Vec<&str> = parts.collect();
            assert!(points.len() >= 2, "a stroke of several points: {path}");
            for p in std::iter::once(start).chain(points.iter().copied()) {
                let xy: Vec<u32> = p
                    .split_whitespace()
                    .map(|n| n.parse().unwrap_or_else(|_| panic!("{p} in {path}")))
                    .collect();
                assert_eq!(xy.len(), 2, "{p} in {path}");
            }
        }
        let (w, h) = view_box
            .as_str()
            .unwrap()
            .strip_prefix("0 0 ")
            .and_then(|s| s.split_once(' '))
            .unwrap();
        assert!(w.parse::<u32>().unwrap() > 100 && h.parse::<u32>().unwrap() > 40);
        screen_is(&c, "result").await;
        click(&c, "done").await;

        // A selection: the option's text and its position.
        let options = r#"["Cloth","Paper","No bag"]"#;
        let (poll, _) = post_action(
            &app,
            "/pos/register/input",
            &action_form(
                &reg,
                &[
                    ("InputKind", "selection"),
                    ("Prompt", "Which bag?"),
                    ("Options", options),
                ],
            ),
        )
        .await;
        screen_is(&c, "input").await;
        assert_eq!(
            texts(&c, "#input-body .choice").await,
            ["Cloth", "Paper", "No bag"]
        );
        click_css(&c, "#input-body .choice[data-index='1']").await;
        let done = poll_until_completed(&app, &poll).await;
        assert_eq!(done["data"]["Result"], "OK", "{done}");
        assert_eq!(done["data"]["InputValue"], "Paper");
        assert_eq!(done["data"]["InputIndex"], "1");
        click(&c, "done").await;

        // An email, checked as it is typed with the cloud's own rules.
        let (poll, _) = post_action(
            &app,
            "/pos/register/input",
            &action_form(
                &reg,
                &[
                    ("InputKind", "email"),
                    ("Prompt", "Email for your receipt?"),
                ],
            ),
        )
        .await;
        screen_is(&c, "input").await;
        let field = c.find(Locator::Id("input-field")).await.unwrap();
        field.send_keys("jo@example").await.unwrap();
        wait_text(&c, "input-error", "Not an email address").await;
        let ok = c.find(Locator::Id("input-ok")).await.unwrap();
        assert!(!ok.is_enabled().await.unwrap());
        field.send_keys(".com").await.unwrap();
        wait_text(&c, "input-error", "").await;
        enabled(&c, "input-ok").await;
        field.send_keys("\u{E007}").await.unwrap(); // Enter answers
        let done = poll_until_completed(&app, &poll).await;
        assert_eq!(done["data"]["InputValue"], "jo@example.com", "{done}");
        click(&c, "done").await;

        // A number within its bounds and decimals.
        let (poll, _) = post_action(
            &app,
            "/pos/register/input",
            &action_form(
                &reg,
                &[
                    ("InputKind", "number"),
                    ("Prompt", "Weight (kg)?"),
                    ("Min", "1"),
                    ("Max", "5"),
                    ("Decimals", "2"),
                ],
            ),
        )
        .await;
        screen_is(&c, "input").await;
        assert_eq!(
            text_of(&c, "input-hint").await,
            "From 1 to 5, up to 2 decimals"
        );
        let field = c.find(Locator::Id("input-field")).await.unwrap();
        for (typed, error) in [
            ("5.5", "The number is above 5"),
            ("0.999", "Not a number with at most 2 decimals"),
        ] {
            field.clear().await.unwrap();
            field.send_keys(typed).await.unwrap();
            wait_text(&c, "input-error", error).await;
        }
        field.clear().await.unwrap();
        field.send_keys("2.75").await.unwrap();
        enabled(&c, "input-ok").await;
        click(&c, "input-ok").await;
        let done = poll_until_completed(&app, &poll).await;
        assert_eq!(done["data"]["InputValue"], "2.75", "{done}");
        click(&c, "done").await;

        // Yes or no.
        let (poll, _) = post_action(
            &app,
            "/pos/register/input",
            &action_form(
                &reg,
                &[("InputKind", "confirmation"), ("Prompt", "Join our club?")],
            ),
        )
        .await;
        screen_is(&c, "input").await;
        assert_eq!(texts(&c, "#input-body .choice").await, ["Yes", "No"]);
        click_css(&c, "#input-body .choice[data-index='0']").await;
        let done = poll_until_completed(&app, &poll).await;
        assert_eq!(done["data"]["InputValue"], "yes", "{done}");
        click(&c, "done").await;

        // The customer's Cancel key.
        let (poll, _) = post_action(
            &app,
            "/pos/register/input",
            &action_form(&reg, &[("InputKind", "phone"), ("Prompt", "Phone?")]),
        )
        .await;
        screen_is(&c, "input").await;
        click(&c, "input-cancel").await;
        let done = poll_until_completed(&app, &poll).await;
        assert_eq!(done["data"]["Result"], "CANCELLED", "{done}");
        assert_eq!(done["data"]["CancelReason"], "customer");
        click(&c, "done").await;

        // The POS cancels while the customer types.
        let (poll, id) = post_action(
            &app,
            "/pos/register/input",
            &action_form(&reg, &[("InputKind", "text"), ("Prompt", "Any notes?")]),
        )
        .await;
        screen_is(&c, "input").await;
        let (status, body) = app
            .post_form(
                &format!("/pos/transaction/{id}/cancel"),
                &register_form(&reg),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let done = poll_until_completed(&app, &poll).await;
        assert_eq!(done["data"]["Result"], "CANCELLED", "{done}");
        assert_eq!(done["data"]["CancelReason"], "pos");
        screen_is(&c, "result").await;
        click(&c, "done").await;

        // Nobody answers: the countdown ends it.
        let (poll, _) = post_action(
            &app,
            "/pos/register/input",
            &action_form(
                &reg,
                &[
                    ("InputKind", "confirmation"),
                    ("Prompt", "Still there?"),
                    ("TimeoutSeconds", "5"),
                ],
            ),
        )
        .await;
        screen_is(&c, "input").await;
        wait_js(
            &c,
            "the countdown",
            "document.getElementById('input-countdown').textContent",
            |v| v.as_str().is_some_and(|s| s.ends_with(" s left")),
        )
        .await;
        let done = eventually("the input to time out", || async {
            let (_, body) = app.get_json(&poll).await;
            (body["transactionStatus"] == "COMPLETED").then_some(body)
        })
        .await;
        assert_eq!(done["data"]["Result"], "CANCELLED", "{done}");
        assert_eq!(done["data"]["CancelReason"], "timeout");
    })
    .await;
}

/// The QR code of "https://example.com/l/1" at level M (version 2, mask 2), as an independent
/// encoder (Nayuki's qrcodegen) draws it: the page's drawing must be exactly this.
const QR_EXAMPLE: [&str; 25] = [
    "#######...#..#..#.#######",
    "#.....#..##..####.#.....#",
    "#.###.#.#..##.#...#.###.#",
    "#.###.#.#.#..###..#.###.#",
    "#.###.#.#.##.#..#.#.###.#",
    "#.....#.#.###.##..#.....#",
    "#######.#.#.#.#.#.#######",
    "........#...#.#.#........",
    "#.#####...#..#....#####..",
    "#.##.#....#..#...#.#...#.",
    "..#.#.##..##.####..#.#.##",
    "#..##...####..###.##....#",
    "####.##.########.##.#.###",
    "#..#...#.#...#..#..#.#.#.",
    "#.###.#...###.##..####.##",
    "#.##.#..#..#...######...#",
    "#..#.####..#.#..#####.#..",
    "........###.##.##...##...",
    "#######...#..##.#.#.#.###",
    "#.....#.##..#.#.#...##.#.",
    "#.###.#.##..##.######.###",
    "#.###.#.#.#...##.##.#####",
    "#.###.#.##.##..#.....##.#",
    "#.....#....#..#.##.###..#",
    "#######.#.###....########",
];

/// The modules an SVG QR code of the page draws ("M{x} {y}h1v1h-1z" per dark module, inside a
/// quiet zone of 4), as rows of '#' and '.'.
async fn drawn_qr(c: &Client, css: &str) -> Vec<String> {
    let selector = serde_json::to_string(css).unwrap_or_default();
    let v = c
        .execute(
            &format!(
                "const svg = document.querySelector({selector});
                 return [svg.getAttribute('viewBox'), svg.querySelector('path').getAttribute('d')];"
            ),
            vec![],
        )
        .await
        .unwrap();
    let view_box = v[0].as_str().unwrap();
    let size: usize = view_box.rsplit(' ').next().unwrap().parse().unwrap();
    let n = size - 8;
    let mut rows = vec![vec!['.'; n]; n];
    for module in v[1].as_str().unwrap().split('M').skip(1) {
        let (xy, rest) = module.split_once('h').unwrap();
        assert_eq!(rest, "1v1h-1z");
        let (x, y) = xy.split_once(' ').unwrap();
        let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
        rows[y - 4][x - 4] = '#';
    }
    rows.into_iter().map(|r| r.into_iter().collect()).collect()
}

/// Decodes the element's screenshot with zbarimg when it is installed (the check that a phone
/// could scan it); says so when it is not.
async fn scanned(c: &Client, css: &str) -> Option<String> {
    let Some(zbar) = find_binary("EFTCLOUD_ZBARIMG", &["/usr/bin/zbarimg"]) else {
        eprintln!("zbarimg not installed (apt-get install zbar-tools): the scan check is skipped");
        return None;
    };
    let png = c
        .find(Locator::Css(css))
        .await
        .unwrap()
        .screenshot()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("qr.png");
    std::fs::write(&file, png).unwrap();
    let out = Command::new(zbar)
        .args(["--quiet", "--raw"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    Some(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

#[tokio::test]
async fn virtual_terminal_prints_slips_and_shows_qr_codes() {
    let app = spawn_app_with(Opts::default()).await;
    with_browser(|c| async move {
        let (reg, _) = paired_page(&app, &c, "printer").await;

        // A voucher: large bold centred text, a QR code, two barcodes, a feed and the cut.
        let slip = r#"[
            {"kind":"text","text":"VOUCHER","bold":true,"align":"centre","large":true},
            {"kind":"text","text":"Valid until 31/12","align":"right"},
            {"kind":"qr","data":"https://example.com/l/1"},
            {"kind":"barcode","symbology":"ean13","data":"400638133393"},
            {"kind":"barcode","symbology":"code128","data":"ABC-123"},
            {"kind":"feed","lines":2},
            {"kind":"cut"}]"#;
        let (poll, id) = post_action(
            &app,
            "/pos/register/print",
            &action_form(&reg, &[("Lines", slip)]),
        )
        .await;
        let done = poll_until_completed(&app, &poll).await;
        let data = &done["data"];
        assert_eq!(data["Result"], "OK", "{done}");
        assert_eq!(data["ResultText"], "Printed");
        assert_eq!(data["PrinterStatus"], "OK");
        assert!(
            data.get("TransactionResult").is_none_or(Value::is_null),
            "{done}"
        );
        let slip_css = format!(".slip[data-transaction-id='{id}']");
        assert_eq!(
            texts(
                &c,
                &format!("{slip_css} .slip-text.slip-bold.slip-large.slip-centre")
            )
            .await,
            ["VOUCHER"]
        );
        assert_eq!(
            texts(&c, &format!("{slip_css} .slip-text.slip-right")).await,
            ["Valid until 31/12"]
        );
        assert_eq!(
            drawn_qr(&c, &format!("{slip_css} .slip-qr svg")).await,
            QR_EXAMPLE
        );
        assert_eq!(
            texts(&c, &format!("{slip_css} .slip-barcode-text")).await,
            ["4006381333931", "ABC-123"]
        );
        assert_eq!(texts(&c, &format!("{slip_css} .slip-cut")).await.len(), 1);
        if let Some(read) = scanned(&c, &format!("{slip_css} .slip-barcode svg")).await {
            assert_eq!(read, "4006381333931");
        }
        screenshot(&c, "virtual-terminal-slip").await;
        click(&c, "done").await;

        // Out of paper: the print fails and says why; nothing more comes out.
        click(&c, "paper-out").await;
        let (poll, _) = post_action(
            &app,
            "/pos/register/print",
            &action_form(&reg, &[("Lines", r#"[{"kind":"text","text":"Hello"}]"#)]),
        )
        .await;
        let done = poll_until_completed(&app, &poll).await;
        let data = &done["data"];
        assert_eq!(data["Result"], "FAILED", "{done}");
        assert_eq!(data["ResultText"], "Printer out of paper");
        assert_eq!(data["PrinterStatus"], "NO_PAPER");
        assert_eq!(texts(&c, "#slips .slip").await.len(), 1);
        click(&c, "done").await;
        click(&c, "paper-out").await;

        // A QR code on the screen, exactly the standard's symbol, until the customer's Done.
        let (poll, _) = post_action(
            &app,
            "/pos/register/qr",
            &action_form(
                &reg,
                &[
                    ("QrData", "https://example.com/l/1"),
                    ("Caption", "Join our club"),
                ],
            ),
        )
        .await;
        screen_is(&c, "qr").await;
        assert_eq!(text_of(&c, "qr-caption").await, "Join our club");
        assert_eq!(drawn_qr(&c, "#qr-code svg").await, QR_EXAMPLE);
        if let Some(read) = scanned(&c, "#qr-code svg").await {
            assert_eq!(read, "https://example.com/l/1");
        }
        screenshot(&c, "virtual-terminal-qr").await;
        click(&c, "qr-done").await;
        let done = poll_until_completed(&app, &poll).await;
        assert_eq!(done["data"]["Result"], "OK", "{done}");
        assert_eq!(done["data"]["QrOutcome"], "dismissed");
        click(&c, "done").await;

        // The customer's Cancel.
        let (poll, _) = post_action(
            &app,
            "/pos/register/qr",
            &action_form(&reg, &[("QrData", "https://example.com/pay/42")]),
        )
        .await;
        screen_is(&c, "qr").await;
        click(&c, "qr-cancel").await;
        let done = poll_until_completed(&app, &poll).await;
        assert_eq!(done["data"]["Result"], "CANCELLED", "{done}");
        assert_eq!(done["data"]["CancelReason"], "customer");
        click(&c, "done").await;

        // Left on screen: it goes at its timeout, an OK that says so.
        let (poll, _) = post_action(
            &app,
            "/pos/register/qr",
            &action_form(
                &reg,
                &[("QrData", "https://example.com/x"), ("TimeoutSeconds", "5")],
            ),
        )
        .await;
        screen_is(&c, "qr").await;
        let done = eventually("the QR code to time out", || async {
            let (_, body) = app.get_json(&poll).await;
            (body["transactionStatus"] == "COMPLETED").then_some(body)
        })
        .await;
        assert_eq!(done["data"]["Result"], "OK", "{done}");
        assert_eq!(done["data"]["QrOutcome"], "timeout");
    })
    .await;
}

/// FNV-1a (64 bits) of `s`: a fingerprint of a symbol too large to write out here.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[tokio::test]
async fn the_pages_qr_codes_are_the_standards_symbols() {
    let app = spawn_app_with(Opts::default()).await;
    with_browser(|c| async move {
        c.goto(&app.url("/virtual-terminal")).await.unwrap();
        // Symbols with version information (8 and up), 16-bit counts and blocks of two sizes
        // (13), UTF-8 with its ECI, the largest a request may ask for (1000 bytes, 26): the
        // version, mask and modules Nayuki's qrcodegen draws at level M (rows of '#' and '.'
        // joined by newlines, fingerprinted).
        let long_a = "a".repeat(150);
        let long_x = "x".repeat(300);
        let longest = "z".repeat(1000);
        let cases: [(&str, u64, u64, u64); 4] = [
            (&long_a, 8, 1, 0x70a9_6f8d_17a9_dccc),
            (&long_x, 13, 0, 0xc961_6aa9_9569_70c7),
            ("Grüße aus Köln — €5", 3, 3, 0xcf1f_7d9c_420b_f56f),
            (&longest, 26, 1, 0xc422_e62d_ecb7_19ca),
        ];
        for (text, version, mask, fingerprint) in cases {
            let q = c
                .execute(
                    "const q = EftcloudCodes.qr(arguments[0]);
                     return [q.version, q.mask,
                             q.dark.map(r => r.map(d => d ? '#' : '.').join('')).join('\\n')];",
                    vec![json!(text)],
                )
                .await
                .unwrap();
            let what: String = text.chars().take(12).collect();
            assert_eq!(
                (q[0].as_u64(), q[1].as_u64()),
                (Some(version), Some(mask)),
                "{what}"
            );
            assert_eq!(fnv1a(q[2].as_str().unwrap()), fingerprint, "{what}");
        }
    })
    .await;
}

#[tokio::test]
async fn the_page_checks_answers_exactly_as_the_cloud_does() {
    use protocol::action::{InputKind, InputRequest, InputRules};
    let app = spawn_app_with(Opts::default()).await;
    with_browser(|c| async move {
        c.goto(&app.url("/virtual-terminal")).await.unwrap();
        let request = |kind, rules: InputRules, options: &[&str]| InputRequest {
            kind,
            prompt: "?".into(),
            options: options.iter().map(|o| o.to_string()).collect(),
            rules,
            timeout_secs: 60,
        };
        let none = InputRules::default;
        let requests = [
            request(InputKind::Signature, none(), &[]),
            request(InputKind::Email, none(), &[]),
            request(
                InputKind::Email,
                InputRules {
                    min_length: Some(8),
                    max_length: Some(12),
                    ..none()
                },
                &[],
            ),
            request(InputKind::Phone, none(), &[]),
            request(InputKind::Number, none(), &[]),
            request(
                InputKind::Number,
                InputRules {
                    min: Some(-5),
                    max: Some(10),
                    decimals: 2,
                    ..none()
                },
                &[],
            ),
            request(
                InputKind::Number,
                InputRules {
                    max: Some(i64::MAX),
                    decimals: 6,
                    ..none()
                },
                &[],
            ),
            request(InputKind::Text, none(), &[]),
            request(
                InputKind::Text,
                InputRules {
                    min_length: Some(3),
                    max_length: Some(5),
                    ..none()
                },
                &[],
            ),
            request(InputKind::Selection, none(), &["Red", "Green", "Grün"]),
            request(InputKind::Confirmation, none(), &[]),
        ];
        let long = "9".repeat(19);
        let values = [
            "",
            " ",
            "M10 10 L20 20",
            "  m1 2 l3 4",
            "M1 1",
            "L1 1",
            "M1 1 C1 2 3 4 5 6",
            "M1 1 L2 2<",
            "a@b.co",
            "a@b",
            "@b.co",
            "a@b@c.de",
            "a@.b",
            "a@b.",
            "a b@c.de",
            "a\u{a0}b@c.de",
            "jo@example.com",
            "\u{1F600}@b.co",
            "+61400000000",
            "0400000000",
            "123456",
            "12345",
            "++123456",
            "+1234567890123456",
            "04 0000 0000",
            "\u{FF11}\u{FF12}\u{FF13}\u{FF14}\u{FF15}\u{FF16}",
            "0",
            "-0",
            "42",
            "-7",
            "4.2",
            "4.25",
            "4.256",
            "5.",
            ".5",
            "-",
            "1e3",
            "10",
            "10.00",
            "10.01",
            "-5",
            "-5.01",
            "999999999999999999",
            &long,
            "9223372036854775807.999999",
            "abc",
            "abcde",
            "abcdef",
            "ab\u{1F600}",
            "two\nlines",
            "tab\there",
            "bell\u{7}",
            "\u{85}",
            "Red",
            "red",
            "Grün",
            "Blue",
            "yes",
            "no",
            "Yes",
        ];
        let mut cases = Vec::new();
        for r in &requests {
            for v in values {
                cases.push((r, v));
            }
        }
        let page: Vec<Value> = serde_json::from_value(
            c.execute(
                "return arguments[0].map(([r, v]) => \
                 window.eftcloudVirtualTerminal.checkInputValue(r, v));",
                vec![json!(cases
                    .iter()
                    .map(|(r, v)| json!([r, v]))
                    .collect::<Vec<_>>())],
            )
            .await
            .unwrap(),
        )
        .unwrap();
        assert_eq!(page.len(), cases.len());
        for ((r, v), got) in cases.iter().zip(page) {
            let cloud = r.check_value(v).err().map(|e| e.0);
            assert_eq!(
                got.as_str().map(str::to_string),
                cloud,
                "{} {:?} {v:?}",
                r.kind,
                r.rules
            );
        }
    })
    .await;
}

/// The dashboard's device list shows each device's latest health, a low battery and a printer
/// out of paper standing out.
#[tokio::test]
async fn the_dashboard_shows_each_devices_health() {
    use protocol::device::DeviceMessage;
    use protocol::health::{Battery, Health, PaperState};
    let app = spawn_app_with(Opts {
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Opts::default()
    })
    .await;
    let secret = app.enroll("dash-health").await;
    let mut d = crate::harness::RawDevice::connect(&app, "dash-health", &secret).await;
    d.send(&DeviceMessage::Health(Health {
        agent_version: "9.9.1".into(),
        battery: Some(Battery {
            level_percent: 12,
            charging: false,
        }),
        printer_paper: Some(PaperState::Out),
        ..Health::default()
    }))
    .await;
    eventually("the report stored", || async {
        let r = app
            .http
            .get(app.url("/admin/devices/dash-health"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        (!v["health"].is_null()).then_some(())
    })
    .await;
    let base = app.base.clone();
    with_browser(|c| async move {
        c.goto(&format!("{base}/dashboard")).await.unwrap();
        sign_in_with_token(&c, ADMIN_TOKEN).await;
        let cell = "(() => { const td = document.querySelector('#devices tr[data-device=\"dash-health\"] td.health'); \
                    return td ? td.dataset.health + '|' + td.textContent : ''; })()";
        let v = wait_js(&c, "the health cell", cell, |v| v.as_str().is_some_and(|s| !s.is_empty())).await;
        let text = v.as_str().unwrap();
        assert!(text.starts_with("warn|"), "{text}");
        assert!(text.contains("agent 9.9.1") && text.contains("battery 12%") && text.contains("paper out"), "{text}");
    })
    .await;
    drop(d);
}

// ---- the cloud's configuration on the virtual terminal ----------------------------------------

/// An admin API call with the operator's token.
async fn admin_call(
    app: &crate::harness::TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = app
        .http
        .request(method, app.url(path))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Sets the device's own profile; returns the device's effective version once the page has
/// acknowledged it (and the cloud has nothing pending for it).
async fn configure_device(app: &crate::harness::TestApp, device: &str, profile: Value) -> u64 {
    let path = format!("/admin/config/devices/{device}");
    let (status, set) = admin_call(app, reqwest::Method::PUT, &path, Some(profile)).await;
    assert_eq!(status, 200, "PUT {path}: {set}");
    acknowledged(app, device).await
}

/// The device's effective configuration version, once the device acknowledged it.
async fn acknowledged(app: &crate::harness::TestApp, device: &str) -> u64 {
    let path = format!("/admin/devices/{device}/config");
    eventually("the page's config_ack", || async {
        let (status, v) = admin_call(app, reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{v}");
        let version = v["version"].as_u64()?;
        (v["acknowledgedVersion"].as_u64() == Some(version) && v["pending"] == json!(false))
            .then_some(version)
    })
    .await
}

/// The configuration version the page says it runs.
async fn page_config_version(c: &Client, version: u64) {
    wait_js(
        c,
        &format!("configuration version {version} shown"),
        "document.getElementById('config-version').dataset.version",
        |v| v == &json!(version.to_string()),
    )
    .await;
}

#[tokio::test]
async fn virtual_terminal_runs_with_the_configuration_the_cloud_pushes() {
    let app = spawn_app_with(Opts {
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Opts::default()
    })
    .await;
    with_browser(|c| async move {
        let (reg, device) = paired_page(&app, &c, "configured").await;
        // On connecting it was sent the defaults and acknowledged them: no idle text, no tip.
        let defaults = acknowledged(&app, &device).await;
        page_config_version(&c, defaults).await;
        assert!(!c
            .find(Locator::Id("idle-text"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap());

        let mut profile = json!({"tipping": true, "tipPresets": [10, 20],
               "surcharges": [{"card": "*", "bps": 150}],
               "receiptHeader": "Joe's Coffee", "receiptFooter": "Thanks!",
               "idleText": "Tap to pay", "language": "en-AU"});
        let version = configure_device(&app, &device, profile.clone()).await;
        assert!(version > defaults, "{version} after {defaults}");
        page_config_version(&c, version).await;
        wait_text(&c, "idle-text", "Tap to pay").await;
        assert!(c
            .find(Locator::Id("idle-text"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap());
        assert_eq!(
            text_of(&c, "config-version").await,
            format!("version {version}")
        );
        assert_eq!(text_of(&c, "device-language").await, "en-AU");
        assert_eq!(text_of(&c, "config-tipping").await, "on: 10%, 20%");
        assert_eq!(text_of(&c, "config-surcharges").await, "any card 1.5%");
        screenshot(&c, "virtual-terminal-configured").await;

        // A purchase with no tip in the request: the customer is offered the presets first.
        let (poll, _) = post_purchase(&app, &reg, "1250").await;
        started(&c).await;
        wait_js(
            &c,
            "the tip choices",
            "!document.getElementById('tip-choices').hidden",
            |v| v == &json!(true),
        )
        .await;
        assert_eq!(
            texts(&c, "#tip-choices button").await,
            ["10% · AUD 1.25", "20% · AUD 2.50", "No tip"]
        );
        assert!(text_of(&c, "tx-prompt").await.contains("Add a tip?"));
        // No card before the customer has answered.
        let present = c.find(Locator::Id("btn-present-card")).await.unwrap();
        assert!(!present.is_enabled().await.unwrap());
        screenshot(&c, "virtual-terminal-tip").await;
        click_css(&c, "#tip-choices button[data-percent='20']").await;
        wait_text(&c, "tx-amount", "AUD 15.00").await;
        enabled(&c, "btn-present-card").await;
        click(&c, "btn-present-card").await;
        // 1.5 % of 15.00 (the purchase and its tip) is 0.225: 0.23, rounded half up.
        wait_text(&c, "tx-amount", "AUD 15.23").await;
        assert!(text_of(&c, "tx-extra")
            .await
            .contains("incl. surcharge AUD 0.23"));
        enabled(&c, "btn-approve").await;
        click(&c, "btn-approve").await;
        let done = poll_until_completed(&app, &poll).await;
        let data = &done["data"];
        assert_eq!(data["TransactionResult"], "OK-ACCEPTED", "{done}");
        assert_eq!(data["AmountTip"], "250", "{done}");
        assert_eq!(data["AmountSurcharge"], "23", "{done}");
        assert_eq!(data["AmountTotal"], "1523", "{done}");
        let receipt = data["Receipt"].as_str().unwrap();
        assert!(
            receipt.trim_start().starts_with("Joe's Coffee"),
            "{receipt}"
        );
        assert!(receipt.trim_end().ends_with("Thanks!"), "{receipt}");
        assert!(
            receipt.contains("SURCHARGE") && receipt.contains("TIP"),
            "{receipt}"
        );
        assert!(
            receipt.lines().all(|l| l.chars().count() <= 30),
            "{receipt}"
        );
        // The structured copies open and close with them too.
        let customer = &done["receipts"]["customer"];
        assert_eq!(customer["header"][0], "Joe's Coffee", "{done}");
        assert_eq!(
            customer["footer"],
            json!(["APPROVED", "CUSTOMER COPY", "Thanks!"])
        );
        for (label, value) in [("SURCHARGE", "AUD 0.23"), ("TOTAL", "AUD 15.23")] {
            let field = json!({"label": label, "value": value});
            assert!(
                customer["fields"].as_array().unwrap().contains(&field),
                "{label}: {done}"
            );
        }

        // Tipping off (the device's profile set again, whole): no tip step; the surcharge stays.
        profile["tipping"] = json!(false);
        let off = configure_device(&app, &device, profile).await;
        page_config_version(&c, off).await;
        click(&c, "done").await;
        let (poll, _) = post_purchase(&app, &reg, "1000").await;
        started(&c).await;
        enabled(&c, "btn-present-card").await;
        assert!(!c
            .find(Locator::Id("tip-choices"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap());
        let done = approve(&app, &c, &poll).await;
        let data = &done["data"];
        assert_eq!(
            (
                &data["AmountTip"],
                &data["AmountSurcharge"],
                &data["AmountTotal"]
            ),
            (&json!("0"), &json!("15"), &json!("1015")),
            "{done}"
        );

        // A reload runs with the applied settings (the cloud, acknowledged, sends nothing).
        c.refresh().await.unwrap();
        page_config_version(&c, off).await;
        wait_text(&c, "idle-text", "Tap to pay").await;
        assert_eq!(text_of(&c, "device-language").await, "en-AU");
        // Its storage cleared, it says in hello that it runs none: the cloud sends them again.
        c.execute(
            "localStorage.removeItem('eftcloud.vt.config.' + arguments[0]);",
            vec![json!(device)],
        )
        .await
        .unwrap();
        c.refresh().await.unwrap();
        page_config_version(&c, off).await;
        wait_text(&c, "idle-text", "Tap to pay").await;
    })
    .await;
}

/// The settings of a `config` frame as the cloud sends them (snake_case, every field).
fn settings_frame(version: u64, idle_text: &str) -> Value {
    json!({"type": "config", "version": version, "settings": {
        "tipping": false, "tip_presets": [10, 15, 20], "surcharges": [],
        "receipt_header": "", "receipt_footer": "", "currency": "AUD", "language": "en",
        "card_timeout_secs": 60, "input_timeout_secs": 120, "idle_text": idle_text}})
}

/// Hands `frame` to the page as if the cloud had sent it on its connection (the cloud itself
/// never sends a configuration during a transaction, so only this shows the page holds one).
async fn deliver(c: &Client, frame: &Value) {
    let script = "const s = window.__vtSockets[window.__vtSockets.length - 1]; \
                  s.onmessage({ data: JSON.stringify(arguments[0]) });";
    c.execute(script, vec![frame.clone()]).await.unwrap();
}

/// How many times the page logged applying `version`, and sent `config_ack` for it.
async fn applied_and_acked(c: &Client, version: u64) -> (u64, u64) {
    let script = format!(
        "const log = Array.from(document.querySelectorAll('#log li')); \
         return [log.filter(li => li.textContent.includes('config {version} applied')).length, \
                 log.filter(li => li.dataset.type === 'config_ack' && \
                   li.querySelector('.dir').textContent === 'sent' && \
                   li.textContent.includes('\"version\":{version}}}')).length];"
    );
    let v = c.execute(&script, vec![]).await.unwrap();
    (v[0].as_u64().unwrap(), v[1].as_u64().unwrap())
}

#[tokio::test]
async fn a_configuration_that_reaches_the_page_during_a_payment_waits_for_its_result() {
    let app = spawn_app_with(Opts {
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Opts::default()
    })
    .await;
    with_browser(|c| async move {
        c.goto(&app.url("/virtual-terminal")).await.unwrap();
        // Keep the page's sockets within reach, to play the cloud's part.
        c.execute(
            "window.__vtSockets = []; window.WebSocket = new Proxy(window.WebSocket, \
             { construct(t, args) { const s = new t(...args); window.__vtSockets.push(s); return s; } });",
            vec![],
        )
        .await
        .unwrap();
        click(&c, "create-device").await;
        let code = pairing_code(&c).await;
        let reg = register("held");
        app.pos()
            .pair(&code, &reg, &PairingDetails::new("Counter"))
            .await
            .unwrap();
        screen_is(&c, "idle").await;
        let device = text_of(&c, "device-id").await;
        let first = configure_device(&app, &device, json!({"idleText": "Before"})).await;
        wait_text(&c, "idle-text", "Before").await;

        let (poll, _) = post_purchase(&app, &reg, "500").await;
        started(&c).await;
        // The operator changes the settings meanwhile: the cloud holds them for the payment.
        let path = format!("/admin/config/devices/{device}");
        let (status, set) = admin_call(
            &app,
            reqwest::Method::PUT,
            &path,
            Some(json!({"idleText": "After"})),
        )
        .await;
        assert_eq!(status, 200, "{set}");
        let (_, effective) = admin_call(
            &app,
            reqwest::Method::GET,
            &format!("/admin/devices/{device}/config"),
            None,
        )
        .await;
        let next = effective["version"].as_u64().unwrap();
        assert!(next > first && effective["pending"] == json!(true), "{effective}");
        // Had they reached the page anyway (and an older one after them), it would hold the
        // newest until the result is sent.
        deliver(&c, &settings_frame(next, "After")).await;
        deliver(&c, &settings_frame(first, "Before")).await;
        wait_js(
            &c,
            "the waiting configuration",
            "document.getElementById('config-pending').textContent",
            |v| {
                v.as_str()
                    .is_some_and(|t| t.starts_with(&format!("version {next} ")))
            },
        )
        .await;
        page_config_version(&c, first).await;
        assert_eq!(applied_and_acked(&c, next).await, (0, 0));
        // The older one is acknowledged again at once (it is what runs), not applied again.
        assert_eq!(applied_and_acked(&c, first).await, (1, 2));

        approve(&app, &c, &poll).await;
        // Applied once the result is sent, and acknowledged.
        page_config_version(&c, next).await;
        assert_eq!(acknowledged(&app, &device).await, next);
        wait_text(&c, "idle-text", "After").await;
        assert!(c
            .find(Locator::Id("config-pending"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .is_empty());
        // The same version again (the cloud's own, released after the payment, or a
        // repeat): acknowledged again, never applied twice.
        deliver(&c, &settings_frame(next, "After")).await;
        let (applied, acked) = applied_and_acked(&c, next).await;
        assert_eq!(applied, 1);
        assert!(acked >= 2, "{acked}");
    })
    .await;
}

// ---- the dashboard's configuration, device detail and update campaigns ------------------------

/// Waits until `expr` (evaluated in the page) equals `expected`.
async fn wait_eq(c: &Client, what: &str, expr: &str, expected: Value) -> Value {
    wait_js(c, what, expr, |v| v == &expected).await
}

/// `[data-…, text of each cell]` of every row of a table's body, as JSON.
fn rows_js(table: &str, attr: &str) -> String {
    format!(
        "Array.from(document.querySelectorAll('#{table} tbody tr'), r => \
         [r.dataset.{attr}].concat(Array.from(r.cells, td => td.textContent.trim())))"
    )
}

/// Selects `value` in the `<select>` `id` (a change event follows, as a person's choice).
async fn choose(c: &Client, id: &str, value: &str) {
    let select = format!("#{id} option[value=\"{value}\"]");
    wait_js(
        c,
        &format!("{value} offered in #{id}"),
        &format!("document.querySelector({}) !== null", json!(select)),
        |v| v == &json!(true),
    )
    .await;
    c.find(Locator::Id(id))
        .await
        .unwrap()
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("#{id} = {value}: {e}"));
}

/// A device of `merchant` enrolled with the engine; its secret.
async fn enroll_for(
    app: &crate::harness::TestApp,
    id: &str,
    merchant: &cloud::domain::accounts::MerchantRecord,
) -> String {
    app.engine
        .enroll_device(
            &protocol::DeviceId::parse(id).unwrap(),
            &cloud::engine::devices::NewDevice {
                vendor: "Acme".into(),
                model: "T1".into(),
                merchant: merchant.id.to_string(),
                site: None,
            },
        )
        .await
        .unwrap()
}

/// The next `config` frame a raw device gets: its version.
async fn next_config_version(d: &mut crate::harness::RawDevice) -> u64 {
    match d.recv().await {
        protocol::device::CloudMessage::Config(c) => c.version,
        other => panic!("expected config, got {other:?}"),
    }
}

/// An owner sets a merchant's profile in the Configuration view: a bad value is refused with
/// the cloud's words (the field marked), a good one saved as version 1 and pushed to the
/// merchant's configurable device, whose effective settings then show each field's source and
/// that it applied them; a second save makes version 2, newest first in the history.
#[tokio::test]
async fn the_dashboard_sets_a_merchants_profile_and_shows_a_devices_effective_settings() {
    use protocol::device::{capability, DeviceMessage};
    let app = spawn_app_with(Opts {
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Opts::default()
    })
    .await;
    let (alpha, _) = two_merchants(&app).await;
    add_person(
        &app,
        "olivia@example.com",
        cloud::domain::people::Role::Owner,
        None,
    )
    .await;
    let secret = enroll_for(&app, "cfg-web-1", &alpha).await;
    let mut h = crate::harness::hello("cfg-web-1", &secret);
    if let DeviceMessage::Hello(h) = &mut h {
        h.capabilities = vec![capability::CONFIG.into()];
    }
    let mut d = crate::harness::RawDevice::connect_with(&app, h).await;
    // The defaults first, acknowledged.
    let v = next_config_version(&mut d).await;
    d.send(&DeviceMessage::ConfigAck { version: v }).await;
    acknowledged(&app, "cfg-web-1").await;

    let dashboard = app.url("/dashboard");
    let alpha_id = alpha.id.to_string();
    let app = &app;
    with_browser(|c| async move {
        c.goto(&dashboard).await.unwrap();
        sign_in_with_password(&c, "olivia@example.com", PASSWORD).await;
        signed_in_as(&c, "owner").await;
        click(&c, "tab-config").await;
        // The operator's profile first: never set.
        wait_eq(
            &c,
            "the operator's profile",
            "document.getElementById('config-profile-panel').hidden ? '' \
             : document.getElementById('config-profile-panel').dataset.level + ' ' \
             + document.getElementById('config-current').dataset.version",
            json!("operator 0"),
        )
        .await;

        choose(&c, "config-level", "merchants").await;
        choose(&c, "config-merchant", &alpha_id).await;
        wait_eq(
            &c,
            "Alpha Foods' profile",
            "document.getElementById('config-profile-panel').dataset.target",
            json!(alpha_id),
        )
        .await;
        assert_eq!(
            text_of(&c, "config-profile-title").await,
            "Profile of merchant Alpha Foods"
        );
        assert!(text_of(&c, "config-current").await.starts_with("Never set"));

        // Tipping on, two presets, a header, and a card timeout too short.
        click(&c, "cfg-tipping-inherit").await;
        click(&c, "cfg-tipping").await;
        type_into(&c, "cfg-tip-presets", "5, 10").await;
        type_into(&c, "cfg-receipt-header", "Alpha Foods").await;
        type_into(&c, "cfg-card-timeout", "2").await;
        click(&c, "config-save").await;
        wait_text(
            &c,
            "config-error",
            "cardTimeoutSecs must be 5 to 600 seconds, got 2",
        )
        .await;
        assert_eq!(
            c.execute(
                "return [document.getElementById('config-error').dataset.field, \
                 document.getElementById('cfg-card-timeout').getAttribute('aria-invalid')]",
                vec![]
            )
            .await
            .unwrap(),
            json!(["cardTimeoutSecs", "true"])
        );
        let (_, stored) = admin_call(
            app,
            reqwest::Method::GET,
            &format!("/admin/config/merchants/{alpha_id}"),
            None,
        )
        .await;
        assert_eq!(stored["version"], 0, "nothing saved: {stored}");

        type_into(&c, "cfg-card-timeout", "30").await;
        click(&c, "config-save").await;
        wait_eq(
            &c,
            "version 1 saved",
            "document.getElementById('config-result').dataset.version",
            json!("1"),
        )
        .await;
        let result = text_of(&c, "config-result").await;
        assert!(result.starts_with("Saved as version 1."), "{result}");
        assert_eq!(
            c.execute(
                "return document.getElementById('config-result').dataset.devicesSent",
                vec![]
            )
            .await
            .unwrap(),
            json!("1"),
            "the one connected configurable device: {result}"
        );
        assert_eq!(text_of(&c, "config-error").await, "");
        wait_eq(
            &c,
            "the stored version shown",
            "document.getElementById('config-current').dataset.version",
            json!("1"),
        )
        .await;
        // What the page saved is the whole profile, camelCase.
        let (_, stored) = admin_call(
            app,
            reqwest::Method::GET,
            &format!("/admin/config/merchants/{alpha_id}"),
            None,
        )
        .await;
        assert_eq!(
            stored["profile"],
            json!({"tipping": true, "tipPresets": [5, 10], "receiptHeader": "Alpha Foods",
                   "cardTimeoutSecs": 30})
        );
        // The device gets its new settings and applies them.
        let v = next_config_version(&mut d).await;
        d.send(&DeviceMessage::ConfigAck { version: v }).await;
        assert_eq!(acknowledged(app, "cfg-web-1").await, v);

        choose(&c, "config-level", "devices").await;
        choose(&c, "config-device", "cfg-web-1").await;
        let sources = wait_js(
            &c,
            "the device's effective settings",
            "document.getElementById('config-effective-panel').hidden ? {} : Object.fromEntries(\
             Array.from(document.querySelectorAll('#config-effective tbody tr'), \
             r => [r.dataset.field, r.dataset.source + ' ' + r.cells[1].textContent]))",
            |v| v.get("idleText").is_some(),
        )
        .await;
        assert_eq!(sources["tipping"], "merchant on", "{sources}");
        assert_eq!(sources["tipPresets"], "merchant 5%, 10%", "{sources}");
        assert_eq!(
            sources["receiptHeader"], "merchant Alpha Foods",
            "{sources}"
        );
        assert_eq!(sources["cardTimeoutSecs"], "merchant 30 s", "{sources}");
        assert!(
            sources["idleText"]
                .as_str()
                .unwrap()
                .starts_with("default "),
            "{sources}"
        );
        let status = wait_js(
            &c,
            "the device applied them",
            "document.getElementById('config-effective-status').dataset.state",
            |v| v == &json!("applied"),
        )
        .await;
        assert_eq!(status, "applied");
        assert!(text_of(&c, "config-effective-status")
            .await
            .starts_with(&format!("Version {v} applied")));
        // The device's own profile: never set.
        assert_eq!(
            text_of(&c, "config-profile-title").await,
            "Profile of device cfg-web-1 · Alpha Foods"
        );

        // Back to the merchant: a second version, the history newest first.
        choose(&c, "config-level", "merchants").await;
        wait_eq(
            &c,
            "the merchant's version 1 again",
            "document.getElementById('config-profile-panel').dataset.level + ' ' \
             + document.getElementById('config-current').dataset.version + ' ' \
             + document.getElementById('cfg-tip-presets').value",
            json!("merchants 1 5, 10"),
        )
        .await;
        type_into(&c, "cfg-idle-text", "Welcome to Alpha").await;
        click(&c, "config-save").await;
        wait_eq(
            &c,
            "version 2 saved",
            "document.getElementById('config-result').dataset.version",
            json!("2"),
        )
        .await;
        let history = wait_js(
            &c,
            "two versions in the history",
            &rows_js("config-history", "version"),
            |v| v.as_array().is_some_and(|a| a.len() == 2),
        )
        .await;
        assert_eq!(history[0][0], "2");
        assert_eq!(history[1][0], "1");
        assert!(
            history[0][4]
                .as_str()
                .unwrap()
                .contains("\"idleText\":\"Welcome to Alpha\""),
            "{history}"
        );
        assert!(
            !history[1][4].as_str().unwrap().contains("idleText"),
            "{history}"
        );
        assert!(
            history[0][3]
                .as_str()
                .unwrap()
                .contains("olivia@example.com"),
            "{history}"
        );
        screenshot(&c, "dashboard-configuration").await;
    })
    .await;
}

/// A release key, two signed artifacts and a campaign over two devices that declare `update`,
/// the first of which installed it: the dashboard's campaign detail shows each device and
/// every step reported, and its Pause button pauses the campaign. A merchant's person does not
/// get the tab, and the cloud refuses them the routes.
#[tokio::test]
async fn the_dashboard_shows_a_campaigns_devices_and_steps_and_pauses_it() {
    use protocol::device::{capability, CloudMessage, DeviceMessage};
    use protocol::update::{SigningKey, UpdateStep};
    let app = spawn_app_with(Opts {
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Opts::default()
    })
    .await;
    let (alpha, _) = two_merchants(&app).await;
    add_person(
        &app,
        "mia@example.com",
        cloud::domain::people::Role::MerchantAdmin,
        Some(&alpha),
    )
    .await;
    let (_, key) = SigningKey::generate().unwrap();
    let (status, v) = admin_call(
        &app,
        reqwest::Method::POST,
        "/admin/release-keys",
        Some(json!({"name": "release 2026", "publicKey": key.public().to_hex()})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let mut artifacts = Vec::new();
    for version in ["2.0.0", "1.0.0"] {
        let file = format!("agent {version}").into_bytes();
        let s = key.sign(version, &file).unwrap();
        let (status, v) = admin_call(
            &app,
            reqwest::Method::POST,
            "/admin/artifacts",
            Some(
                json!({"version": version, "url": "https://x.example/a", "size": file.len(),
                        "sha256": s.sha256, "signature": s.signature, "keyId": s.key_id}),
            ),
        )
        .await;
        assert_eq!(status, 201, "{v}");
        artifacts.push(v["artifactId"].as_str().unwrap().to_string());
    }
    let mut devices = Vec::new();
    for id in ["upd-web-1", "upd-web-2", "upd-web-3"] {
        let secret = app.enroll(id).await;
        let mut h = crate::harness::hello(id, &secret);
        if let DeviceMessage::Hello(h) = &mut h {
            h.capabilities = vec![capability::UPDATE.into()];
        }
        devices.push(crate::harness::RawDevice::connect_with(&app, h).await);
    }
    let (status, created) = admin_call(
        &app,
        reqwest::Method::POST,
        "/admin/campaigns",
        Some(
            json!({"name": "2.0.0 for the web", "artifactId": artifacts[0],
                    "target": {"deviceIds": ["upd-web-1", "upd-web-2"]},
                    "canary": 1, "waveSize": 1, "failureThreshold": 1}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["campaignId"].as_str().unwrap().to_string();
    // The canary installs it; then the next wave is offered it and starts downloading.
    let offer = |m: CloudMessage| match m {
        CloudMessage::Update(u) => u,
        other => panic!("expected an update, got {other:?}"),
    };
    let o1 = offer(devices[0].recv().await);
    for step in [
        UpdateStep::Downloading,
        UpdateStep::Verified,
        UpdateStep::Installing,
        UpdateStep::Installed,
    ] {
        devices[0]
            .send(&DeviceMessage::UpdateStatus {
                campaign_id: o1.campaign_id.clone(),
                version: o1.artifact.version.clone(),
                step,
                reason: None,
            })
            .await;
    }
    let o2 = offer(devices[1].recv().await);
    devices[1]
        .send(&DeviceMessage::UpdateStatus {
            campaign_id: o2.campaign_id.clone(),
            version: o2.artifact.version.clone(),
            step: UpdateStep::Downloading,
            reason: None,
        })
        .await;
    let path = format!("/admin/campaigns/{id}");
    eventually("five steps on record", || async {
        let (_, v) = admin_call(&app, reqwest::Method::GET, &path, None).await;
        (v["steps"].as_array().map(Vec::len) == Some(5)).then_some(())
    })
    .await;

    let dashboard = app.url("/dashboard");
    let app = &app;
    let campaign = id.clone();
    let alpha_id = alpha.id.to_string();
    with_browser(|c| async move {
        c.goto(&dashboard).await.unwrap();
        sign_in_with_token(&c, ADMIN_TOKEN).await;
        signed_in_as(&c, "owner").await;
        click(&c, "tab-updates").await;
        let list = wait_js(
            &c,
            "the campaign listed",
            &rows_js("campaigns", "campaign"),
            |v| v.as_array().is_some_and(|a| a.len() == 1),
        )
        .await;
        assert_eq!(list[0][0], json!(campaign));
        assert_eq!(list[0][1], "2.0.0 for the web");
        assert_eq!(list[0][2], "2.0.0");
        assert_eq!(list[0][3], "running");
        assert_eq!(list[0][4], "offered 1 · installed 1", "{list}");
        // The artifacts and the release key, read only.
        let arts = wait_js(&c, "two artifacts", &rows_js("artifacts", "artifact"), |v| {
            v.as_array().is_some_and(|a| a.len() == 2)
        })
        .await;
        let versions: Vec<&str> = arts.as_array().unwrap().iter().map(|r| r[1].as_str().unwrap()).collect();
        assert!(versions.contains(&"2.0.0") && versions.contains(&"1.0.0"), "{arts}");
        assert_eq!(texts(&c, "#release-keys tbody tr td:first-child").await, ["release 2026"]);

        click_css(&c, &format!("#campaign-open-{campaign}")).await;
        let shown = wait_js(
            &c,
            "the campaign's devices",
            &rows_js("campaign-devices", "device"),
            |v| v.as_array().is_some_and(|a| a.len() == 2),
        )
        .await;
        assert_eq!(shown[0][0], "upd-web-1");
        assert_eq!(shown[0][2], "0", "the canary's wave");
        assert_eq!(shown[0][3], "installed");
        assert_eq!(shown[0][4], "installed");
        assert_eq!(shown[1][0], "upd-web-2");
        assert_eq!(shown[1][3], "offered");
        assert_eq!(shown[1][4], "downloading");
        let steps: Vec<String> = texts(&c, "#campaign-steps tbody tr")
            .await
            .into_iter()
            .collect();
        assert_eq!(steps.len(), 5, "{steps:?}");
        let steps = c
            .execute(
                "return Array.from(document.querySelectorAll('#campaign-steps tbody tr'), \
                 r => r.dataset.device + ' ' + r.dataset.step)",
                vec![],
            )
            .await
            .unwrap();
        for s in [
            "upd-web-1 downloading",
            "upd-web-1 verified",
            "upd-web-1 installing",
            "upd-web-1 installed",
            "upd-web-2 downloading",
        ] {
            assert!(steps.as_array().unwrap().contains(&json!(s)), "{s}: {steps}");
        }
        assert_eq!(text_of(&c, "campaign-title").await, "Campaign 2.0.0 for the web");
        // Running: Pause and Cancel, no Resume; and a version to roll back to.
        assert!(present(&c, "campaign-pause").await && present(&c, "campaign-cancel").await);
        assert!(!present(&c, "campaign-resume").await);
        let back = c
            .execute(
                "return Array.from(document.querySelectorAll('#campaign-rollback-artifact option'), o => o.value)",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(back, json!([artifacts[1]]), "the other version only");

        click(&c, "campaign-pause").await;
        wait_eq(
            &c,
            "the campaign paused",
            "document.getElementById('campaign-panel').dataset.state",
            json!("paused"),
        )
        .await;
        assert!(text_of(&c, "campaign-result").await.starts_with("Paused"));
        assert_eq!(text_of(&c, "campaign-error").await, "");
        let (_, v) = admin_call(app, reqwest::Method::GET, &format!("/admin/campaigns/{campaign}"), None).await;
        assert_eq!(v["state"], "paused", "{v}");
        assert!(present(&c, "campaign-resume").await && !present(&c, "campaign-pause").await);
        wait_eq(
            &c,
            "the list follows",
            &format!("document.querySelector('#campaigns tr[data-campaign=\"{campaign}\"]').dataset.state"),
            json!("paused"),
        )
        .await;
        // Pausing again is refused by the cloud: its words are shown.
        let status = c
            .execute(
                "return fetch(arguments[0], { method: 'POST', headers: { Authorization: 'Bearer ' + arguments[1] } }).then(r => r.status)",
                vec![json!(format!("/admin/campaigns/{campaign}/pause")), json!(ADMIN_TOKEN)],
            )
            .await
            .unwrap();
        assert_eq!(status, 409);
        screenshot(&c, "dashboard-campaign").await;

        // A new campaign from the form: half a window is the page's refusal, a target without
        // an updatable device the cloud's; then one device, in a window.
        type_into(&c, "cn-name", "1.0.0 for the third").await;
        choose(&c, "cn-artifact", &artifacts[1]).await;
        type_into(&c, "cn-devices", "alpha-1").await;
        type_into(&c, "cn-wave", "5").await;
        c.execute(
            "document.getElementById('cn-window-start').value = '01:00'",
            vec![],
        )
        .await
        .unwrap();
        click(&c, "cn-create").await;
        wait_text(
            &c,
            "campaign-form-error",
            "Give the window both its start and its end, or neither (any time).",
        )
        .await;
        c.execute(
            "document.getElementById('cn-window-end').value = '02:30'",
            vec![],
        )
        .await
        .unwrap();
        click(&c, "cn-create").await;
        wait_text(
            &c,
            "campaign-form-error",
            "the target reaches no device that declares the capability 'update'",
        )
        .await;
        type_into(&c, "cn-devices", "upd-web-3").await;
        click(&c, "cn-create").await;
        let fresh = wait_js(
            &c,
            "the new campaign's detail",
            "document.getElementById('campaign-title').textContent + ' | ' \
             + document.getElementById('campaign-panel').dataset.state",
            |v| v == &json!("Campaign 1.0.0 for the third | running"),
        )
        .await;
        assert!(fresh.is_string());
        assert_eq!(text_of(&c, "campaign-form-error").await, "");
        let devices_shown = wait_js(
            &c,
            "its one device",
            &rows_js("campaign-devices", "device"),
            |v| v.as_array().is_some_and(|a| a.len() == 1),
        )
        .await;
        assert_eq!(devices_shown[0][0], "upd-web-3");
        let facts = texts(&c, "#campaign-summary dd").await;
        assert!(facts.contains(&"01:00-02:30".to_string()), "{facts:?}");
        assert!(facts.contains(&"5".to_string()), "the wave size: {facts:?}");
        let (_, all) = admin_call(app, reqwest::Method::GET, "/admin/campaigns", None).await;
        let made = all
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "1.0.0 for the third")
            .expect("created");
        assert_eq!(made["artifactId"], json!(artifacts[1]));
        assert_eq!(made["window"], "01:00-02:30");
        assert_eq!(made["waveSize"], 5);
        // Cancel asks for a second click.
        click(&c, "campaign-cancel").await;
        wait_text(&c, "campaign-cancel", "Confirm cancel").await;
        click(&c, "campaign-cancel").await;
        wait_eq(
            &c,
            "the new campaign cancelled",
            "document.getElementById('campaign-panel').dataset.state",
            json!("cancelled"),
        )
        .await;
        wait_js(&c, "two campaigns listed", &rows_js("campaigns", "campaign"), |v| {
            v.as_array().is_some_and(|a| a.len() == 2)
        })
        .await;

        // A merchant's person: no Updates tab, and the routes are the operator's.
        click(&c, "sign-out").await;
        sign_in_with_password(&c, "mia@example.com", PASSWORD).await;
        signed_in_as(&c, "merchant-admin").await;
        assert!(present(&c, "tab-config").await);
        assert!(!present(&c, "tab-updates").await);
        assert_eq!(page_fetch(&c, "GET", "/admin/campaigns", false).await, 403);
        // Her Configuration opens on her merchant, which she may change; the operator's
        // profile she may only read.
        click(&c, "tab-config").await;
        wait_eq(
            &c,
            "her merchant's profile",
            "document.getElementById('config-profile-panel').hidden ? '' \
             : document.getElementById('config-profile-panel').dataset.target + ' ' \
             + document.getElementById('config-save').hidden",
            json!(format!("{} false", alpha_id)),
        )
        .await;
        choose(&c, "config-level", "operator").await;
        wait_eq(
            &c,
            "the operator's profile, read only",
            "document.getElementById('config-profile-panel').dataset.level + ' ' \
             + document.getElementById('config-save').hidden + ' ' \
             + document.getElementById('config-readonly').hidden",
            json!("operator true false"),
        )
        .await;
    })
    .await;
    drop(devices);
}

/// A device's detail, opened from the device list, shows its health history newest first (a
/// low battery and a printer out of paper standing out), follows a new report while open, and
/// shows its effective configuration: a device that does not declare `config` is said to keep
/// its own settings; its own profile's field comes from `device`.
#[tokio::test]
async fn the_device_detail_shows_its_health_history_and_configuration() {
    use protocol::device::DeviceMessage;
    use protocol::health::{Battery, Health, Network, NetworkKind, PaperState};
    let report = |battery: u8, paper: PaperState| Health {
        agent_version: "1.4.0".into(),
        software_version: Some("pay-app 4.2".into()),
        firmware_version: Some("fw 1.0.7".into()),
        battery: Some(Battery {
            level_percent: battery,
            charging: false,
        }),
        network: Some(Network {
            kind: NetworkKind::Cellular,
            signal_percent: Some(61),
        }),
        printer_paper: Some(paper),
        storage_free_bytes: Some(1 << 30),
        uptime_secs: Some(3600),
    };
    let app = spawn_app_with(Opts {
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Opts::default()
    })
    .await;
    let secret = app.enroll("dash-detail").await;
    let mut d = crate::harness::RawDevice::connect(&app, "dash-detail", &secret).await;
    d.send(&DeviceMessage::Health(report(80, PaperState::Ok)))
        .await;
    d.send(&DeviceMessage::Health(report(12, PaperState::Out)))
        .await;
    eventually("two reports stored", || async {
        let (_, v) = admin_call(
            &app,
            reqwest::Method::GET,
            "/admin/devices/dash-detail",
            None,
        )
        .await;
        (v["healthHistory"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    let (status, v) = admin_call(
        &app,
        reqwest::Method::PUT,
        "/admin/config/devices/dash-detail",
        Some(json!({"idleText": "Detail desk"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");

    let dashboard = app.url("/dashboard");
    let app = &app;
    with_browser(|c| async move {
        c.goto(&dashboard).await.unwrap();
        sign_in_with_token(&c, ADMIN_TOKEN).await;
        device_rows(&c, 1).await;
        click_css(&c, "#devices a.device-link[data-device=\"dash-detail\"]").await;
        let rows = wait_js(
            &c,
            "two health reports",
            &rows_js("device-health", "health"),
            |v| v.as_array().is_some_and(|a| a.len() == 2),
        )
        .await;
        assert_eq!(text_of(&c, "device-title").await, "Device dash-detail");
        // Newest first: the low battery, out of paper.
        assert_eq!(rows[0][0], "warn", "{rows}");
        assert_eq!(rows[0][2], "1.4.0");
        assert_eq!(rows[0][3], "pay-app 4.2");
        assert_eq!(rows[0][4], "fw 1.0.7");
        assert_eq!(rows[0][5], "12%");
        assert_eq!(rows[0][6], "Cellular, signal 61%");
        assert_eq!(rows[0][7], "out");
        assert_eq!(rows[0][8], "1.0 GiB");
        assert_eq!(rows[0][9], "1 h 0 min");
        assert_eq!(rows[1][0], "ok");
        assert_eq!(rows[1][5], "80%");
        assert_eq!(rows[1][7], "ok");
        let selected = c
            .execute(
                "return document.querySelector('#devices tr[data-device=\"dash-detail\"]').className",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(selected, "selected");

        // Its effective configuration: its own idle text; it cannot be sent settings.
        let config = wait_js(
            &c,
            "the device's configuration",
            "Object.fromEntries(Array.from(document.querySelectorAll('#device-config tbody tr'), \
             r => [r.dataset.field, r.dataset.source + ' ' + r.cells[1].textContent]))",
            |v| v.get("idleText").is_some(),
        )
        .await;
        assert_eq!(config["idleText"], "device Detail desk", "{config}");
        assert!(config["tipping"].as_str().unwrap().starts_with("default "), "{config}");
        assert_eq!(
            c.execute(
                "return document.getElementById('device-config-status').dataset.state",
                vec![]
            )
            .await
            .unwrap(),
            json!("unsupported")
        );

        // A new report while the detail is open: it follows.
        let mut charged = report(95, PaperState::Low);
        charged.battery = Some(Battery {
            level_percent: 95,
            charging: true,
        });
        d.send(&DeviceMessage::Health(charged)).await;
        let rows = wait_js(
            &c,
            "the third report",
            &rows_js("device-health", "health"),
            |v| v.as_array().is_some_and(|a| a.len() == 3),
        )
        .await;
        assert_eq!(rows[0][5], "95%, charging");
        assert_eq!(rows[0][7], "low");
        assert_eq!(rows[0][0], "ok");
        screenshot(&c, "dashboard-device-detail").await;

        // From the detail to the device's own profile.
        click(&c, "device-edit-config").await;
        wait_eq(
            &c,
            "the device's profile",
            "document.getElementById('config-profile-panel').hidden ? '' \
             : document.getElementById('config-profile-panel').dataset.target + ' ' \
             + document.getElementById('config-current').dataset.version + ' ' \
             + document.getElementById('cfg-idle-text').value",
            json!("dash-detail 1 Detail desk"),
        )
        .await;
        let (_, v) = admin_call(app, reqwest::Method::GET, "/admin/devices/dash-detail", None).await;
        assert_eq!(v["healthHistory"].as_array().map(Vec::len), Some(3));
    })
    .await;
}

#[tokio::test]
async fn the_dashboard_manages_webhook_endpoints_and_shows_their_deliveries() {
    let app = spawn_app_with(Opts::default()).await;
    add_person(
        &app,
        "wendy@example.com",
        cloud::domain::people::Role::Owner,
        None,
    )
    .await;
    let (terminal, reg) = crate::harness::paired_terminal(&app, "dev-hooks-ui").await;
    let (url, receiver) = crate::events::start_receiver(0).await;
    let dashboard = app.url("/dashboard");
    let app = std::sync::Arc::new(app);
    let a = app.clone();
    with_browser(|c| async move {
        c.goto(&dashboard).await.unwrap();
        sign_in_with_password(&c, "wendy@example.com", PASSWORD).await;
        signed_in_as(&c, "owner").await;
        click(&c, "tab-webhooks").await;
        wait_js(&c, "the empty list", "document.getElementById('webhooks-count').textContent", |v| {
            v == &json!("(0)")
        })
        .await;
        type_into(&c, "webhook-url", &url).await;
        type_into(&c, "webhook-types", "transaction.completed").await;
        click(&c, "webhook-create").await;
        let secret = wait_js(
            &c,
            "the secret, shown once",
            "document.getElementById('webhook-secret').hidden ? '' \
             : document.getElementById('webhook-secret-value').textContent",
            |v| v.as_str().is_some_and(|s| s.starts_with("whsec_")),
        )
        .await;
        let rows = "Array.from(document.querySelectorAll('#webhooks tbody tr'))\
                    .map(r => [r.dataset.endpoint, r.dataset.state, r.textContent])";
        let row = wait_js(&c, "the endpoint listed", rows, |v| {
            v.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
        let id = row[0][0].as_str().unwrap().to_string();
        assert_eq!(row[0][1], "enabled");
        let text = row[0][2].as_str().unwrap();
        assert!(text.contains(&url) && text.contains("transaction.completed"), "{text}");
        assert!(!text.contains(secret.as_str().unwrap()), "the list never shows the secret");
        click(&c, "webhook-secret-dismiss").await;
        assert_eq!(text_of(&c, "webhook-secret-value").await, "");

        // A payment completes: the endpoint gets it, and the delivery log shows it.
        let tx = crate::events::purchase_done(&a, &reg, "1000").await;
        let got = receiver.wait_for(1).await;
        assert!(got[0].1.contains(&tx));
        click_css(&c, &format!("button.webhook-log[data-endpoint='{id}']")).await;
        let deliveries = "Array.from(document.querySelectorAll('#webhook-deliveries tbody tr'))\
                          .map(r => [r.dataset.delivered, r.textContent])";
        let log = wait_js(&c, "the delivery", deliveries, |v| {
            v.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
        assert_eq!(log[0][0], "true");
        assert!(log[0][1].as_str().unwrap().contains("Delivered (HTTP 204)"), "{log}");
        screenshot(&c, "dashboard-webhooks").await;
        // Redelivered on a click.
        click_css(&c, "button.webhook-redeliver").await;
        receiver.wait_for(2).await;
        // Disabled, then deleted (a second click confirms).
        click_css(&c, &format!("button.webhook-toggle[data-endpoint='{id}']")).await;
        wait_js(&c, "the endpoint disabled", rows, |v| v[0][1] == json!("disabled")).await;
        for _ in 0..2 {
            c.execute(
                &format!("document.querySelector(\"button.webhook-delete[data-endpoint='{id}']\").click()"),
                vec![],
            )
            .await
            .unwrap();
        }
        wait_js(&c, "the endpoint gone", "document.getElementById('webhooks-count').textContent", |v| {
            v == &json!("(0)")
        })
        .await;
    })
    .await;
    terminal.stop().await;
}
