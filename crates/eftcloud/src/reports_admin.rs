//! `eftcloud settlement list|show`, `eftcloud report daily` and `eftcloud export
//! transactions|settlements`: settlements, their reconciliation, a merchant's day and the
//! exports, through a running cloud's admin API (`--token`: the admin token or a key with
//! `reports:read`).

use crate::profiles_admin::{call, download, print_json, segment, CloudArgs};
use anyhow::Context;
use reqwest::Method;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Which settlements or transactions.
#[derive(clap::Args, Debug)]
pub struct PeriodArgs {
    /// Only this merchant's (its id); a merchant's key sees its own only anyway.
    #[arg(long)]
    merchant: Option<String>,
    /// Completed at or after (RFC 3339, or a date: 2026-12-04).
    #[arg(long)]
    since: Option<String>,
    /// Completed at or before (RFC 3339, or a date: to the end of that day).
    #[arg(long)]
    until: Option<String>,
}

impl PeriodArgs {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("merchant", &self.merchant),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

/// `path?k=v&...`, the values form-encoded.
fn with_query(path: &str, pairs: &[(&'static str, String)]) -> String {
    if pairs.is_empty() {
        return path.to_string();
    }
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    format!("{path}?{}", q.finish())
}

/// `eftcloud settlement ...`.
#[derive(clap::Subcommand, Debug)]
pub enum SettlementCommand {
    /// Settlements (approved cutovers), newest first, with their reconciliation status.
    List {
        #[command(flatten)]
        period: PeriodArgs,
        /// Only this device's.
        #[arg(long)]
        device: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// One settlement's reconciliation: totals by card type on both sides, their differences
    /// and each mismatching transaction with why.
    Show {
        /// The cutover's transaction id.
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        cloud: CloudArgs,
    },
}

/// `eftcloud report ...`.
#[derive(clap::Subcommand, Debug)]
pub enum ReportCommand {
    /// A merchant's day: every settlement of its devices with its status, and the cloud's
    /// totals by card type.
    Daily {
        /// The merchant's id.
        #[arg(long)]
        merchant: String,
        /// The day, YYYY-MM-DD.
        #[arg(long)]
        date: String,
        /// An IANA time zone (default: the one the merchant's sites share, else UTC).
        #[arg(long)]
        time_zone: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        cloud: CloudArgs,
    },
}

/// What to export.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    Transactions,
    Settlements,
}

/// `eftcloud export transactions|settlements`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Completed transactions, or settlements with their reconciliation.
    kind: ExportKind,
    /// The file's format.
    #[arg(long, default_value = "csv", value_parser = ["csv", "json"])]
    format: String,
    #[command(flatten)]
    period: PeriodArgs,
    /// Settlements only: only this device's.
    #[arg(long)]
    device: Option<String>,
    /// Write to this file (never over an existing one) instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    cloud: CloudArgs,
}

pub async fn settlement(cmd: SettlementCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SettlementCommand::List {
            period,
            device,
            json,
            cloud,
        } => {
            let mut pairs = period.pairs();
            pairs.extend(device.map(|d| ("device", d)));
            let v = call(
                &cloud,
                Method::GET,
                &with_query("/admin/settlements", &pairs),
                None,
            )
            .await?;
            if json {
                print_json(&v);
                return Ok(ExitCode::SUCCESS);
            }
            let rows = v.as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                println!("no settlements");
            }
            for s in rows {
                println!(
                    "{}  {}  {:<10}  {} mismatch(es)  {}  cloud net {}  terminal net {}",
                    s["periodEnd"].as_str().unwrap_or(""),
                    s["deviceId"].as_str().unwrap_or(""),
                    s["status"].as_str().unwrap_or(""),
                    s["mismatchCount"],
                    s["transactionId"].as_str().unwrap_or(""),
                    s["cloudTotals"]["net"],
                    s["terminalTotals"]["net"],
                );
            }
        }
        SettlementCommand::Show { id, json, cloud } => {
            let v = call(
                &cloud,
                Method::GET,
                &format!("/admin/settlements/{}/reconciliation", segment(&id)),
                None,
            )
            .await?;
            if json {
                print_json(&v);
            } else {
                print_reconciliation(&v);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_totals(title: &str, totals: &Value) {
    println!("{title}");
    for t in totals.as_array().into_iter().flatten() {
        println!(
            "  {:<12} purchases {} = {}  refunds {} = {}  net {}",
            t["cardType"].as_str().unwrap_or(""),
            t["purchaseCount"],
            t["purchaseAmount"],
            t["refundCount"],
            t["refundAmount"],
            t["net"]
        );
    }
}

fn print_reconciliation(v: &Value) {
    println!(
        "settlement {} of device {}: {} (period {} to {})",
        v["transactionId"].as_str().unwrap_or(""),
        v["deviceId"].as_str().unwrap_or(""),
        v["status"].as_str().unwrap_or(""),
        v["periodStart"]
            .as_str()
            .unwrap_or("the device's first transaction"),
        v["periodEnd"].as_str().unwrap_or(""),
    );
    print_totals("terminal:", &v["terminalByCardType"]);
    print_totals("cloud:", &v["cloudByCardType"]);
    for m in v["mismatches"].as_array().into_iter().flatten() {
        let reasons: Vec<&str> = m["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let side = |s: &Value| {
            if s.is_null() {
                "-".to_string()
            } else {
                format!(
                    "{} {} {}",
                    s["function"].as_str().unwrap_or(""),
                    s["cardType"].as_str().unwrap_or(""),
                    s["amount"]
                )
            }
        };
        println!(
            "  {}  {}  terminal: {}  cloud: {}{}",
            m["transactionId"].as_str().unwrap_or(""),
            reasons.join(","),
            side(&m["terminal"]),
            side(&m["cloud"]),
            m["note"]
                .as_str()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default()
        );
    }
}

pub async fn report(cmd: ReportCommand) -> anyhow::Result<ExitCode> {
    let ReportCommand::Daily {
        merchant,
        date,
        time_zone,
        json,
        cloud,
    } = cmd;
    let mut pairs = vec![("merchant", merchant), ("date", date)];
    pairs.extend(time_zone.map(|z| ("timeZone", z)));
    let v = call(
        &cloud,
        Method::GET,
        &with_query("/admin/reports/daily", &pairs),
        None,
    )
    .await?;
    if json {
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "merchant {} on {} ({}): {} transaction(s), {} settlement(s), {} not balanced",
        v["merchantId"].as_str().unwrap_or(""),
        v["date"].as_str().unwrap_or(""),
        v["timeZone"].as_str().unwrap_or(""),
        v["transactionCount"],
        v["settlements"].as_array().map_or(0, Vec::len),
        v["settlementsUnbalanced"],
    );
    for s in v["settlements"].as_array().into_iter().flatten() {
        println!(
            "  {}  {}  {}  {}",
            s["periodEnd"].as_str().unwrap_or(""),
            s["deviceId"].as_str().unwrap_or(""),
            s["status"].as_str().unwrap_or(""),
            s["transactionId"].as_str().unwrap_or(""),
        );
    }
    print_totals("the day's totals:", &v["totals"]);
    Ok(ExitCode::SUCCESS)
}

pub async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let path = match args.kind {
        ExportKind::Transactions => "/admin/exports/transactions",
        ExportKind::Settlements => "/admin/exports/settlements",
    };
    let mut pairs = vec![("format", args.format.clone())];
    pairs.extend(args.period.pairs());
    if let Some(d) = &args.device {
        if args.kind == ExportKind::Transactions {
            anyhow::bail!("--device filters settlements only");
        }
        pairs.push(("device", d.clone()));
    }
    let body = download(&args.cloud, &with_query(path, &pairs)).await?;
    match &args.output {
        Some(file) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(file)
                .with_context(|| format!("cannot create {}", file.display()))?;
            f.write_all(&body)
                .and_then(|()| f.sync_all())
                .with_context(|| format!("cannot write {}", file.display()))?;
            eprintln!("wrote {} ({} bytes)", file.display(), body.len());
        }
        None => std::io::stdout()
            .write_all(&body)
            .context("cannot write to standard output")?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded() {
        assert_eq!(with_query("/a", &[]), "/a");
        assert_eq!(
            with_query(
                "/a",
                &[
                    ("since", "2026-12-04T09:00:00+11:00".into()),
                    ("m", "a b&c".into())
                ]
            ),
            "/a?since=2026-12-04T09%3A00%3A00%2B11%3A00&m=a+b%26c"
        );
    }
}
