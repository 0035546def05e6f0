//! Clouds that can be killed: in-process on a runtime of their own, and the real binary.
//!
//! Why a runtime of its own: the cloud spawns tasks (one per HTTP and device connection, the
//! deadline loop) that outlive the server task, so aborting that task (`TestApp::kill`) leaves
//! them running: devices stay connected to a "dead" cloud. Shutting down the runtime they were
//! spawned on drops every one of them at once, sockets and all, which is what `kill -9` does to
//! a process. Only what was committed to SQLite survives.

use crate::harness::{spawn_app_in, Opts, TestApp, PATIENCE};
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::runtime::Runtime;

/// A cloud running on its own runtime (one worker thread).
pub struct Cloud {
    app: Option<TestApp>,
    runtime: Option<Runtime>,
    pub opts: Opts,
}

impl Deref for Cloud {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        // Present from start until `kill` consumes the cloud.
        self.app.as_ref().unwrap()
    }
}

impl Cloud {
    /// A cloud with a fresh database.
    pub async fn start(opts: Opts) -> Cloud {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        Cloud::start_in(dir, opts, None).await
    }

    /// A cloud on the database in `dir`, on `addr` if given. Retries while the port is still
    /// held by the previous process's listener.
    pub async fn start_in(
        dir: Arc<tempfile::TempDir>,
        opts: Opts,
        addr: Option<SocketAddr>,
    ) -> Cloud {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("killable-cloud")
                .enable_all()
                .build()
                .unwrap();
            let (d, o) = (dir.clone(), opts.clone());
            // `spawn_app_in` panics if it cannot bind; the panic stays in the task.
            match runtime.spawn(spawn_app_in(d, o, addr)).await {
                Ok(app) => {
                    return Cloud {
                        app: Some(app),
                        runtime: Some(runtime),
                        opts,
                    }
                }
                Err(e) => {
                    runtime.shutdown_background();
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "cloud did not restart on {addr:?}: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Kills the cloud as `kill -9` would: every task it spawned is dropped at once, nothing
    /// is closed gracefully. Returns its data directory and address, to restart it.
    pub async fn kill(mut self) -> (Arc<tempfile::TempDir>, SocketAddr, Opts) {
        let app = self.app.take().unwrap();
        let (dir, addr) = (app.dir.clone(), app.addr);
        if let Some(rt) = self.runtime.take() {
            tokio::task::spawn_blocking(move || rt.shutdown_timeout(Duration::from_secs(2)))
                .await
                .unwrap();
        }
        // Only now: its drop cancels a shutdown token nobody listens to any more.
        drop(app);
        (dir, addr, self.opts.clone())
    }

    /// Kills the cloud and starts a new one on the same data and port.
    pub async fn restart(self) -> Cloud {
        let (dir, addr, opts) = self.kill().await;
        Cloud::start_in(dir, opts, Some(addr)).await
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The real `eftcloud serve` process, killed with SIGKILL.
pub struct BinaryCloud {
    pub base: String,
    pub data_dir: PathBuf,
    child: Child,
}

const BIN: &str = env!("CARGO_BIN_EXE_eftcloud");

fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("EFTCLOUD_DATA_DIR")
        .env_remove("EFTCLOUD_DATABASE_URL")
        .env_remove("EFTCLOUD_LISTEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    c
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl BinaryCloud {
    /// Starts `eftcloud serve` on `port` with the data in `data_dir`, and waits until it says it
    /// listens. Retries while the port is still taken by a process that was just killed.
    pub async fn start(port: u16, data_dir: &Path, extra: &[&str]) -> BinaryCloud {
        let listen = format!("127.0.0.1:{port}");
        let data = data_dir.to_str().unwrap();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let mut args = vec![
                "serve",
                "--listen",
                &listen,
                "--data-dir",
                data,
                "--poll-interval-min",
                "0s",
            ];
            args.extend_from_slice(extra);
            let mut child = command(&args).spawn().unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let ready = tokio::time::timeout(PATIENCE, async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with("eftcloud listening on ") {
                        return true;
                    }
                }
                false
            })
            .await
            .unwrap_or(false);
            if ready {
                // Keep reading stdout so the process never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return BinaryCloud {
                    base: format!("http://{listen}"),
                    data_dir: data_dir.to_path_buf(),
                    child,
                };
            }
            let _ = child.start_kill();
            let _ = child.wait().await;
            assert!(
                tokio::time::Instant::now() < deadline,
                "eftcloud serve did not start on {listen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM (a rolling upgrade's stop), and wait for the graceful exit, which must be clean.
    pub async fn terminate(mut self) {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("exited in time after SIGTERM")
            .unwrap();
        assert_eq!(status.code(), Some(0), "graceful exit on SIGTERM");
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn kill(mut self) {
        self.child.start_kill().unwrap();
        let status = self.child.wait().await.unwrap();
        assert!(!status.success(), "killed, not exited: {status}");
    }

    /// Enrolls a device through `eftcloud device add`; returns its secret.
    pub async fn enroll(&self, id: &str) -> String {
        let out = command(&[
            "device",
            "add",
            "--id",
            id,
            "--merchant",
            "Toys Shop",
            "--data-dir",
            self.data_dir.to_str().unwrap(),
        ])
        .output()
        .await
        .unwrap();
        assert!(out.status.success(), "device add failed");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}
