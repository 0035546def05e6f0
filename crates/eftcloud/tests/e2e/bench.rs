//! The benchmark instrument itself works: a small fleet under load for a few seconds, through
//! the real binary, with the baseline relay, and reports zero errors. Not a timed pass/fail:
//! the figures are only checked to be present and sane.

use serde_json::Value;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_eftcloud");

fn run(args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .args(["bench", "load", "--json", "--warmup", "500ms"])
        .args(args)
        .output()
        .expect("run eftcloud bench load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench load failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

#[test]
fn bench_load_runs_a_small_fleet_without_errors() {
    let report = run(&["--concurrency", "20", "--duration", "3s", "--prompts", "1"]);
    assert_eq!(report["mode"], "load");
    assert!(report["store"]
        .as_str()
        .unwrap()
        .contains("synchronous=FULL"));
    for side in ["cloud", "relay"] {
        let r = &report[side];
        assert_eq!(r["error_total"], 0, "{side}: {r}");
        assert!(r["completed"].as_u64().unwrap() > 0, "{side}: {r}");
        assert!(r["tx_per_s"].as_f64().unwrap() > 0.0, "{side}: {r}");
        for metric in ["post_response", "post_to_device", "post_to_completed"] {
            let p = &r["latency_ms"][metric];
            let (p50, p99, max) = (
                p["p50"].as_f64().unwrap(),
                p["p99"].as_f64().unwrap(),
                p["max"].as_f64().unwrap(),
            );
            assert!(
                p50 > 0.0 && p50 <= p99 && p99 <= max,
                "{side} {metric}: {p}"
            );
        }
        assert!(r["server_rss_bytes"].as_u64().unwrap() > 0, "{side}: {r}");
    }
    assert!(report["ratio"]["tx_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_idle_fleet_reconnects_after_a_restart() {
    let report = run(&["--idle-devices", "20"]);
    assert_eq!(report["mode"], "idle");
    for side in ["cloud", "relay"] {
        let r = &report[side];
        assert_eq!(r["connected"], 20, "{side}: {r}");
        assert_eq!(r["reconnected"], 20, "{side}: {r}");
        assert!(r["reconnect_s"].as_f64().unwrap() > 0.0, "{side}: {r}");
        assert!(r["errors"].as_object().unwrap().is_empty(), "{side}: {r}");
    }
}

#[tokio::test]
async fn bench_load_against_a_cloud_that_refuses_its_devices_fails_at_once_saying_why() {
    // The devices are enrolled in another store than the target's: the target refuses every
    // one of them, which no retry changes. The bench says so instead of waiting out its
    // five-minute connect timeout.
    let app = crate::harness::spawn_app().await;
    let other = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", other.path().join("other.db").display());
    let out = tokio::time::timeout(
        crate::harness::PATIENCE,
        tokio::process::Command::new(BIN)
            .args([
                "bench",
                "load",
                "--target",
                &app.base,
                "--database-url",
                &store,
            ])
            .args(["--concurrency", "2", "--duration", "1s"])
            .output(),
    )
    .await
    .expect("the bench gave up at once")
    .expect("run eftcloud bench load");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
}

#[cfg_attr(
    not(all(eftcloud_test_postgres, eftcloud_test_nats)),
    ignore = "needs PostgreSQL and NATS: set EFTCLOUD_TEST_DATABASE_URL and EFTCLOUD_TEST_NATS_URL (.ci/run does)"
)]
#[test]
fn bench_load_drives_two_nodes_through_nats_and_measures_postgresql_alone() {
    let Some(nats) = crate::harness::nats_url_or_skip("cluster bench") else {
        return;
    };
    let Ok(database) = std::env::var(eftcloud_testing::DATABASE_ENV) else {
        return;
    };
    // The bench makes its own fresh database on that server, and drops it.
    let report = run(&[
        "--nodes",
        "2",
        "--nats-url",
        &nats,
        "--database-url",
        &database,
        "--concurrency",
        "8",
        "--duration",
        "2s",
    ]);
    assert_eq!(report["nodes"], 2);
    let cloud = &report["cloud"];
    assert_eq!(cloud["error_total"], 0, "{cloud}");
    assert!(cloud["completed"].as_u64().unwrap() > 0, "{cloud}");
    let nodes = cloud["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{cloud}");
    for node in nodes {
        assert_eq!(node["devices"], 4, "{node}");
        assert!(node["cpu_ms_per_tx"].as_f64().unwrap() > 0.0, "{node}");
    }
    let store = &report["store_efficiency"];
    assert!(
        store["cloud_commits_per_tx"].as_f64().unwrap() >= 1.0,
        "{store}"
    );
    assert!(
        store["baseline"]["tx_per_s"].as_f64().unwrap() > 0.0,
        "{store}"
    );
    assert!(store["tx_ratio"].as_f64().unwrap() > 0.0, "{store}");
}

#[test]
fn bench_load_refuses_a_cluster_without_nats_or_postgresql() {
    for (args, says) in [
        (
            &["--nodes", "2", "--database-url", "postgres://127.0.0.1/x"][..],
            "--nats-url",
        ),
        (
            &["--nodes", "2", "--nats-url", "nats://127.0.0.1:4222"][..],
            "postgres",
        ),
        (&["--nats-url", "nats://127.0.0.1:4222"][..], "--nodes"),
    ] {
        let out = Command::new(BIN)
            .args(["bench", "load"])
            .args(args)
            .output()
            .expect("run eftcloud bench load");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
