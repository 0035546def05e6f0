//! The PostgreSQL side of a cluster run: a fresh database per run on the server given, the
//! commits the cloud made there (PostgreSQL's own count), and the baseline the store is
//! measured against: pgbench when installed, else a loop of plain commits.

use anyhow::Context;
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use std::time::{Duration, Instant};

/// Clients of the baseline, as `pgbench -c 32` runs.
const BASELINE_CLIENTS: usize = 32;
/// pgbench worker threads (`-j`): the machine's cores, as the reference run used.
const PGBENCH_THREADS: usize = 2;

/// A database created for one run on a PostgreSQL server, dropped by [`ScratchDatabase::drop`].
pub struct ScratchDatabase {
    server_url: String,
    name: String,
    /// The URL of the fresh database.
    pub url: String,
}

impl ScratchDatabase {
    /// Creates `name` on the server of `server_url` (any database of it).
    pub async fn create(server_url: &str, name: &str) -> anyhow::Result<Self> {
        let mut admin = PgConnection::connect(server_url)
            .await
            .with_context(|| format!("connect to {server_url}"))?;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .with_context(|| format!("create database {name}"))?;
        let _ = admin.close().await;
        let mut url = url::Url::parse(server_url).context("--database-url")?;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            server_url: server_url.to_string(),
            name: name.to_string(),
            url: url.to_string(),
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Transactions committed in the database so far, as PostgreSQL counts them
    /// (`pg_stat_database.xact_commit`: read-only ones included; a backend reports its own at
    /// most once a second, and all of them when it exits).
    pub async fn commits(&self) -> anyhow::Result<i64> {
        let mut admin = PgConnection::connect(&self.server_url).await?;
        let n: Option<i64> =
            sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
                .bind(&self.name)
                .fetch_optional(&mut admin)
                .await?;
        let _ = admin.close().await;
        n.context("the database has no statistics")
    }

    /// Drops the database, closing whatever connections are left on it.
    pub async fn drop(self) -> anyhow::Result<()> {
        let mut admin = PgConnection::connect(&self.server_url).await?;
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .with_context(|| format!("drop database {}", self.name))?;
        let _ = admin.close().await;
        Ok(())
    }
}

/// Which PostgreSQL baseline a cluster run measures.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaselineKind {
    /// pgbench when it is installed, else the commit loop.
    Auto,
    /// `pgbench -N -c 32 -j 2 -T <duration>` (fails when pgbench is not installed).
    Pgbench,
    /// 32 connections, each running transactions of as many commits as the cloud made per
    /// transaction (one single-row UPDATE each), and nothing else.
    Loop,
}

/// What the PostgreSQL baseline ran.
#[derive(Debug, Serialize)]
pub struct Baseline {
    /// `pgbench` or `commit loop`.
    pub kind: &'static str,
    /// The command, or what the loop ran.
    pub command: String,
    /// Baseline transactions per second.
    pub tx_per_s: f64,
    /// Commits one baseline transaction makes.
    pub commits_per_tx: u32,
}

/// Runs the baseline in `db` for `duration`: pgbench if `kind` allows and it is installed,
/// else (for `Auto` and `Loop`) the commit loop of `commits_per_tx` commits per transaction.
pub async fn baseline(
    db: &ScratchDatabase,
    kind: BaselineKind,
    commits_per_tx: u32,
    duration: Duration,
) -> anyhow::Result<Baseline> {
    if kind != BaselineKind::Loop {
        match pgbench(&db.url, duration).await? {
            Some(b) => return Ok(b),
            None if kind == BaselineKind::Pgbench => {
                anyhow::bail!("--pg-baseline pgbench: pgbench is not installed")
            }
            None => {}
        }
    }
    commit_loop(&db.url, commits_per_tx, duration).await
}

