//! The `eftcloud` binary as a newcomer uses it: serve, device add/list, terminal, pos.

use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_eftcloud");

fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("EFTCLOUD_DATA_DIR")
        .env_remove("EFTCLOUD_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

async fn output(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(30), cmd(args).output())
        .await
        .expect("command finished in time")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn line_matching(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("process still writing");
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_string();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no line starting with {prefix:?}"))
}

fn spawn(args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = cmd(args).spawn().unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

#[tokio::test]
async fn walkthrough_with_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (mut server, mut server_out) = spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--poll-interval-min",
        "0s",
    ]);
    let listening = line_matching(&mut server_out, "eftcloud listening on ").await;
    let url = listening.split_whitespace().next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{listening}");

    let (code, secret, err) = output(&[
        "device",
        "add",
        "--id",
        "term-cli",
        "--merchant",
        "Toys Shop",
        "--data-dir",
        data,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let secret = secret.trim().to_string();
    assert_eq!(secret.len(), 64);
    let (code, _, err) = output(&["device", "add", "--id", "term-cli", "--data-dir", data]).await;
    assert_ne!(code, 0);
    assert!(err.contains("already enrolled"), "{err}");
    let (code, _, err) = output(&["device", "add", "--id", "bad id!", "--data-dir", data]).await;
    assert_ne!(code, 0);
    assert!(err.contains("device id"), "{err}");

    let journal = dir.path().join("term.journal");
    let (mut term, mut term_out) = spawn(&[
        "terminal",
        "--cloud",
        &url,
        "--device-id",
        "term-cli",
        "--secret",
        &secret,
        "--journal",
        journal.to_str().unwrap(),
        "--step-delay",
        "0",
    ]);
    let code = line_matching(&mut term_out, "pairing code: ").await;
    assert_eq!(code.len(), 8);

    let register = [
        "--register-id",
        "reg-cli-1",
        "--business",
        "Toys Shop",
        "--vendor",
        "Till2Go",
    ];
    let mut pair = vec![
        "pos",
        "--cloud",
        &url,
        "pair",
        &code,
        "--register-name",
        "Main Register",
    ];
    pair.extend(register);
    let (status, out, err) = output(&pair).await;
    assert_eq!(status, 0, "{out}{err}");
    assert_eq!(
        line_matching(&mut term_out, "paired: ").await,
        "Main Register"
    );

    let mut buy = vec![
        "pos",
        "--cloud",
        &url,
        "transact",
        "Card.Purchase",
        "--amount",
        "500",
        "--poll-interval",
        "50ms",
    ];
    buy.extend(register);
    let (status, out, err) = output(&buy).await;
    assert_eq!(status, 0, "{out}{err}");
    assert!(out.contains("OK-ACCEPTED"), "{out}");

    let mut decline = vec![
        "pos",
        "--cloud",
        &url,
        "transact",
        "Card.Purchase",
        "--amount",
        "551",
        "--poll-interval",
        "50ms",
    ];
    decline.extend(register);
    let (status, out, _) = output(&decline).await;
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("OK-DECLINED"), "{out}");

    // eftcloud's extensions through the POS CLI: reference, lookup, timeline, status, cancel.
    let mut with_ref = buy.clone();
    with_ref.extend(["--pos-reference", "ORDER-1"]);
    let (status, out, err) = output(&with_ref).await;
    assert_eq!(status, 0, "{out}{err}");
    let id = out
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();
    let mut lookup = vec![
        "pos",
        "--cloud",
        &url,
        "lookup",
        "--pos-reference",
        "ORDER-1",
    ];
    lookup.extend(register);
    let (status, out, err) = output(&lookup).await;
    assert_eq!(status, 0, "{err}");
    assert!(out.contains(&id) && out.contains("OK-ACCEPTED"), "{out}");
    let mut events = vec!["pos", "--cloud", &url, "events", &id];
    events.extend(register);
    let (status, out, _) = output(&events).await;
    assert_eq!(status, 0);
    assert!(
        out.contains("received") && out.contains("completed"),
        "{out}"
    );
    let mut st = vec!["pos", "--cloud", &url, "status"];
    st.extend(register);
    let (status, out, _) = output(&st).await;
    assert_eq!(status, 0);
    assert!(out.contains("online:  yes"), "{out}");
    let mut cancel = vec!["pos", "--cloud", &url, "cancel", &id];
    cancel.extend(register);
    let (status, _, err) = output(&cancel).await;
    assert_eq!(status, 2);
    assert!(
        err.contains("409") && err.contains("already completed"),
        "{err}"
    );

    let (status, out, _) = output(&["device", "list", "--data-dir", data]).await;
    assert_eq!(status, 0);
    let row = out
        .lines()
        .find(|l| l.starts_with("term-cli"))
        .unwrap_or_default()
        .to_string();
    assert!(
        row.contains("online") && row.contains("Main Register"),
        "{out}"
    );

    let (status, out, _) =
        output(&["device", "list", "--merchant", "Nobody", "--data-dir", data]).await;
    assert_eq!(status, 0);
    assert!(!out.contains("term-cli"), "{out}");
    let (status, secret1, _) = output(&["callback-secret", "--data-dir", data]).await;
    assert_eq!(status, 0);
    let (_, secret2, _) = output(&["callback-secret", "--data-dir", data]).await;
    assert_eq!(secret1.trim().len(), 64);
    assert_eq!(secret1, secret2, "generated once, then kept");

    // An operator unpairs the register; the POS must pair again.
    let (status, out, err) =
        output(&["device", "unpair", "--id", "term-cli", "--data-dir", data]).await;
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("reg-cli-1"), "{out}");
    let (status, _, err) = output(&buy).await;
    assert_eq!(status, 2);
    assert!(err.contains("not paired"), "{err}");

    // A second server on the same port fails clearly.
    let addr = url.trim_start_matches("http://");
    let other = dir.path().join("other");
    let (status, _, err) = output(&[
        "serve",
        "--listen",
        addr,
        "--data-dir",
        other.to_str().unwrap(),
    ])
    .await;
    assert_ne!(status, 0);
    assert!(err.contains("cannot listen"), "{err}");

    term.kill().await.unwrap();
    server.kill().await.unwrap();
}

