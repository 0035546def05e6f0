//! Terminal actions: what a POS asks of the terminal at the counter besides a payment: a cart
//! on the customer's screen, the customer's input (signature, email, phone, number, text, a
//! choice, a yes or no), a slip on the printer, a QR code on the screen; and the structured
//! receipts a device reports beside its fixed-width text.
//!
//! Each type is parsed once, where it enters (the POS API, or a frame), with every limit
//! checked there, so the cloud stores, and the device runs, only what is well formed. Input,
//! printing and QR codes are jobs of the transaction lifecycle (`Terminal.Input`,
//! `Terminal.Print`, `Terminal.ShowQr`); the cart is not a job: it is shown at once, whatever
//! else the device does, and never interrupts a payment.

use crate::currency::Currency;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why an action's request, or a device's answer to one, was refused; each message names the
/// field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ActionError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ActionError> {
    Err(ActionError(msg.into()))
}

/// Text a person reads on the terminal: no control characters, at most `max` characters, and
/// not empty when `required`.
fn check_text(field: &str, s: &str, required: bool, max: usize) -> Result<(), ActionError> {
    if required && s.is_empty() {
        return err(format!("Missing required field: {field}"));
    }
    if s.chars().count() > max {
        return err(format!("Invalid {field}: at most {max} characters"));
    }
    if s.chars().any(char::is_control) {
        return err(format!(
            "Invalid {field}: control characters are not allowed"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The cart on the customer's screen.

/// Most lines a cart shows (a large basket; the terminal scrolls).
pub const MAX_CART_LINES: usize = 200;

/// A basket as the customer sees it while the clerk scans. Amounts are in minor units of
/// `currency` (the merchant's when absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    pub lines: Vec<CartLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    /// What the customer will pay.
    pub total: u64,
    /// The tax included in `total`, if the POS gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax: Option<u64>,
}

/// One line of a cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    pub description: String,
    /// As the POS writes it: `2`, `0.5 kg`.
    #[serde(default = "one")]
    pub quantity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<u64>,
    /// The line's amount (quantity times unit price, less discounts).
    pub amount: u64,
}

fn one() -> String {
    "1".into()
}

impl Cart {
    /// Checks the limits: lines, their text, the quantity's length.
    pub fn check(&self) -> Result<(), ActionError> {
        if self.lines.len() > MAX_CART_LINES {
            return err(format!("Invalid Lines: at most {MAX_CART_LINES} lines"));
        }
        for (i, l) in self.lines.iter().enumerate() {
            check_text(
                &format!("Lines[{i}].description"),
                &l.description,
                true,
                120,
            )?;
            check_text(&format!("Lines[{i}].quantity"), &l.quantity, true, 16)?;
        }
        Ok(())
    }

    /// The cart a `SaleData` basket describes, for the screen when a payment starts: its line
    /// items (name, quantity, unit and total price) and totals. SaleData's values are strings
    /// of minor units; what does not read as such is left out rather than guessed, and a
    /// basket with no usable total gives no cart.
    pub fn from_sale_data(sale_data: &str) -> Option<Cart> {
        let v: serde_json::Value = serde_json::from_str(sale_data).ok()?;
        let sale = v.get("saleData")?;
        let total = minor_units(sale.get("totalAmount")?)?;
        let tax = sale.get("totalTax").and_then(minor_units);
        let mut lines = Vec::new();
        for item in sale
            .get("lineItems")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
            .take(MAX_CART_LINES)
        {
            let text = |k: &str| {
                item.get(k)
                    .and_then(|s| s.as_str())
                    .map(|s| s.chars().filter(|c| !c.is_control()).take(120).collect())
                    .filter(|s: &String| !s.trim().is_empty())
            };
            let Some(description) = text("productName").or_else(|| text("productDescription"))
            else {
                continue;
            };
            let quantity = match item.get("quantity") {
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s
                    .trim()
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(16)
                    .collect(),
                Some(serde_json::Value::Number(n)) => n.to_string().chars().take(16).collect(),
                _ => one(),
            };
            let unit_price = item.get("unitPrice").and_then(minor_units);
            let Some(amount) = item.get("totalPrice").and_then(minor_units).or(unit_price) else {
                continue;
            };
            lines.push(CartLine {
                description,
                quantity,
                unit_price,
                amount,
            });
        }
        Some(Cart {
            lines,
            currency: None,
            total,
            tax,
        })
    }
}

/// A SaleData amount: a string (or number) of minor units.
fn minor_units(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::String(s) => s.trim().parse().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// The `display` frame: what the customer's screen shows between payments. `cart: None`
/// clears it. `version` grows with every change; a device shows a frame only if its version
/// is above the one it shows (frames may arrive twice or, across nodes, out of order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Display {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cart: Option<Cart>,
}

// ---------------------------------------------------------------------------------------------
// Customer input.

/// What the customer is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// Drawn on the screen; the answer is SVG path data.
    Signature,
    Email,
    /// A phone number; the answer is `+` and digits.
    Phone,
    /// A number (integer, or with at most `rules.decimals` decimals).
    Number,
    /// Free text.
    Text,
    /// One of `options`; the answer is the option's text (and `InputIndex` its position).
    Selection,
    /// Yes or no; the answer is `yes` or `no`.
    Confirmation,
}

impl InputKind {
    pub const ALL: [InputKind; 7] = [
        InputKind::Signature,
        InputKind::Email,
        InputKind::Phone,
        InputKind::Number,
        InputKind::Text,
        InputKind::Selection,
        InputKind::Confirmation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Signature => "signature",
            InputKind::Email => "email",
            InputKind::Phone => "phone",
            InputKind::Number => "number",
            InputKind::Text => "text",
            InputKind::Selection => "selection",
            InputKind::Confirmation => "confirmation",
        }
    }

    /// Parses a kind, ignoring ASCII case.
    pub fn parse(s: &str) -> Result<Self, ActionError> {
        let t = s.trim();
        InputKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| {
                ActionError(format!(
                    "Invalid InputKind '{t}': one of signature, email, phone, number, text, selection, confirmation"
                ))
            })
    }
}

