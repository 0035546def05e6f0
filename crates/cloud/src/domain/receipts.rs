//! A completed transaction's receipt sent to someone by email or SMS: the addresses (parsed
//! once, at the edge), a delivery as the outbox keeps it, the retry rule, and what is sent (a
//! plain-text and an HTML body for email, a short summary for SMS). No I/O: the store keeps
//! the deliveries and the worker in `crate::receipts` sends them.

use super::lifecycle::{Completion, Phase};
use super::records::TransactionRecord;
use chrono::{DateTime, Utc};
use protocol::action::Receipt;
use protocol::TransactionId;
use std::fmt;
use std::time::Duration;

/// How a receipt leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Channel::Email),
            "sms" => Some(Channel::Sms),
            _ => None,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Channel::Email => "email",
            Channel::Sms => "SMS",
        })
    }
}

/// The channels this server can send through (what its operator configured).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Channels {
    pub email: bool,
    pub sms: bool,
}

impl Channels {
    /// Whether `channel` is configured.
    pub fn has(self, channel: Channel) -> bool {
        match channel {
            Channel::Email => self.email,
            Channel::Sms => self.sms,
        }
    }
}

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("Invalid Email: expected an address such as name@example.com")]
    Email,
    #[error("Invalid Phone: expected + and 6 to 15 digits, such as +61412345678")]
    Phone,
}

/// An email address of the plain `local@domain` form: a dot-atom local part (RFC 5322 `atext`,
/// no quoting, no comments) and a domain of letters, digits and hyphens with at least two
/// labels. Narrower than the RFC on purpose: what passes is what every SMTP server and mail
/// library takes, and no header can be smuggled in. The domain is lower-cased; the local part
/// is kept as given (it may be case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let s = s.trim();
        let (local, domain) = s.rsplit_once('@').ok_or(AddressError::Email)?;
        let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local
                .split('.')
                .all(|part| !part.is_empty() && part.chars().all(atext));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = domain.len() <= 253
            && labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err(AddressError::Email);
        }
        Ok(Self(format!("{local}@{}", domain.to_ascii_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number in E.164 form: `+` and 6 to 15 digits, the first not 0. Spaces, dots,
/// hyphens and parentheses between the digits are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let rest = s.trim().strip_prefix('+').ok_or(AddressError::Phone)?;
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '.' | '-' | '(' | ')' => {}
                _ => return Err(AddressError::Phone),
            }
        }
        if !(6..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(AddressError::Phone);
        }
        Ok(Self(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a receipt goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    Email(EmailAddress),
    Phone(PhoneNumber),
}

impl Address {
    /// Rebuilds a stored address (checked again: a row that is not one is corrupt).
    pub fn from_stored(channel: Channel, s: &str) -> Result<Self, AddressError> {
        Ok(match channel {
            Channel::Email => Address::Email(EmailAddress::parse(s)?),
            Channel::Sms => Address::Phone(PhoneNumber::parse(s)?),
        })
    }

    pub fn channel(&self) -> Channel {
        match self {
            Address::Email(_) => Channel::Email,
            Address::Phone(_) => Channel::Sms,
        }
    }

    /// The address itself (what is sent to and stored).
    pub fn as_str(&self) -> &str {
        match self {
            Address::Email(e) => e.as_str(),
            Address::Phone(p) => p.as_str(),
        }
    }

    /// The address as answers and timelines show it: `a***@example.com`, `+61******678`.
    /// Anyone who may read the transaction (any register of its merchant, the holder of its
    /// polling token, the dashboard) sees its deliveries, and the POS that asked knows the
    /// address already, so the customer's address is not repeated in full.
    pub fn masked(&self) -> String {
        match self {
            Address::Email(e) => {
                let (local, domain) = e.as_str().rsplit_once('@').unwrap_or(("", e.as_str()));
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            Address::Phone(p) => {
                let digits = &p.as_str()[1..];
                let n = digits.len();
                // 6 to 15 ASCII digits: slicing by byte is slicing by digit.
                let (head, tail) = (&digits[..2.min(n)], &digits[n.saturating_sub(3)..]);
                format!("+{head}{}{tail}", "*".repeat(n.saturating_sub(5)))
            }
        }
    }
}

/// Which copy of the receipt is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ReceiptCopy {
    #[default]
    Customer,
    Merchant,
}

impl ReceiptCopy {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptCopy::Customer => "customer",
            ReceiptCopy::Merchant => "merchant",
        }
    }

    /// Parses `customer` or `merchant` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "customer" => Some(ReceiptCopy::Customer),
            "merchant" => Some(ReceiptCopy::Merchant),
            _ => None,
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its next attempt (the first, or a retry).
    Pending,
    /// The mail server or SMS provider took it.
    Sent,
    /// Given up after the last attempt; `last_error` says why.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryState::Pending),
            "sent" => Some(DeliveryState::Sent),
            "failed" => Some(DeliveryState::Failed),
            _ => None,
        }
    }
}

