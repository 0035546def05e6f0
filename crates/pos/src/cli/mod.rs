//! `eftcloud pos ...`: pair a register and run transactions from the command line, the way a
//! POS would. The binary wires [`PosArgs`] in and calls [`run`] (or [`run_to_exit_code`]).
//!
//! Exit codes: 0 for an accepted financial function or a successful non-financial one, 1 for
//! any other outcome (declined, cancelled, failed), 2 for usage and API errors.

mod actions;

use crate::client::PosClient;
use crate::error::PosError;
use crate::extensions::Lookup;
use crate::outcome::outcome_is_success;
use crate::payments::FollowUp;
use crate::polling::WaitOptions;
use crate::register::PairingDetails;
use crate::transaction::TransactionSpec;
use clap::{Args, Subcommand};
use protocol::pos_api::{keys, TransactionEnvelope, DELAYED_TEXT};
use protocol::request::RequestError;
use protocol::{Cents, Function, PairingCode, RegisterKey, TransactionRequest, TransactionResult};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// Talk to the cloud as a POS register: pair, run transactions.
#[derive(Debug, Args)]
pub struct PosArgs {
    /// The cloud's base URL: `http://host:port`, or a SmartConnect-style `https://host/POS`.
    #[arg(
        long,
        env = "EFTCLOUD_CLOUD",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    cloud: String,
    /// A CA certificate (PEM) to trust besides the public roots, for an https cloud with a
    /// self-signed or private certificate (e.g. `eftcloud-data/tls/dev-cert.pem`).
    #[arg(long, env = "EFTCLOUD_CA_CERT", global = true)]
    ca_cert: Option<std::path::PathBuf>,
    /// An eftcloud API key (`eftcloud api-key create`), sent as `Authorization: Bearer`; none
    /// for a keyless SmartConnect register.
    #[arg(
        long,
        env = "EFTCLOUD_POS_API_KEY",
        global = true,
        hide_env_values = true
    )]
    api_key: Option<String>,
    #[command(subcommand)]
    command: PosCommand,
}

/// The `pos` subcommands.
#[derive(Debug, Subcommand)]
pub enum PosCommand {
    /// Pair this register with the device showing the pairing code; prints `paired`.
    Pair(PairArgs),
    /// Run one transaction (e.g. `Card.Purchase --amount 500`) and print its outcome.
    Transact(TransactArgs),
    /// Find a transaction of this register again by its POS reference or id (eftcloud).
    Lookup(LookupArgs),
    /// Cancel a transaction of this register (eftcloud); prints the outcome.
    Cancel(CancelArgs),
    /// Is this register paired, is its device online and busy (eftcloud)?
    Status(StatusArgs),
    /// The event timeline of a transaction of this register (eftcloud).
    Events(EventsArgs),
    /// Refund all or part of a payment by its transactionId, on this register's device
    /// (eftcloud).
    Refund(AmountFollowUpArgs),
    /// Void a payment before its device settles (eftcloud).
    Void(FollowUpArgs),
    /// Set the tip of a payment, in minor units (eftcloud).
    Adjust(TipArgs),
    /// Top up a pre-authorisation (eftcloud).
    Increment(AmountFollowUpArgs),
    /// Capture (complete) a pre-authorisation (eftcloud).
    Capture(AmountFollowUpArgs),
    /// Release a pre-authorisation (eftcloud).
    Release(FollowUpArgs),
    /// What a payment comes to with its refunds, void, tips, top-ups (eftcloud).
    Payment(EventsArgs),
    /// Orders paid by split tenders (eftcloud).
    #[command(subcommand)]
    Order(OrderCommand),
    /// Show a cart on the customer's screen, or clear it (eftcloud).
    Display(actions::DisplayArgs),
    /// Ask the customer for a signature, email, phone, number, text, choice or yes/no, and
    /// print the answer (eftcloud).
    Input(actions::InputArgs),
    /// Print a slip on the terminal's printer (eftcloud).
    Print(actions::PrintArgs),
    /// Show a QR code on the terminal's screen (eftcloud).
    Qr(actions::QrArgs),
}