impl std::fmt::Display for InputKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an answer is checked, by the device as the customer types and by the cloud when the
/// answer arrives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRules {
    /// Text and email: fewest characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    /// Text and email: most characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// Number: smallest and largest value, in whole units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// Number: most digits after the point (0, the default, for an integer).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub decimals: u8,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// Default and bounds of an input's (and a QR code's) timeout, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u32 = 60;
pub const MIN_TIMEOUT_SECS: u32 = 5;
pub const MAX_TIMEOUT_SECS: u32 = 600;
/// Most options a selection offers.
pub const MAX_OPTIONS: usize = 12;
/// Longest free-text answer.
pub const MAX_TEXT_LENGTH: u32 = 1000;
/// Largest signature, in bytes of path data.
pub const MAX_SIGNATURE_BYTES: usize = 32 * 1024;

/// `Terminal.Input`: ask the customer for something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRequest {
    pub kind: InputKind,
    /// What the screen asks ("Email for your receipt?").
    pub prompt: String,
    /// Selection: the choices, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    #[serde(default)]
    pub rules: InputRules,
    /// The device gives up after this long and reports the input as cancelled (`timeout`).
    pub timeout_secs: u32,
}

/// The `data` fields of an input's result.
pub mod field {
    /// The answer: the text, email, phone, number, the chosen option, `yes`/`no`, or the
    /// signature's SVG path data.
    pub const INPUT_VALUE: &str = "InputValue";
    /// Selection: the chosen option's position, from 0.
    pub const INPUT_INDEX: &str = "InputIndex";
    /// Signature: the drawing's SVG `viewBox` (`0 0 <width> <height>`).
    pub const SIGNATURE_VIEW_BOX: &str = "SignatureViewBox";
    /// Why an input or a QR code ended without an answer: `customer` (the Cancel key),
    /// `timeout`, `pos` (the POS cancelled).
    pub const CANCEL_REASON: &str = "CancelReason";
    /// Print: `OK`, or the printer's trouble: `NO_PAPER`, `NO_PRINTER`, `PAPER_JAM`, `ERROR`.
    pub const PRINTER_STATUS: &str = "PrinterStatus";
    /// QR code: how it left the screen: `dismissed` (the customer's OK) or `timeout`.
    pub const QR_OUTCOME: &str = "QrOutcome";
}

/// The printer states a device reports (`PrinterStatus`).
pub mod printer_status {
    pub const OK: &str = "OK";
    pub const NO_PAPER: &str = "NO_PAPER";
    pub const NO_PRINTER: &str = "NO_PRINTER";
    pub const PAPER_JAM: &str = "PAPER_JAM";
    pub const ERROR: &str = "ERROR";
    pub const ALL: [&str; 5] = [OK, NO_PAPER, NO_PRINTER, PAPER_JAM, ERROR];
}

/// The reasons an input or QR code ends cancelled (`CancelReason`).
pub mod cancel_reason {
    pub const CUSTOMER: &str = "customer";
    pub const TIMEOUT: &str = "timeout";
    pub const POS: &str = "pos";
}

impl InputRequest {
    /// Checks the request: prompt, options, rules and timeout fit the kind.
    pub fn check(&self) -> Result<(), ActionError> {
        check_text("Prompt", &self.prompt, true, 200)?;
        if !(MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS).contains(&self.timeout_secs) {
            return err(format!(
                "Invalid TimeoutSeconds: from {MIN_TIMEOUT_SECS} to {MAX_TIMEOUT_SECS}"
            ));
        }
        match self.kind {
            InputKind::Selection => {
                if !(2..=MAX_OPTIONS).contains(&self.options.len()) {
                    return err(format!(
                        "Invalid Options: a selection offers from 2 to {MAX_OPTIONS} options"
                    ));
                }
                for (i, o) in self.options.iter().enumerate() {
                    check_text(&format!("Options[{i}]"), o, true, 60)?;
                    if self.options[..i].contains(o) {
                        return err(format!("Invalid Options: '{o}' is offered twice"));
                    }
                }
            }
            _ if !self.options.is_empty() => {
                return err(format!(
                    "Invalid Options: only a selection has options, not {}",
                    self.kind
                ))
            }
            _ => {}
        }
        let r = &self.rules;
        let lengths = r.min_length.is_some() || r.max_length.is_some();
        if lengths && !matches!(self.kind, InputKind::Text | InputKind::Email) {
            return err(format!(
                "Invalid MinLength/MaxLength: only for text and email, not {}",
                self.kind
            ));
        }
        if let (Some(min), Some(max)) = (r.min_length, r.max_length) {
            if min > max {
                return err("Invalid MinLength: above MaxLength");
            }
        }
        if r.max_length.is_some_and(|m| m == 0 || m > MAX_TEXT_LENGTH) {
            return err(format!("Invalid MaxLength: from 1 to {MAX_TEXT_LENGTH}"));
        }
        let numeric = r.min.is_some() || r.max.is_some() || r.decimals > 0;
        if numeric && self.kind != InputKind::Number {
            return err(format!(
                "Invalid Min/Max/Decimals: only for a number, not {}",
                self.kind
            ));
        }
        if let (Some(min), Some(max)) = (r.min, r.max) {
            if min > max {
                return err("Invalid Min: above Max");
            }
        }
        if r.decimals > 6 {
            return err("Invalid Decimals: at most 6");
        }
        Ok(())
    }