/// A delivery's id: a UUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryId(String);

impl DeliveryId {
    /// A fresh id (time-ordered, so deliveries list in the order they were asked for).
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for DeliveryId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One receipt to one address, as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptDelivery {
    pub id: DeliveryId,
    pub transaction_id: TransactionId,
    pub address: Address,
    pub copy: ReceiptCopy,
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (while pending; a claim moves it to the lease's end).
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed; empty once sent or before any attempt.
    pub last_error: String,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl ReceiptDelivery {
    /// A new delivery, due at once.
    pub fn new(
        transaction_id: TransactionId,
        address: Address,
        copy: ReceiptCopy,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: DeliveryId::new(),
            transaction_id,
            address,
            copy,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_error: String::new(),
            created_at: now,
            sent_at: None,
        }
    }

    pub fn channel(&self) -> Channel {
        self.address.channel()
    }

    /// `email to a***@example.com (customer copy)`, for timelines.
    pub fn describe(&self) -> String {
        format!(
            "{} to {} ({} copy)",
            self.channel(),
            self.address.masked(),
            self.copy.as_str()
        )
    }
}

/// A delivery as a request to queue it found it: new, or the one already pending or sent for
/// the same transaction, address and copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub delivery: ReceiptDelivery,
    /// The delivery existed already (nothing new is sent).
    pub replayed: bool,
}

/// How one attempt ended, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Sent {
        at: DateTime<Utc>,
    },
    /// Failed; tried again at `at`.
    Retry {
        at: DateTime<Utc>,
        error: String,
    },
    /// Failed for the last time.
    GaveUp {
        error: String,
    },
}

/// When to try again after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryRule {
    /// Delay after the first failure; doubles with each one.
    pub min: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Attempts in all before giving up.
    pub max_attempts: u32,
}

impl RetryRule {
    /// What the failure of attempt number `attempts` (1 for the first) leads to at `now`:
    /// a retry after `min * 2^(attempts-1)` (capped at `max`, scaled by `jitter`, which the
    /// caller draws from 0.8..1.2 so that retries spread out), or giving up once `attempts`
    /// reaches `max_attempts`.
    pub fn after_failure(
        &self,
        attempts: u32,
        error: String,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> AttemptOutcome {
        if attempts >= self.max_attempts {
            return AttemptOutcome::GaveUp { error };
        }
        let delay = self
            .min
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
            .min(self.max)
            .mul_f64(jitter.clamp(0.5, 1.5));
        let at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
        AttemptOutcome::Retry { at, error }
    }
}

/// Why a receipt cannot be sent for a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptRefusal {
    #[error("the transaction has not completed yet; its receipt can be sent once it has")]
    NotCompleted,
    #[error("the transaction has no receipt to send (its device reported none)")]
    NoReceipt,
    #[error("{0} delivery is not configured on this server")]
    NotConfigured(Channel),
}