/// `pgbench -i`, then `pgbench -N -c 32 -j 2 -T <duration>`; `None` when pgbench is not
/// installed.
async fn pgbench(url: &str, duration: Duration) -> anyhow::Result<Option<Baseline>> {
    let init = tokio::process::Command::new("pgbench")
        .args(["-i", "-q", url])
        .output()
        .await;
    let init = match init {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        r => r.context("run pgbench -i")?,
    };
    anyhow::ensure!(
        init.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&init.stderr).trim()
    );
    let secs = duration.as_secs_f64().ceil().max(1.0) as u64;
    let (clients, threads, secs) = (
        BASELINE_CLIENTS.to_string(),
        PGBENCH_THREADS.to_string(),
        secs.to_string(),
    );
    let args = ["-N", "-c", &clients, "-j", &threads, "-T", &secs];
    let run = tokio::process::Command::new("pgbench")
        .args(args)
        .arg(url)
        .output()
        .await
        .context("run pgbench")?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    anyhow::ensure!(
        run.status.success(),
        "pgbench failed: {}{}",
        stdout.trim(),
        String::from_utf8_lossy(&run.stderr).trim()
    );
    let tx_per_s =
        tps_of(&stdout).with_context(|| format!("no tps in pgbench's output:\n{stdout}"))?;
    Ok(Some(Baseline {
        kind: "pgbench",
        command: format!("pgbench {}", args.join(" ")),
        tx_per_s,
        commits_per_tx: 1,
    }))
}

/// The figure of pgbench's `tps = 4712.345678 (without initial connection time)` line.
fn tps_of(output: &str) -> Option<f64> {
    output.lines().find_map(|l| {
        l.trim()
            .strip_prefix("tps = ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// 32 connections, each running transactions of `commits` single-row UPDATE commits (its own
/// row, so no client waits for another's lock) until `duration` has passed.
async fn commit_loop(url: &str, commits: u32, duration: Duration) -> anyhow::Result<Baseline> {
    let commits = commits.max(1);
    let mut setup = PgConnection::connect(url).await?;
    sqlx::raw_sql(
        "CREATE TABLE bench_commits (client INTEGER PRIMARY KEY, n BIGINT NOT NULL);
         INSERT INTO bench_commits SELECT g, 0 FROM generate_series(0, 31) g",
    )
    .execute(&mut setup)
    .await
    .context("create the commit loop's table")?;
    let _ = setup.close().await;
    let mut connections = Vec::with_capacity(BASELINE_CLIENTS);
    for _ in 0..BASELINE_CLIENTS {
        connections.push(PgConnection::connect(url).await?);
    }
    let until = Instant::now() + duration;
    let mut clients = tokio::task::JoinSet::new();
    for (client, mut conn) in connections.into_iter().enumerate() {
        clients.spawn(async move {
            let mut done = 0u64;
            while Instant::now() < until {
                for _ in 0..commits {
                    sqlx::query("UPDATE bench_commits SET n = n + 1 WHERE client = $1")
                        .bind(client as i32)
                        .execute(&mut conn)
                        .await?;
                }
                done += 1;
            }
            let _ = conn.close().await;
            Ok::<u64, sqlx::Error>(done)
        });
    }
    let mut total = 0;
    while let Some(r) = clients.join_next().await {
        total += r.context("commit loop client panicked")??;
    }
    Ok(Baseline {
        kind: "commit loop",
        command: format!(
            "{BASELINE_CLIENTS} connections, {commits} single-row UPDATE commit(s) per transaction"
        ),
        tx_per_s: total as f64 / duration.as_secs_f64(),
        commits_per_tx: commits,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn pgbench_tps_is_read_from_its_summary_line() {
        let out = "number of failed transactions: 0 (0.000%)\nlatency average = 6.790 ms\ninitial connection time = 41.2 ms\ntps = 4712.345678 (without initial connection time)\n";
        assert_eq!(super::tps_of(out), Some(4712.345678));
        assert_eq!(super::tps_of("nothing"), None);
    }
}