/// Arguments of a follow-up without an amount (`void`, `release`).
#[derive(Debug, Args)]
pub struct FollowUpArgs {
    /// The original payment's transactionId.
    id: String,
    #[command(flatten)]
    register: RegisterArgs,
    /// The POS's reference for this follow-up: a retry returns the same one.
    #[arg(long)]
    pos_reference: Option<String>,
    /// Wait up to this long for the outcome.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    wait: Duration,
    /// Print the envelope as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of a follow-up with an amount (`refund`, `increment`, `capture`).
#[derive(Debug, Args)]
pub struct AmountFollowUpArgs {
    #[command(flatten)]
    follow_up: FollowUpArgs,
    /// The amount, in minor units of the payment's currency (cents for AUD).
    #[arg(long, value_parser = parse_cents)]
    amount: Cents,
}

/// Arguments of `pos adjust`.
#[derive(Debug, Args)]
pub struct TipArgs {
    #[command(flatten)]
    follow_up: FollowUpArgs,
    /// The new tip, in minor units (0 removes it).
    #[arg(long)]
    tip: u64,
}

/// `pos order ...`.
#[derive(Debug, clap::Subcommand)]
pub enum OrderCommand {
    /// Create an order; prints its orderId (pay it with `transact --order <id>`).
    Create {
        #[command(flatten)]
        register: RegisterArgs,
        /// The total, in minor units.
        #[arg(long, value_parser = parse_cents)]
        amount: Cents,
        /// ISO 4217 (the merchant's default when absent).
        #[arg(long)]
        currency: Option<String>,
        #[arg(long)]
        pos_reference: Option<String>,
    },
    /// An order with its tenders.
    Show {
        id: String,
        #[command(flatten)]
        register: RegisterArgs,
    },
    /// Cancel an order; `--reverse` voids or refunds its approved tenders.
    Cancel {
        id: String,
        #[command(flatten)]
        register: RegisterArgs,
        #[arg(long)]
        reverse: bool,
    },
}

/// Arguments of `pos lookup`.
#[derive(Debug, Args)]
pub struct LookupArgs {
    #[command(flatten)]
    register: RegisterArgs,
    /// The PosReference sent with the transaction (`transact --pos-reference`).
    #[arg(long, conflicts_with = "id", required_unless_present = "id")]
    pos_reference: Option<String>,
    /// The transactionId.
    #[arg(long)]
    id: Option<String>,
    /// Wait up to this long for the transaction to complete (long-poll, at most 60s).
    #[arg(long, value_parser = humantime::parse_duration)]
    wait: Option<Duration>,
    /// Print the envelope as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `pos cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The transactionId.
    id: String,
    #[command(flatten)]
    register: RegisterArgs,
    /// Wait up to this long for the device's final answer.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    wait: Duration,
    /// Print the envelope as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `pos status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    register: RegisterArgs,
}

/// Arguments of `pos events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The transactionId.
    id: String,
    #[command(flatten)]
    register: RegisterArgs,
}

/// The register triple; the same values must be used at pairing and on every transaction.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// POSRegisterID: unique across all of the vendor's registers (a UUID is typical).
    #[arg(long, env = "EFTCLOUD_POS_REGISTER_ID")]
    register_id: String,
    /// POSBusinessName.
    #[arg(long, env = "EFTCLOUD_POS_BUSINESS")]
    business: String,
    /// POSVendorName.
    #[arg(long, env = "EFTCLOUD_POS_VENDOR")]
    vendor: String,
}

/// Arguments of `pos pair`.
#[derive(Debug, Args)]
pub struct PairArgs {
    /// The pairing code shown on the device (8 digits; spaces and dashes are ignored).
    code: String,
    #[command(flatten)]
    register: RegisterArgs,
    /// POSRegisterName: the name the device shows for this register.
    #[arg(long)]
    register_name: String,
    /// Store contact name.
    #[arg(long)]
    contact_name: Option<String>,
    /// Store address.
    #[arg(long)]
    address: Option<String>,
    /// Store city.
    #[arg(long)]
    city: Option<String>,
    /// Store state.
    #[arg(long)]
    state: Option<String>,
    /// Store zip code.
    #[arg(long)]
    zip_code: Option<String>,
    /// Store email.
    #[arg(long)]
    email: Option<String>,
    /// Store phone.
    #[arg(long)]
    phone: Option<String>,
}

