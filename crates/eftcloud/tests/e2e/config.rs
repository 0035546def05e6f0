//! The configuration file (`--config` / `EFTCLOUD_CONFIG`) and `eftcloud config check`,
//! through the real binary: precedence flags > environment > file > defaults, and errors that
//! say exactly what is wrong.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_eftcloud");

/// The binary with none of the test runner's own `EFTCLOUD_*` settings.
fn cmd(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("EFTCLOUD_") {
            c.env_remove(k);
        }
    }
    c.envs(env.iter().copied());
    c
}

async fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(30), cmd(args, env).output())
        .await
        .expect("finished in time")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The line `key = ...` of `config check`'s output.
fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
}

#[tokio::test]
async fn flags_beat_environment_beats_file_beats_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = write(
        dir.path(),
        "eftcloud.toml",
        &format!(
            r#"
data-dir = "{}"
accept-timeout = "7s"
token-ttl = "20m"
retention = "30days"
callback-max-attempts = 4
production = true
admin-token = "file-secret-token"
log-format = "json"
"#,
            data.display()
        ),
    );
    let (status, out, err) = run(
        &["config", "check", "--config", &file, "--retention", "2days"],
        &[
            ("EFTCLOUD_TOKEN_TTL", "30m"),
            ("EFTCLOUD_RETENTION", "90days"),
        ],
    )
    .await;
    assert_eq!(status, 0, "{out}{err}");
    assert!(out.starts_with("configuration OK"), "{out}");
    assert_eq!(line(&out, "accept-timeout"), "accept-timeout = 7s (file)");
    assert_eq!(line(&out, "token-ttl"), "token-ttl = 30m (environment)");
    assert_eq!(line(&out, "retention"), "retention = 2days (flag)");
    assert_eq!(
        line(&out, "callback-max-attempts"),
        "callback-max-attempts = 4 (file)"
    );
    assert_eq!(line(&out, "production"), "production = true (file)");
    assert_eq!(
        line(&out, "listen"),
        "listen = 127.0.0.1:8080 (default)",
        "untouched settings keep their defaults"
    );
    assert_eq!(line(&out, "log-format"), "log-format = json (file)");
    assert_eq!(
        line(&out, "admin-token"),
        "admin-token = (set, hidden) (file)"
    );
    assert!(!out.contains("file-secret-token"), "secret printed:\n{out}");
    assert!(out.contains(&format!("{}", data.display())), "{out}");

    // `serve` takes the same file, here named by the environment, and runs on it.
    let listen = write(
        dir.path(),
        "listen.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\ndata-dir = \"{}\"\nmetrics-listen = \"127.0.0.1:0\"\n",
            data.display()
        ),
    );
    let mut server = cmd(&["serve"], &[("EFTCLOUD_CONFIG", &listen)])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
        .await
        .expect("serve started")
        .unwrap()
        .unwrap_or_default();
    assert!(
        first.starts_with("eftcloud listening on http://127.0.0.1:"),
        "{first}"
    );
    assert!(
        !first.contains(":8080 "),
        "the file's port 0 was used: {first}"
    );
    // The metrics listener the file asked for.
    let second = lines.next_line().await.unwrap().unwrap_or_default();
    let metrics = second
        .strip_prefix("eftcloud metrics on ")
        .unwrap_or_else(|| panic!("{second}"));
    let text = reqwest::get(metrics).await.unwrap().text().await.unwrap();
    assert!(text.contains("eftcloud_connected_devices 0"), "{text}");
    server.kill().await.unwrap();
    assert!(
        data.join("eftcloud.db").exists(),
        "the file's data-dir was used"
    );
}