/// What a receipt says: the copy the device reported as structured data, or else the
/// fixed-width `Receipt` text of SmartConnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptContent {
    Structured(Receipt),
    Text(String),
}

/// The receipt of `tx` to send as `copy`: the structured copy asked for when the device
/// reported one, else the fixed-width `Receipt` field; refused while the transaction runs or
/// when it has neither.
pub fn receipt_of(
    tx: &TransactionRecord,
    copy: ReceiptCopy,
) -> Result<ReceiptContent, ReceiptRefusal> {
    let Phase::Completed(c) = &tx.phase else {
        return Err(ReceiptRefusal::NotCompleted);
    };
    let structured = c.receipts.as_ref().and_then(|r| match copy {
        ReceiptCopy::Customer => r.customer.as_ref(),
        ReceiptCopy::Merchant => r.merchant.as_ref(),
    });
    if let Some(r) = structured {
        return Ok(ReceiptContent::Structured(r.clone()));
    }
    match c.fields.get(protocol::pos_api::keys::RECEIPT) {
        Some(text) if !text.trim().is_empty() => Ok(ReceiptContent::Text(text.clone())),
        _ => Err(ReceiptRefusal::NoReceipt),
    }
}

/// Width of the plain-text receipt (a wide till roll).
const TEXT_WIDTH: usize = 40;
/// Longest SMS text: four concatenated segments of GSM-7 text, well within what providers
/// take.
pub const SMS_MAX_CHARS: usize = 600;

/// A name fit for a header line: control characters (a line break above all) become spaces.
fn one_line(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    s.trim().to_string()
}

/// `Your receipt from <merchant>`.
pub fn subject(merchant: &str) -> String {
    match one_line(merchant) {
        m if m.is_empty() => "Your receipt".to_string(),
        m => format!("Your receipt from {m}"),
    }
}

/// The plain-text body: the structured copy laid out as the till prints it, or the
/// fixed-width text as reported.
pub fn text_body(content: &ReceiptContent) -> String {
    match content {
        ReceiptContent::Structured(r) => r.to_text(TEXT_WIDTH),
        ReceiptContent::Text(t) => t.clone(),
    }
}

/// `s` safe inside HTML text and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The HTML body: the header and footer centred, the fields as a two-column table (or the
/// fixed-width text in a `<pre>`). Every value is escaped: a receipt comes from a device and
/// is never markup.
pub fn html_body(merchant: &str, content: &ReceiptContent) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    out.push_str(&escape_html(&subject(merchant)));
    out.push_str(
        "</title></head>\n<body style=\"font-family: sans-serif; color: #222;\">\n\
         <div style=\"max-width: 420px; margin: 0 auto;\">\n",
    );
    let lines = |out: &mut String, lines: &[String]| {
        if lines.is_empty() {
            return;
        }
        out.push_str("<p style=\"text-align: center;\">");
        let escaped: Vec<String> = lines.iter().map(|l| escape_html(l)).collect();
        out.push_str(&escaped.join("<br>"));
        out.push_str("</p>\n");
    };
    match content {
        ReceiptContent::Structured(r) => {
            lines(&mut out, &r.header);
            out.push_str("<table style=\"width: 100%; border-collapse: collapse;\">\n");
            for f in &r.fields {
                out.push_str(&format!(
                    "<tr><th style=\"text-align: left; font-weight: normal; padding: 2px 0;\">{}</th>\
                     <td style=\"text-align: right; padding: 2px 0;\">{}</td></tr>\n",
                    escape_html(&f.label),
                    escape_html(&f.value)
                ));
            }
            out.push_str("</table>\n");
            lines(&mut out, &r.footer);
        }
        ReceiptContent::Text(t) => {
            out.push_str("<pre style=\"font-family: monospace;\">");
            out.push_str(&escape_html(t));
            out.push_str("</pre>\n");
        }
    }
    out.push_str("</div>\n</body></html>\n");
    out
}

