//! The reference agent updates itself, for real: a copy of this build's `eftcloud` runs as
//! `eftcloud terminal` from a directory of its own, a campaign offers it a second build of the
//! binary (one whose agent reports another version, built by `.ci/run` and named by
//! `EFTCLOUD_TEST_SECOND_BUILD`), signed in the test and stored in the cloud, and the agent
//! downloads it with its device credentials, verifies it, replaces its own executable and
//! executes it with the same flags: the same process, the same journal, the new version.
//! Without the second build that case is skipped, saying so; the refusal of an artifact
//! signed by a key the terminal does not trust needs no second build and always runs.

use crate::harness::*;
use pos::PairingDetails;
use protocol::update::{sha256_hex, SigningKey};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const TOKEN: &str = "admin-token-for-self-update";

/// The binary under test: the first build, which the terminal starts as.
const BIN: &str = env!("CARGO_BIN_EXE_eftcloud");

/// Long enough for an 80 MB debug binary to be stored, downloaded, hashed and written.
const INSTALL_PATIENCE: Duration = Duration::from_secs(120);

/// The second build and the agent version it reports, or `None` (with a line saying the test
/// is skipped) when `.ci/run` did not make one.
fn second_build() -> Option<(PathBuf, String)> {
    let Some(path) = std::env::var_os("EFTCLOUD_TEST_SECOND_BUILD") else {
        eprintln!(
            "skipped: EFTCLOUD_TEST_SECOND_BUILD is not set (.ci/run builds a second eftcloud \
             whose agent reports another version, and sets it)"
        );
        return None;
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "EFTCLOUD_TEST_SECOND_BUILD={} is not a file",
        path.display()
    );
    let version =
        std::env::var("EFTCLOUD_TEST_SECOND_BUILD_VERSION").unwrap_or_else(|_| "99.0.0-e2e".into());
    assert_ne!(
        version,
        terminal::AGENT_VERSION,
        "the second build must report another version than this one"
    );
    Some((path, version))
}

async fn admin(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = app
        .http
        .request(method, app.url(path))
        .bearer_auth(TOKEN)
        .timeout(INSTALL_PATIENCE);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn created(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, v) = admin(app, Method::POST, path, Some(body)).await;
    assert_eq!(status, 201, "{path}: {v}");
    v
}