#[tokio::test]
async fn serve_refuses_bad_configuration_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let under_file = file.join("data");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--data-dir".into(), under_file.display().to_string()],
            "data directory",
        ),
        (
            vec!["--database-url".into(), "mysql://localhost/x".into()],
            "unsupported database URL",
        ),
        (
            vec!["--public-url".into(), "not a url".into()],
            "public URL",
        ),
        (
            vec!["--accept-timeout".into(), "5 parsecs".into()],
            "invalid duration",
        ),
        (vec!["--listen".into(), "nowhere".into()], "--listen"),
    ];
    for (args, needle) in cases {
        let mut full = vec!["serve", "--listen", "127.0.0.1:0"];
        full.extend(args.iter().map(String::as_str));
        if !args
            .iter()
            .any(|a| a == "--data-dir" || a == "--database-url")
        {
            full.extend(["--data-dir", dir.path().to_str().unwrap()]);
        }
        let (status, _, err) = output(&full).await;
        assert_ne!(status, 0, "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn migrate_backup_and_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (status, out, err) = output(&["migrate", "--data-dir", data]).await;
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("schema created"), "{out}");
    let (status, _, _) = output(&["device", "add", "--id", "term-b", "--data-dir", data]).await;
    assert_eq!(status, 0);

    // Rotation and revocation from the CLI.
    let (status, out, err) = output(&[
        "device",
        "rotate-secret",
        "--id",
        "term-b",
        "--data-dir",
        data,
    ])
    .await;
    assert_eq!(status, 0, "{err}");
    assert_eq!(out.trim().len(), 64);
    assert!(err.contains("admin"), "{err}");
    let (status, out, _) =
        output(&["device", "revoke", "--id", "term-b", "--data-dir", data]).await;
    assert_eq!(status, 0);
    assert!(out.contains("revoked term-b"));
    let (status, _, err) =
        output(&["device", "revoke", "--id", "nobody", "--data-dir", data]).await;
    assert_ne!(status, 0);
    assert!(err.contains("no device"), "{err}");

    // A backup taken while a server runs on the same data is a complete, working store.
    let mut server = cmd(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--log-format",
        "json",
    ]);
    server.stderr(Stdio::piped());
    let mut server = server.spawn().unwrap();
    let mut out = BufReader::new(server.stdout.take().unwrap()).lines();
    let listening = line_matching(&mut out, "eftcloud listening on ").await;
    let url = listening.split_whitespace().next().unwrap().to_string();
    let ready = reqwest::get(format!("{url}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let backup = dir.path().join("backup.db");
    let (status, out, err) =
        output(&["backup", backup.to_str().unwrap(), "--data-dir", data]).await;
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("backup written"));
    let (status, _, err) = output(&["backup", backup.to_str().unwrap(), "--data-dir", data]).await;
    assert_ne!(status, 0, "never overwrites");
    assert!(err.contains("already exists"), "{err}");
    let restored = format!("sqlite://{}", backup.display());
    let (status, list, err) = output(&["device", "list", "--database-url", &restored]).await;
    assert_eq!(status, 0, "{err}");
    assert!(list.contains("term-b"), "{list}");

    // Logs are JSON objects, one per line.
    server.start_kill().unwrap();
    let out = server.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert!(v["level"].is_string(), "{v}");
}

