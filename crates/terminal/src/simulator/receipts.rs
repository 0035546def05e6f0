//! The structured receipts of a financial result (`DeviceResult.receipts`): a merchant and a
//! customer copy, beside the fixed-width `Receipt` field, built from the same result so the
//! two never disagree.
//!
//! Each copy: a header (the configured `receipt_header`'s lines; the merchant's name as the
//! register sends it, else `EFTCLOUD SIMULATOR`; the terminal and merchant ids), the fields
//! (transaction, card, account, the amounts in the request's currency, references, date and
//! time, the result), and a footer naming the copy and thanking the customer, then the
//! configured `receipt_footer`'s lines. Every line is cut to the protocol's limits
//! (`Receipts::check`).

use super::{configured_lines, currency_of, label, receipt_time, Simulator};
use crate::backend::BackendTransaction;
use protocol::action::{Receipt, ReceiptField, Receipts};
use protocol::device::{DeviceResult, TransactionOffer};
use protocol::{Cents, Currency, Function, TransactionResult};

/// Longest header or footer line, and longest value, a receipt may hold.
const MAX_LINE: usize = 120;
/// Longest label.
const MAX_LABEL: usize = 60;

/// The merchant's and the customer's copies of `result`.
pub(super) fn structured(
    sim: &Simulator,
    tx: &BackendTransaction,
    result: &DeviceResult,
) -> Receipts {
    let offer = &tx.offer;
    let settings = &tx.settings;
    let configured = |text: &str| -> Vec<String> {
        configured_lines(text)
            .into_iter()
            .map(|l| clean(l.trim(), MAX_LINE))
            .collect()
    };
    let name = clean(&offer.register.key.business_name, MAX_LINE);
    let mut header = configured(&settings.receipt_header);
    header.extend([
        if name.trim().is_empty() {
            "EFTCLOUD SIMULATOR".to_string()
        } else {
            name
        },
        clean(&format!("Terminal ID {}", sim.terminal_id), MAX_LINE),
        clean(&format!("Merchant ID {}", sim.merchant_id), MAX_LINE),
    ]);
    let footer = configured(&settings.receipt_footer);
    let fields = fields(offer, currency_of(tx), result);
    let copy = |name: &str| Receipt {
        header: header.clone(),
        fields: fields.clone(),
        footer: [name.to_string(), "Thank you".to_string()]
            .into_iter()
            .chain(footer.iter().cloned())
            .collect(),
    };
    Receipts {
        merchant: Some(copy("Merchant copy")),
        customer: Some(copy("Customer copy")),
    }
}

fn fields(
    offer: &TransactionOffer,
    currency: Currency,
    result: &DeviceResult,
) -> Vec<ReceiptField> {
    let req = &offer.request;
    let f = req.function;
    let get = |k: &str| result.fields.get(k).map(String::as_str);
    let minor = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok());
    let mut out = Vec::new();
    let mut push = |label: &str, value: String| {
        out.push(ReceiptField {
            label: clean(label, MAX_LABEL),
            value: clean(&value, MAX_LINE),
        });
    };
    push("Transaction", label(f).to_string());
    match (get("CardType"), get("CardPan")) {
        (Some(t), Some(pan)) => push("Card", format!("{t} {pan}")),
        (Some(wallet), None) => push("Wallet", wallet.to_string()),
        _ => {}
    }
    if let Some(a) = get("AccountType") {
        push("Account", a.to_string());
    }
    if let Some(r) = get("TransactionReference") {
        push("Reference", r.to_string());
    }
    // What was asked: a follow-up without an amount of its own acts on its original's.
    let asked = match f {
        Function::CardTipAdjust | Function::CardVoid | Function::CardRelease => {
            req.original.as_ref().map(|o| o.amount)
        }
        _ => req.headline_amount().map(Cents::get),
    };
    if let Some(a) = asked {
        push("Amount", currency.display(a));
    }
    for (key, name) in [
        ("AmountCash", "Cash"),
        ("AmountSurcharge", "Surcharge"),
        ("AmountTip", "Tip"),
    ] {
        if let Some(a) = minor(key).filter(|a| *a > 0) {
            push(name, currency.display(a));
        }
    }
    if let Some(total) = minor("AmountTotal") {
        push("Total", currency.display(total));
    }
    for (key, name) in [
        ("AuthId", "Auth ID"),
        ("AcquirerRef", "Acquirer ref"),
        ("TerminalRef", "Terminal ref"),
    ] {
        if let Some(v) = get(key) {
            push(name, v.to_string());
        }
    }
    if let Some(ts) = get("Timestamp") {
        push("Date/time", receipt_time(ts));
    }
    let verdict = match result.transaction_result {
        Some(TransactionResult::Accepted) => "APPROVED",
        Some(TransactionResult::Declined) => "DECLINED",
        Some(TransactionResult::Cancelled) => "CANCELLED",
        _ => "FAILED",
    };
    push("Result", verdict.to_string());
    if result.result_text != verdict && !result.result_text.is_empty() {
        push("Response", result.result_text.clone());
    }
    out
}

/// `s` without control characters, at most `max` characters.
fn clean(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}