/// The SMS text: merchant, what it was, amount and result on the first line, then as many of
/// the receipt's fields (or lines) as fit in [`SMS_MAX_CHARS`].
pub fn sms_text(tx: &TransactionRecord, content: &ReceiptContent) -> String {
    let mut first = one_line(&tx.merchant);
    if first.is_empty() {
        first = "Receipt".into();
    }
    first.push(':');
    let function = tx.request.function.as_str();
    first.push(' ');
    first.push_str(function.rsplit('.').next().unwrap_or(function));
    if let Phase::Completed(c) = &tx.phase {
        if let Some(amount) = amount_of(tx, c) {
            first.push(' ');
            first.push_str(&amount);
        }
        let result = one_line(&c.result_text);
        if !result.is_empty() {
            first.push_str(" - ");
            first.push_str(&result);
        }
    }
    let mut out = truncate(&first, SMS_MAX_CHARS);
    let rest: Vec<String> = match content {
        ReceiptContent::Structured(r) => r
            .fields
            .iter()
            .map(|f| format!("{}: {}", one_line(&f.label), one_line(&f.value)))
            .collect(),
        ReceiptContent::Text(t) => t
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.is_empty())
            .collect(),
    };
    for line in rest {
        if out.chars().count() + 1 + line.chars().count() > SMS_MAX_CHARS {
            break;
        }
        out.push('\n');
        out.push_str(&line);
    }
    out
}

