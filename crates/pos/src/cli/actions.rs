//! `eftcloud pos display|input|print|qr`: terminal actions from the command line.

use super::{follow, outcome, print_stdout, CliError, Progress, RegisterArgs};
use crate::actions::Action;
use crate::client::PosClient;
use crate::polling::WaitOptions;
use clap::Args;
use protocol::action::{
    Align, Cart, CartLine, InputKind, InputRequest, InputRules, PrintJob, PrintLine, QrDisplay,
};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `pos display`.
#[derive(Debug, Args)]
pub struct DisplayArgs {
    #[command(flatten)]
    register: RegisterArgs,
    /// A line of the cart: `[<quantity> x ]<description>:<amount>`, the amount in minor
    /// units (`--item "2 x Flat white:900"`; repeat for each line).
    #[arg(long = "item", value_parser = parse_item)]
    items: Vec<CartLine>,
    /// What the customer will pay, in minor units (the sum of the items when absent).
    #[arg(long)]
    total: Option<u64>,
    /// The tax included, in minor units.
    #[arg(long)]
    tax: Option<u64>,
    /// ISO 4217 (the merchant's when absent).
    #[arg(long, value_parser = super::parse_currency)]
    currency: Option<protocol::Currency>,
    /// Clear the screen instead.
    #[arg(long, conflicts_with_all = ["items", "total", "tax"])]
    clear: bool,
}

fn parse_item(s: &str) -> Result<CartLine, String> {
    let bad = || format!("item '{s}': expected [<quantity> x ]<description>:<amount>");
    let (rest, amount) = s.rsplit_once(':').ok_or_else(bad)?;
    let amount: u64 = amount.trim().parse().map_err(|_| bad())?;
    let (quantity, description) = match rest.split_once(" x ") {
        Some((q, d)) if !q.trim().is_empty() && !q.trim().contains(' ') => (q.trim(), d),
        _ => ("1", rest),
    };
    if description.trim().is_empty() {
        return Err(bad());
    }
    Ok(CartLine {
        description: description.trim().to_string(),
        quantity: quantity.to_string(),
        unit_price: None,
        amount,
    })
}

pub(super) async fn display(client: &PosClient, a: DisplayArgs) -> Result<ExitCode, CliError> {
    let register = a.register.key()?;
    let cart = (!a.clear).then(|| Cart {
        total: a
            .total
            .unwrap_or_else(|| a.items.iter().map(|l| l.amount).sum()),
        lines: a.items,
        currency: a.currency,
        tax: a.tax,
    });
    if let Some(c) = &cart {
        c.check().map_err(|e| CliError::Usage(e.to_string()))?;
    }
    let shown = client.display(&register, cart.as_ref()).await?;
    print_stdout(&format!(
        "{:<18} {}\n{:<18} {}\n{:<18} {}\n",
        "Device:",
        shown.device_id,
        "Version:",
        shown.version,
        "Delivered:",
        if shown.delivered {
            "yes"
        } else {
            "no (shown when the device reconnects)"
        }
    ));
    Ok(ExitCode::SUCCESS)
}

/// What every job takes beside its own fields.
#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(flatten)]
    register: RegisterArgs,
    /// The POS's reference for this job: a retry returns the same one.
    #[arg(long)]
    pos_reference: Option<String>,
    /// Wait up to this long for the outcome.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
    timeout: Duration,
    /// Time between polls.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "500ms")]
    poll_interval: Duration,
    /// Print the envelope as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `pos input`.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// signature, email, phone, number, text, selection or confirmation.
    #[arg(value_parser = |s: &str| InputKind::parse(s).map_err(|e| e.to_string()))]
    kind: InputKind,
    /// What the screen asks.
    #[arg(long)]
    prompt: String,
    /// A choice of a selection (repeat for each, in order).
    #[arg(long = "option")]
    options: Vec<String>,
    #[arg(long)]
    min_length: Option<u32>,
    #[arg(long)]
    max_length: Option<u32>,
    #[arg(long, allow_hyphen_values = true)]
    min: Option<i64>,
    #[arg(long, allow_hyphen_values = true)]
    max: Option<i64>,
    #[arg(long, default_value_t = 0)]
    decimals: u8,
    /// The customer has this long to answer (whole seconds, 5 s to 10 min).
    #[arg(long = "answer-within", value_parser = humantime::parse_duration, default_value = "60s")]
    answer_within: Duration,
    #[command(flatten)]
    job: JobArgs,
}

