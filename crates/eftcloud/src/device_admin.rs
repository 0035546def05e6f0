//! `eftcloud device add|list`: enrollment and the fleet at a glance.

use crate::database::DatabaseArgs;
use cloud::bus::connections::Connections;
use cloud::bus::LocalBus;
use cloud::engine::accounts::Actor;
use cloud::engine::devices::{EnrollError, NewDevice};
use cloud::engine::{Engine, EngineSettings};
use protocol::{DeviceId, RegisterKey};
use std::process::ExitCode;
use std::sync::Arc;

/// Device administration.
#[derive(clap::Subcommand, Debug)]
pub enum DeviceCommand {
    /// Enroll a device; prints its secret (shown once, only a hash is stored).
    Add {
        /// The device's id (letters, digits, '.', '_', '-'; e.g. its serial number).
        #[arg(long)]
        id: String,
        #[arg(long, default_value = "")]
        vendor: String,
        #[arg(long, default_value = "")]
        model: String,
        /// The merchant, by id or name (returned to the POS as `Merchant`); a name no merchant
        /// has yet creates that merchant.
        #[arg(long, default_value = "")]
        merchant: String,
        /// A site of that merchant, by id or name (`eftcloud site add`).
        #[arg(long)]
        site: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List devices with their paired registers and online state.
    List {
        /// Only the devices of this merchant.
        #[arg(long)]
        merchant: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Give a device a new secret (printed once); the old one stops working.
    RotateSecret {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke a device: no secret opens it any more (rotate-secret brings it back).
    Revoke {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Unpair registers from a device (all of them, or the one named by the triple).
    Unpair {
        #[arg(long)]
        id: String,
        /// With --business and --vendor: unpair only this register.
        #[arg(long, requires_all = ["business", "vendor"])]
        register_id: Option<String>,
        #[arg(long, requires = "register_id")]
        business: Option<String>,
        #[arg(long, requires = "register_id")]
        vendor: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// Runs a device command.
pub async fn run(cmd: DeviceCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DeviceCommand::Add {
            id,
            vendor,
            model,
            merchant,
            site,
            database,
        } => {
            let id = DeviceId::parse(&id).map_err(|e| anyhow::anyhow!("--id '{id}': {e}"))?;
            let store = database.open().await?;
            // Enrollment needs no connections: an engine over an empty local bus is enough.
            let bus = Arc::new(LocalBus::new(Arc::new(Connections::default())));
            let engine = Engine::new(store, bus, EngineSettings::default());
            match engine
                .enroll_device(
                    &id,
                    &NewDevice {
                        vendor,
                        model,
                        merchant,
                        site,
                    },
                )
                .await
            {
                Ok(secret) => {
                    println!("{secret}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ (EnrollError::AlreadyEnrolled(_) | EnrollError::Accounts(_))) => {
                    Err(anyhow::anyhow!("{e}"))
                }
                Err(e) => Err(e.into()),
            }
        }
        DeviceCommand::RotateSecret { id, database } => credentials(&id, &database, true).await,
        DeviceCommand::Revoke { id, database } => credentials(&id, &database, false).await,
        DeviceCommand::Unpair {
            id,
            register_id,
            business,
            vendor,
            database,
        } => {
            let id = DeviceId::parse(&id).map_err(|e| anyhow::anyhow!("--id '{id}': {e}"))?;
            let store = database.open().await?;
            if store.device(&id).await?.is_none() {
                anyhow::bail!("no device '{id}' is enrolled");
            }
            let bus = Arc::new(LocalBus::new(Arc::new(Connections::default())));
            let engine = Engine::new(store, bus, EngineSettings::default());
            let key = register_id
                .map(|r| {
                    RegisterKey::parse(Some(&r), business.as_deref(), vendor.as_deref())
                        .map_err(|e| anyhow::anyhow!("{e}"))
                })
                .transpose()?;
            let removed = engine
                .unpair(&id, key.as_ref(), &cloud::engine::accounts::Actor::cli())
                .await?;
            if removed.is_empty() {
                println!("nothing to unpair");
            }
            for r in removed {
                println!("unpaired {r}");
            }
            Ok(ExitCode::SUCCESS)
        }
        DeviceCommand::List { merchant, database } => {
            let store = database.open().await?;
            let mut devices = store.devices().await?;
            if let Some(m) = &merchant {
                // By merchant id, or by name (the merchant's or the one the device was given).
                let account = store.merchant_named(m.trim()).await?.map(|a| a.id);
                let by_id = cloud::domain::accounts::MerchantId::parse(m).ok();
                devices.retain(|d| {
                    &d.merchant == m
                        || Some(&d.merchant_id) == account.as_ref()
                        || Some(&d.merchant_id) == by_id.as_ref()
                });
            }
            if devices.is_empty() {
                println!("no devices enrolled (add one with `eftcloud device add --id <id>`)");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<24} {:<8} {:<16} {:<16} {:<16} REGISTERS",
                "DEVICE", "STATE", "VENDOR", "MODEL", "MERCHANT"
            );
            for d in devices {
                let registers = store.registers_of(&d.id).await?;
                let names: Vec<String> = registers
                    .iter()
                    .map(|r| format!("{} ({})", r.info.register_name, r.info.key))
                    .collect();
                let state = if d.connected_at.is_some() {
                    "online"
                } else {
                    "offline"
                };
                println!(
                    "{:<24} {:<8} {:<16} {:<16} {:<16} {}",
                    d.id.as_str(),
                    state,
                    d.vendor,
                    d.model,
                    d.merchant,
                    if names.is_empty() {
                        "-".to_string()
                    } else {
                        names.join(", ")
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Rotates (`rotate`) or revokes a device's secret in the database.
async fn credentials(id: &str, database: &DatabaseArgs, rotate: bool) -> anyhow::Result<ExitCode> {
    let id = DeviceId::parse(id).map_err(|e| anyhow::anyhow!("--id '{id}': {e}"))?;
    let store = database.open().await?;
    let bus = Arc::new(LocalBus::new(Arc::new(Connections::default())));
    let engine = Engine::new(store, bus, EngineSettings::default());
    if rotate {
        println!("{}", engine.rotate_secret(&id, &Actor::cli()).await?);
    } else {
        engine.revoke(&id, &Actor::cli()).await?;
        println!("revoked {id}");
    }
    // This process holds no connections: a running cloud closes the device's current
    // connection only through its admin API.
    eprintln!(
        "note: a device connected right now keeps its connection until it reconnects; \
         POST /admin/devices/{id}/{} on the cloud (admin token) disconnects it at once",
        if rotate { "rotate-secret" } else { "revoke" }
    );
    Ok(ExitCode::SUCCESS)
}