/// Asks `check` every 100 ms for up to [`INSTALL_PATIENCE`].
async fn patiently<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    tokio::time::timeout(INSTALL_PATIENCE, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// `eftcloud terminal` running from a directory of its own, as installed on a terminal.
struct InstalledAgent {
    dir: tempfile::TempDir,
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    id: String,
}

impl InstalledAgent {
    fn exe(&self) -> PathBuf {
        self.dir.path().join("eftcloud")
    }

    fn journal(&self) -> PathBuf {
        self.dir.path().join("terminal.journal")
    }

    /// Copies this build into a new directory and starts it as a terminal trusting `trusted`.
    async fn start(app: &TestApp, id: &str, trusted: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("eftcloud");
        std::fs::copy(BIN, &exe).unwrap();
        let secret = app.enroll(id).await;
        let journal = dir.path().join("terminal.journal");
        // The agent's log, for a failing test to show.
        let log = std::fs::File::create(dir.path().join("terminal.log")).unwrap();
        let args = [
            "terminal",
            "--cloud",
            &app.base,
            "--device-id",
            id,
            "--secret",
            &secret,
            "--journal",
            journal.to_str().unwrap(),
            "--release-key",
            trusted,
            "--step-delay",
            "0",
            "--reversal-secs",
            "0",
        ];
        let mut child = spawn_fresh(&exe, &args, log).await;
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut out = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = out.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            dir,
            child,
            lines,
            id: id.to_string(),
        }
    }

    /// The rest of the first line of its console that starts with `prefix`.
    async fn line(&mut self, prefix: &str, patience: Duration) -> String {
        let found = tokio::time::timeout(patience, async {
            while let Some(line) = self.lines.recv().await {
                if let Some(rest) = line.strip_prefix(prefix) {
                    return Some(rest.trim().to_string());
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(rest)) => rest,
            _ => panic!(
                "no console line starting with {prefix:?}; its log:\n{}",
                self.log()
            ),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("terminal.log")).unwrap_or_default()
    }

    /// Pairs a new register with it through the POS API.
    async fn pair(&mut self, app: &TestApp) -> protocol::RegisterKey {
        let code = self.line("pairing code: ", PATIENCE).await;
        let reg = register("till");
        app.pos()
            .pair(&code, &reg, &PairingDetails::new("Till"))
            .await
            .unwrap();
        self.line("paired: ", PATIENCE).await;
        reg
    }

    /// The agent version of its latest health report.
    async fn reported_version(&self, app: &TestApp) -> Option<String> {
        let (status, v) = admin(
            app,
            Method::GET,
            &format!("/admin/devices/{}", self.id),
            None,
        )
        .await;
        assert_eq!(status, 200, "{v}");
        v["health"]["agent_version"].as_str().map(str::to_string)
    }

    fn sha256(&self) -> String {
        sha256_hex(&std::fs::read(self.exe()).unwrap())
    }
}

/// Spawns `exe`, again while another test's fork still holds the file it was just copied to
/// (ETXTBSY: the copy's descriptor lives on in a child forked meanwhile, until that child
/// executes its own program).
async fn spawn_fresh(exe: &Path, args: &[&str], log: std::fs::File) -> Child {
    for _ in 0..50 {
        let result = Command::new(exe)
            .args(args)
            .env_remove("EFTCLOUD_RELEASE_KEYS")
            .env_remove("EFTCLOUD_CA_CERT")
            .env("EFTCLOUD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.try_clone().unwrap())
            .kill_on_drop(true)
            .spawn();
        match result {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(26) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("cannot start {}: {e}", exe.display()),
        }
    }
    panic!("{} stayed busy", exe.display())
}

/// A purchase through the POS API, to its end; its transaction id.
async fn purchase_completes(app: &TestApp, reg: &protocol::RegisterKey, amount: &str) -> String {
    let (status, started) = app
        .post_form("/pos/transaction", &purchase(reg, amount))
        .await;
    assert_eq!(status, 200, "{started}");
    let done = poll_until_completed(app, started["data"]["PollingUrl"].as_str().unwrap()).await;
    assert_eq!(done["data"]["TransactionResult"], "OK-ACCEPTED", "{done}");
    started["transactionId"].as_str().unwrap().to_string()
}

/// Registers `file` as a stored artifact of `version` signed by `key`, uploads it; its id.
async fn stored_artifact(app: &TestApp, key: &SigningKey, version: &str, file: &[u8]) -> String {
    let signed = key.sign(version, file).unwrap();
    let a = created(
        app,
        "/admin/artifacts",
        json!({"version": version, "size": file.len(), "sha256": signed.sha256,
               "signature": signed.signature, "keyId": signed.key_id}),
    )
    .await;
    let id = a["artifactId"].as_str().unwrap().to_string();
    let r = app
        .http
        .put(app.url(&format!("/admin/artifacts/{id}/file")))
        .bearer_auth(TOKEN)
        .timeout(INSTALL_PATIENCE)
        .body(file.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    id
}

async fn register_key(app: &TestApp, key: &SigningKey) {
    created(
        app,
        "/admin/release-keys",
        json!({"name": "e2e release key", "publicKey": key.public().to_hex()}),
    )
    .await;
}

/// A campaign of `artifact` to the one device `device`; its id.
async fn campaign(app: &TestApp, artifact: &str, device: &str) -> String {
    let c = created(
        app,
        "/admin/campaigns",
        json!({"name": "self-update", "artifactId": artifact,
               "target": {"deviceIds": [device]},
               "canary": 1, "waveSize": 10, "failureThreshold": 1}),
    )
    .await;
    assert_eq!(c["state"], "running", "{c}");
    c["campaignId"].as_str().unwrap().to_string()
}

/// The campaign's row for `device` once it is in a final state (`installed` or `failed`).
async fn settled(app: &TestApp, campaign: &str, agent: &InstalledAgent) -> (Value, Value) {
    patiently("the device's update to end", || async {
        let (status, c) = admin(
            app,
            Method::GET,
            &format!("/admin/campaigns/{campaign}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{c}");
        let row = c["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["deviceId"] == agent.id.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("{} is not in the campaign: {c}", agent.id));
        matches!(row["state"].as_str(), Some("installed" | "failed")).then_some((c, row))
    })
    .await
}

/// The steps the campaign recorded for `device`, in order (each once: the cloud does not offer
/// the new version again to the agent that runs it, and ignores a repeated final step).
fn recorded_steps(campaign: &Value, device: &str) -> Vec<String> {
    campaign["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .filter(|s| s["deviceId"] == device)
                .filter_map(|s| s["step"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn opts() -> Opts {
    // The default limits: the upload of an 80 MB build is the artifact route's to take.
    Opts {
        admin_token: Some(TOKEN.into()),
        ..Opts::default()
    }
}

#[tokio::test]
async fn the_terminal_replaces_itself_with_a_signed_second_build_and_keeps_its_journal() {
    let Some((second, version)) = second_build() else {
        return;
    };
    let app = spawn_app_with(opts()).await;
    let key = SigningKey::generate().unwrap().1;
    register_key(&app, &key).await;
    let mut agent = InstalledAgent::start(&app, "self-upd-1", &key.public().to_hex()).await;
    let first_sha = agent.sha256();
    let reg = agent.pair(&app).await;
    let before = purchase_completes(&app, &reg, "500").await;
    let pid = agent.child.id();
    assert_eq!(
        patiently("the first health report", || agent.reported_version(&app)).await,
        terminal::AGENT_VERSION
    );

    let file = std::fs::read(&second).unwrap();
    let second_sha = sha256_hex(&file);
    assert_ne!(first_sha, second_sha, "two different builds");
    let artifact = stored_artifact(&app, &key, &version, &file).await;
    let campaign_id = campaign(&app, &artifact, &agent.id).await;

    let (c, row) = settled(&app, &campaign_id, &agent).await;
    assert_eq!(
        row["state"],
        "installed",
        "{row}; agent log:\n{}",
        agent.log()
    );
    assert_eq!(
        recorded_steps(&c, &agent.id),
        ["downloading", "verified", "installing", "installed"],
        "{c}"
    );
    // The new version said so itself, on the console it inherited (the old one may not have
    // printed `installing` before it was replaced).
    let prefix = format!("update {version} (campaign {campaign_id}): ");
    loop {
        match agent.line(&prefix, PATIENCE).await.as_str() {
            "installed" => break,
            "downloading" | "verified" | "installing" => {}
            other => panic!("{other}; agent log:\n{}", agent.log()),
        }
    }
    // The executable is the second build, and runs as the same process.
    assert_eq!(agent.sha256(), second_sha);
    assert_eq!(agent.child.id(), pid, "re-executed in place");
    assert!(agent.child.try_wait().unwrap().is_none(), "still running");
    assert!(
        !agent.dir.path().join("terminal.update.json").exists(),
        "the installation's record is gone once reported"
    );
    assert_eq!(
        patiently("a health report of the new version", || async {
            agent.reported_version(&app).await.filter(|v| *v == version)
        })
        .await,
        version
    );

    // The same journal, still paired, still paying.
    let after = purchase_completes(&app, &reg, "700").await;
    let journal = std::fs::read_to_string(agent.journal()).unwrap();
    assert!(
        journal.contains(&before) && journal.contains(&after),
        "both payments in the one journal"
    );
}

#[tokio::test]
async fn an_update_signed_by_a_key_the_terminal_does_not_trust_is_refused() {
    let app = spawn_app_with(opts()).await;
    // The cloud knows the key; the terminal was given another one.
    let key = SigningKey::generate().unwrap().1;
    register_key(&app, &key).await;
    let trusted = SigningKey::generate().unwrap().1.public().to_hex();
    let mut agent = InstalledAgent::start(&app, "self-upd-2", &trusted).await;
    let before = agent.sha256();
    let reg = agent.pair(&app).await;

    // The second build when there is one (a real binary), else any file: it is refused on its
    // signature before it is downloaded.
    let file = match std::env::var_os("EFTCLOUD_TEST_SECOND_BUILD") {
        Some(second) => std::fs::read(second).unwrap(),
        None => b"not really an agent".to_vec(),
    };
    let artifact = stored_artifact(&app, &key, "99.0.1-untrusted", &file).await;
    let campaign_id = campaign(&app, &artifact, &agent.id).await;

    let (c, row) = settled(&app, &campaign_id, &agent).await;
    assert_eq!(row["state"], "failed", "{row}");
    let reason = row["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("signature: ") && reason.contains(&key.public().id()),
        "{reason}"
    );
    assert_eq!(recorded_steps(&c, &agent.id), ["failed"], "{c}");
    let shown = agent
        .line(
            &format!("update 99.0.1-untrusted (campaign {campaign_id}): "),
            PATIENCE,
        )
        .await;
    assert!(shown.starts_with("failed: signature: "), "{shown}");
    // Untouched, and still paying.
    assert_eq!(agent.sha256(), before);
    assert!(agent.child.try_wait().unwrap().is_none());
    purchase_completes(&app, &reg, "500").await;
    assert_eq!(
        agent.reported_version(&app).await.as_deref(),
        Some(terminal::AGENT_VERSION)
    );
}