#[tokio::test]
async fn configured_from_the_environment_alone_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cmd(&["serve"]);
    c.env("EFTCLOUD_LISTEN", "127.0.0.1:0")
        .env("EFTCLOUD_DATA_DIR", dir.path().join("data"))
        .env("EFTCLOUD_ACCEPT_TIMEOUT", "3s");
    let mut child = c.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    line_matching(&mut out, "eftcloud listening on ").await;
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits promptly")
        .unwrap();
    assert_eq!(exit.code(), Some(0), "graceful exit on SIGTERM");
}

/// Accounts through the binary: merchants, sites, keys, people and the audit log, against the
/// database of a running cloud (a key revoked by the CLI is refused by the cloud at once).
#[tokio::test]
async fn accounts_with_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (mut server, mut server_out) =
        spawn(&["serve", "--listen", "127.0.0.1:0", "--data-dir", data]);
    let listening = line_matching(&mut server_out, "eftcloud listening on ").await;
    let url = listening.split_whitespace().next().unwrap().to_string();
    // Nobody has an account yet: serve prints the first owner's one-time link.
    let dashboard = line_matching(&mut server_out, "dashboard: ").await;
    assert!(
        dashboard.starts_with(&format!("{url}/dashboard/setup?token=")),
        "{dashboard}"
    );
    assert_eq!(
        line_matching(&mut server_out, "virtual terminal: ").await,
        format!("{url}/virtual-terminal")
    );

    let run = |args: Vec<&str>| {
        let mut args = args;
        args.extend(["--data-dir", data]);
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            output(&args).await
        }
    };
    let (code, merchant, err) = run(vec!["merchant", "add", "--name", "Toys Shop"]).await;
    assert_eq!(code, 0, "{err}");
    let merchant = merchant.trim().to_string();
    assert_eq!(merchant.len(), 36, "{merchant}");
    let (code, _, err) = run(vec!["merchant", "add", "--name", "Toys Shop"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("already exists"), "{err}");
    let (code, site, err) = run(vec![
        "site",
        "add",
        "--merchant",
        "Toys Shop",
        "--name",
        "Main St",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(vec![
        "device",
        "add",
        "--id",
        "till-7",
        "--merchant",
        &merchant,
        "--site",
        "Main St",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(vec![
        "device",
        "add",
        "--id",
        "till-8",
        "--merchant",
        &merchant,
        "--site",
        "Nowhere",
    ])
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("no site 'Nowhere'"), "{err}");
    let (code, out, _) = run(vec!["merchant", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&merchant) && out.contains("Toys Shop"),
        "{out}"
    );

    // Keys: scopes are checked and listed, an owner is required.
    let (code, _, err) = run(vec![
        "api-key",
        "create",
        "--merchant",
        "Toys Shop",
        "--scope",
        "pos:write",
    ])
    .await;
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown scope 'pos:write'") && err.contains("pos:transact"),
        "{err}"
    );
    let (code, _, err) = run(vec!["api-key", "create", "--scope", "admin"]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("--merchant") || err.contains("required"),
        "{err}"
    );
    let (code, key, err) = run(vec![
        "api-key",
        "create",
        "--merchant",
        "Toys Shop",
        "--scope",
        "pos:transact,pos:read",
        "--label",
        "till app",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let key = key.trim().to_string();
    assert!(key.starts_with("eftk_"), "{key}");
    let key_id = key.split('_').nth(1).unwrap().to_string();
    let (code, out, _) = run(vec!["api-key", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&key_id) && out.contains("active") && out.contains("till app"),
        "{out}"
    );
    assert!(!out.contains(&key), "the key itself is never listed");

    // The POS CLI presents the key; the cloud knows its merchant.
    let status = |key: String| {
        let url = url.clone();
        async move {
            output(&[
                "pos",
                "--cloud",
                &url,
                "--api-key",
                &key,
                "status",
                "--register-id",
                "r1",
                "--business",
                "Toys Shop",
                "--vendor",
                "Till2Go",
            ])
            .await
        }
    };
    let (code, out, err) = status(key.clone()).await;
    assert_eq!(code, 1, "unpaired: {out}{err}");
    assert!(out.contains("paired:  no"), "{out}");
    let (code, _, _) = run(vec!["api-key", "revoke", &key]).await;
    assert_eq!(code, 0);
    let (code, _, err) = status(key.clone()).await;
    assert_eq!(code, 2, "refused at once after revocation");
    assert!(
        err.contains("401") || err.contains("Invalid API key"),
        "{err}"
    );
    let (code, _, err) = run(vec!["api-key", "revoke", &key_id]).await;
    assert_eq!(code, 2);
    assert!(err.contains("revoked already"), "{err}");

    // People.
    let (code, password, err) = run(vec![
        "user",
        "add",
        "--email",
        "Ana@Example.com",
        "--role",
        "owner",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(password.trim().len(), 24);
    let (code, _, err) = run(vec![
        "user",
        "add",
        "--email",
        "b@example.com",
        "--role",
        "boss",
    ])
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("merchant-admin"), "{err}");
    let (code, _, err) = run(vec![
        "user",
        "add",
        "--email",
        "b@example.com",
        "--role",
        "merchant-admin",
    ])
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("--merchant"), "{err}");
    let (code, _, err) = run(vec![
        "user",
        "add",
        "--email",
        "b@example.com",
        "--role",
        "merchant-admin",
        "--merchant",
        "Toys Shop",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(vec![
        "user",
        "add",
        "--email",
        "ana@example.com",
        "--role",
        "viewer",
    ])
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("exists already"), "{err}");
    let (code, out, _) = run(vec!["user", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("ana@example.com")
            && out.contains("merchant-admin")
            && out.contains(&merchant),
        "{out}"
    );
    let (code, _, err) = run(vec![
        "user",
        "reset-password",
        "--email",
        "ana@example.com",
        "--password-stdin",
    ])
    .await;
    assert_eq!(code, 2, "stdin is empty");
    assert!(err.contains("no password"), "{err}");
    let (code, new_password, _) =
        run(vec!["user", "reset-password", "--email", "ana@example.com"]).await;
    assert_eq!(code, 0);
    assert_ne!(new_password.trim(), password.trim());
    let (code, _, _) = run(vec!["user", "remove", "--email", "b@example.com"]).await;
    assert_eq!(code, 0);
    let (code, _, err) = run(vec!["user", "remove", "--email", "b@example.com"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("no person"), "{err}");

    // Every change is in the audit log, newest first.
    let (code, out, _) = run(vec!["audit", "--json"]).await;
    assert_eq!(code, 0);
    let actions: Vec<String> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["actor"], "cli");
            v["action"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        actions,
        [
            "user.removed",
            "user.password_reset",
            "user.added",
            "user.added",
            "api_key.revoked",
            "api_key.created",
            "device.enrolled",
            "site.created",
            "merchant.created"
        ]
    );
    let (code, out, _) = run(vec![
        "audit",
        "--merchant",
        "Toys Shop",
        "--action",
        "site.",
    ])
    .await;
    assert_eq!(code, 0);
    assert!(
        out.contains("site.created") && out.contains(site.trim()),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    server.kill().await.unwrap();
}

/// The README's `eftcloud terminal … &` in a shell with job control: the background terminal
/// must not read its terminal (the shell would stop it, and no code would ever show), and must
/// print its pairing code.
#[tokio::test]
async fn a_background_terminal_shows_its_pairing_code() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (mut server, mut server_out) =
        spawn(&["serve", "--listen", "127.0.0.1:0", "--data-dir", data]);
    let listening = line_matching(&mut server_out, "eftcloud listening on ").await;
    let url = listening.split_whitespace().next().unwrap().to_string();
    let (code, secret, err) = output(&["device", "add", "--id", "bg-1", "--data-dir", data]).await;
    assert_eq!(code, 0, "{err}");
    let log = dir.path().join("terminal.out");
    let script = format!(
        "'{BIN}' terminal --cloud {url} --device-id bg-1 --secret {} --journal '{}' > '{}' 2>&1 &\n\
         for i in $(seq 100); do grep -q 'pairing code:' '{}' && break; sleep 0.1; done\n\
         jobs -l\n\
         kill %1\n",
        secret.trim(),
        dir.path().join("bg.journal").display(),
        log.display(),
        log.display(),
    );
    let helper = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/e2e/support/job_control.py"
    );
    let out = tokio::time::timeout(
        Duration::from_secs(40),
        Command::new("python3")
            .args([helper, &script, "30"])
            .output(),
    )
    .await
    .expect("the shell finished in time")
    .unwrap();
    let shell = String::from_utf8_lossy(&out.stdout);
    let printed = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !shell.contains("Stopped"),
        "the shell stopped the terminal:\n{shell}"
    );
    assert!(
        shell.contains("Running"),
        "jobs -l shows it running:\n{shell}"
    );
    assert!(
        printed.contains("pairing code: "),
        "{printed}\n--- shell:\n{shell}"
    );
    server.kill().await.unwrap();
}

/// `eftcloud device list | head -1`: output into a pipe its reader closed ends quietly, exit 0
/// (Rust ignores SIGPIPE, so each write fails instead; `println!` used to panic, exit 101).
#[tokio::test]
async fn output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (code, _, err) = output(&["device", "add", "--id", "d-1", "--data-dir", data]).await;
    assert_eq!(code, 0, "{err}");
    for args in [
        vec!["device", "list", "--data-dir", data],
        vec!["merchant", "list", "--data-dir", data],
        vec!["--help"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(BIN)
            .args(&args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// One name for one thing: `--pos-reference` is the POS's own reference in `transact` and
/// `lookup`; `--transaction-reference` is SmartConnect's `TransactionReference`.
#[tokio::test]
async fn the_pos_cli_names_each_reference_once() {
    let (code, help, _) = output(&["pos", "transact", "--help"]).await;
    assert_eq!(code, 0);
    assert!(
        help.contains("--pos-reference") && help.contains("--transaction-reference"),
        "{help}"
    );
    assert!(!help.contains("--reference "), "{help}");
    let (code, help, _) = output(&["pos", "lookup", "--help"]).await;
    assert_eq!(code, 0);
    assert!(
        help.contains("--pos-reference") && !help.contains("--reference "),
        "{help}"
    );
    let (code, _, err) = output(&[
        "pos",
        "lookup",
        "--reference",
        "ORDER-1",
        "--register-id",
        "r",
        "--business",
        "b",
        "--vendor",
        "v",
    ])
    .await;
    assert_eq!(code, 2);
    assert!(
        err.contains("--pos-reference"),
        "clap points at the new name: {err}"
    );
    // A Finalise without its TransactionReference names the flag to set.
    let (code, _, err) = output(&[
        "pos",
        "--cloud",
        "http://127.0.0.1:9",
        "transact",
        "Card.Finalise",
        "--amount",
        "100",
        "--register-id",
        "r",
        "--business",
        "b",
        "--vendor",
        "v",
    ])
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("--transaction-reference"), "{err}");
}

/// A backup restores both ways its help says: `--database-url sqlite://<copy>`, or the copy as
/// `eftcloud.db` in a directory given as `--data-dir`.
#[tokio::test]
async fn a_backup_restores_by_database_url_or_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (code, _, err) = output(&["device", "add", "--id", "kept-1", "--data-dir", data]).await;
    assert_eq!(code, 0, "{err}");
    let copy = dir.path().join("copy.db");
    let copy_s = copy.to_str().unwrap();
    let (code, out, err) = output(&["backup", copy_s, "--data-dir", data]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("backup written"), "{out}");
    let url = format!("sqlite://{copy_s}");
    let (code, out, err) = output(&["device", "list", "--database-url", &url]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("kept-1"), "{out}");
    let restored = dir.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    std::fs::copy(&copy, restored.join("eftcloud.db")).unwrap();
    let (code, out, err) =
        output(&["device", "list", "--data-dir", restored.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("kept-1"), "{out}");
    let (_, help, _) = output(&["backup", "--help"]).await;
    assert!(
        help.contains("eftcloud.db") && help.contains("--database-url sqlite://"),
        "{help}"
    );
}

/// `GET /` links the pages and the API reference; `config check` does not call the virtual
/// terminal's default "false" without saying what it means.
#[tokio::test]
async fn the_root_page_links_the_pages_and_config_check_explains_virtual_terminals() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (mut server, mut server_out) =
        spawn(&["serve", "--listen", "127.0.0.1:0", "--data-dir", data]);
    let listening = line_matching(&mut server_out, "eftcloud listening on ").await;
    let url = listening.split_whitespace().next().unwrap().to_string();
    assert_eq!(
        line_matching(&mut server_out, "API reference: ").await,
        format!("{url}/openapi.json")
    );
    let page = reqwest::get(format!("{url}/")).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for link in [
        "href=\"/dashboard\"",
        "href=\"/virtual-terminal\"",
        "href=\"/openapi.json\"",
    ] {
        assert!(html.contains(link), "{link} in {html}");
    }
    server.kill().await.unwrap();
    let (code, out, _) = output(&["config", "check", "--data-dir", data]).await;
    assert_eq!(code, 0);
    let line = out
        .lines()
        .find(|l| l.starts_with("virtual-terminals = "))
        .unwrap();
    assert!(line.contains("local development cloud"), "{line}");
    assert!(
        out.contains("effective virtual terminal enrollment = on"),
        "{out}"
    );
}

/// `migrate` says whether it created the schema, upgraded it or found it up to date.
#[tokio::test]
async fn migrate_says_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (code, out, err) = output(&["migrate", "--data-dir", data]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("database schema created (version "),
        "{out}"
    );
    let (code, out, _) = output(&["migrate", "--data-dir", data]).await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with("database schema is up to date (version "),
        "{out}"
    );
    if let Some(db) = eftcloud_testing::FreshDatabase::create("PostgreSQL migrate test").await {
        let (code, out, err) = output(&["migrate", "--database-url", &db.url]).await;
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("database schema created"), "{out}");
        assert!(!err.contains("already exists"), "no notices logged: {err}");
        let (_, out, err) = output(&["migrate", "--database-url", &db.url]).await;
        assert!(out.starts_with("database schema is up to date"), "{out}");
        assert!(
            !err.contains("_sqlx_migrations"),
            "no notices logged: {err}"
        );
        db.drop().await;
    }
}

/// `eftcloud pos --cloud <app> <args> <register flags>`.
fn pos_args(
    app: &crate::harness::TestApp,
    reg: &protocol::RegisterKey,
    args: &[&str],
) -> Vec<String> {
    let mut all = vec!["pos", "--cloud", app.base.as_str()];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--register-id",
        reg.register_id.as_str(),
        "--business",
        reg.business_name.as_str(),
        "--vendor",
        reg.vendor_name.as_str(),
    ]);
    all.iter().map(|s| s.to_string()).collect()
}

