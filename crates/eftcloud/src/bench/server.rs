//! The servers under test, each in its own child process (this binary, `serve` or
//! `bench relay`), so that their resident memory is theirs alone and they can be killed and
//! restarted on the same port.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// How long a server may take to answer its health check after starting.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Which server a child runs.
#[derive(Debug, Clone)]
pub enum ServerKind {
    /// `eftcloud serve` on the given store; in a cluster, with its node name and NATS server.
    Cloud {
        database_url: String,
        log: String,
        cluster: Option<ClusterNode>,
    },
    /// `eftcloud bench relay`.
    Relay,
}

/// One node of a cluster: its name and the NATS server the nodes share.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub name: String,
    pub nats_url: String,
}

/// A server in a child process, on a fixed port.
pub struct ServerProcess {
    kind: ServerKind,
    addr: SocketAddr,
    log_file: PathBuf,
    child: Child,
}

impl ServerProcess {
    /// Starts a server on a free loopback port and waits until it answers.
    pub async fn start(kind: ServerKind, log_dir: &Path) -> anyhow::Result<Self> {
        // The port is chosen here, not by the server, so that a restart can take it again.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let name = match &kind {
            ServerKind::Cloud {
                cluster: Some(node),
                ..
            } => format!("cloud-{}.log", node.name),
            ServerKind::Cloud { .. } => "cloud.log".to_string(),
            ServerKind::Relay => "relay.log".to_string(),
        };
        let log_file = log_dir.join(name);
        let child = spawn(&kind, addr, &log_file)?;
        let mut server = Self {
            kind,
            addr,
            log_file,
            child,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The child's resident memory (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        self.child.id().and_then(rss_of)
    }

    /// CPU time the child has used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.child.id().and_then(cpu_of)
    }

    /// Kills the server abruptly (SIGKILL: a crash, as a power cut or OOM kill would be) and
    /// starts it again on the same port and store. Returns when the new process has been
    /// spawned, and the instant it answered its health check.
    pub async fn restart(&mut self) -> anyhow::Result<(Instant, Instant)> {
        self.child.kill().await.context("kill server")?;
        let spawned = Instant::now();
        // The port may stay in use for a moment while the kernel tears the old sockets down.
        let mut attempts = 0;
        loop {
            self.child = spawn(&self.kind, self.addr, &self.log_file)?;
            match self.wait_ready().await {
                Ok(()) => return Ok((spawned, Instant::now())),
                Err(e) if attempts < 20 => {
                    attempts += 1;
                    tracing::debug!(error = %e, "server restart: retrying");
                    let _ = self.child.kill().await;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = format!("{}/healthz", self.base());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "server exited with {status} before it was ready; see {}",
                    self.log_file.display()
                );
            }
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "server not ready within {READY_TIMEOUT:?}; see {}",
                self.log_file.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn spawn(kind: &ServerKind, addr: SocketAddr, log_file: &Path) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("path of this executable")?;
    let mut cmd = Command::new(exe);
    match kind {
        ServerKind::Cloud {
            database_url,
            log,
            cluster,
        } => {
            cmd.args(["serve", "--listen", &addr.to_string()])
                .args(["--database-url", database_url])
                // The workers long-poll right after the POST; the anti-hammering limit would
                // turn that into 429s.
                .args(["--poll-interval-min", "0s"])
                // The fleet comes from a handful of loopback addresses.
                .args(["--max-connections-per-source", "0"])
                .args(["--log", log]);
            if let Some(node) = cluster {
                cmd.args(["--nats-url", &node.nats_url])
                    .args(["--node-name", &node.name]);
            }
        }
        ServerKind::Relay => {
            cmd.args(["bench", "relay", "--listen", &addr.to_string()]);
        }
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .with_context(|| format!("open {}", log_file.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    cmd.spawn().context("start server process")
}

/// VmRSS of a process, in bytes (Linux).
pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let kb = l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim();
        kb.parse::<u64>().ok().map(|kb| kb * 1024)
    })
}

/// User + system CPU time of a process, in seconds (Linux; `/proc/<pid>/stat` counts in
/// USER_HZ, which is 100 on every Linux architecture in practice).
pub fn cpu_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}
