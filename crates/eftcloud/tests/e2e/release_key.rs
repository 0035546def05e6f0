//! `eftcloud release-key`: a key made, shown and used to sign by the binary, the signature
//! checked the way a terminal checks it (`protocol::update`), and bad input refused.

use protocol::update::{Artifact, ReleaseKey};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_eftcloud");

/// Runs the binary: exit code, stdout, stderr.
async fn run(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("command finished in time")
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of the line `label: value`.
fn field<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(label)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no '{label}:' line in {out}"))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn a_release_key_is_generated_shown_and_signs_what_a_terminal_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("release.pem");
    let (code, out, err) = run(&["release-key", "generate", "--out", path(&key)]).await;
    assert_eq!(code, 0, "{err}");
    let public = field(&out, "public key").to_string();
    let id = field(&out, "key id").to_string();
    let trusted = ReleaseKey::parse(&public).unwrap();
    assert_eq!(trusted.id(), id);
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
    assert!(
        text.trim_end().ends_with("-----END PRIVATE KEY-----"),
        "{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "readable by its owner only");
    }

    // Never overwritten: the key terminals trust stays.
    let (code, _, err) = run(&["release-key", "generate", "--out", path(&key)]).await;
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text);

    // The public half again, from the file.
    let (code, out, err) = run(&["release-key", "public", "--key", path(&key)]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(field(&out, "public key"), public);
    assert_eq!(field(&out, "key id"), id);

    // A signed artifact: exactly what a terminal that trusts the key verifies.
    let file = dir.path().join("agent");
    let bytes = b"\x7fELF the new agent".repeat(1000);
    std::fs::write(&file, &bytes).unwrap();
    let (code, out, err) = run(&[
        "release-key",
        "sign",
        "--key",
        path(&key),
        "--version",
        "2.0.0-rc.1",
        path(&file),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let body: serde_json::Value = serde_json::from_str(&out).unwrap();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 5, "{body}");
    assert_eq!(body["version"], "2.0.0-rc.1");
    assert_eq!(body["size"], bytes.len() as u64);
    assert_eq!(body["sha256"], protocol::update::sha256_hex(&bytes));
    assert_eq!(body["keyId"], id);
    let artifact = Artifact {
        version: body["version"].as_str().unwrap().into(),
        url: "/device/v1/artifacts/x".into(),
        size: body["size"].as_u64().unwrap(),
        sha256: body["sha256"].as_str().unwrap().into(),
        signature: body["signature"].as_str().unwrap().into(),
        key_id: body["keyId"].as_str().unwrap().into(),
    };
    assert_eq!(
        artifact.check_file(&bytes, std::slice::from_ref(&trusted)),
        Ok(())
    );
    // Another file, another version, another key: each refused.
    assert!(artifact
        .check_file(b"evil", std::slice::from_ref(&trusted))
        .is_err());
    let relabelled = Artifact {
        version: "9.0.0".into(),
        ..artifact.clone()
    };
    assert!(relabelled.check_file(&bytes, &[trusted]).is_err());
    let other = dir.path().join("other.pem");
    let (code, out, _) = run(&["release-key", "generate", "--out", path(&other)]).await;
    assert_eq!(code, 0);
    let stranger = ReleaseKey::parse(field(&out, "public key")).unwrap();
    assert!(artifact.check_file(&bytes, &[stranger]).is_err());
}

#[tokio::test]
async fn bad_key_files_versions_and_artifacts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("release.pem");
    let (code, _, err) = run(&["release-key", "generate", "--out", path(&key)]).await;
    assert_eq!(code, 0, "{err}");
    let file = dir.path().join("agent");
    std::fs::write(&file, b"agent").unwrap();
    let missing = dir.path().join("missing");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let plain = dir.path().join("plain.txt");
    std::fs::write(&plain, "hello").unwrap();

    let sign = |key: &Path, version: &str, artifact: &Path| {
        let (key, artifact) = (path(key).to_string(), path(artifact).to_string());
        let version = version.to_string();
        async move {
            run(&[
                "release-key",
                "sign",
                "--key",
                &key,
                "--version",
                &version,
                &artifact,
            ])
            .await
        }
    };
    for (what, (code, out, err), expected) in [
        (
            "missing key",
            sign(&missing, "1.0.0", &file).await,
            "cannot read the key file",
        ),
        (
            "garbage key",
            sign(&garbage, "1.0.0", &file).await,
            "is not a release key",
        ),
        (
            "plain text",
            sign(&plain, "1.0.0", &file).await,
            "is not a release key",
        ),
        ("bad version", sign(&key, "1 0", &file).await, "--version"),
        ("empty version", sign(&key, "", &file).await, "--version"),
        (
            "missing artifact",
            sign(&key, "1.0.0", &missing).await,
            "cannot read the artifact",
        ),
    ] {
        assert_ne!(code, 0, "{what}: {out}");
        assert!(out.is_empty(), "{what}: nothing on stdout: {out}");
        assert!(err.contains(expected), "{what}: {err}");
    }
    let (code, _, err) = run(&["release-key", "public", "--key", path(&plain)]).await;
    assert_ne!(code, 0);
    assert!(err.contains("is not a release key"), "{err}");
    let (code, _, err) = run(&[
        "release-key",
        "generate",
        "--out",
        path(&dir.path().join("no/such/dir/k.pem")),
    ])
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("cannot create"), "{err}");
}