/// The POS CLI runs a payment's life by reference: a purchase, a partial refund, the payment's
/// summary, a void refused for what was refunded, and an order paid by one tender.
#[tokio::test]
async fn the_pos_cli_refunds_by_reference_and_pays_orders() {
    use crate::harness::{paired_terminal, spawn_app};
    let app = spawn_app().await;
    let (_t, reg) = paired_terminal(&app, "cli-pay").await;
    let pos = |args: &[&str]| pos_args(&app, &reg, args);
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        output(&refs).await
    };
    let (code, out, err) = run(pos(&[
        "transact",
        "Card.Purchase",
        "--amount",
        "1000",
        "--poll-interval",
        "20ms",
        "--json",
    ]))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let sale: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = sale["transactionId"].as_str().unwrap();
    let (code, out, err) = run(pos(&["refund", id, "--amount", "300"])).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("OK-ACCEPTED"), "{out}");
    let (code, out, _) = run(pos(&["payment", id])).await;
    assert_eq!(code, 0);
    assert!(out.contains("Refunded:          300"), "{out}");
    assert!(out.contains("Refundable:        700"), "{out}");
    let (code, _, err) = run(pos(&["void", id])).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refunds"), "{err}");
    let (code, order, err) = run(pos(&["order", "create", "--amount", "500"])).await;
    assert_eq!(code, 0, "{err}");
    let order = order.trim().to_string();
    let (code, out, err) = run(pos(&[
        "transact",
        "Card.Purchase",
        "--amount",
        "500",
        "--order",
        order.as_str(),
        "--poll-interval",
        "20ms",
    ]))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run(pos(&["order", "show", order.as_str()])).await;
    assert_eq!(code, 0);
    assert!(out.contains("paid"), "{out}");
    assert!(out.contains("Remaining:         0"), "{out}");
}