/// Arguments of `pos transact`.
#[derive(Debug, Args)]
pub struct TransactArgs {
    /// The TransactionType, e.g. Card.Purchase, Card.Refund, Terminal.GetStatus.
    #[arg(value_name = "TRANSACTION_TYPE", value_parser = parse_function)]
    function: Function,
    /// Amount in cents (AmountAuth for Card.Authorise, AmountFinal for Card.Finalise,
    /// AmountTotal otherwise).
    #[arg(long, value_name = "CENTS", value_parser = parse_cents)]
    amount: Option<Cents>,
    /// Cash-out part of the total in cents (Card.PurchasePlusCash).
    #[arg(long, value_name = "CENTS", value_parser = parse_cents)]
    cash: Option<Cents>,
    /// TransactionReference linking Card.Finalise to its Card.Authorise (not the POS's own
    /// reference: that is --pos-reference).
    #[arg(long, value_name = "REF")]
    transaction_reference: Option<String>,
    /// Settlement date for Acquirer.Settlement.Inquiry.
    #[arg(long, value_name = "yyyyMMdd")]
    date: Option<String>,
    /// SaleData JSON, inline or `@path/to/file.json`.
    #[arg(long, value_name = "JSON|@FILE")]
    sale_data: Option<String>,
    /// PosNotificationCallbackUrl: notified when the transaction completes.
    #[arg(long, value_name = "URL")]
    callback_url: Option<String>,
    /// PosReference: retrying with the same reference returns the original transaction.
    #[arg(long, value_name = "REF")]
    pos_reference: Option<String>,
    /// ISO 4217 currency of the amounts (eftcloud; the merchant's default when absent).
    #[arg(long, value_name = "CODE", value_parser = parse_currency)]
    currency: Option<protocol::Currency>,
    /// Pay this as a tender of an order (eftcloud: `pos order create`).
    #[arg(long, value_name = "ORDER_ID")]
    order: Option<String>,
    /// Card.Refund / Card.Finalise by reference: the original's transactionId (eftcloud).
    #[arg(long, value_name = "ID")]
    original: Option<String>,
    #[command(flatten)]
    register: RegisterArgs,
    /// Use the legacy synchronous mode: one request held open until completion.
    #[arg(long)]
    sync: bool,
    /// Pause between polls.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// Give up waiting after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Print the completed envelope as JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

/// Why the CLI stopped without an outcome; all of these exit with code 2.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Arguments that cannot make a valid request.
    #[error("{0}")]
    Usage(String),
    /// The cloud refused the request, or could not be reached.
    #[error(transparent)]
    Pos(#[from] PosError),
    /// The transaction did not complete in time; it may still complete on the device.
    #[error(
        "no outcome for transaction {transaction_id} after {}; it may still complete, poll {polling_url}",
        humantime::format_duration(*waited)
    )]
    Timeout {
        /// The transaction's id.
        transaction_id: String,
        /// Where its outcome can still be fetched.
        polling_url: String,
        /// How long the CLI waited.
        waited: Duration,
    },
}

impl CliError {
    /// The process exit code for this error: 2, as for any usage or API error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(2)
    }
}