/// The amount the device reported (`AmountTotal`), else the one asked for, with its currency.
fn amount_of(tx: &TransactionRecord, c: &Completion) -> Option<String> {
    let minor = c
        .fields
        .get(protocol::pos_api::keys::AMOUNT_TOTAL)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or_else(|| tx.request.amount_total.map(|a| a.get()))?;
    Some(tx.request.currency.unwrap_or_default().display(minor))
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::accounts::MerchantId;
    use crate::domain::lifecycle::CompletedBy;
    use protocol::action::{ReceiptField, Receipts};
    use protocol::{Cents, DeviceId, Function, RegisterInfo, RegisterKey, ResultCode};
    use std::collections::BTreeMap;

    #[test]
    fn email_addresses_are_plain_and_their_domain_lower_case() {
        for ok in [
            "ann@example.com",
            " Ann.Smith+receipts@Example.COM ",
            "o'brien@shop.co.uk",
            "x@a-b.io",
        ] {
            let e = EmailAddress::parse(ok).unwrap();
            assert!(e
                .as_str()
                .ends_with(&ok.trim().rsplit_once('@').unwrap().1.to_lowercase()));
        }
        assert_eq!(
            EmailAddress::parse("Ann@Example.COM").unwrap().as_str(),
            "Ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann@localhost",
            "ann@example..com",
            "ann@-example.com",
            "a..b@example.com",
            ".a@example.com",
            "ann smith@example.com",
            "ann@exa mple.com",
            "\"ann\"@example.com",
            "ann@example.com\r\nBcc: x@y.z",
            "ann@example.com>",
            "<ann@example.com>",
            "ann@exämple.com",
        ] {
            assert_eq!(
                EmailAddress::parse(bad),
                Err(AddressError::Email),
                "{bad:?}"
            );
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(EmailAddress::parse(&long_local).is_err());
    }

    #[test]
    fn phone_numbers_are_plus_and_six_to_fifteen_digits() {
        assert_eq!(
            PhoneNumber::parse(" +61 (412) 345-678 ").unwrap().as_str(),
            "+61412345678"
        );
        assert!(PhoneNumber::parse("+123456").is_ok());
        assert!(PhoneNumber::parse("+123456789012345").is_ok());
        for bad in [
            "",
            "0412345678",
            "+12345",
            "+1234567890123456",
            "+0412345678",
            "+61 412 abc",
            "++61412345678",
            "+61412345678x",
            "+",
        ] {
            assert_eq!(PhoneNumber::parse(bad), Err(AddressError::Phone), "{bad:?}");
        }
    }

    #[test]
    fn addresses_are_masked_when_shown() {
        let e = Address::Email(EmailAddress::parse("ann.smith@example.com").unwrap());
        assert_eq!(e.masked(), "a***@example.com");
        let p = Address::Phone(PhoneNumber::parse("+61412345678").unwrap());
        assert_eq!(p.masked(), "+61******678");
        let short = Address::Phone(PhoneNumber::parse("+123456").unwrap());
        assert_eq!(short.masked(), "+12*456");
        assert_eq!(
            Address::from_stored(Channel::Sms, "+61412345678").unwrap(),
            p
        );
        assert!(Address::from_stored(Channel::Email, "+61412345678").is_err());
    }

    #[test]
    fn copies_channels_and_states_round_trip() {
        assert_eq!(
            ReceiptCopy::parse(" Merchant "),
            Some(ReceiptCopy::Merchant)
        );
        assert_eq!(ReceiptCopy::parse("customer"), Some(ReceiptCopy::Customer));
        assert_eq!(ReceiptCopy::parse("both"), None);
        for c in [Channel::Email, Channel::Sms] {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        for s in [
            DeliveryState::Pending,
            DeliveryState::Sent,
            DeliveryState::Failed,
        ] {
            assert_eq!(DeliveryState::parse(s.as_str()), Some(s));
        }
        let both = Channels {
            email: true,
            sms: false,
        };
        assert!(both.has(Channel::Email) && !both.has(Channel::Sms));
    }

    #[test]
    fn retries_double_up_to_the_cap_then_give_up() {
        let rule = RetryRule {
            min: Duration::from_secs(2),
            max: Duration::from_secs(10),
            max_attempts: 5,
        };
        let now = Utc::now();
        let delay = |attempts| match rule.after_failure(attempts, "e".into(), now, 1.0) {
            AttemptOutcome::Retry { at, .. } => (at - now).num_seconds(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            [delay(1), delay(2), delay(3), delay(4)],
            [2, 4, 8, 10],
            "doubling, capped"
        );
        assert_eq!(
            rule.after_failure(5, "last".into(), now, 1.0),
            AttemptOutcome::GaveUp {
                error: "last".into()
            }
        );
        // Jitter scales the delay.
        match rule.after_failure(1, "e".into(), now, 1.2) {
            AttemptOutcome::Retry { at, .. } => assert_eq!((at - now).num_milliseconds(), 2400),
            other => panic!("{other:?}"),
        }
    }

    fn receipt() -> Receipt {
        Receipt {
            header: vec!["Toys <Shop>".into(), "1 Main St".into()],
            fields: vec![
                ReceiptField {
                    label: "Card".into(),
                    value: "VISA ...1234".into(),
                },
                ReceiptField {
                    label: "Total".into(),
                    value: "AUD 10.00 & tip".into(),
                },
            ],
            footer: vec!["Thank you".into()],
        }
    }

    fn completed(receipts: Option<Receipts>, fields: &[(&str, &str)]) -> TransactionRecord {
        let now = Utc::now();
        TransactionRecord {
            id: TransactionId::new(),
            device_id: DeviceId::parse("d1").unwrap(),
            register: RegisterInfo {
                key: RegisterKey {
                    register_id: "r".into(),
                    business_name: "b".into(),
                    vendor_name: "v".into(),
                },
                register_name: "Main".into(),
            },
            merchant_id: MerchantId::default(),
            merchant: "Toys\r\nShop".into(),
            request: protocol::TransactionRequest {
                amount_total: Cents::new(1000).ok(),
                ..protocol::TransactionRequest::of(Function::CardPurchase)
            },
            sale_data: None,
            callback_url: None,
            pos_reference: None,
            fingerprint: String::new(),
            token: String::new(),
            token_expires_at: now,
            created_at: now,
            phase: Phase::Completed(Completion {
                by: CompletedBy::Device,
                transaction_result: Some(protocol::TransactionResult::Accepted),
                result: ResultCode::Ok,
                result_text: "APPROVED".into(),
                fields: fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
                receipts,
                settlement: None,
                completed_at: now,
            }),
            display_text: None,
        }
    }

    #[test]
    fn the_structured_copy_asked_for_else_the_fixed_width_text() {
        let both = Some(Receipts {
            merchant: None,
            customer: Some(receipt()),
        });
        let tx = completed(both.clone(), &[("Receipt", "  TOYS SHOP\nTOTAL 10.00\n")]);
        assert_eq!(
            receipt_of(&tx, ReceiptCopy::Customer),
            Ok(ReceiptContent::Structured(receipt()))
        );
        // No merchant copy as data: the SmartConnect text stands in.
        assert_eq!(
            receipt_of(&tx, ReceiptCopy::Merchant),
            Ok(ReceiptContent::Text("  TOYS SHOP\nTOTAL 10.00\n".into()))
        );
        let none = completed(None, &[("Receipt", "  ")]);
        assert_eq!(
            receipt_of(&none, ReceiptCopy::Customer),
            Err(ReceiptRefusal::NoReceipt)
        );
        let mut running = completed(both, &[]);
        running.phase = Phase::Started {
            started_at: Utc::now(),
        };
        assert_eq!(
            receipt_of(&running, ReceiptCopy::Customer),
            Err(ReceiptRefusal::NotCompleted)
        );
    }

    #[test]
    fn bodies_escape_every_value_and_keep_to_one_line_headers() {
        let content = ReceiptContent::Structured(receipt());
        assert_eq!(subject("Toys\r\nShop"), "Your receipt from Toys  Shop");
        assert_eq!(subject(" "), "Your receipt");
        let html = html_body("Toys & Co", &content);
        assert!(html.contains("<title>Your receipt from Toys &amp; Co</title>"));
        assert!(html.contains("Toys &lt;Shop&gt;<br>1 Main St"), "{html}");
        assert!(html.contains(">Card</th>") && html.contains(">VISA ...1234</td>"));
        assert!(html.contains("AUD 10.00 &amp; tip"));
        assert!(html.contains("Thank you"));
        assert!(!html.contains("<Shop>"));
        let text = text_body(&content);
        assert!(text.contains("Card") && text.contains("VISA ...1234"));
        let pre = html_body("Shop", &ReceiptContent::Text("A < B\n".into()));
        assert!(pre.contains("<pre style=\"font-family: monospace;\">A &lt; B\n</pre>"));
    }

    #[test]
    fn sms_is_a_short_summary() {
        let tx = completed(
            Some(Receipts {
                merchant: None,
                customer: Some(receipt()),
            }),
            &[("AmountTotal", "1250")],
        );
        let text = sms_text(&tx, &ReceiptContent::Structured(receipt()));
        assert_eq!(
            text,
            "Toys  Shop: Purchase AUD 12.50 - APPROVED\nCard: VISA ...1234\nTotal: AUD 10.00 & tip"
        );
        let mut long = receipt();
        long.fields = (0..100)
            .map(|i| ReceiptField {
                label: format!("Field {i}"),
                value: "x".repeat(40),
            })
            .collect();
        let text = sms_text(&tx, &ReceiptContent::Structured(long));
        assert!(text.chars().count() <= SMS_MAX_CHARS);
        assert!(text.lines().count() > 5, "{text}");
        let text = sms_text(
            &completed(None, &[]),
            &ReceiptContent::Text("   TOYS   SHOP \n\n TOTAL    10.00\n".into()),
        );
        assert_eq!(
            text,
            "Toys  Shop: Purchase AUD 10.00 - APPROVED\nTOYS SHOP\nTOTAL 10.00"
        );
    }
}