/// The POS CLI drives terminal actions: a cart, an input whose answer it prints, a failed print
/// with its printer status (exit 1), a QR code.
#[tokio::test]
async fn the_pos_cli_shows_a_cart_asks_the_customer_and_prints() {
    use crate::harness::{paired_terminal, spawn_app};
    let app = spawn_app().await;
    let (_t, reg) = paired_terminal(&app, "cli-actions").await;
    let pos = |args: &[&str]| pos_args(&app, &reg, args);
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        output(&refs).await
    };
    let (code, out, err) = run(pos(&[
        "display",
        "--item",
        "2 x Flat white:900",
        "--item",
        "Muffin:350",
    ]))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Delivered:         yes"), "{out}");
    let fast = ["--poll-interval", "20ms"];
    let mut input = vec!["input", "email", "--prompt", "Email?"];
    input.extend_from_slice(&fast);
    let (code, out, err) = run(pos(&input)).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("InputValue:") && out.contains("customer@example.com"),
        "{out}"
    );
    let mut print = vec!["print", "--text", "#nopaper", "--cut"];
    print.extend_from_slice(&fast);
    let (code, out, err) = run(pos(&print)).await;
    assert_eq!(code, 1, "a failed print is not a success: {out}{err}");
    assert!(out.contains("NO_PAPER"), "{out}");
    let mut qr = vec!["qr", "https://example.com/join", "--caption", "Join us"];
    qr.extend_from_slice(&fast);
    let (code, out, err) = run(pos(&qr)).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("dismissed"), "{out}");
    // Bad input is a usage error before any request.
    let (code, _, err) = run(pos(&[
        "input",
        "selection",
        "--prompt",
        "Size?",
        "--option",
        "S",
    ]))
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("Options"), "{err}");
}