/// Runs a `pos` subcommand. `Ok` carries the exit code of a completed command (0 or 1); on
/// `Err` the caller prints `error: {err}` to stderr and exits with [`CliError::exit_code`].
pub async fn run(args: PosArgs) -> Result<ExitCode, CliError> {
    let client = PosClient::with_options(
        &args.cloud,
        args.ca_cert.as_deref(),
        args.api_key.as_deref(),
    )?;
    match args.command {
        PosCommand::Pair(a) => pair(&client, a).await,
        PosCommand::Transact(a) => transact(&client, a).await,
        PosCommand::Lookup(a) => {
            let by = match (a.pos_reference, a.id) {
                (Some(r), _) => Lookup::Reference(r),
                (None, Some(id)) => Lookup::Id(id),
                (None, None) => return Err(CliError::Usage("give --pos-reference or --id".into())),
            };
            let env = client.lookup(&a.register.key()?, &by, a.wait).await?;
            outcome(&env, a.json)
        }
        PosCommand::Cancel(a) => {
            let env = client
                .cancel(&a.register.key()?, &a.id, Some(a.wait))
                .await?;
            outcome(&env, a.json)
        }
        PosCommand::Status(a) => {
            let s = client.register_status(&a.register.key()?).await?;
            let text = if s.paired {
                format!(
                    "paired:  yes ({})\ndevice:  {}\nonline:  {}\nbusy:    {}{}\n",
                    s.register_name.unwrap_or_default(),
                    s.device_id.unwrap_or_default(),
                    if s.online { "yes" } else { "no" },
                    if s.busy { "yes" } else { "no" },
                    s.active_transaction_id
                        .map(|id| format!(" ({id})"))
                        .unwrap_or_default(),
                )
            } else {
                "paired:  no (pair it with `eftcloud pos pair <code> ...`)\n".to_string()
            };
            print_stdout(&text);
            Ok(if s.paired {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        PosCommand::Events(a) => {
            for e in client.events(&a.register.key()?, &a.id).await? {
                print_stdout(&event_line(&e.at, &e.event, &e.detail));
            }
            Ok(ExitCode::SUCCESS)
        }
        PosCommand::Refund(a) => follow_up(&client, a.follow_up, FollowUp::Refund(a.amount)).await,
        PosCommand::Void(a) => follow_up(&client, a, FollowUp::Void).await,
        PosCommand::Adjust(a) => follow_up(&client, a.follow_up, FollowUp::TipAdjust(a.tip)).await,
        PosCommand::Increment(a) => {
            follow_up(&client, a.follow_up, FollowUp::TopUp(a.amount)).await
        }
        PosCommand::Capture(a) => {
            follow_up(&client, a.follow_up, FollowUp::Capture(a.amount)).await
        }
        PosCommand::Release(a) => follow_up(&client, a, FollowUp::Release).await,
        PosCommand::Display(a) => actions::display(&client, a).await,
        PosCommand::Input(a) => actions::input(&client, a).await,
        PosCommand::Print(a) => actions::print(&client, a).await,
        PosCommand::Qr(a) => actions::qr(&client, a).await,
        PosCommand::Payment(a) => {
            let p = client.payment(&a.register.key()?, &a.id).await?;
            print_stdout(&payment_text(&p));
            Ok(ExitCode::SUCCESS)
        }
        PosCommand::Order(cmd) => order(&client, cmd).await,
    }
}

async fn follow_up(
    client: &PosClient,
    a: FollowUpArgs,
    what: FollowUp,
) -> Result<ExitCode, CliError> {
    let env = client
        .follow_up(
            &a.register.key()?,
            &a.id,
            what,
            a.pos_reference.as_deref(),
            Some(a.wait),
        )
        .await?;
    outcome(&env, a.json)
}

fn payment_text(p: &crate::Payment) -> String {
    let mut out = format!(
        "{:<18} {}\n{:<18} {}\n{:<18} {}\n",
        "Payment:", p.transaction_id, "Function:", p.function, "Currency:", p.currency
    );
    let rows: Vec<(&str, String)> = if p.function == "Card.Authorise" {
        vec![
            ("Authorised:", p.amount_authorised.clone()),
            ("Captured:", p.amount_captured.clone()),
            ("Released:", p.amount_released.clone()),
        ]
    } else {
        vec![
            ("Amount:", p.amount_total.clone()),
            ("Tip:", p.amount_tip.clone()),
            ("Refunded:", p.amount_refunded.clone()),
            ("Refunding:", p.amount_refunding.clone()),
            ("Refundable:", p.amount_refundable.clone()),
            ("Voided:", if p.voided { "yes" } else { "no" }.to_string()),
        ]
    };
    for (k, v) in rows {
        out.push_str(&format!("{k:<18} {v}\n"));
    }
    for f in &p.follow_ups {
        out.push_str(&format!(
            "  {} {:<16} {:>10} {}\n",
            f.transaction_id, f.function, f.amount, f.state
        ));
    }
    out
}

async fn order(client: &PosClient, cmd: OrderCommand) -> Result<ExitCode, CliError> {
    let o = match cmd {
        OrderCommand::Create {
            register,
            amount,
            currency,
            pos_reference,
        } => {
            let o = client
                .create_order(
                    &register.key()?,
                    amount,
                    currency.as_deref(),
                    pos_reference.as_deref(),
                )
                .await?;
            print_stdout(&format!("{}\n", o.order_id));
            return Ok(ExitCode::SUCCESS);
        }
        OrderCommand::Show { id, register } => client.order(&register.key()?, &id).await?,
        OrderCommand::Cancel {
            id,
            register,
            reverse,
        } => client.cancel_order(&register.key()?, &id, reverse).await?,
    };
    let mut out = format!(
        "{:<18} {}\n{:<18} {}\n{:<18} {} {}\n{:<18} {}\n{:<18} {}\n",
        "Order:",
        o.order_id,
        "State:",
        o.state,
        "Total:",
        o.currency,
        o.amount_total,
        "Paid:",
        o.amount_paid,
        "Remaining:",
        o.amount_remaining
    );
    for t in &o.tenders {
        out.push_str(&format!(
            "  {} {:<12} {:>10} {}\n",
            t.transaction_id, t.device_id, t.amount, t.state
        ));
    }
    for r in o.reversals.iter().flatten() {
        let what = match (&r.function, &r.transaction_id, &r.error) {
            (Some(f), Some(id), _) => format!("{f} {id}"),
            (_, _, Some(e)) => format!("not reversed: {e}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  reversal of {}: {what}\n",
            r.tender_transaction_id
        ));
    }
    print_stdout(&out);
    Ok(ExitCode::SUCCESS)
}

/// One timeline event as a line of columns. A multi-line detail (a prompt of two lines) goes on
/// indented continuation lines, so the time and event columns stay aligned.
fn event_line(at: &str, event: &str, detail: &str) -> String {
    let head = format!("{at}  {event:<20} ");
    let indent = " ".repeat(head.chars().count());
    let mut out = head;
    for (i, line) in detail.lines().enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(&indent);
        }
        out.push_str(line);
    }
    out.push('\n');
    out
}

/// Prints an envelope (summary or JSON); exit code 0 only for a success.
fn outcome(env: &TransactionEnvelope, json: bool) -> Result<ExitCode, CliError> {
    if json {
        let text =
            serde_json::to_string_pretty(env).map_err(|e| PosError::BadResponse(e.to_string()))?;
        print_stdout(&format!("{text}\n"));
    } else if env.is_completed() {
        print_stdout(&summary(env));
    } else {
        print_stdout(&format!(
            "{:<18} {}\n{:<18} PENDING {}\n",
            "Transaction:",
            env.transaction_id,
            "Status:",
            env.field(keys::TRANSACTION_RESULT).unwrap_or("")
        ));
    }
    Ok(if outcome_is_success(env) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// [`run`], with errors printed to stderr as `error: ...` and mapped to exit code 2.
pub async fn run_to_exit_code(args: PosArgs) -> ExitCode {
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

async fn pair(client: &PosClient, a: PairArgs) -> Result<ExitCode, CliError> {
    let register = a.register.key()?;
    let code = PairingCode::parse(&a.code)
        .map_err(|e| CliError::Usage(format!("pairing code '{}': {e}", a.code)))?;
    let details = PairingDetails {
        register_name: a.register_name.trim().to_string(),
        contact_name: a.contact_name,
        address: a.address,
        city: a.city,
        state: a.state,
        zip_code: a.zip_code,
        email: a.email,
        phone: a.phone,
    };
    if details.register_name.is_empty() {
        return Err(CliError::Usage("--register-name must not be empty".into()));
    }
    client.pair(code.as_str(), &register, &details).await?;
    print_stdout("paired\n");
    Ok(ExitCode::SUCCESS)
}

async fn transact(client: &PosClient, a: TransactArgs) -> Result<ExitCode, CliError> {
    let register = a.register.key()?;
    let mut spec = build_spec(&a)?;
    if let Some(raw) = &a.sale_data {
        spec.sale_data = Some(load_sale_data(raw).await?);
    }
    let opts = WaitOptions {
        interval: a.poll_interval,
        timeout: a.timeout,
    };
    let mut progress = Progress::default();
    let done = if a.sync {
        eprintln!("running {} (synchronous mode)…", a.function);
        let env = client.transact_sync(&register, &spec).await?;
        // A cloud may end a held request early with a pending body; follow it up if it can be.
        if env.is_completed() {
            env
        } else {
            follow(client, &env, opts, &mut progress).await?
        }
    } else {
        let started = client.start(&register, &spec).await?;
        eprintln!("transaction {}", started.transaction_id);
        follow(client, &started, opts, &mut progress).await?
    };
    if a.json {
        let text = serde_json::to_string_pretty(&done)
            .map_err(|e| PosError::BadResponse(e.to_string()))?;
        print_stdout(&format!("{text}\n"));
    } else {
        print_stdout(&summary(&done));
    }
    Ok(if outcome_is_success(&done) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Waits for the outcome, showing each new prompt or status on stderr.
async fn follow(
    client: &PosClient,
    started: &TransactionEnvelope,
    opts: WaitOptions,
    progress: &mut Progress,
) -> Result<TransactionEnvelope, CliError> {
    progress.show(started);
    client
        .wait_for_completion(started, opts, |env| progress.show(env))
        .await
        .map_err(|e| match e {
            PosError::Timeout => CliError::Timeout {
                transaction_id: started.transaction_id.clone(),
                polling_url: started.field(keys::POLLING_URL).unwrap_or("").to_string(),
                waited: opts.timeout,
            },
            e => CliError::Pos(e),
        })
}

impl RegisterArgs {
    fn key(&self) -> Result<RegisterKey, CliError> {
        RegisterKey::parse(
            Some(&self.register_id),
            Some(&self.business),
            Some(&self.vendor),
        )
        .map_err(|e| CliError::Usage(format!("{e} (--register-id, --business, --vendor)")))
    }
}

/// Builds the spec from the flags and checks it as the cloud will, so that a missing amount or
/// reference is reported with the flag to set instead of a round trip.
fn build_spec(a: &TransactArgs) -> Result<TransactionSpec, CliError> {
    let function = a.function;
    let mut spec = TransactionSpec::new(function);
    if let Some(amount) = a.amount {
        spec = spec.with_amount(amount);
    }
    spec.request.amount_cash = a.cash;
    spec.request.transaction_reference = a.transaction_reference.clone();
    spec.request.date = a.date.clone();
    spec.request.currency = a.currency;
    let mut fields = spec.request.pos_fields();
    fields.push(("TransactionType", function.as_str().to_string()));
    let checked = TransactionRequest::parse(|k| {
        fields
            .iter()
            .find(|(f, _)| *f == k)
            .map(|(_, v)| v.as_str())
    })
    .map_err(|e| CliError::Usage(request_error(function, &e)))?;
    for flag in ignored_flags(&spec.request, &checked) {
        eprintln!("warning: {flag} is not used by {function}; not sent");
    }
    spec.request = checked;
    spec.callback_url = a.callback_url.clone();
    if let Some(url) = &spec.callback_url {
        let ok = url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return Err(CliError::Usage(format!(
                "--callback-url '{url}' is not an absolute http(s) URL"
            )));
        }
    }
    spec.pos_reference = a.pos_reference.clone();
    spec.request.order_id = a.order.clone();
    spec.original = a.original.clone();
    Ok(spec)
}

/// Flags the user gave that the function does not take (the request parser drops them).
fn ignored_flags(given: &TransactionRequest, kept: &TransactionRequest) -> Vec<&'static str> {
    let mut out = Vec::new();
    if given.headline_amount().is_some() && kept.headline_amount().is_none() {
        out.push("--amount");
    }
    if given.amount_cash.is_some() && kept.amount_cash.is_none() {
        out.push("--cash");
    }
    if given.transaction_reference.is_some() && kept.transaction_reference.is_none() {
        out.push("--transaction-reference");
    }
    if given.date.is_some() && kept.date.is_none() {
        out.push("--date");
    }
    out
}

/// The protocol's message, with the flag that fixes it.
fn request_error(function: Function, e: &RequestError) -> String {
    let hint = match e {
        RequestError::Missing("AmountCash") | RequestError::BadAmount("AmountCash", _) => {
            "set --cash <cents>"
        }
        RequestError::Missing("TransactionReference") | RequestError::ReferenceTooLong => {
            "set --transaction-reference <ref>"
        }
        RequestError::Missing(_) | RequestError::BadAmount(..) => "set --amount <cents>",
        RequestError::CashExceedsTotal => "--cash is part of --amount",
        RequestError::BadDate => "set --date <yyyyMMdd>",
        RequestError::BadCurrency(_) => "set --currency <ISO 4217 code>",
        RequestError::FollowUpFunction(..) => "use `eftcloud pos refund|void|adjust|...`",
        RequestError::ActionFunction(..) => "use `eftcloud pos input|print|qr|display`",
        RequestError::MissingFunction | RequestError::UnknownFunction(_) => "see --help",
    };
    format!("{function}: {e} ({hint})")
}

fn parse_function(s: &str) -> Result<Function, String> {
    s.parse().map_err(|_| {
        let valid: Vec<&str> = Function::ALL.iter().map(|f| f.as_str()).collect();
        format!(
            "unknown TransactionType '{s}'; valid types: {}",
            valid.join(", ")
        )
    })
}

fn parse_currency(s: &str) -> Result<protocol::Currency, String> {
    protocol::Currency::parse(s).map_err(|e| e.to_string())
}

fn parse_cents(s: &str) -> Result<Cents, String> {
    Cents::parse(s).map_err(|e| e.to_string())
}

/// Reads `--sale-data` (inline JSON or `@file`) and checks that it is JSON, which the cloud
/// requires; the text is sent as written.
async fn load_sale_data(raw: &str) -> Result<String, CliError> {
    let text = match raw.strip_prefix('@') {
        Some(path) => tokio::fs::read_to_string(path)
            .await
            .map_err(|e| CliError::Usage(format!("--sale-data: cannot read '{path}': {e}")))?,
        None => raw.to_string(),
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| CliError::Usage(format!("--sale-data is not valid JSON: {e}")))?;
    Ok(text.trim().to_string())
}

/// What was last shown, so that each prompt and status appears once however often it is polled.
#[derive(Debug, Default)]
struct Progress {
    display: Option<String>,
    result: Option<String>,
}

impl Progress {
    fn show(&mut self, env: &TransactionEnvelope) {
        for line in self.update(env) {
            eprintln!("{line}");
        }
    }

    /// The lines that are new since the previous body.
    fn update(&mut self, env: &TransactionEnvelope) -> Vec<String> {
        let mut lines = Vec::new();
        let display = env.field(keys::DISPLAY_TEXT).map(str::to_string);
        if let Some(d) = display.as_deref().filter(|_| display != self.display) {
            lines.push(format!("… {d}"));
        }
        self.display = display;
        let result = env.field(keys::TRANSACTION_RESULT).map(str::to_string);
        if result != self.result {
            match result.as_deref() {
                Some(r) => {
                    let delayed = r == TransactionResult::Delayed.as_str();
                    let text = env
                        .field(keys::RESULT_TEXT)
                        .or(delayed.then_some(DELAYED_TEXT));
                    lines.push(match text {
                        Some(t) => format!("… {r}: {t}"),
                        None => format!("… {r}"),
                    });
                }
                None => lines.push("… waiting for the device".to_string()),
            }
        }
        self.result = result;
        lines
    }
}

/// The human summary of a completed transaction: outcome fields, then the receipt.
fn summary(env: &TransactionEnvelope) -> String {
    let mut out = format!("{:<18} {}\n", "Transaction:", env.transaction_id);
    for key in [
        keys::TRANSACTION_RESULT,
        keys::RESULT,
        keys::RESULT_TEXT,
        keys::AMOUNT_TOTAL,
        "AuthId",
        "CardPan",
        keys::STATUS,
        protocol::action::field::INPUT_VALUE,
        protocol::action::field::INPUT_INDEX,
        protocol::action::field::CANCEL_REASON,
        protocol::action::field::PRINTER_STATUS,
        protocol::action::field::QR_OUTCOME,
    ] {
        if let Some(v) = env.field(key) {
            out.push_str(&format!("{:<18} {v}\n", format!("{key}:")));
        }
    }
    if let Some(receipt) = env.field(keys::RECEIPT) {
        out.push('\n');
        out.push_str(receipt);
        if !receipt.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Writes to stdout without panicking when it is a closed pipe (`| head`).
fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};
    use protocol::pos_api::TransactionStatus;

    #[test]
    fn multi_line_event_details_keep_the_columns() {
        let t = "2026-12-03T10:00:00.000Z";
        assert_eq!(
            event_line(t, "prompt", "PURCHASE $5.00\nPresent card"),
            format!(
                "{t}  prompt               PURCHASE $5.00\n{}Present card\n",
                " ".repeat(t.len() + 23)
            )
        );
        assert_eq!(
            event_line(t, "offered", ""),
            format!("{t}  offered              \n")
        );
    }

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        pos: PosArgs,
    }

    const REGISTER: [&str; 6] = [
        "--register-id",
        "r-1",
        "--business",
        "Shop",
        "--vendor",
        "V",
    ];

    fn parse(args: &[&str]) -> Result<Cli, String> {
        let argv = ["eftcloud-pos"].iter().chain(args).chain(REGISTER.iter());
        Cli::try_parse_from(argv).map_err(|e| e.to_string())
    }

    fn transact_args(args: &[&str]) -> Result<TransactArgs, String> {
        let mut full = vec!["transact"];
        full.extend_from_slice(args);
        match parse(&full)?.pos.command {
            PosCommand::Transact(t) => Ok(t),
            other => Err(format!("parsed as {other:?}")),
        }
    }

    fn spec(args: &[&str]) -> Result<TransactionSpec, String> {
        build_spec(&transact_args(args)?).map_err(|e| e.to_string())
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn amount_maps_to_the_functions_field() {
        let s = spec(&[
            "Card.Authorise",
            "--amount",
            "100",
            "--transaction-reference",
            "A1",
        ]);
        let r = s.map(|s| s.request);
        assert_eq!(
            r.as_ref().map(|r| r.amount_auth.map(Cents::get)),
            Ok(Some(100))
        );
        assert_eq!(r.as_ref().map(|r| r.amount_total), Ok(None));
        let s = spec(&[
            "Card.Finalise",
            "--amount",
            "90",
            "--transaction-reference",
            "A1",
        ]);
        assert_eq!(
            s.map(|s| s.request.amount_final.map(Cents::get)),
            Ok(Some(90))
        );
        let s = spec(&["card.purchase", "--amount", "500", "--pos-reference", "p1"]);
        assert_eq!(
            s.as_ref().map(|s| s.request.amount_total.map(Cents::get)),
            Ok(Some(500))
        );
        assert_eq!(s.map(|s| s.pos_reference), Ok(Some("p1".into())));
    }

    #[test]
    fn unknown_type_lists_the_valid_ones() {
        let e = transact_args(&["Card.Steal"]).map(|_| ());
        let msg = e.err().unwrap_or_default();
        assert!(
            msg.contains("unknown TransactionType 'Card.Steal'"),
            "{msg}"
        );
        assert!(msg.contains("Card.Purchase") && msg.contains("Terminal.GetStatus"));
    }

    #[test]
    fn bad_amounts_are_refused_locally() {
        for bad in ["0", "5.00", "-1", "abc"] {
            let e = transact_args(&["Card.Purchase", "--amount", bad]).map(|_| ());
            assert!(e.is_err(), "{bad}");
        }
        let e = spec(&["Card.Purchase"])
            .map(|_| ())
            .err()
            .unwrap_or_default();
        assert!(e.contains("AmountTotal") && e.contains("--amount"), "{e}");
        let e = spec(&["Card.Authorise", "--amount", "5"]).map(|_| ());
        assert!(e
            .err()
            .unwrap_or_default()
            .contains("--transaction-reference"));
        let e = spec(&["Card.PurchasePlusCash", "--amount", "5", "--cash", "9"]).map(|_| ());
        assert!(e.err().unwrap_or_default().contains("AmountCash"));
        let e = spec(&["Acquirer.Settlement.Inquiry", "--date", "20241332"]).map(|_| ());
        assert!(e.err().unwrap_or_default().contains("--date"));
    }

    #[test]
    fn unused_flags_are_not_sent() {
        let s = spec(&["Terminal.GetStatus", "--amount", "5"]);
        assert_eq!(s.map(|s| s.request.amount_total), Ok(None));
    }

    #[test]
    fn durations_and_cloud_flag() {
        let cli = parse(&[
            "--cloud",
            "https://h/POS",
            "transact",
            "Terminal.GetStatus",
            "--poll-interval",
            "250ms",
            "--timeout",
            "1m",
        ]);
        let cli = cli.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.pos.cloud, "https://h/POS");
        match cli.pos.command {
            PosCommand::Transact(t) => {
                assert_eq!(t.poll_interval, Duration::from_millis(250));
                assert_eq!(t.timeout, Duration::from_secs(60));
                assert!(!t.sync && !t.json);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[tokio::test]
    async fn sale_data_inline_or_from_a_file() {
        let inline = load_sale_data(r#"{"version":"1.0.0"}"#).await;
        assert_eq!(inline.ok(), Some(r#"{"version":"1.0.0"}"#.to_string()));
        assert!(load_sale_data("{nope").await.is_err());
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("sale.json");
        std::fs::write(&path, "{\"saleData\":{}}\n").unwrap_or_else(|e| panic!("{e}"));
        let from_file = load_sale_data(&format!("@{}", path.display())).await;
        assert_eq!(from_file.ok(), Some("{\"saleData\":{}}".to_string()));
        assert!(load_sale_data("@/no/such/file.json").await.is_err());
    }

    fn env(status: TransactionStatus, data: &[(&str, &str)]) -> TransactionEnvelope {
        TransactionEnvelope {
            transaction_id: "t-1".into(),
            transaction_time_stamp: "20240101000000000".into(),
            merchant_id: "m".into(),
            device_id: "d".into(),
            transaction_status: status,
            data: data
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            merchant_access_token: "k".into(),
            receipts: None,
        }
    }

    #[test]
    fn progress_shows_each_change_once() {
        let mut p = Progress::default();
        let pending = |data: &[(&str, &str)]| env(TransactionStatus::Pending, data);
        assert!(p.update(&pending(&[])).is_empty());
        assert_eq!(
            p.update(&pending(&[("DisplayText", "present card")])),
            ["… present card"]
        );
        assert!(p
            .update(&pending(&[("DisplayText", "present card")]))
            .is_empty());
        assert_eq!(
            p.update(&pending(&[("DisplayText", "enter PIN")])),
            ["… enter PIN"]
        );
        assert_eq!(
            p.update(&pending(&[
                ("DisplayText", "enter PIN"),
                ("TransactionResult", "OK-DELAYED"),
                ("Result", "DELAYED-TRANSACTION"),
                ("ResultText", "Transaction takes longer than usual"),
            ])),
            ["… OK-DELAYED: Transaction takes longer than usual"]
        );
    }

    #[test]
    fn summary_lists_outcome_then_receipt() {
        let s = summary(&env(
            TransactionStatus::Completed,
            &[
                ("TransactionResult", "OK-ACCEPTED"),
                ("Result", "OK"),
                ("ResultText", "APPROVED"),
                ("AmountTotal", "500"),
                ("AuthId", "123456"),
                ("CardPan", "....0138"),
                ("Receipt", "  CUSTOMER COPY\nAPPROVED"),
            ],
        ));
        assert_eq!(
            s,
            "Transaction:       t-1\n\
             TransactionResult: OK-ACCEPTED\n\
             Result:            OK\n\
             ResultText:        APPROVED\n\
             AmountTotal:       500\n\
             AuthId:            123456\n\
             CardPan:           ....0138\n\
             \n  CUSTOMER COPY\nAPPROVED\n"
        );
    }
}