#[tokio::test]
async fn bad_files_and_values_are_named_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let blocker = write(dir.path(), "a-file", "x");
    let cases: Vec<(String, Vec<&str>, Vec<&str>)> = vec![
        (
            "accept-timeout = \"5 parsecs\"\n".into(),
            vec![],
            vec![
                "accept-timeout",
                "5 parsecs",
                "invalid duration",
                "bad.toml",
            ],
        ),
        (
            "acept-timeout = \"5s\"\n".into(),
            vec![],
            vec![
                "unknown key 'acept-timeout'",
                "valid keys:",
                "accept-timeout",
                "data-dir",
            ],
        ),
        (
            "listen = [\"127.0.0.1:1\"]\n".into(),
            vec![],
            vec!["listen must be a string"],
        ),
        (
            "production = \"yes\"\n".into(),
            vec![],
            vec!["production must be true or false"],
        ),
        (
            "listen = \"127.0.0.1:8080\n".into(),
            vec![],
            vec!["is not valid TOML"],
        ),
        // Values that parse but cannot work: the same checks as `serve`.
        (
            "public-url = \"not a url\"\n".into(),
            vec![],
            vec!["invalid public URL 'not a url'"],
        ),
        (
            "accept-timeout = \"0s\"\n".into(),
            vec![],
            vec!["--accept-timeout must be greater than zero"],
        ),
        // An admin token as short as a guessable password: the POS key minimum applies.
        (
            "admin-token = \"abc\"\n".into(),
            vec![],
            vec!["--admin-token is too short: at least 16 characters"],
        ),
        (
            String::new(),
            vec!["--admin-token", "abc"],
            vec!["--admin-token is too short"],
        ),
        (
            format!("data-dir = \"{blocker}/data\"\n"),
            vec![],
            vec!["data directory", "not usable"],
        ),
        (
            "database-url = \"mysql://localhost/x\"\n".into(),
            vec![],
            vec!["unsupported database URL"],
        ),
        // A flag's value is checked by clap itself.
        (
            String::new(),
            vec!["--heartbeat-interval", "soon"],
            vec!["invalid duration 'soon'"],
        ),
    ];
    for (text, flags, needles) in cases {
        let file = write(dir.path(), "bad.toml", &text);
        let mut args = vec!["config", "check", "--config", &file];
        if !text.contains("data-dir") && !text.contains("database-url") {
            args.extend(["--data-dir", &data]);
        }
        args.extend(flags.iter().copied());
        let (status, out, err) = run(&args, &[]).await;
        assert_eq!(status, 2, "{text}: {out}{err}");
        assert!(!out.contains("configuration OK"), "{text}: {out}");
        for needle in needles {
            assert!(err.contains(needle), "{text}: missing {needle:?} in {err}");
        }
        // `serve` refuses the same file the same way, before binding anything.
        let mut serve = vec!["serve", "--listen", "127.0.0.1:0"];
        serve.extend(args[2..].iter().copied());
        let (status, _, err2) = run(&serve, &[]).await;
        assert_ne!(status, 0, "{text}");
        assert!(
            !flags.is_empty() || err2.lines().next() == err.lines().next(),
            "{text}: serve said {err2}, check said {err}"
        );
    }

    let missing = dir.path().join("missing.toml").display().to_string();
    let (status, _, err) = run(&["config", "check", "--config", &missing], &[]).await;
    assert_eq!(status, 2);
    assert!(
        err.contains("cannot read configuration file") && err.contains("missing.toml"),
        "{err}"
    );
}

#[tokio::test]
async fn config_check_says_whether_the_virtual_terminal_page_may_enroll_devices() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let cases: [(&[&str], &str); 6] = [
        (&[], "on"),
        (
            &["--admin-token", "0123456789abcdef"],
            "off (a credential is configured (--admin-token or --pos-api-key))",
        ),
        (
            &["--pos-api-key", "Till2Go=0123456789abcdef"],
            "off (a credential is configured (--admin-token or --pos-api-key))",
        ),
        (
            &["--listen", "0.0.0.0:8080"],
            "off (the cloud listens on a non-loopback address)",
        ),
        (&["--production"], "off (production mode (--production))"),
        (
            &[
                "--production",
                "--admin-token",
                "0123456789abcdef",
                "--virtual-terminals",
            ],
            "on",
        ),
    ];
    for (flags, want) in cases {
        let mut args = vec!["config", "check", "--data-dir", &data];
        args.extend(flags.iter().copied());
        let (status, out, err) = run(&args, &[]).await;
        assert_eq!(status, 0, "{flags:?}: {err}");
        assert_eq!(
            line(&out, "effective virtual terminal enrollment"),
            format!("effective virtual terminal enrollment = {want}"),
            "{flags:?}"
        );
    }
}
