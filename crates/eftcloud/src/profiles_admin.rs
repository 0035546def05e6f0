//! `eftcloud config show|set|history|device`: configuration profiles, through a running
//! cloud's admin API rather than its database, so that a change reaches connected devices at
//! once (on whichever node holds them) and is audited under the credential that made it.

use anyhow::Context;
use reqwest::Method;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the cloud is and the credential to use.
#[derive(clap::Args, Debug)]
pub struct CloudArgs {
    /// The cloud's base URL.
    #[arg(long, env = "EFTCLOUD_CLOUD", default_value = "http://127.0.0.1:8080")]
    cloud: String,
    /// The admin token (`serve --admin-token`) or an API key with `devices:manage` (reading
    /// also takes `reports:read`).
    #[arg(long, env = "EFTCLOUD_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    /// A CA certificate (PEM) to trust besides the public roots, for an https cloud with a
    /// private certificate.
    #[arg(long, env = "EFTCLOUD_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

/// Which level's profile: the operator's unless one of these is given.
#[derive(clap::Args, Debug)]
#[group(multiple = false)]
pub struct LevelArgs {
    /// A merchant's profile (its id).
    #[arg(long)]
    merchant: Option<String>,
    /// A site's profile (its id).
    #[arg(long)]
    site: Option<String>,
    /// A device's own profile (its id).
    #[arg(long)]
    device: Option<String>,
}

impl LevelArgs {
    fn path(&self) -> String {
        match (&self.merchant, &self.site, &self.device) {
            (Some(m), _, _) => format!("/admin/config/merchants/{}", segment(m)),
            (_, Some(s), _) => format!("/admin/config/sites/{}", segment(s)),
            (_, _, Some(d)) => format!("/admin/config/devices/{}", segment(d)),
            _ => "/admin/config/operator".into(),
        }
    }
}

/// An id as one path segment (ids are UUIDs or device ids, but a typo must not reach another
/// route).
pub(crate) fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The profile subcommands of `eftcloud config`.
#[derive(clap::Subcommand, Debug)]
pub enum ProfileCommand {
    /// Print a level's current profile (the fields it sets, its version, who set it).
    Show {
        #[command(flatten)]
        level: LevelArgs,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Replace a level's profile with the JSON given (fields left out are inherited from the
    /// level above), e.g. `--json '{"tipping": true, "tipPresets": [10, 15, 20]}'`.
    Set {
        #[command(flatten)]
        level: LevelArgs,
        /// The profile as JSON.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        json: Option<String>,
        /// A file holding the profile as JSON.
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// List a level's versions, newest first.
    History {
        #[command(flatten)]
        level: LevelArgs,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Print a device's effective settings, the level each comes from, and whether the device
    /// applied them.
    Device {
        /// The device's id.
        id: String,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        cloud: CloudArgs,
    },
}

pub async fn run(cmd: ProfileCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ProfileCommand::Show { level, cloud } => {
            let v = call(&cloud, Method::GET, &level.path(), None).await?;
            print_json(&v);
        }
        ProfileCommand::Set {
            level,
            json,
            file,
            cloud,
        } => {
            let text = match (json, file) {
                (Some(j), _) => j,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read {}", f.display()))?,
                (None, None) => anyhow::bail!("give the profile with --json or --file"),
            };
            let body: Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("the profile is not JSON: {e}"))?;
            let v = call(&cloud, Method::PUT, &level.path(), Some(Body::Json(body))).await?;
            println!(
                "{} profile version {}: {} device(s) changed, {} sent now",
                v["level"].as_str().unwrap_or("?"),
                v["version"],
                v["devicesChanged"],
                v["devicesSent"]
            );
        }
        ProfileCommand::History { level, cloud } => {
            let v = call(
                &cloud,
                Method::GET,
                &format!("{}/history", level.path()),
                None,
            )
            .await?;
            for entry in v.as_array().into_iter().flatten() {
                println!(
                    "v{}  {}  {}  {}",
                    entry["version"],
                    entry["setAt"].as_str().unwrap_or(""),
                    entry["setBy"].as_str().unwrap_or(""),
                    entry["profile"]
                );
            }
        }
        ProfileCommand::Device { id, json, cloud } => {
            let v = call(
                &cloud,
                Method::GET,
                &format!("/admin/devices/{}/config", segment(&id)),
                None,
            )
            .await?;
            if json {
                print_json(&v);
            } else {
                print_effective(&v);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn print_effective(v: &Value) {
    let applied = if v["supported"] == false {
        "the device does not declare `config`: it is sent nothing".to_string()
    } else if v["pending"] == true {
        format!(
            "not applied yet (the device applied version {})",
            v["acknowledgedVersion"]
        )
    } else {
        format!(
            "applied {}",
            v["acknowledgedAt"].as_str().unwrap_or("(never computed)")
        )
    };
    println!(
        "device {}: settings version {}, {applied}",
        v["deviceId"].as_str().unwrap_or("?"),
        v["version"]
    );
    if let Some(settings) = v["settings"].as_object() {
        let width = settings.keys().map(String::len).max().unwrap_or(0);
        for (field, value) in settings {
            let source = v["sources"][field].as_str().unwrap_or("default");
            println!("  {field:width$}  {value}  ({source})");
        }
    }
}

pub(crate) async fn call(
    cloud: &CloudArgs,
    method: Method,
    path: &str,
    body: Option<Body>,
) -> anyhow::Result<Value> {
    let response = send(cloud, method, path, body).await?;
    Ok(response.json().await.unwrap_or(Value::Null))
}

/// GETs `path` and returns the body as it came (a CSV file), refused as [`call`] refuses.
pub(crate) async fn download(cloud: &CloudArgs, path: &str) -> anyhow::Result<Vec<u8>> {
    let response = send(cloud, Method::GET, path, None).await?;
    Ok(response
        .bytes()
        .await
        .with_context(|| format!("cannot read the answer of {}", cloud.cloud))?
        .to_vec())
}

/// Sends a request; a refusal becomes an error with its status and the API's reason.
async fn send(
    cloud: &CloudArgs,
    method: Method,
    path: &str,
    body: Option<Body>,
) -> anyhow::Result<reqwest::Response> {
    let mut client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
    if let Some(ca) = &cloud.ca_cert {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} holds no PEM certificate", ca.display()))?
        {
            client = client.add_root_certificate(cert);
        }
    }
    let client = client.build().context("cannot build the HTTP client")?;
    let url = format!("{}{path}", cloud.cloud.trim_end_matches('/'));
    let mut request = client.request(method, &url).bearer_auth(&cloud.token);
    match body {
        Some(Body::Json(b)) => request = request.json(&b),
        Some(Body::Bytes(b)) => request = request.body(b),
        None => {}
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the cloud at {}", cloud.cloud))?;
    let status = response.status();
    if !status.is_success() {
        let v: Value = response.json().await.unwrap_or(Value::Null);
        let why = v["error"]
            .as_str()
            .map_or_else(|| v.to_string(), str::to_string);
        anyhow::bail!("{status}: {why}");
    }
    Ok(response)
}

/// A request's body.
pub(crate) enum Body {
    Json(Value),
    Bytes(Vec<u8>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_one_path_segment() {
        assert_eq!(segment("dev-1_a.b"), "dev-1_a.b");
        assert_eq!(segment("../operator"), "..%2Foperator");
        assert_eq!(segment("a b?"), "a%20b%3F");
    }
}
