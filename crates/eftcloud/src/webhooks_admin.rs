//! `eftcloud webhook …` and `eftcloud events`: webhook endpoints and the event log, through a
//! running cloud's admin API (`/admin/webhooks`, `/admin/event-log`), so that changes are
//! audited under the credential that made them and deliveries start at once on every node.

use crate::profiles_admin::{call, print_json, segment, Body, CloudArgs};
use reqwest::Method;
use serde_json::{json, Value};
use std::process::ExitCode;

/// The webhook subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum WebhookCommand {
    /// Create an endpoint; prints its id and signing secret (shown once).
    Create {
        /// Where deliveries are POSTed (http:// or https://).
        url: String,
        /// Event types or families to receive (`transaction.completed`, `device.*`), comma
        /// separated; all when left out.
        #[arg(long, value_delimiter = ',')]
        types: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// For this merchant (its id) rather than the whole installation.
        #[arg(long, conflicts_with = "vendor")]
        merchant: Option<String>,
        /// For this POS vendor's registers.
        #[arg(long)]
        vendor: Option<String>,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// List endpoints with their state.
    List {
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Change an endpoint's URL, types or description, or enable or disable it.
    Update {
        id: String,
        #[arg(long)]
        url: Option<String>,
        #[arg(long, value_delimiter = ',')]
        types: Option<Vec<String>>,
        #[arg(long)]
        description: Option<String>,
        /// Resume delivering (also after the cloud disabled it).
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Stop delivering until enabled again.
        #[arg(long)]
        disable: bool,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Delete an endpoint and its delivery log.
    Delete {
        id: String,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Replace the signing secret; the old one still signs for the grace period.
    RotateSecret {
        id: String,
        /// How long the old secret keeps signing, in seconds (default a day).
        #[arg(long)]
        grace_seconds: Option<i64>,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// The delivery log, newest first.
    Deliveries {
        id: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Deliver an event again.
    Redeliver {
        id: String,
        /// The event's id (`evt_…`).
        event: String,
        #[command(flatten)]
        cloud: CloudArgs,
    },
}

/// `eftcloud events`: a page of the event log.
#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    /// Start after this cursor (a previous `next cursor`); from the oldest event when left out.
    #[arg(long)]
    after: Option<String>,
    /// Types or families, comma separated.
    #[arg(long)]
    types: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print the API's JSON instead of one line per event.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cloud: CloudArgs,
}

fn path(id: &str, rest: &str) -> String {
    format!("/admin/webhooks/{}{rest}", segment(id))
}

fn print_endpoint(e: &Value) {
    let state = match (e["enabled"].as_bool(), e["disabledReason"].as_str()) {
        (Some(true), _) if e["failingSince"].is_string() => {
            format!("failing since {}", e["failingSince"].as_str().unwrap_or(""))
        }
        (Some(true), _) => "enabled".to_string(),
        (_, Some(reason)) => format!("disabled: {reason}"),
        _ => "disabled".to_string(),
    };
    let owner = e["merchantId"]
        .as_str()
        .map(|m| format!("merchant {m}"))
        .or_else(|| e["vendor"].as_str().map(|v| format!("vendor {v}")))
        .unwrap_or_else(|| "installation".into());
    let types: Vec<&str> = e["eventTypes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    println!(
        "{}  {}  [{}]  {owner}  {state}",
        e["id"].as_str().unwrap_or("?"),
        e["url"].as_str().unwrap_or("?"),
        types.join(",")
    );
}

pub async fn run(cmd: WebhookCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WebhookCommand::Create {
            url,
            types,
            description,
            merchant,
            vendor,
            cloud,
        } => {
            let mut body = json!({"url": url, "description": description});
            if !types.is_empty() {
                body["eventTypes"] = json!(types);
            }
            if let Some(m) = merchant {
                body["merchantId"] = json!(m);
            }
            if let Some(v) = vendor {
                body["vendor"] = json!(v);
            }
            let e = call(
                &cloud,
                Method::POST,
                "/admin/webhooks",
                Some(Body::Json(body)),
            )
            .await?;
            print_endpoint(&e);
            println!(
                "signing secret (shown once): {}",
                e["secret"].as_str().unwrap_or("?")
            );
        }
        WebhookCommand::List { cloud } => {
            let v = call(&cloud, Method::GET, "/admin/webhooks", None).await?;
            for e in v["endpoints"].as_array().into_iter().flatten() {
                print_endpoint(e);
            }
        }
        WebhookCommand::Update {
            id,
            url,
            types,
            description,
            enable,
            disable,
            cloud,
        } => {
            let mut body = json!({});
            if let Some(u) = url {
                body["url"] = json!(u);
            }
            if let Some(t) = types {
                body["eventTypes"] = json!(t);
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if enable || disable {
                body["enabled"] = json!(enable);
            }
            let e = call(
                &cloud,
                Method::PATCH,
                &path(&id, ""),
                Some(Body::Json(body)),
            )
            .await?;
            print_endpoint(&e);
        }
        WebhookCommand::Delete { id, cloud } => {
            call(&cloud, Method::DELETE, &path(&id, ""), None).await?;
            println!("deleted {id}");
        }
        WebhookCommand::RotateSecret {
            id,
            grace_seconds,
            cloud,
        } => {
            let body = match grace_seconds {
                Some(g) => json!({"graceSeconds": g}),
                None => json!({}),
            };
            let v = call(
                &cloud,
                Method::POST,
                &path(&id, "/rotate-secret"),
                Some(Body::Json(body)),
            )
            .await?;
            println!(
                "new signing secret (shown once): {}",
                v["secret"].as_str().unwrap_or("?")
            );
            if let Some(until) = v["previousSecretExpiresAt"].as_str() {
                println!("the previous secret signs too until {until}");
            }
        }
        WebhookCommand::Deliveries { id, limit, cloud } => {
            let v = call(
                &cloud,
                Method::GET,
                &path(&id, &format!("/deliveries?limit={limit}")),
                None,
            )
            .await?;
            for d in v["deliveries"].as_array().into_iter().flatten() {
                let outcome = if d["delivered"] == true {
                    format!("delivered {}", d["responseCode"])
                } else {
                    format!("failed: {}", d["error"].as_str().unwrap_or("?"))
                };
                println!(
                    "{}  {}  {}  attempt {}  {outcome}",
                    d["at"].as_str().unwrap_or(""),
                    d["eventId"].as_str().unwrap_or(""),
                    d["eventType"].as_str().unwrap_or(""),
                    d["attempt"]
                );
            }
        }
        WebhookCommand::Redeliver { id, event, cloud } => {
            call(
                &cloud,
                Method::POST,
                &path(&id, "/redeliver"),
                Some(Body::Json(json!({"eventId": event}))),
            )
            .await?;
            println!("queued {event} for {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a page of the event log, and the cursor to continue from.
pub async fn events(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let mut query = format!("limit={}", args.limit);
    if let Some(a) = &args.after {
        query.push_str(&format!("&after={}", segment(a)));
    }
    if let Some(t) = &args.types {
        query.push_str(&format!("&types={}", segment(t)));
    }
    let v = call(
        &args.cloud,
        Method::GET,
        &format!("/admin/event-log?{query}"),
        None,
    )
    .await?;
    if args.json {
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    for e in v["events"].as_array().into_iter().flatten() {
        let about = e["data"]["transactionId"]
            .as_str()
            .or_else(|| e["data"]["deviceId"].as_str())
            .unwrap_or("");
        println!(
            "{}  {}  {:<22}  {about}",
            e["cursor"].as_str().unwrap_or(""),
            e["createdAt"].as_str().unwrap_or(""),
            e["type"].as_str().unwrap_or("")
        );
    }
    println!("next cursor: {}", v["nextCursor"].as_str().unwrap_or(""));
    Ok(ExitCode::SUCCESS)
}
