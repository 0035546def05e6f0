//! `eftcloud update key|artifact|campaign`: software updates of the fleet, through a running
//! cloud's admin API (as `eftcloud config`), so a campaign starts rolling out at once on every
//! node and each action is audited under the credential that made it. Signing happens offline,
//! with `eftcloud release-key`; this only registers what was signed.

use crate::profiles_admin::{call, print_json, segment, Body, CloudArgs};
use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

/// The `update` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum UpdateCommand {
    /// Release keys: the public halves artifacts must be signed with.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Artifacts: signed builds to roll out.
    #[command(subcommand)]
    Artifact(ArtifactCommand),
    /// Campaigns: an artifact rolled out to devices in waves.
    #[command(subcommand)]
    Campaign(CampaignCommand),
}

#[derive(clap::Subcommand, Debug)]
pub enum KeyCommand {
    /// Register a release key (`eftcloud release-key public` prints it).
    Add {
        #[arg(long)]
        name: String,
        /// The public key, 64 hex digits.
        #[arg(long)]
        public_key: String,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// List the registered release keys.
    List {
        #[command(flatten)]
        cloud: CloudArgs,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum ArtifactCommand {
    /// Register an artifact from what `eftcloud release-key sign` printed, downloaded by
    /// devices from `--url`, or uploaded to the cloud from `--file`.
    Add {
        /// The JSON `eftcloud release-key sign` printed (a file).
        #[arg(long)]
        signed: PathBuf,
        /// Where devices download it.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        url: Option<String>,
        /// The artifact itself, stored by the cloud and served to devices.
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// List artifacts, newest first.
    List {
        #[command(flatten)]
        cloud: CloudArgs,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum CampaignCommand {
    /// Start rolling an artifact out: a canary group, then waves, inside a daily window in
    /// each site's time zone, paused when failures reach the threshold.
    Create {
        #[arg(long)]
        name: String,
        /// The artifact's id (`eftcloud update artifact list`).
        #[arg(long)]
        artifact: String,
        /// Only these devices (repeat the flag); in this order.
        #[arg(long = "device")]
        devices: Vec<String>,
        /// Only devices of these merchants (ids).
        #[arg(long = "merchant")]
        merchants: Vec<String>,
        /// Only devices of these sites (ids).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// Only devices of these models.
        #[arg(long = "model")]
        models: Vec<String>,
        /// Only devices running these agent versions (their latest health report).
        #[arg(long = "from-version")]
        versions: Vec<String>,
        /// The daily maintenance window, `HH:MM-HH:MM` in each site's time zone (default: any
        /// time).
        #[arg(long)]
        window: Option<String>,
        #[arg(long, default_value_t = 1)]
        canary: u32,
        #[arg(long, default_value_t = 10)]
        wave_size: u32,
        /// Failed devices that pause the campaign (0: never pause).
        #[arg(long, default_value_t = 1)]
        failure_threshold: u32,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// List campaigns with their devices counted by state.
    List {
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// A campaign with every device's progress and the steps they reported (JSON).
    Show {
        id: String,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Stop offering the update (devices that have it keep it).
    Pause {
        id: String,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Go on after a pause.
    Resume {
        id: String,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// End the campaign.
    Cancel {
        id: String,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Offer `--to` (the version to return to) to every device that took the update.
    Rollback {
        id: String,
        /// The artifact to return to.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        cloud: CloudArgs,
    },
}

pub async fn run(cmd: UpdateCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        UpdateCommand::Key(KeyCommand::Add {
            name,
            public_key,
            cloud,
        }) => {
            let body = json!({"name": name, "publicKey": public_key});
            let v = call(
                &cloud,
                Method::POST,
                "/admin/release-keys",
                Some(Body::Json(body)),
            )
            .await?;
            println!("release key {} registered", text(&v["keyId"]));
        }
        UpdateCommand::Key(KeyCommand::List { cloud }) => {
            let v = call(&cloud, Method::GET, "/admin/release-keys", None).await?;
            for k in v.as_array().into_iter().flatten() {
                println!(
                    "{}  {}  {}",
                    text(&k["keyId"]),
                    text(&k["publicKey"]),
                    text(&k["name"])
                );
            }
        }
        UpdateCommand::Artifact(ArtifactCommand::Add {
            signed,
            url,
            file,
            cloud,
        }) => {
            let text_of = std::fs::read_to_string(&signed)
                .with_context(|| format!("cannot read {}", signed.display()))?;
            let mut body: Value = serde_json::from_str(&text_of).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not what `release-key sign` prints: {e}",
                    signed.display()
                )
            })?;
            if let Some(url) = url {
                body["url"] = Value::String(url);
            }
            let bytes = match &file {
                Some(f) => {
                    Some(std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?)
                }
                None => None,
            };
            let v = call(
                &cloud,
                Method::POST,
                "/admin/artifacts",
                Some(Body::Json(body)),
            )
            .await?;
            let id = text(&v["artifactId"]).to_string();
            if let Some(bytes) = bytes {
                call(
                    &cloud,
                    Method::PUT,
                    &format!("/admin/artifacts/{}/file", segment(&id)),
                    Some(Body::Bytes(bytes)),
                )
                .await?;
            }
            println!("artifact {id} ({}) registered", text(&v["version"]));
        }
        UpdateCommand::Artifact(ArtifactCommand::List { cloud }) => {
            let v = call(&cloud, Method::GET, "/admin/artifacts", None).await?;
            for a in v.as_array().into_iter().flatten() {
                println!(
                    "{}  {}  {}{}",
                    text(&a["artifactId"]),
                    text(&a["version"]),
                    text(&a["url"]),
                    if a["ready"] == false {
                        "  (file not uploaded)"
                    } else {
                        ""
                    }
                );
            }
        }
        UpdateCommand::Campaign(cmd) => campaign(cmd).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn campaign(cmd: CampaignCommand) -> anyhow::Result<()> {
    match cmd {
        CampaignCommand::Create {
            name,
            artifact,
            devices,
            merchants,
            sites,
            models,
            versions,
            window,
            canary,
            wave_size,
            failure_threshold,
            cloud,
        } => {
            let window = match window {
                Some(w) => {
                    let (start, end) = w
                        .split_once('-')
                        .ok_or_else(|| anyhow::anyhow!("--window is HH:MM-HH:MM, got '{w}'"))?;
                    json!({"start": start, "end": end})
                }
                None => Value::Null,
            };
            let mut body = json!({
                "name": name, "artifactId": artifact, "canary": canary, "waveSize": wave_size,
                "failureThreshold": failure_threshold,
                "target": {"deviceIds": devices, "merchantIds": merchants, "siteIds": sites,
                           "models": models, "versions": versions},
            });
            if !window.is_null() {
                body["window"] = window;
            }
            let v = call(
                &cloud,
                Method::POST,
                "/admin/campaigns",
                Some(Body::Json(body)),
            )
            .await?;
            println!(
                "campaign {} running over {} device(s)",
                text(&v["campaignId"]),
                v["devices"].as_array().map_or(0, Vec::len)
            );
        }
        CampaignCommand::List { cloud } => {
            let v = call(&cloud, Method::GET, "/admin/campaigns", None).await?;
            for c in v.as_array().into_iter().flatten() {
                println!(
                    "{}  {}  {}  {}  {}",
                    text(&c["campaignId"]),
                    text(&c["state"]),
                    text(&c["version"]),
                    text(&c["name"]),
                    c["counts"]
                );
            }
        }
        CampaignCommand::Show { id, cloud } => {
            let v = call(
                &cloud,
                Method::GET,
                &format!("/admin/campaigns/{}", segment(&id)),
                None,
            )
            .await?;
            print_json(&v);
        }
        CampaignCommand::Pause { id, cloud } => act(&cloud, &id, "pause").await?,
        CampaignCommand::Resume { id, cloud } => act(&cloud, &id, "resume").await?,
        CampaignCommand::Cancel { id, cloud } => act(&cloud, &id, "cancel").await?,
        CampaignCommand::Rollback { id, to, cloud } => {
            let v = call(
                &cloud,
                Method::POST,
                &format!("/admin/campaigns/{}/rollback", segment(&id)),
                Some(Body::Json(json!({"artifactId": to}))),
            )
            .await?;
            println!("campaign {} {}", text(&v["campaignId"]), text(&v["state"]));
        }
    }
    Ok(())
}

async fn act(cloud: &CloudArgs, id: &str, action: &str) -> anyhow::Result<()> {
    let v = call(
        cloud,
        Method::POST,
        &format!("/admin/campaigns/{}/{action}", segment(id)),
        None,
    )
    .await?;
    println!("campaign {} {}", text(&v["campaignId"]), text(&v["state"]));
    Ok(())
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}