    /// Checks a device's answer (`InputValue`, and `InputIndex` for a selection) against the
    /// request. Every device runs the same check as the customer types; the cloud runs it
    /// again, so a POS never receives an answer its rules refuse.
    pub fn check_answer(&self, fields: &BTreeMap<String, String>) -> Result<(), ActionError> {
        let Some(value) = fields.get(field::INPUT_VALUE) else {
            return err("an answered input needs InputValue");
        };
        self.check_value(value)?;
        if self.kind == InputKind::Selection {
            let index = fields
                .get(field::INPUT_INDEX)
                .and_then(|i| i.parse::<usize>().ok());
            if index.and_then(|i| self.options.get(i)) != Some(value) {
                return err("InputIndex must be the position of the chosen option");
            }
        }
        Ok(())
    }

    /// Checks one answer's value against the kind and the rules.
    pub fn check_value(&self, value: &str) -> Result<(), ActionError> {
        let r = &self.rules;
        let length = value.chars().count() as u64;
        let within_lengths = |default_max: u32| -> Result<(), ActionError> {
            let min = u64::from(r.min_length.unwrap_or(0));
            let max = u64::from(r.max_length.unwrap_or(default_max));
            if length < min.max(1) {
                return err(format!(
                    "the answer needs at least {} characters",
                    min.max(1)
                ));
            }
            if length > max {
                return err(format!("the answer has at most {max} characters"));
            }
            Ok(())
        };
        match self.kind {
            InputKind::Signature => check_signature(value),
            InputKind::Email => {
                within_lengths(254)?;
                if is_email(value) {
                    Ok(())
                } else {
                    err("not an email address")
                }
            }
            InputKind::Phone => {
                let digits = value.strip_prefix('+').unwrap_or(value);
                if (6..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
                    Ok(())
                } else {
                    err("not a phone number: + and 6 to 15 digits")
                }
            }
            InputKind::Number => {
                let Some(scaled) = parse_number(value, r.decimals) else {
                    return if r.decimals == 0 {
                        err("not a whole number")
                    } else {
                        err(format!("not a number with at most {} decimals", r.decimals))
                    };
                };
                let scale = 10i128.pow(u32::from(r.decimals));
                if r.min.is_some_and(|m| scaled < i128::from(m) * scale) {
                    return err(format!("the number is below {}", r.min.unwrap_or(0)));
                }
                if r.max.is_some_and(|m| scaled > i128::from(m) * scale) {
                    return err(format!("the number is above {}", r.max.unwrap_or(0)));
                }
                Ok(())
            }
            InputKind::Text => {
                within_lengths(MAX_TEXT_LENGTH)?;
                if value.chars().any(|c| c.is_control() && c != '\n') {
                    return err("control characters are not allowed");
                }
                Ok(())
            }
            InputKind::Selection => {
                if self.options.iter().any(|o| o == value) {
                    Ok(())
                } else {
                    err("not one of the options")
                }
            }
            InputKind::Confirmation => match value {
                "yes" | "no" => Ok(()),
                _ => err("a confirmation is yes or no"),
            },
        }
    }
}

/// A number with at most `decimals` digits after the point, scaled to an integer of
/// `10^decimals` units (`12.5` with 2 decimals is 1250).
fn parse_number(s: &str, decimals: u8) -> Option<i128> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = match body.split_once('.') {
        Some((w, f)) => (w, f),
        None => (body, ""),
    };
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    // An empty whole part fails the parse below.
    if whole.len() > 18
        || !digits(whole)
        || !digits(frac)
        || frac.len() > usize::from(decimals)
        || (body.contains('.') && frac.is_empty())
    {
        return None;
    }
    let mut n: i128 = whole.parse().ok()?;
    for i in 0..usize::from(decimals) {
        let d = frac.as_bytes().get(i).map_or(0, |b| i128::from(b - b'0'));
        n = n * 10 + d;
    }
    Some(if negative { -n } else { n })
}

/// A plausible address: one `@`, something before it, a dotted domain after it, no spaces.
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// SVG path data as a signature pad draws it: moves, lines, curves and arcs with numbers,
/// starting with a move and drawing something; nothing that could carry markup.
fn check_signature(s: &str) -> Result<(), ActionError> {
    if s.len() > MAX_SIGNATURE_BYTES {
        return err(format!(
            "the signature is larger than {MAX_SIGNATURE_BYTES} bytes"
        ));
    }
    if !s.trim_start().starts_with(['M', 'm']) {
        return err("a signature is SVG path data starting with a move (M)");
    }
    let allowed = |c: char| "MmLlHhVvCcSsQqTtAaZz0123456789 ,.-".contains(c);
    if !s.chars().all(allowed) {
        return err("a signature is SVG path data: the commands M L H V C S Q T A Z and numbers");
    }
    if !s.chars().any(|c| "LlHhVvCcSsQqTtAa".contains(c)) {
        return err("the signature is empty: nothing was drawn");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Printing.

/// Most lines a print job holds.
pub const MAX_PRINT_LINES: usize = 200;

/// `Terminal.Print`: a slip for the terminal's printer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintJob {
    pub lines: Vec<PrintLine>,
}

/// Where a line of text sits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Align {
    #[default]
    Left,
    Centre,
    Right,
}

