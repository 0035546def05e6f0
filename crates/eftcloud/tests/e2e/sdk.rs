//! The SDKs' own suites (sdk/typescript, sdk/python), offline and live against this build's
//! `eftcloud serve`: `sdk/run-tests.sh` starts the cloud, a terminal per suite, and runs both.
//! Skipped, saying so, where Node.js (npm) or Python 3 is missing.

use std::time::Duration;

fn have(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn the_typescript_and_python_sdks_pass_their_suites_against_a_live_cloud() {
    if !(have("node") && have("npm") && have("python3")) {
        eprintln!("skipped: the SDK suites need node, npm and python3");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk/run-tests.sh");
    let run = tokio::process::Command::new("bash")
        .arg(script)
        .env("EFTCLOUD_BIN", env!("CARGO_BIN_EXE_eftcloud"))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("the SDK suites finish within ten minutes")
        .expect("bash runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sdk/run-tests.sh failed:\n{text}");
    assert!(text.contains("both SDK suites passed"), "{text}");
}
