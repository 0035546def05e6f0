//! `eftcloud merchant|site|api-key|audit`: the accounts of an installation, administered on
//! the machine that holds the database (every change is in the audit log, actor `cli`).

use crate::database::DatabaseArgs;
use cloud::bus::connections::Connections;
use cloud::bus::LocalBus;
use cloud::domain::accounts::{AuditQuery, KeyOwner, Scope, Scopes};
use cloud::engine::accounts::{owner_label, Actor, NewApiKey, KEY_PREFIX};
use cloud::engine::{Engine, EngineSettings};
use std::process::ExitCode;
use std::sync::Arc;

/// Merchants: the businesses this installation serves.
#[derive(clap::Subcommand, Debug)]
pub enum MerchantCommand {
    /// Add a merchant; prints its id.
    Add {
        /// Its name (unique in the installation).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List merchants.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Set a merchant's default currency and tip limit.
    Set {
        /// The merchant, by id or name.
        #[arg(long)]
        merchant: String,
        /// The ISO 4217 currency of requests that name none (e.g. NZD).
        #[arg(long, value_parser = parse_currency)]
        currency: Option<protocol::Currency>,
        /// The largest tip adjustment, in percent of the amount asked for (0 to 100).
        #[arg(long)]
        max_tip_percent: Option<u32>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

fn parse_currency(s: &str) -> Result<protocol::Currency, String> {
    protocol::Currency::parse(s).map_err(|e| e.to_string())
}

/// Sites: the stores of a merchant.
#[derive(clap::Subcommand, Debug)]
pub enum SiteCommand {
    /// Add a site to a merchant; prints its id.
    Add {
        /// The merchant, by id or name.
        #[arg(long)]
        merchant: String,
        /// The site's name (unique within the merchant).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List sites.
    List {
        /// Only this merchant's (id or name).
        #[arg(long)]
        merchant: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse::<Scope>().map_err(|e| e.to_string())
}

/// API keys for POS software, merchants and operators.
#[derive(clap::Subcommand, Debug)]
pub enum ApiKeyCommand {
    /// Create a key; prints it (shown once: only a hash is stored).
    #[command(group(clap::ArgGroup::new("owner").required(true).args(["merchant", "vendor", "installation"])))]
    Create {
        /// A merchant's key (id or name): sees that merchant's devices and transactions only.
        #[arg(long)]
        merchant: Option<String>,
        /// A POS vendor's key: acts for the registers sending this `POSVendorName`, at any
        /// merchant (POS scopes only).
        #[arg(long)]
        vendor: Option<String>,
        /// An installation key: every merchant (an operator's).
        #[arg(long)]
        installation: bool,
        /// What the key may do (repeat or comma-separate): pos:transact, pos:read, pos:refund,
        /// devices:manage, reports:read, admin.
        #[arg(long = "scope", required = true, value_delimiter = ',', value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// What it is for (shown in lists).
        #[arg(long, default_value = "")]
        label: String,
        /// Expire after this long (`90d`, `12h`).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List keys (never their secrets).
    List {
        /// Only this merchant's (id or name).
        #[arg(long)]
        merchant: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke a key: refused at once by every node.
    Revoke {
        /// The key's id (as `api-key list` shows it), or the key itself.
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// `eftcloud audit`: the audit log, newest first.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Only this merchant's entries (id or name).
    #[arg(long)]
    merchant: Option<String>,
    /// Only actions starting with this (`api_key.`, `device.enrolled`).
    #[arg(long)]
    action: Option<String>,
    /// Only this actor's (`cli`, `admin-token`, `key:<id>`).
    #[arg(long)]
    actor: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    database: DatabaseArgs,
}

async fn engine(database: &DatabaseArgs) -> anyhow::Result<Engine> {
    let store = database.open().await?;
    // Accounts need no connections: an engine over an empty local bus is enough.
    let bus = Arc::new(LocalBus::new(Arc::new(Connections::default())));
    Ok(Engine::new(store, bus, EngineSettings::default()))
}

/// What a list shows from the command line: one merchant's (by id or name), or everything.
async fn seeing(
    engine: &Engine,
    merchant: Option<&str>,
) -> anyhow::Result<cloud::domain::accounts::Principal> {
    Ok(match merchant {
        Some(m) => cloud::domain::accounts::Principal::Key {
            id: "cli".into(),
            owner: KeyOwner::Merchant(engine.find_merchant(m).await.map_err(fail)?.id),
            scopes: Scopes::of([Scope::Admin]),
        },
        None => cloud::domain::accounts::Principal::owner_token(),
    })
}

fn fail(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Runs a merchant command.
pub async fn merchant(cmd: MerchantCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MerchantCommand::Add { name, database } => {
            let engine = engine(&database).await?;
            let m = engine
                .create_merchant(&name, &Actor::cli())
                .await
                .map_err(fail)?;
            println!("{}", m.id);
        }
        MerchantCommand::List { database } => {
            let merchants = engine(&database).await?.merchants().await?;
            if merchants.is_empty() {
                println!("no merchants (add one with `eftcloud merchant add --name <name>`)");
            } else {
                println!(
                    "{:<36}  {:<8}  {:<7}  NAME",
                    "MERCHANT", "CURRENCY", "MAX TIP"
                );
                for m in merchants {
                    let tip = format!("{}%", m.max_tip_percent);
                    println!("{:<36}  {:<8}  {:<7}  {}", m.id, m.currency, tip, m.name);
                }
            }
        }
        MerchantCommand::Set {
            merchant,
            currency,
            max_tip_percent,
            database,
        } => {
            if currency.is_none() && max_tip_percent.is_none() {
                anyhow::bail!("nothing to set: give --currency and/or --max-tip-percent");
            }
            let engine = engine(&database).await?;
            let m = engine.find_merchant(&merchant).await.map_err(fail)?;
            let m = engine
                .set_merchant_terms(&m, currency, max_tip_percent, &Actor::cli())
                .await
                .map_err(fail)?;
            println!(
                "merchant {} ({}): currency {}, maximum tip {}%",
                m.name, m.id, m.currency, m.max_tip_percent
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a site command.
pub async fn site(cmd: SiteCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SiteCommand::Add {
            merchant,
            name,
            database,
        } => {
            let engine = engine(&database).await?;
            let m = engine.find_merchant(&merchant).await.map_err(fail)?;
            let s = engine
                .create_site(&m, &name, &Actor::cli())
                .await
                .map_err(fail)?;
            println!("{}", s.id);
        }
        SiteCommand::List { merchant, database } => {
            let engine = engine(&database).await?;
            let m = match merchant {
                Some(m) => Some(engine.find_merchant(&m).await.map_err(fail)?.id),
                None => None,
            };
            let sites = engine.sites(m.as_ref()).await?;
            if sites.is_empty() {
                println!(
                    "no sites (add one with `eftcloud site add --merchant <m> --name <name>`)"
                );
            } else {
                println!("{:<36}  {:<36}  NAME", "SITE", "MERCHANT");
                for s in sites {
                    println!("{:<36}  {:<36}  {}", s.id, s.merchant_id, s.name);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs an API key command.
pub async fn api_key(cmd: ApiKeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ApiKeyCommand::Create {
            merchant,
            vendor,
            installation: _,
            scopes,
            label,
            expires_in,
            database,
        } => {
            let engine = engine(&database).await?;
            let owner = match (merchant, vendor) {
                (Some(m), _) => {
                    KeyOwner::Merchant(engine.find_merchant(&m).await.map_err(fail)?.id)
                }
                (None, Some(v)) if v.trim().is_empty() => {
                    anyhow::bail!("--vendor must not be empty")
                }
                (None, Some(v)) => KeyOwner::Vendor(v.trim().to_string()),
                (None, None) => KeyOwner::Installation,
            };
            let expires_at = expires_in
                .map(|d| chrono::Duration::from_std(d).map(|d| engine.now() + d))
                .transpose()
                .map_err(|_| anyhow::anyhow!("--expires-in is too long"))?;
            let created = engine
                .create_api_key(
                    NewApiKey {
                        owner,
                        scopes: Scopes::of(scopes),
                        label,
                        expires_at,
                    },
                    &Actor::cli(),
                )
                .await
                .map_err(fail)?;
            println!("{}", created.key);
            eprintln!(
                "key {} ({}; {}): shown once, only its hash is stored",
                created.record.id,
                owner_label(&created.record.owner),
                created.record.scopes
            );
        }
        ApiKeyCommand::List { merchant, database } => {
            let engine = engine(&database).await?;
            let principal = seeing(&engine, merchant.as_deref()).await?;
            let keys = engine.api_keys(&principal).await?;
            if keys.is_empty() {
                println!("no API keys (create one with `eftcloud api-key create`)");
                return Ok(ExitCode::SUCCESS);
            }
            let now = engine.now();
            println!(
                "{:<12}  {:<8}  {:<48}  {:<40}  {:<20}  LABEL",
                "KEY", "STATE", "OWNER", "SCOPES", "LAST USED"
            );
            for k in keys {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else if !k.is_live(now) {
                    "expired"
                } else {
                    "active"
                };
                let last = k
                    .last_used_at
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| "never".into());
                println!(
                    "{:<12}  {:<8}  {:<48}  {:<40}  {:<20}  {}",
                    k.id,
                    state,
                    owner_label(&k.owner),
                    k.scopes.to_string(),
                    last,
                    k.label
                );
            }
        }
        ApiKeyCommand::Revoke { id, database } => {
            let engine = engine(&database).await?;
            // The key itself, or its prefix, names the key too.
            let id = id.trim();
            let id = id
                .strip_prefix(KEY_PREFIX)
                .map(|rest| rest.split('_').next().unwrap_or(rest))
                .unwrap_or(id);
            let revoked = engine
                .revoke_api_key(
                    id,
                    &cloud::domain::accounts::Principal::owner_token(),
                    &Actor::cli(),
                )
                .await
                .map_err(fail)?;
            println!("revoked {}", revoked.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the audit log.
pub async fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let engine = engine(&args.database).await?;
    let merchant = match &args.merchant {
        Some(m) => Some(engine.find_merchant(m).await.map_err(fail)?.id),
        None => None,
    };
    let q = AuditQuery {
        merchant,
        action: args.action,
        actor: args.actor,
        before: None,
        limit: args.limit.clamp(1, 10_000),
    };
    let entries = engine
        .audit_log(&cloud::domain::accounts::Principal::owner_token(), q)
        .await?;
    for e in entries {
        if args.json {
            let line = serde_json::json!({
                "seq": e.seq, "at": e.at.to_rfc3339(), "actor": e.actor, "source": e.source,
                "action": e.action, "target": e.target,
                "merchantId": e.merchant_id.map(|m| m.to_string()),
                "detail": serde_json::from_str::<serde_json::Value>(&e.detail).unwrap_or_default(),
            });
            println!("{line}");
        } else {
            println!(
                "{:>6}  {}  {:<24}  {:<22}  {:<36}  {}",
                e.seq,
                e.at.format("%Y-%m-%d %H:%M:%S"),
                e.actor,
                e.action,
                e.target,
                e.detail
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_role(s: &str) -> Result<cloud::domain::people::Role, String> {
    s.parse()
        .map_err(|e: cloud::domain::people::PersonError| e.to_string())
}

/// People who sign in to the dashboard.
#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Add a person. Prints a generated password unless --password-stdin gives one.
    Add {
        #[arg(long)]
        email: String,
        /// owner, operator, merchant-admin or viewer.
        #[arg(long, value_parser = parse_role)]
        role: cloud::domain::people::Role,
        /// Their merchant (id or name): required for a merchant-admin, optional for a viewer.
        #[arg(long)]
        merchant: Option<String>,
        /// Read the password from the first line of standard input instead.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List people.
    List {
        /// Only this merchant's (id or name).
        #[arg(long)]
        merchant: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Remove a person; their sessions end at once.
    Remove {
        #[arg(long)]
        email: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Set a new password (generated and printed, or read with --password-stdin); the
    /// person's sessions end at once.
    ResetPassword {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// The password to set: the first line of stdin, or a generated one (printed).
fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        let p = line.trim_end_matches(['\r', '\n']).to_string();
        if p.is_empty() {
            anyhow::bail!("--password-stdin: no password on standard input");
        }
        return Ok((p, false));
    }
    Ok((cloud::engine::people::generate_password(), true))
}

/// Runs a user command.
pub async fn user(cmd: UserCommand) -> anyhow::Result<ExitCode> {
    use cloud::engine::people::NewUser;
    match cmd {
        UserCommand::Add {
            email,
            role,
            merchant,
            password_stdin,
            database,
        } => {
            let engine = engine(&database).await?;
            let merchant = match merchant {
                Some(m) => Some(engine.find_merchant(&m).await.map_err(fail)?.id),
                None => None,
            };
            let (password, generated) = password(password_stdin)?;
            let user = engine
                .create_user(
                    NewUser {
                        email,
                        password: password.clone(),
                        role,
                        merchant,
                    },
                    &Actor::cli(),
                )
                .await
                .map_err(fail)?;
            if generated {
                println!("{password}");
            }
            eprintln!("added {} ({})", user.email, user.role);
        }
        UserCommand::List { merchant, database } => {
            let engine = engine(&database).await?;
            let principal = seeing(&engine, merchant.as_deref()).await?;
            let users = engine.users(&principal).await?;
            if users.is_empty() {
                println!(
                    "nobody yet (add an owner with `eftcloud user add --email <e> --role owner`)"
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<40}  {:<15}  MERCHANT", "EMAIL", "ROLE");
            for u in users {
                println!(
                    "{:<40}  {:<15}  {}",
                    u.email.as_str(),
                    u.role.as_str(),
                    u.merchant_id
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        UserCommand::Remove { email, database } => {
            let engine = engine(&database).await?;
            let u = engine
                .remove_user(&email, &Actor::cli())
                .await
                .map_err(fail)?;
            println!("removed {}", u.email);
        }
        UserCommand::ResetPassword {
            email,
            password_stdin,
            database,
        } => {
            let engine = engine(&database).await?;
            let (password, generated) = password(password_stdin)?;
            let u = engine
                .reset_password(&email, &password, &Actor::cli())
                .await
                .map_err(fail)?;
            if generated {
                println!("{password}");
            }
            eprintln!("new password set for {}; their sessions ended", u.email);
        }
    }
    Ok(ExitCode::SUCCESS)
}