pub(super) async fn input(client: &PosClient, a: InputArgs) -> Result<ExitCode, CliError> {
    let request = InputRequest {
        kind: a.kind,
        prompt: a.prompt,
        options: a.options,
        rules: InputRules {
            min_length: a.min_length,
            max_length: a.max_length,
            min: a.min,
            max: a.max,
            decimals: a.decimals,
        },
        timeout_secs: seconds(a.answer_within),
    };
    request
        .check()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    run(client, a.job, Action::Input(request)).await
}

/// Arguments of `pos print`.
#[derive(Debug, Args)]
pub struct PrintArgs {
    /// A line of text (repeat for each line; printed in order, before any --qr).
    #[arg(long = "text")]
    texts: Vec<String>,
    /// The lines as JSON (an array of print lines, see docs/pos-api.md), or `@file`.
    #[arg(long, conflicts_with = "texts")]
    lines: Option<String>,
    /// A QR code after the text.
    #[arg(long)]
    qr: Option<String>,
    /// Cut the paper at the end.
    #[arg(long)]
    cut: bool,
    #[command(flatten)]
    job: JobArgs,
}

pub(super) async fn print(client: &PosClient, a: PrintArgs) -> Result<ExitCode, CliError> {
    let mut lines: Vec<PrintLine> = match &a.lines {
        Some(raw) => {
            let text = super::load_sale_data(raw).await?;
            serde_json::from_str(&text)
                .map_err(|e| CliError::Usage(format!("--lines: not print lines: {e}")))?
        }
        None => a
            .texts
            .into_iter()
            .map(|text| PrintLine::Text {
                text,
                bold: false,
                align: Align::Left,
                large: false,
            })
            .collect(),
    };
    if let Some(data) = a.qr {
        lines.push(PrintLine::Qr { data });
    }
    if a.cut {
        lines.push(PrintLine::Cut);
    }
    let job = PrintJob { lines };
    job.check().map_err(|e| CliError::Usage(e.to_string()))?;
    run(client, a.job, Action::Print(job)).await
}

/// Arguments of `pos qr`.
#[derive(Debug, Args)]
pub struct QrArgs {
    /// What the code holds (a link, a payment request).
    data: String,
    /// Shown under the code.
    #[arg(long, default_value = "")]
    caption: String,
    /// How long it stays on screen unless dismissed.
    #[arg(long = "show-for", value_parser = humantime::parse_duration, default_value = "60s")]
    show_for: Duration,
    #[command(flatten)]
    job: JobArgs,
}

pub(super) async fn qr(client: &PosClient, a: QrArgs) -> Result<ExitCode, CliError> {
    let qr = QrDisplay {
        data: a.data,
        caption: a.caption,
        timeout_secs: seconds(a.show_for),
    };
    qr.check().map_err(|e| CliError::Usage(e.to_string()))?;
    run(client, a.job, Action::ShowQr(qr)).await
}

fn seconds(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// Starts the job, follows it to its outcome and prints it; exit code 0 only for `OK`.
async fn run(client: &PosClient, a: JobArgs, action: Action) -> Result<ExitCode, CliError> {
    let register = a.register.key()?;
    let started = client
        .action(&register, &action, a.pos_reference.as_deref(), None)
        .await?;
    eprintln!("job {}", started.transaction_id);
    let opts = WaitOptions {
        interval: a.poll_interval,
        timeout: a.timeout,
    };
    let done = follow(client, &started, opts, &mut Progress::default()).await?;
    outcome(&done, a.json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_read_description_amount_and_quantity() {
        let item = |s| parse_item(s).map(|l| (l.description, l.amount, l.quantity));
        assert_eq!(item("Tea:450"), Ok(("Tea".into(), 450, "1".into())));
        assert_eq!(item("2 x Tea:900"), Ok(("Tea".into(), 900, "2".into())));
        assert_eq!(
            item("0.5kg x Figs:300"),
            Ok(("Figs".into(), 300, "0.5kg".into()))
        );
        assert_eq!(
            item("Ratio 1:2:300"),
            Ok(("Ratio 1:2".into(), 300, "1".into()))
        );
        assert!(item("Tea").is_err());
        assert!(item("Tea:x").is_err());
        assert!(item(":5").is_err());
    }
}