fn is_left(a: &Align) -> bool {
    *a == Align::Left
}

/// The barcodes a printer draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Symbology {
    /// Printable ASCII, up to 80 characters.
    Code128,
    /// 12 digits, or 13 with a right check digit.
    Ean13,
}

/// One line of a slip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PrintLine {
    Text {
        text: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        bold: bool,
        #[serde(default, skip_serializing_if = "is_left")]
        align: Align,
        /// Double height and width.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        large: bool,
    },
    Qr {
        data: String,
    },
    Barcode {
        symbology: Symbology,
        data: String,
    },
    /// Blank paper, `lines` high (1 to 10).
    Feed {
        #[serde(default = "one_u8")]
        lines: u8,
    },
    /// Cut the paper (where the printer can).
    Cut,
}

fn one_u8() -> u8 {
    1
}

impl PrintJob {
    /// Checks the limits: lines, text, QR and barcode data.
    pub fn check(&self) -> Result<(), ActionError> {
        if self.lines.is_empty() {
            return err("Missing required field: Lines (at least one line to print)");
        }
        if self.lines.len() > MAX_PRINT_LINES {
            return err(format!("Invalid Lines: at most {MAX_PRINT_LINES} lines"));
        }
        for (i, line) in self.lines.iter().enumerate() {
            let name = format!("Lines[{i}]");
            match line {
                PrintLine::Text { text, .. } => check_text(&name, text, false, 120)?,
                PrintLine::Qr { data } => check_qr_data(&name, data)?,
                PrintLine::Barcode { symbology, data } => check_barcode(&name, *symbology, data)?,
                PrintLine::Feed { lines } if !(1..=10).contains(lines) => {
                    return err(format!("Invalid {name}: a feed is 1 to 10 lines"))
                }
                PrintLine::Feed { .. } | PrintLine::Cut => {}
            }
        }
        Ok(())
    }
}

/// Largest QR code content, in bytes (a QR code of version 20 or so, still readable).
pub const MAX_QR_BYTES: usize = 1000;

fn check_qr_data(field: &str, data: &str) -> Result<(), ActionError> {
    if data.is_empty() {
        return err(format!("Invalid {field}: a QR code needs data"));
    }
    if data.len() > MAX_QR_BYTES {
        return err(format!(
            "Invalid {field}: at most {MAX_QR_BYTES} bytes of data"
        ));
    }
    if data.chars().any(char::is_control) {
        return err(format!(
            "Invalid {field}: control characters are not allowed"
        ));
    }
    Ok(())
}

fn check_barcode(field: &str, symbology: Symbology, data: &str) -> Result<(), ActionError> {
    match symbology {
        Symbology::Code128 => {
            if data.is_empty() || data.len() > 80 || !data.bytes().all(|b| (32..=126).contains(&b))
            {
                return err(format!(
                    "Invalid {field}: code128 is 1 to 80 printable ASCII characters"
                ));
            }
        }
        Symbology::Ean13 => {
            let digits: Vec<u32> = data.chars().filter_map(|c| c.to_digit(10)).collect();
            if digits.len() != data.len() || !(12..=13).contains(&digits.len()) {
                return err(format!("Invalid {field}: ean13 is 12 or 13 digits"));
            }
            if digits.len() == 13 && ean13_check_digit(&digits[..12]) != digits[12] {
                return err(format!("Invalid {field}: wrong ean13 check digit"));
            }
        }
    }
    Ok(())
}

/// The check digit of an EAN-13's first twelve digits.
pub fn ean13_check_digit(first12: &[u32]) -> u32 {
    let sum: u32 = first12
        .iter()
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { *d } else { d * 3 })
        .sum();
    (10 - sum % 10) % 10
}

// ---------------------------------------------------------------------------------------------
// A QR code on the screen.

/// `Terminal.ShowQr`: a QR code on the customer's screen until they dismiss it, the timeout
/// passes, or the POS cancels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrDisplay {
    pub data: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub caption: String,
    pub timeout_secs: u32,
}

impl QrDisplay {
    pub fn check(&self) -> Result<(), ActionError> {
        check_qr_data("QrData", &self.data)?;
        check_text("Caption", &self.caption, false, 100)?;
        if !(MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS).contains(&self.timeout_secs) {
            return err(format!(
                "Invalid TimeoutSeconds: from {MIN_TIMEOUT_SECS} to {MAX_TIMEOUT_SECS}"
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Structured receipts.

/// The merchant's and the customer's copies of a payment's receipt, as the device printed or
/// would print them, beside the fixed-width `Receipt` text of SmartConnect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Receipts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant: Option<Receipt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<Receipt>,
}

/// One copy of a receipt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Receipt {
    /// The merchant's name, address and such, centred at the top.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<String>,
    /// The labelled values: card, amount, result, references.
    #[serde(default)]
    pub fields: Vec<ReceiptField>,
    /// Free lines below ("Thank you", "Customer copy").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub footer: Vec<String>,
}

/// A labelled value of a receipt (`Card` `VISA ...1234`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiptField {
    pub label: String,
    pub value: String,
}

/// Limits of a receipt a device reports: it is shown and emailed, never executed.
const MAX_RECEIPT_LINES: usize = 100;

impl Receipts {
    /// Checks the limits of both copies.
    pub fn check(&self) -> Result<(), ActionError> {
        for (name, copy) in [("merchant", &self.merchant), ("customer", &self.customer)] {
            if let Some(r) = copy {
                r.check(name)?;
            }
        }
        Ok(())
    }
}

impl Receipt {
    fn check(&self, copy: &str) -> Result<(), ActionError> {
        let lines = self.header.len() + self.fields.len() + self.footer.len();
        if lines > MAX_RECEIPT_LINES {
            return err(format!(
                "the {copy} receipt has more than {MAX_RECEIPT_LINES} lines"
            ));
        }
        for l in self.header.iter().chain(&self.footer) {
            check_text(&format!("receipts.{copy}"), l, false, 120)?;
        }
        for f in &self.fields {
            check_text(&format!("receipts.{copy}"), &f.label, false, 60)?;
            check_text(&format!("receipts.{copy}"), &f.value, false, 120)?;
        }
        Ok(())
    }

    /// The copy as fixed-width text, `width` characters a line: the header centred, each
    /// field's label left and value right, the footer centred.
    pub fn to_text(&self, width: usize) -> String {
        let mut out = String::new();
        let centre = |s: &str, out: &mut String| {
            let n = s.chars().count();
            let pad = width.saturating_sub(n) / 2;
            out.push_str(&" ".repeat(pad));
            out.push_str(s);
            out.push('\n');
        };
        for l in &self.header {
            centre(l, &mut out);
        }
        if !self.header.is_empty() {
            out.push('\n');
        }
        for f in &self.fields {
            let used = f.label.chars().count() + f.value.chars().count();
            let gap = width.saturating_sub(used).max(1);
            out.push_str(&f.label);
            out.push_str(&" ".repeat(gap));
            out.push_str(&f.value);
            out.push('\n');
        }
        if !self.footer.is_empty() {
            out.push('\n');
        }
        for l in &self.footer {
            centre(l, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(kind: InputKind) -> InputRequest {
        InputRequest {
            kind,
            prompt: "Your answer?".into(),
            options: if kind == InputKind::Selection {
                vec!["Red".into(), "Green".into()]
            } else {
                vec![]
            },
            rules: InputRules::default(),
            timeout_secs: DEFAULT_TIMEOUT_SECS,
        }
    }

    fn answer(r: &InputRequest, value: &str) -> Result<(), ActionError> {
        r.check_value(value)
    }

    #[test]
    fn every_kind_checks_its_answer() {
        let cases: &[(InputKind, &[&str], &[&str])] = &[
            (
                InputKind::Signature,
                &[
                    "M10 10 L20 20",
                    "m 1,2 c 3,4 5,6 7,8 z",
                    "M10 80 C 40 10, 65 10, 95 80 S 150 150, 180 80",
                ],
                &["", "L1 1", "M1 1", "M1 1 L2 2 <script>", "M1 1 L2 2\"/>"],
            ),
            (
                InputKind::Email,
                &["a@b.co", "first.last+tag@shop.example"],
                &["", "a@b", "@b.co", "a b@c.de", "a@b@c.de", "a@.b", "a@b."],
            ),
            (
                InputKind::Phone,
                &["+61400000000", "0400000000", "123456"],
                &["", "12345", "+1234567890123456", "04 0000 0000", "+61-4"],
            ),
            (
                InputKind::Number,
                &["0", "42", "-7"],
                &["", "4.2", "x", "1e3", "-", "."],
            ),
            (
                InputKind::Text,
                &["hello", "two\nlines"],
                &["", "bell\u{7}"],
            ),
            (
                InputKind::Selection,
                &["Red", "Green"],
                &["red", "Blue", ""],
            ),
            (InputKind::Confirmation, &["yes", "no"], &["Yes", "y", ""]),
        ];
        for (kind, good, bad) in cases {
            let r = input(*kind);
            assert_eq!(r.check(), Ok(()), "{kind}");
            for v in *good {
                assert_eq!(answer(&r, v), Ok(()), "{kind} {v:?}");
            }
            for v in *bad {
                assert!(answer(&r, v).is_err(), "{kind} {v:?}");
            }
        }
    }

    #[test]
    fn number_rules_bound_the_value_and_its_decimals() {
        let mut r = input(InputKind::Number);
        r.rules = InputRules {
            min: Some(1),
            max: Some(10),
            decimals: 2,
            ..InputRules::default()
        };
        assert_eq!(r.check(), Ok(()));
        for ok in ["1", "10", "10.00", "9.99", "1.5"] {
            assert_eq!(answer(&r, ok), Ok(()), "{ok}");
        }
        for bad in ["0.99", "10.01", "11", "1.234", "-1", "5."] {
            assert!(answer(&r, bad).is_err(), "{bad}");
        }
        assert_eq!(parse_number("12.5", 2), Some(1250));
        assert_eq!(parse_number("-0.01", 2), Some(-1));
        assert_eq!(parse_number("7", 0), Some(7));
    }

    #[test]
    fn text_lengths_are_rules_and_limits() {
        let mut r = input(InputKind::Text);
        r.rules.min_length = Some(3);
        r.rules.max_length = Some(5);
        assert_eq!(r.check(), Ok(()));
        assert!(answer(&r, "ab").is_err());
        assert_eq!(answer(&r, "abc"), Ok(()));
        assert_eq!(answer(&r, "abcde"), Ok(()));
        assert!(answer(&r, "abcdef").is_err());
        r.rules.min_length = Some(6);
        assert!(r.check().is_err());
    }

    #[test]
    fn requests_are_checked_for_their_kind() {
        let mut r = input(InputKind::Email);
        r.options = vec!["a".into(), "b".into()];
        assert!(r.check().is_err(), "options only for a selection");
        let mut r = input(InputKind::Selection);
        r.options = vec!["only".into()];
        assert!(r.check().is_err(), "one option is no choice");
        r.options = vec!["a".into(), "a".into()];
        assert!(r.check().is_err(), "twice the same option");
        let mut r = input(InputKind::Text);
        r.rules.min = Some(1);
        assert!(r.check().is_err(), "min is for numbers");
        let mut r = input(InputKind::Number);
        r.rules.max_length = Some(3);
        assert!(r.check().is_err(), "lengths are for text");
        let mut r = input(InputKind::Confirmation);
        r.prompt = String::new();
        assert!(r.check().is_err(), "a prompt is required");
        r.prompt = "x".repeat(201);
        assert!(r.check().is_err(), "prompt too long");
        let mut r = input(InputKind::Confirmation);
        r.timeout_secs = 4;
        assert!(r.check().is_err());
        r.timeout_secs = 601;
        assert!(r.check().is_err());
        assert!(InputKind::parse("SIGNATURE").is_ok());
        assert!(InputKind::parse("fingerprint").is_err());
    }

    #[test]
    fn a_selection_answer_names_its_option_and_position() {
        let r = input(InputKind::Selection);
        let fields = |v: &str, i: &str| {
            BTreeMap::from([
                (field::INPUT_VALUE.to_string(), v.to_string()),
                (field::INPUT_INDEX.to_string(), i.to_string()),
            ])
        };
        assert_eq!(r.check_answer(&fields("Green", "1")), Ok(()));
        assert!(r.check_answer(&fields("Green", "0")).is_err());
        assert!(r.check_answer(&fields("Green", "x")).is_err());
        assert!(r.check_answer(&BTreeMap::new()).is_err());
    }

    #[test]
    fn print_jobs_are_checked() {
        let text = |t: &str| PrintLine::Text {
            text: t.into(),
            bold: false,
            align: Align::Left,
            large: false,
        };
        assert!(PrintJob { lines: vec![] }.check().is_err());
        assert!(PrintJob {
            lines: vec![text("ok"), PrintLine::Cut]
        }
        .check()
        .is_ok());
        assert!(PrintJob {
            lines: vec![text(&"x".repeat(121))]
        }
        .check()
        .is_err());
        let bar = |s, d: &str| PrintJob {
            lines: vec![PrintLine::Barcode {
                symbology: s,
                data: d.into(),
            }],
        };
        assert!(bar(Symbology::Ean13, "400638133393").check().is_ok());
        assert!(bar(Symbology::Ean13, "4006381333931").check().is_ok());
        assert!(bar(Symbology::Ean13, "4006381333932").check().is_err());
        assert!(bar(Symbology::Ean13, "40063813339").check().is_err());
        assert!(bar(Symbology::Code128, "ABC-123").check().is_ok());
        assert!(bar(Symbology::Code128, "é").check().is_err());
        let qr = PrintJob {
            lines: vec![PrintLine::Qr {
                data: "x".repeat(MAX_QR_BYTES + 1),
            }],
        };
        assert!(qr.check().is_err());
        let feed = PrintJob {
            lines: vec![PrintLine::Feed { lines: 0 }],
        };
        assert!(feed.check().is_err());
        let job: Result<PrintJob, _> = serde_json::from_str(
            r#"{"lines":[{"kind":"text","text":"Hi","bold":true,"align":"centre"},{"kind":"feed"},{"kind":"cut"}]}"#,
        );
        assert!(matches!(
            job.as_ref().map(|j| &j.lines[..]),
            Ok([
                PrintLine::Text {
                    bold: true,
                    align: Align::Centre,
                    ..
                },
                PrintLine::Feed { lines: 1 },
                PrintLine::Cut
            ])
        ));
    }

    #[test]
    fn a_sale_data_basket_becomes_a_cart() {
        let sale = r#"{"version":"1.0.0","saleData":{"totalAmount":"1150","totalTax":"105",
            "lineItems":[
              {"productName":"Flat white","quantity":"2","unitPrice":"450","totalPrice":"900"},
              {"productDescription":"Muffin","quantity":1,"unitPrice":"250"},
              {"quantity":"1","totalPrice":"5"},
              {"productName":"Bad price","totalPrice":"1.50"}
            ]}}"#;
        let cart = Cart::from_sale_data(sale);
        assert_eq!(
            cart,
            Some(Cart {
                lines: vec![
                    CartLine {
                        description: "Flat white".into(),
                        quantity: "2".into(),
                        unit_price: Some(450),
                        amount: 900
                    },
                    CartLine {
                        description: "Muffin".into(),
                        quantity: "1".into(),
                        unit_price: Some(250),
                        amount: 250
                    },
                ],
                currency: None,
                total: 1150,
                tax: Some(105),
            })
        );
        assert_eq!(
            Cart::from_sale_data(r#"{"saleData":{"totalTax":"1"}}"#),
            None
        );
        assert_eq!(Cart::from_sale_data("not json"), None);
    }

    #[test]
    fn receipts_render_as_fixed_width_text() {
        let r = Receipt {
            header: vec!["CAFE".into()],
            fields: vec![ReceiptField {
                label: "Total".into(),
                value: "$5.00".into(),
            }],
            footer: vec!["Thanks".into()],
        };
        assert_eq!(r.to_text(12), "    CAFE\n\nTotal  $5.00\n\n   Thanks\n");
        let too_long = Receipts {
            customer: Some(Receipt {
                header: vec!["x".repeat(121)],
                ..Receipt::default()
            }),
            merchant: None,
        };
        assert!(too_long.check().is_err());
    }

    #[test]
    fn qr_displays_are_checked() {
        let q = |data: &str, caption: &str, t| QrDisplay {
            data: data.into(),
            caption: caption.into(),
            timeout_secs: t,
        };
        assert!(q("https://example.com/l/1", "Join", 60).check().is_ok());
        assert!(q("", "", 60).check().is_err());
        assert!(q("x", &"c".repeat(101), 60).check().is_err());
        assert!(q("x", "", 1).check().is_err());
    }

    fn line(description: &str, quantity: &str) -> CartLine {
        CartLine {
            description: description.into(),
            quantity: quantity.into(),
            unit_price: None,
            amount: 1,
        }
    }

    #[test]
    fn carts_hold_at_their_limits() {
        let cart = |lines: Vec<CartLine>| Cart {
            lines,
            currency: None,
            total: 1,
            tax: None,
        };
        assert_eq!(cart(vec![line("x", "1"); MAX_CART_LINES]).check(), Ok(()));
        assert!(cart(vec![line("x", "1"); MAX_CART_LINES + 1])
            .check()
            .is_err());
        assert_eq!(
            cart(vec![line(&"d".repeat(120), &"q".repeat(16))]).check(),
            Ok(())
        );
        assert!(cart(vec![line(&"d".repeat(121), "1")]).check().is_err());
        assert!(cart(vec![line("d", &"q".repeat(17))]).check().is_err());
        let missing = cart(vec![line("", "1")]).check();
        assert_eq!(
            missing.map_err(|e| e.0),
            Err("Missing required field: Lines[0].description".to_string())
        );
        assert!(cart(vec![line("tab\there", "1")]).check().is_err());
        // A line without a quantity is one of it.
        let l: Result<CartLine, _> = serde_json::from_str(r#"{"description":"Tea","amount":5}"#);
        assert_eq!(l.map(|l| l.quantity).ok().as_deref(), Some("1"));
        // SaleData amounts as numbers, quantities as numbers or blank.
        let sale = r#"{"saleData":{"totalAmount":700,"totalTax":"0","lineItems":[
            {"productName":"A","quantity":3,"totalPrice":300},
            {"productName":"B","quantity":"  ","totalPrice":"400"}]}}"#;
        let c = Cart::from_sale_data(sale);
        assert_eq!(c.as_ref().map(|c| c.total), Some(700));
        let q: Vec<&str> = c
            .iter()
            .flat_map(|c| &c.lines)
            .map(|l| l.quantity.as_str())
            .collect();
        assert_eq!(q, ["3", "1"]);
    }

    #[test]
    fn input_rules_hold_at_their_edges() {
        let text = |min, max| {
            let mut r = input(InputKind::Text);
            r.rules.min_length = min;
            r.rules.max_length = max;
            r.check()
        };
        assert_eq!(text(Some(5), Some(5)), Ok(()));
        assert!(text(Some(6), Some(5)).is_err());
        assert!(text(None, Some(0)).is_err());
        assert_eq!(text(None, Some(MAX_TEXT_LENGTH)), Ok(()));
        assert!(text(None, Some(MAX_TEXT_LENGTH + 1)).is_err());
        assert_eq!(text(Some(3), None), Ok(()));
        let number = |min, max, decimals| {
            let mut r = input(InputKind::Number);
            r.rules = InputRules {
                min,
                max,
                decimals,
                ..InputRules::default()
            };
            r.check()
        };
        assert_eq!(number(Some(5), Some(5), 6), Ok(()));
        assert!(number(Some(6), Some(5), 0).is_err());
        assert!(number(None, None, 7).is_err());
        for (min, max, decimals) in [(Some(1), None, 0), (None, Some(1), 0), (None, None, 1)] {
            let mut r = input(InputKind::Text);
            r.rules = InputRules {
                min,
                max,
                decimals,
                ..InputRules::default()
            };
            assert!(r.check().is_err(), "{:?}", r.rules);
        }
        let mut r = input(InputKind::Selection);
        r.options = (0..MAX_OPTIONS).map(|i| i.to_string()).collect();
        assert_eq!(r.check(), Ok(()));
        r.options.push("one more".into());
        assert!(r.check().is_err());
        r.options = vec!["a".into(), "b".repeat(61)];
        assert!(r.check().is_err());
        let mut r = input(InputKind::Email);
        r.prompt = "p".repeat(200);
        assert_eq!(r.check(), Ok(()));
        r.timeout_secs = MIN_TIMEOUT_SECS;
        assert_eq!(r.check(), Ok(()));
        r.timeout_secs = MAX_TIMEOUT_SECS;
        assert_eq!(r.check(), Ok(()));
    }

    #[test]
    fn answers_hold_at_their_edges() {
        let mut n = input(InputKind::Number);
        assert_eq!(
            answer(&n, "1.5").map_err(|e| e.0),
            Err("not a whole number".into())
        );
        n.rules.decimals = 2;
        assert_eq!(
            answer(&n, "1.555").map_err(|e| e.0),
            Err("not a number with at most 2 decimals".into())
        );
        for bad in ["+5", "--5", "1.a", "1.", "a.1", "1.2.3"] {
            assert!(answer(&n, bad).is_err(), "{bad}");
        }
        assert_eq!(answer(&n, "1.55"), Ok(()));
        let whole = input(InputKind::Number);
        assert_eq!(answer(&whole, &"9".repeat(18)), Ok(()));
        assert!(answer(&whole, &"9".repeat(19)).is_err());
        let sig = input(InputKind::Signature);
        let long = |n: usize| format!("M0 0 L{}", "1".repeat(n - 6));
        assert_eq!(answer(&sig, &long(MAX_SIGNATURE_BYTES)), Ok(()));
        assert!(answer(&sig, &long(MAX_SIGNATURE_BYTES + 1)).is_err());
        let mut e = input(InputKind::Email);
        e.rules.max_length = Some(6);
        assert_eq!(answer(&e, "a@b.co"), Ok(()));
        assert!(answer(&e, "ab@c.co").is_err());
    }

    #[test]
    fn print_limits_hold_at_their_edges() {
        let text = |t: &str| PrintLine::Text {
            text: t.into(),
            bold: false,
            align: Align::Left,
            large: false,
        };
        let job = |lines: Vec<PrintLine>| PrintJob { lines }.check();
        assert_eq!(job(vec![PrintLine::Cut; MAX_PRINT_LINES]), Ok(()));
        assert!(job(vec![PrintLine::Cut; MAX_PRINT_LINES + 1]).is_err());
        assert_eq!(job(vec![text(&"x".repeat(120))]), Ok(()));
        assert_eq!(job(vec![text("")]), Ok(()), "a blank line is a line");
        assert_eq!(
            job(vec![
                PrintLine::Feed { lines: 1 },
                PrintLine::Feed { lines: 10 }
            ]),
            Ok(())
        );
        assert!(job(vec![PrintLine::Feed { lines: 11 }]).is_err());
        assert_eq!(
            job(vec![PrintLine::Qr {
                data: "x".repeat(MAX_QR_BYTES)
            }]),
            Ok(())
        );
        let code128 = |d: String| {
            job(vec![PrintLine::Barcode {
                symbology: Symbology::Code128,
                data: d,
            }])
        };
        assert_eq!(code128("A".repeat(80)), Ok(()));
        assert!(code128("A".repeat(81)).is_err());
        assert!(code128(String::new()).is_err());
        let digits = |s: &str| -> Vec<u32> { s.chars().filter_map(|c| c.to_digit(10)).collect() };
        for ean in [
            "4006381333931",
            "5901234123457",
            "9780201379624",
            "0000000000000",
        ] {
            let d = digits(ean);
            assert_eq!(ean13_check_digit(&d[..12]), d[12], "{ean}");
        }
        // Left alignment and plain text are the defaults, left out of the frame.
        let json = serde_json::to_string(&text("a")).unwrap_or_default();
        assert_eq!(json, r#"{"kind":"text","text":"a"}"#);
        let centred = PrintLine::Text {
            text: "a".into(),
            bold: false,
            align: Align::Centre,
            large: false,
        };
        assert!(serde_json::to_string(&centred)
            .unwrap_or_default()
            .contains(r#""align":"centre""#));
        let rules = serde_json::to_string(&InputRules::default()).unwrap_or_default();
        assert_eq!(rules, "{}");
        let two = InputRules {
            decimals: 2,
            ..InputRules::default()
        };
        assert_eq!(
            serde_json::to_string(&two).unwrap_or_default(),
            r#"{"decimals":2}"#
        );
        assert_eq!(InputKind::Phone.to_string(), "phone");
    }

    #[test]
    fn receipts_hold_at_their_edges() {
        let field = ReceiptField {
            label: "l".repeat(60),
            value: "v".repeat(120),
        };
        let copy = |header: usize, fields: usize, footer: usize| Receipts {
            merchant: Some(Receipt {
                header: vec!["h".repeat(120); header],
                fields: vec![field.clone(); fields],
                footer: vec!["f".into(); footer],
            }),
            customer: None,
        };
        assert_eq!(copy(30, 40, 30).check(), Ok(()));
        assert!(copy(31, 40, 30).check().is_err());
        assert!(copy(30, 41, 30).check().is_err());
        assert!(copy(30, 40, 31).check().is_err());
        assert!(copy(100, 1, 0).check().is_err());
        let mut long_label = copy(0, 1, 0);
        if let Some(r) = long_label.merchant.as_mut() {
            r.fields[0].label.push('x');
        }
        assert!(long_label.check().is_err());
    }
}
