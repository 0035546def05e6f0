//! The card simulator: a [`CardBackend`] that plays a customer and an acquirer, for
//! development, demos and tests.
//!
//! Test amounts, by the last two digits of the headline amount in cents
//! (`AmountTotal`, else `AmountAuth`, else `AmountFinal`):
//!
//! | cents | outcome |
//! |-------|---------|
//! | `..51` | declined: `OK-DECLINED`, `Result` `OK`, `DECLINED 51 INSUFFICIENT FUNDS` |
//! | `..52` | the customer cancels on the device: `CANCELLED` |
//! | `..53` | slow: approves after `slow` (30 s by default); a `cancel` meanwhile cancels it |
//! | `..54` | power failure right after start: the agent stops as if unplugged |
//! | `..55` | approved with a 1.5 % surcharge (not on refunds) |
//! | other | approved |
//!
//! The follow-ups of a payment take their scenario from their own amount: a refund's
//! `AmountTotal`, a top-up's `AmountTotal`, a tip adjustment's `AmountTip` (`..51` declines a
//! refund, a top-up or a tip). A void or a release has no amount: it takes the scenario of the
//! original's whole units (`5100` = 51.00 declines the void, `5400` loses power during it).
//! A referenced refund, a void, a tip adjustment and a top-up use the original's card, never
//! asking for one. Amounts are printed in the request's currency (the configured `currency`,
//! `AUD` by default, when it names none).
//!
//! The cloud's configuration ([`Settings`], as applied when the transaction started) changes
//! what the customer and the receipt see:
//!
//! * `tipping`: on a `Card.Purchase` whose request carries no tip, the customer is asked
//!   ([`TIP_PROMPT`]) and picks the first of `tip_presets`, a percentage of the amount rounded
//!   half up to the cent; `AmountTip` and `AmountTotal` include it. With tipping off no tip is
//!   added.
//! * `surcharges`: on a card purchase (`Card.Purchase`, the purchase part of
//!   `Card.PurchasePlusCash`), the rule for the card's `CardType` (or `*`) applies to the
//!   purchase and its tip, up to its cap; without a rule the `..55` test amount's 1.5 %
//!   applies as before.
//! * `receipt_header` and `receipt_footer` open and close both the fixed-width `Receipt` and
//!   the structured `receipts` (at most [`MAX_CONFIGURED_LINES`] lines each).
//! * `input_timeout_secs` bounds an input whose request sets no timeout (see [`actions`]).
//! * `card_timeout_secs` and `language` are carried but change nothing here: the simulated
//!   card is presented at once (also with `--interactive`, where the operator answers inputs,
//!   not the card reader), and the simulator speaks English only.
//!
//! Card details, auth ids and references are derived from the transaction id, so a
//! transaction's result is the same however often it is looked at.
//!
//! Terminal actions (input, print, QR code) and their triggers are in [`actions`].

pub mod actions;
mod receipts;

use crate::backend::{BackendFuture, BackendOutcome, BackendTransaction, CardBackend};
use crate::console::Operator;
use crate::journal::{HistoryEntry, JournalHistory};
use protocol::config::Settings;
use protocol::device::{prompt, DeviceResult};
use protocol::settlement::{
    settles, totals_of, BatchTransaction, CardTotals, SettlementBatch, UNKNOWN_CARD_TYPE,
};
use protocol::timestamp::device_local_now;
use protocol::{Cents, Currency, Function, ResultCode, TransactionId, TransactionResult};
use std::collections::BTreeMap;
use std::time::Duration;

/// Timing of the simulated customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulatorConfig {
    /// Pause after each prompt (time to "present the card", "enter the PIN"); 0 in tests.
    pub step_delay: Duration,
    /// How long a slow (`..53`) transaction takes to approve.
    pub slow: Duration,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            step_delay: Duration::from_millis(300),
            slow: Duration::from_secs(30),
        }
    }
}

/// The simulated card reader and acquirer.
#[derive(Debug, Clone)]
pub struct Simulator {
    config: SimulatorConfig,
    terminal_id: String,
    merchant_id: String,
    /// The operator who answers for the customer (`--interactive`); the simulated customer
    /// answers when absent.
    operator: Option<Operator>,
}

impl Simulator {
    /// A simulator printing terminal id `SIM00001` on its receipts.
    pub fn new(config: SimulatorConfig) -> Self {
        Self {
            config,
            terminal_id: "SIM00001".into(),
            merchant_id: "MID000000001".into(),
            operator: None,
        }
    }

    /// Lets an operator answer inputs and dismiss QR codes on the console.
    pub fn with_operator(mut self, operator: Operator) -> Self {
        self.operator = Some(operator);
        self
    }

    /// Sets the terminal id printed on receipts (e.g. the device id).
    pub fn with_terminal_id(mut self, terminal_id: impl Into<String>) -> Self {
        self.terminal_id = terminal_id.into();
        self
    }
}

impl CardBackend for Simulator {
    fn run(&self, transaction: BackendTransaction) -> BackendFuture {
        let sim = self.clone();
        Box::pin(async move { sim.execute(transaction).await })
    }
}

/// What the test amount asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Approve,
    Decline,
    DeviceCancel,
    Slow,
    PowerFailure,
    Surcharge,
}

impl Scenario {
    fn of(amount: Option<Cents>) -> Self {
        match amount.map(|a| a.get() % 100) {
            Some(51) => Scenario::Decline,
            Some(52) => Scenario::DeviceCancel,
            Some(53) => Scenario::Slow,
            Some(54) => Scenario::PowerFailure,
            Some(55) => Scenario::Surcharge,
            _ => Scenario::Approve,
        }
    }
}

/// Why an interaction stopped before the money moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// The POS sent `cancel`.
    ByPos,
    /// The customer pressed cancel on the device.
    OnDevice,
}

/// The card the simulated customer presents.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Card {
    card_type: String,
    account: String,
    pan: String,
}

impl Card {
    /// A card chosen from the transaction id: the same id always "presents" the same card.
    fn for_transaction(id: TransactionId) -> Self {
        let b = id.0.as_bytes();
        let (card_type, account) = match b[0] % 3 {
            0 => ("VISA", "CREDIT"),
            1 => ("MASTERCARD", "CREDIT"),
            _ => ("EFTPOS", if b[1] & 1 == 0 { "CHEQUE" } else { "SAVINGS" }),
        };
        let last4 = u16::from_be_bytes([b[2], b[3]]) % 10_000;
        Self {
            card_type: card_type.into(),
            account: account.into(),
            pan: format!("....{last4:04}"),
        }
    }

    /// The card of an earlier result (a completion uses the authorisation's card).
    fn from_fields(fields: &BTreeMap<String, String>) -> Option<Self> {
        Some(Self {
            card_type: fields.get("CardType")?.clone(),
            account: fields
                .get("AccountType")
                .cloned()
                .unwrap_or_else(|| "CREDIT".into()),
            pan: fields.get("CardPan")?.clone(),
        })
    }
}

fn auth_id(id: TransactionId) -> String {
    let b = id.0.as_bytes();
    format!(
        "{:06}",
        u32::from_be_bytes([b[4], b[5], b[6], b[7]]) % 1_000_000
    )
}

fn acquirer_ref(id: TransactionId) -> String {
    let b = id.0.as_bytes();
    let n = u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
    format!("{:012}", n % 1_000_000_000_000)
}

/// The next system trace number: one more than the last one journaled.
fn terminal_ref(history: &JournalHistory) -> String {
    let last = history
        .entries()
        .iter()
        .rev()
        .find_map(|e| e.result.fields.get("TerminalRef")?.parse::<u32>().ok())
        .unwrap_or(0);
    format!("{:06}", (last + 1) % 1_000_000)
}

fn label(f: Function) -> &'static str {
    match f {
        Function::CardVoid => "VOID",
        Function::CardTipAdjust => "TIP ADJUSTMENT",
        Function::CardTopUp => "PRE-AUTH TOP-UP",
        Function::CardRelease => "PRE-AUTH RELEASE",
        Function::CardPurchase => "PURCHASE",
        Function::CardRefund => "REFUND",
        Function::CardPurchasePlusCash => "PURCHASE + CASH",
        Function::CardCashAdvance => "CASH ADVANCE",
        Function::CardAuthorise => "PRE-AUTHORISATION",
        Function::CardFinalise => "COMPLETION",
        Function::QrMerchantPurchase | Function::QrConsumerPurchase => "QR PURCHASE",
        Function::QrRefund => "QR REFUND",
        Function::AcquirerLogon => "LOGON",
        Function::AcquirerSettlementInquiry => "SETTLEMENT INQUIRY",
        Function::AcquirerSettlementCutover => "SETTLEMENT CUTOVER",
        Function::JournalReprintReceipt => "REPRINT",
        Function::JournalGetTransResult => "LAST RESULT",
        Function::TerminalGetStatus => "STATUS",
        Function::TerminalReadCard => "READ CARD",
        Function::TerminalInput => "INPUT",
        Function::TerminalPrint => "PRINT",
        Function::TerminalShowQr => "QR CODE",
    }
}

fn is_refund(f: Function) -> bool {
    matches!(f, Function::CardRefund | Function::QrRefund)
}

fn is_qr(f: Function) -> bool {
    matches!(
        f,
        Function::QrMerchantPurchase | Function::QrConsumerPurchase | Function::QrRefund
    )
}

/// `cents` in `currency`'s decimal form, with a sign when negative.
fn signed_money(currency: Currency, cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}", currency.decimal(cents.unsigned_abs()))
}

/// Receipts are printed on ~30-column paper.
const RECEIPT_WIDTH: usize = 30;

/// Most lines of the configured receipt header, and of the footer, that a receipt prints (the
/// protocol bounds their characters, not their line breaks; a structured receipt holds at most
/// 100 lines in all).
pub const MAX_CONFIGURED_LINES: usize = 8;

/// The lines of a configured receipt header or footer (`\n`-separated), at most
/// [`MAX_CONFIGURED_LINES`].
fn configured_lines(text: &str) -> Vec<&str> {
    text.lines().take(MAX_CONFIGURED_LINES).collect()
}

/// The `progress` prompt of the tip question (the protocol names none).
pub const TIP_PROMPT: &str = "tip";

/// The currency of a transaction's amounts: the request's, else the configured one (offers
/// normally name one).
fn currency_of(tx: &BackendTransaction) -> Currency {
    tx.offer.request.currency.unwrap_or(tx.settings.currency)
}

/// `percent` % of `cents`, rounded half up to the cent.
fn percent_of(cents: u64, percent: u8) -> u64 {
    let raw = (u128::from(cents) * u128::from(percent) + 50) / 100;
    u64::try_from(raw).unwrap_or(u64::MAX)
}

/// The tip the simulated customer adds to a purchase of `cents`: with tipping on and no tip in
/// the request, the first preset (the customer is deterministic), as the preset and its cents.
fn customer_tip(
    settings: &Settings,
    function: Function,
    tip_in_request: bool,
    cents: u64,
) -> Option<(u8, u64)> {
    if function != Function::CardPurchase || !settings.tipping || tip_in_request {
        return None;
    }
    let preset = *settings.tip_presets.first()?;
    Some((preset, percent_of(cents, preset)))
}

/// A fixed-width receipt under construction.
struct Receipt {
    lines: Vec<String>,
    currency: protocol::Currency,
    /// The configured footer, printed below the verdict.
    footer: Vec<String>,
}

impl Receipt {
    /// Starts with the configured header, then the merchant and terminal header.
    fn new(sim: &Simulator, function: Function, timestamp: &str, settings: &Settings) -> Self {
        let mut r = Self {
            lines: Vec::new(),
            currency: settings.currency,
            footer: configured_lines(&settings.receipt_footer)
                .into_iter()
                .map(str::to_string)
                .collect(),
        };
        for line in configured_lines(&settings.receipt_header) {
            r.centered_wrapped(line);
        }
        r.center("EFTCLOUD SIMULATOR");
        r.pair("MERCHANT ID", &sim.merchant_id);
        r.pair("TERMINAL ID", &sim.terminal_id);
        r.pair("DATE/TIME", &receipt_time(timestamp));
        r.rule();
        r.center(label(function));
        r
    }

    fn center(&mut self, s: &str) {
        let s: String = s.chars().take(RECEIPT_WIDTH).collect();
        let pad = (RECEIPT_WIDTH - s.chars().count()) / 2;
        self.lines.push(format!("{}{s}", " ".repeat(pad)));
    }

    /// A merchant's line: centred, wrapped rather than cut (a blank line stays blank).
    fn centered_wrapped(&mut self, s: &str) {
        let parts = crate::slip::wrap(s.trim(), RECEIPT_WIDTH);
        if parts.is_empty() {
            self.lines.push(String::new());
        }
        for part in parts {
            self.center(&part);
        }
    }

    fn pair(&mut self, left: &str, right: &str) {
        let right: String = right.chars().take(RECEIPT_WIDTH).collect();
        let room = RECEIPT_WIDTH.saturating_sub(right.chars().count() + 1);
        let left: String = left.chars().take(room).collect();
        let gap = RECEIPT_WIDTH - left.chars().count() - right.chars().count();
        self.lines
            .push(format!("{left}{}{right}", " ".repeat(gap.max(1))));
    }

    fn amount(&mut self, label: &str, cents: u64) {
        let c = self.currency;
        self.pair(label, &format!("{} {:>9}", c.code(), c.decimal(cents)));
    }

    fn rule(&mut self) {
        self.lines.push("-".repeat(RECEIPT_WIDTH));
    }

    fn card(&mut self, card: &Card) {
        self.pair("CARD", &format!("{} {}", card.card_type, card.pan));
        self.pair("ACCOUNT", &card.account);
    }

    fn finish(mut self, verdict: &str) -> String {
        self.rule();
        self.center(verdict);
        for line in std::mem::take(&mut self.footer) {
            self.centered_wrapped(&line);
        }
        self.lines.join("\n")
    }
}

/// `yyyyMMddHHmmss` as `dd/MM/yyyy HH:mm`.
fn receipt_time(ts: &str) -> String {
    match (
        ts.get(0..4),
        ts.get(4..6),
        ts.get(6..8),
        ts.get(8..10),
        ts.get(10..12),
    ) {
        (Some(y), Some(mo), Some(d), Some(h), Some(mi)) => format!("{d}/{mo}/{y} {h}:{mi}"),
        _ => ts.to_string(),
    }
}

fn device_result(
    id: TransactionId,
    function: Function,
    transaction_result: TransactionResult,
    result: ResultCode,
    text: &str,
    fields: BTreeMap<String, String>,
) -> DeviceResult {
    DeviceResult {
        transaction_id: id,
        // Non-financial functions answer with Result and ResultText only.
        transaction_result: function.is_financial().then_some(transaction_result),
        result,
        result_text: text.to_string(),
        fields,
        receipts: None,
        settlement: None,
    }
}

/// A settlement period's batch, from the journal: each approved transaction that settles,
/// with what it settled for (its tip adjustments applied, its void taking it out).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Batch {
    /// When the period began: the previous cutover's `Timestamp`, else the oldest journaled
    /// entry's; with a date, that day's midnight.
    period_start: Option<String>,
    /// In journal order.
    items: Vec<BatchTransaction>,
}

/// A minor-units amount field of a journaled result (0 when absent).
fn amount_field(e: &HistoryEntry, key: &str) -> u64 {
    e.result
        .fields
        .get(key)
        .and_then(|a| a.parse::<u64>().ok())
        .unwrap_or(0)
}

impl Batch {
    /// Approved money movements since the last cutover, or on `date` (`yyyyMMdd`) if given.
    fn of(history: &JournalHistory, date: Option<&str>) -> Self {
        let entries = history.entries();
        let timestamp = |e: &HistoryEntry| e.result.fields.get("Timestamp").cloned();
        let (period, period_start): (Vec<&HistoryEntry>, Option<String>) = match date {
            Some(d) => (
                entries
                    .iter()
                    .filter(|e| {
                        e.result
                            .fields
                            .get("Timestamp")
                            .is_some_and(|t| t.starts_with(d))
                    })
                    .collect(),
                Some(format!("{d}000000")),
            ),
            None => {
                let last_cutover = entries.iter().rposition(|e| {
                    e.offer.function() == Function::AcquirerSettlementCutover
                        && e.result.result == ResultCode::Ok
                });
                let start = last_cutover.map_or(0, |i| i + 1);
                let period_start = match last_cutover {
                    Some(i) => timestamp(&entries[i]),
                    None => entries.first().and_then(timestamp),
                };
                (entries[start..].iter().collect(), period_start)
            }
        };
        let mut items: Vec<BatchTransaction> = Vec::new();
        // The tip in each item's amount: a tip adjustment replaces it (a purchase may carry a
        // tip of its own, chosen on the terminal).
        let mut tips: BTreeMap<TransactionId, u64> = BTreeMap::new();
        for e in period {
            let f = e.offer.function();
            if e.result.transaction_result != Some(TransactionResult::Accepted) {
                continue;
            }
            let original = e.offer.request.original.as_ref().map(|o| o.transaction_id);
            match f {
                // A void takes its original out of the batch; a tip adjustment replaces its
                // tip. One whose original is not in this batch (before the period, or run on
                // another terminal) changes nothing here.
                Function::CardVoid => items.retain(|i| Some(i.transaction_id) != original),
                Function::CardTipAdjust => {
                    let tip = e.offer.request.amount_tip.unwrap_or(0);
                    if let Some(item) = items
                        .iter_mut()
                        .find(|i| Some(i.transaction_id) == original)
                    {
                        let counted = tips.insert(item.transaction_id, tip).unwrap_or(0);
                        item.amount = item.amount.saturating_sub(counted).saturating_add(tip);
                    }
                }
                _ if settles(f).is_some() => {
                    tips.insert(e.offer.transaction_id, amount_field(e, "AmountTip"));
                    items.push(BatchTransaction {
                        transaction_id: e.offer.transaction_id,
                        function: f,
                        card_type: e
                            .result
                            .fields
                            .get("CardType")
                            .cloned()
                            .unwrap_or_else(|| UNKNOWN_CARD_TYPE.to_string()),
                        amount: amount_field(e, "AmountTotal"),
                    });
                }
                // A pre-authorisation only holds funds (and its top-ups and release with it);
                // its completion is what settles.
                _ => {}
            }
        }
        Batch {
            period_start,
            items,
        }
    }

    /// Totals by card type.
    fn by_card_type(&self) -> Vec<CardTotals> {
        totals_of(
            self.items
                .iter()
                .map(|i| (i.card_type.as_str(), i.kind(), i.amount)),
        )
    }

    /// Totals over every card type.
    fn overall(&self) -> CardTotals {
        let mut t = CardTotals::default();
        for i in &self.items {
            t.add(i.kind(), i.amount);
        }
        t
    }

    /// The batch as the result reports it, closed at `period_end`.
    fn report(self, period_end: &str) -> SettlementBatch {
        SettlementBatch {
            totals: self.by_card_type(),
            period_start: self.period_start,
            period_end: period_end.to_string(),
            transactions: Some(self.items),
        }
    }
}

impl Simulator {
    async fn execute(&self, tx: BackendTransaction) -> BackendOutcome {
        let f = tx.offer.function();
        if f.is_financial() {
            return match self.financial(&tx).await {
                BackendOutcome::Completed(mut r) => {
                    r.receipts = Some(receipts::structured(self, &tx, &r));
                    BackendOutcome::Completed(r)
                }
                other => other,
            };
        }
        BackendOutcome::Completed(match f {
            Function::AcquirerLogon => self.logon(&tx).await,
            Function::AcquirerSettlementInquiry | Function::AcquirerSettlementCutover => {
                self.settlement(&tx).await
            }
            Function::JournalReprintReceipt => self.reprint(&tx),
            Function::JournalGetTransResult => self.last_result(&tx),
            Function::TerminalGetStatus => self.status(&tx),
            Function::TerminalReadCard => self.read_card(&tx).await,
            Function::TerminalInput => self.input(&tx).await,
            Function::TerminalPrint => self.print(&tx).await,
            Function::TerminalShowQr => self.show_qr(&tx).await,
            // Financial functions returned above; answer sensibly rather than panic.
            _ => self.status(&tx),
        })
    }

    /// Shows a prompt, then waits `step_delay` unless the POS cancels.
    async fn step(&self, tx: &BackendTransaction, p: &str, text: &str) -> Result<(), Stopped> {
        tx.progress.show(p, text).await;
        self.pause(tx, self.config.step_delay).await
    }

    async fn pause(&self, tx: &BackendTransaction, d: Duration) -> Result<(), Stopped> {
        tokio::select! {
            biased;
            _ = tx.cancel.cancelled() => Err(Stopped::ByPos),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    fn base_fields(&self, tx: &BackendTransaction, timestamp: &str) -> BTreeMap<String, String> {
        let mut fields = BTreeMap::new();
        fields.insert("Timestamp".into(), timestamp.to_string());
        fields.insert("TerminalRef".into(), terminal_ref(&tx.history));
        fields
    }

    /// The customer's part: card or QR code, account, PIN, then the acquirer's processing.
    async fn interact(
        &self,
        tx: &BackendTransaction,
        amount: Cents,
        card: &Card,
        card_on_file: bool,
        scenario: Scenario,
        tip: Option<(u8, u64)>,
    ) -> Result<(), Stopped> {
        let f = tx.offer.function();
        let currency = currency_of(tx);
        let headline = format!(
            "{} {} {}",
            label(f),
            currency.code(),
            currency.decimal(amount.get())
        );
        if let Some((preset, cents)) = tip {
            // The customer is asked before the card, as terminals do, and picks the first
            // preset.
            let offered: Vec<String> = tx
                .settings
                .tip_presets
                .iter()
                .map(|p| format!("{p}%"))
                .collect();
            self.step(
                tx,
                TIP_PROMPT,
                &format!(
                    "{headline}\nAdd a tip? {}\nChosen: {preset}% ({})",
                    offered.join(" / "),
                    currency.decimal(cents)
                ),
            )
            .await?;
        }
        // No card wait to bound with `card_timeout_secs`: the simulated card is presented at
        // once after the prompt (see the module's notes).
        match f {
            Function::QrMerchantPurchase => {
                self.step(tx, prompt::SHOW_QR, &format!("{headline}\nScan to pay"))
                    .await?
            }
            Function::QrConsumerPurchase | Function::QrRefund => {
                self.step(
                    tx,
                    prompt::SCAN_QR,
                    &format!("{headline}\nShow your QR code"),
                )
                .await?
            }
            _ if card_on_file => {}
            _ => {
                self.step(
                    tx,
                    prompt::PRESENT_CARD,
                    &format!("{headline}\nPresent card"),
                )
                .await?
            }
        }
        if scenario == Scenario::DeviceCancel {
            return Err(Stopped::OnDevice);
        }
        if !is_qr(f) && !card_on_file {
            if card.account != "CREDIT" {
                self.step(tx, prompt::SELECT_ACCOUNT, "CHQ / SAV / CR")
                    .await?;
            }
            self.step(tx, prompt::ENTER_PIN, "Enter PIN").await?;
        }
        self.step(tx, prompt::PROCESSING, "Processing, please wait")
            .await?;
        if scenario == Scenario::Slow {
            self.pause(tx, self.config.slow).await?;
        }
        Ok(())
    }

    async fn financial(&self, tx: &BackendTransaction) -> BackendOutcome {
        let offer = &tx.offer;
        let f = offer.function();
        let id = offer.transaction_id;
        let req = &offer.request;
        let timestamp = device_local_now();
        let mut fields = self.base_fields(tx, &timestamp);
        let mut receipt = Receipt::new(self, f, &timestamp, &tx.settings);
        receipt.currency = currency_of(tx);
        if matches!(
            f,
            Function::CardVoid
                | Function::CardTipAdjust
                | Function::CardTopUp
                | Function::CardRelease
        ) {
            return self.follow_up(tx, fields, receipt).await;
        }
        let Some(amount) = req.headline_amount() else {
            // The cloud validates requests, so this is a protocol bug; fail without charging.
            let receipt = receipt.finish("FAILED");
            fields.insert("Receipt".into(), receipt);
            return BackendOutcome::Completed(device_result(
                id,
                f,
                TransactionResult::Failed,
                ResultCode::Failed,
                "NO AMOUNT IN REQUEST",
                fields,
            ));
        };
        let scenario = Scenario::of(Some(amount));
        if scenario == Scenario::PowerFailure {
            return BackendOutcome::PowerFailure;
        }

        // A completion charges the card of its authorisation, without the card present.
        let authorisation = (f == Function::CardFinalise)
            .then(|| {
                tx.history.last_where(|e| {
                    e.offer.function() == Function::CardAuthorise
                        && e.result.transaction_result == Some(TransactionResult::Accepted)
                        && e.offer.request.transaction_reference == req.transaction_reference
                })
            })
            .flatten();
        // A refund or completion by reference uses the card of its original.
        let on_file = req
            .original
            .as_ref()
            .and_then(|o| Card::from_fields(&o.fields))
            .or_else(|| authorisation.and_then(|a| Card::from_fields(&a.result.fields)));
        let card_on_file = on_file.is_some();
        let card = on_file.unwrap_or_else(|| Card::for_transaction(id));
        let tip = customer_tip(&tx.settings, f, req.amount_tip.is_some(), amount.get());

        if let Err(stopped) = self
            .interact(tx, amount, &card, card_on_file, scenario, tip)
            .await
        {
            let text = match stopped {
                Stopped::ByPos => "CANCELLED BY POS",
                Stopped::OnDevice => "CANCELLED ON DEVICE",
            };
            receipt.amount("AMOUNT", amount.get());
            fields.insert("Receipt".into(), receipt.finish(text));
            return BackendOutcome::Completed(device_result(
                id,
                f,
                TransactionResult::Cancelled,
                ResultCode::Cancelled,
                text,
                fields,
            ));
        }

        if is_qr(f) {
            let wallet = if id.0.as_bytes()[0] & 1 == 0 {
                "ALIPAY"
            } else {
                "WECHAT PAY"
            };
            fields.insert("CardType".into(), wallet.into());
            receipt.pair("WALLET", wallet);
        } else {
            fields.insert("CardPan".into(), card.pan.clone());
            fields.insert("CardType".into(), card.card_type.clone());
            fields.insert("AccountType".into(), card.account.clone());
            receipt.card(&card);
        }
        if let Some(r) = &req.transaction_reference {
            fields.insert("TransactionReference".into(), r.clone());
            receipt.pair("REFERENCE", r);
        }

        if scenario == Scenario::Decline {
            let text = "DECLINED 51 INSUFFICIENT FUNDS";
            receipt.amount("AMOUNT", amount.get());
            receipt.pair("RESPONSE", "51");
            receipt.center("INSUFFICIENT FUNDS");
            fields.insert("Receipt".into(), receipt.finish("DECLINED"));
            return BackendOutcome::Completed(device_result(
                id,
                f,
                TransactionResult::Declined,
                ResultCode::Ok,
                text,
                fields,
            ));
        }

        let base = amount.get();
        let tip = tip.map_or(0, |(_, cents)| cents);
        // A configured rule surcharges a card purchase (what the card pays for: the purchase
        // and its tip, never cash out); without one the test amount's surcharge applies.
        let purchase = match f {
            Function::CardPurchase => Some(base + tip),
            Function::CardPurchasePlusCash => {
                Some(base.saturating_sub(req.amount_cash.map_or(0, Cents::get)))
            }
            _ => None,
        };
        let rule = purchase.and_then(|p| Some((tx.settings.surcharge_rule(&card.card_type)?, p)));
        let surcharge = match rule {
            Some((rule, purchase)) => rule.on(purchase),
            // round(amount * 1.5 %), half up, in integer cents.
            None if scenario == Scenario::Surcharge && !is_refund(f) => (base * 15 + 500) / 1000,
            None => 0,
        };
        let total = base + tip + surcharge;
        match f {
            Function::CardPurchasePlusCash => {
                let cash = req.amount_cash.map_or(0, Cents::get);
                fields.insert("AmountCash".into(), cash.to_string());
                receipt.amount("PURCHASE", base.saturating_sub(cash));
                receipt.amount("CASH", cash);
            }
            Function::CardCashAdvance => {
                fields.insert("AmountCash".into(), base.to_string());
                receipt.amount("CASH", base);
            }
            Function::CardAuthorise => {
                fields.insert("AmountAuth".into(), base.to_string());
                receipt.amount("AUTHORISED", base);
            }
            Function::CardFinalise => {
                fields.insert("AmountFinal".into(), base.to_string());
                receipt.amount("FINAL", base);
            }
            _ => receipt.amount(label(f), base),
        }
        if tip > 0 {
            receipt.amount("TIP", tip);
        }
        if surcharge > 0 {
            receipt.amount("SURCHARGE", surcharge);
        }
        receipt.amount("TOTAL", total);
        fields.insert("AmountTotal".into(), total.to_string());
        fields.insert("AmountSurcharge".into(), surcharge.to_string());
        fields.insert("AmountTip".into(), tip.to_string());
        let auth = authorisation
            .and_then(|a| a.result.fields.get("AuthId").cloned())
            .unwrap_or_else(|| auth_id(id));
        let acq = acquirer_ref(id);
        receipt.pair("AUTH ID", &auth);
        receipt.pair("ACQ REF", &acq);
        fields.insert("AuthId".into(), auth);
        fields.insert("AcquirerRef".into(), acq);
        fields.insert("Receipt".into(), receipt.finish("APPROVED"));
        BackendOutcome::Completed(device_result(
            id,
            f,
            TransactionResult::Accepted,
            ResultCode::Ok,
            "APPROVED",
            fields,
        ))
    }

    /// A follow-up of an earlier payment: void, tip adjustment, top-up or release. The card is
    /// the original's; nothing is asked of the customer but a moment's processing.
    async fn follow_up(
        &self,
        tx: &BackendTransaction,
        mut fields: BTreeMap<String, String>,
        mut receipt: Receipt,
    ) -> BackendOutcome {
        let req = &tx.offer.request;
        let f = req.function;
        let id = tx.offer.transaction_id;
        let Some(original) = &req.original else {
            let text = "NO ORIGINAL IN REQUEST";
            fields.insert("Receipt".into(), receipt.finish("FAILED"));
            return BackendOutcome::Completed(device_result(
                id,
                f,
                TransactionResult::Failed,
                ResultCode::Failed,
                text,
                fields,
            ));
        };
        let own = match f {
            Function::CardTipAdjust => req.amount_tip,
            Function::CardTopUp => req.amount_total.map(Cents::get),
            _ => None,
        };
        // Without an amount of its own, the original's whole units choose the scenario.
        let scenario = match own {
            Some(a) => Scenario::of(Cents::new(a).ok()),
            None => Scenario::of(Cents::new(original.amount / 100).ok()),
        };
        if scenario == Scenario::PowerFailure {
            return BackendOutcome::PowerFailure;
        }
        let processing = self
            .step(
                tx,
                prompt::PROCESSING,
                &format!("{}\nProcessing, please wait", label(f)),
            )
            .await;
        if let Some(card) = Card::from_fields(&original.fields) {
            fields.insert("CardPan".into(), card.pan.clone());
            fields.insert("CardType".into(), card.card_type.clone());
            fields.insert("AccountType".into(), card.account.clone());
            receipt.card(&card);
        }
        if let Some(auth) = original.fields.get("AuthId") {
            receipt.pair("ORIGINAL AUTH", auth);
        }
        fields.insert(
            "OriginalTransactionId".into(),
            original.transaction_id.to_string(),
        );
        if processing.is_err() {
            fields.insert("Receipt".into(), receipt.finish("CANCELLED BY POS"));
            return BackendOutcome::Completed(device_result(
                id,
                f,
                TransactionResult::Cancelled,
                ResultCode::Cancelled,
                "CANCELLED BY POS",
                fields,
            ));
        }
        let amount = match f {
            Function::CardTipAdjust => {
                // The original's amount is as approved, before any tip.
                let tip = req.amount_tip.unwrap_or(0);
                fields.insert("AmountTip".into(), tip.to_string());
                receipt.amount("AMOUNT", original.amount);
                receipt.amount("NEW TIP", tip);
                receipt.amount("TOTAL", original.amount + tip);
                original.amount + tip
            }
            Function::CardTopUp => {
                let top_up = req.amount_total.map_or(0, Cents::get);
                receipt.amount("TOP-UP", top_up);
                top_up
            }
            _ => {
                receipt.amount("AMOUNT", original.amount);
                original.amount
            }
        };
        fields.insert("AmountTotal".into(), amount.to_string());
        if scenario == Scenario::Decline {
            receipt.pair("RESPONSE", "51");
            fields.insert("Receipt".into(), receipt.finish("DECLINED"));
            return BackendOutcome::Completed(device_result(
                id,
                f,
                TransactionResult::Declined,
                ResultCode::Ok,
                "DECLINED 51",
                fields,
            ));
        }
        let acq = acquirer_ref(id);
        receipt.pair("ACQ REF", &acq);
        fields.insert("AcquirerRef".into(), acq);
        fields.insert("AuthId".into(), auth_id(id));
        fields.insert("Receipt".into(), receipt.finish("APPROVED"));
        BackendOutcome::Completed(device_result(
            id,
            f,
            TransactionResult::Accepted,
            ResultCode::Ok,
            "APPROVED",
            fields,
        ))
    }

    async fn logon(&self, tx: &BackendTransaction) -> DeviceResult {
        let f = tx.offer.function();
        let id = tx.offer.transaction_id;
        let timestamp = device_local_now();
        let mut fields = self.base_fields(tx, &timestamp);
        let receipt = Receipt::new(self, f, &timestamp, &tx.settings);
        if self
            .step(tx, prompt::PROCESSING, "Logging on to acquirer")
            .await
            .is_err()
        {
            fields.insert("Receipt".into(), receipt.finish("CANCELLED"));
            return cancelled(id, f, fields);
        }
        fields.insert("Receipt".into(), receipt.finish("LOGON SUCCESSFUL"));
        ok(id, f, "LOGON SUCCESSFUL", fields)
    }

    async fn settlement(&self, tx: &BackendTransaction) -> DeviceResult {
        let f = tx.offer.function();
        let id = tx.offer.transaction_id;
        let timestamp = device_local_now();
        let mut fields = self.base_fields(tx, &timestamp);
        let mut receipt = Receipt::new(self, f, &timestamp, &tx.settings);
        if self
            .step(tx, prompt::PROCESSING, "Contacting acquirer")
            .await
            .is_err()
        {
            fields.insert("Receipt".into(), receipt.finish("CANCELLED"));
            return cancelled(id, f, fields);
        }
        let date = tx.offer.request.date.as_deref();
        let batch = Batch::of(&tx.history, date);
        let totals = batch.overall();
        let net = i64::try_from(totals.net()).unwrap_or(i64::MAX);
        let settlement_date = date
            .map(str::to_string)
            .unwrap_or_else(|| timestamp.chars().take(8).collect());
        receipt.pair("SETTLEMENT DATE", &settlement_date);
        receipt.pair("PURCHASES", &totals.purchase_count.to_string());
        receipt.amount("  TOTAL", totals.purchase_amount);
        receipt.pair("REFUNDS", &totals.refund_count.to_string());
        receipt.amount("  TOTAL", totals.refund_amount);
        // The batch is in the terminal's configured currency (AUD by default).
        let c = receipt.currency;
        receipt.pair("NET", &format!("{} {:>9}", c.code(), signed_money(c, net)));
        fields.insert("SettlementDate".into(), settlement_date);
        fields.insert("PurchaseCount".into(), totals.purchase_count.to_string());
        fields.insert("PurchaseTotal".into(), totals.purchase_amount.to_string());
        fields.insert("RefundCount".into(), totals.refund_count.to_string());
        fields.insert("RefundTotal".into(), totals.refund_amount.to_string());
        fields.insert("NetTotal".into(), net.to_string());
        let text = if f == Function::AcquirerSettlementCutover {
            "CUTOVER COMPLETE"
        } else {
            "SETTLEMENT TOTALS"
        };
        fields.insert("Receipt".into(), receipt.finish(text));
        let mut result = ok(id, f, text, fields);
        result.settlement = Some(Box::new(batch.report(&timestamp)));
        result
    }

    fn reprint(&self, tx: &BackendTransaction) -> DeviceResult {
        let f = tx.offer.function();
        let id = tx.offer.transaction_id;
        let mut fields = self.base_fields(tx, &device_local_now());
        // Journal and status queries print nothing of their own worth reprinting.
        let last = tx.history.last_where(|e| {
            !matches!(
                e.offer.function(),
                Function::JournalReprintReceipt
                    | Function::JournalGetTransResult
                    | Function::TerminalGetStatus
                    | Function::TerminalReadCard
            ) && e.result.fields.contains_key("Receipt")
        });
        let Some(last) = last else {
            return device_result(
                id,
                f,
                TransactionResult::Failed,
                ResultCode::Failed,
                "NO RECEIPT TO REPRINT",
                fields,
            );
        };
        let original = last
            .result
            .fields
            .get("Receipt")
            .cloned()
            .unwrap_or_default();
        // The original carries its own header and footer.
        let mut copy = Receipt {
            lines: Vec::new(),
            currency: protocol::Currency::AUD,
            footer: Vec::new(),
        };
        copy.center("*** DUPLICATE ***");
        fields.insert(
            "Receipt".into(),
            format!("{}\n{original}", copy.lines.join("\n")),
        );
        fields.insert("ReferenceId".into(), last.offer.transaction_id.to_string());
        ok(id, f, "REPRINT OK", fields)
    }

    fn last_result(&self, tx: &BackendTransaction) -> DeviceResult {
        let f = tx.offer.function();
        let id = tx.offer.transaction_id;
        let Some(last) = tx.history.last_where(|e| e.offer.function().is_financial()) else {
            return device_result(
                id,
                f,
                TransactionResult::Failed,
                ResultCode::Failed,
                "NO TRANSACTION IN JOURNAL",
                self.base_fields(tx, &device_local_now()),
            );
        };
        let mut fields = last.result.fields.clone();
        fields.insert("ReferenceId".into(), last.offer.transaction_id.to_string());
        fields.insert(
            "LastTransactionType".into(),
            last.offer.function().to_string(),
        );
        if let Some(tr) = last.result.transaction_result {
            fields.insert("LastTransactionResult".into(), tr.to_string());
        }
        fields.insert("LastResult".into(), last.result.result.to_string());
        ok(id, f, &last.result.result_text, fields)
    }

    fn status(&self, tx: &BackendTransaction) -> DeviceResult {
        let mut fields = self.base_fields(tx, &device_local_now());
        fields.insert(
            "Status".into(),
            protocol::TerminalStatus::Ready.as_str().into(),
        );
        ok(
            tx.offer.transaction_id,
            tx.offer.function(),
            "READY",
            fields,
        )
    }

    async fn read_card(&self, tx: &BackendTransaction) -> DeviceResult {
        let f = tx.offer.function();
        let id = tx.offer.transaction_id;
        let mut fields = self.base_fields(tx, &device_local_now());
        if self
            .step(tx, prompt::PRESENT_CARD, "Present card")
            .await
            .is_err()
        {
            return cancelled(id, f, fields);
        }
        let card = Card::for_transaction(id);
        fields.insert("CardPan".into(), card.pan);
        fields.insert("CardType".into(), card.card_type);
        fields.insert("AccountType".into(), card.account);
        ok(id, f, "CARD READ", fields)
    }
}

fn ok(
    id: TransactionId,
    f: Function,
    text: &str,
    fields: BTreeMap<String, String>,
) -> DeviceResult {
    device_result(
        id,
        f,
        TransactionResult::Accepted,
        ResultCode::Ok,
        text,
        fields,
    )
}

fn cancelled(id: TransactionId, f: Function, fields: BTreeMap<String, String>) -> DeviceResult {
    device_result(
        id,
        f,
        TransactionResult::Cancelled,
        ResultCode::Cancelled,
        "CANCELLED BY POS",
        fields,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Progress, ProgressSink};
    use protocol::action::InputKind;
    use protocol::device::TransactionOffer;
    use protocol::{RegisterInfo, RegisterKey, TransactionRequest};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    fn sim() -> Simulator {
        Simulator::new(SimulatorConfig {
            step_delay: Duration::ZERO,
            slow: Duration::from_millis(50),
        })
    }

    /// A valid request for `function` (an action with what it needs).
    fn request(function: Function) -> TransactionRequest {
        let mut r = TransactionRequest::of(function);
        match function {
            Function::TerminalInput => {
                r.input = Some(actions::tests::input(InputKind::Email, "Email?"))
            }
            Function::TerminalPrint => r.print = Some(actions::tests::slip("Hello")),
            Function::TerminalShowQr => r.qr = Some(actions::tests::qr("Join us")),
            _ => {}
        }
        r
    }

    /// A valid request for `function` with `cents` as its headline amount.
    fn request_for(function: Function, cents: u64) -> TransactionRequest {
        let mut r = request(function);
        let amount = Cents::new(cents).ok();
        match function {
            Function::CardPurchasePlusCash => {
                r.amount_total = amount;
                r.amount_cash = Cents::new(500.min(cents)).ok();
            }
            Function::CardAuthorise => {
                r.amount_auth = amount;
                r.transaction_reference = Some("AUTH-1".into());
            }
            Function::CardFinalise => {
                r.amount_final = amount;
                r.transaction_reference = Some("AUTH-1".into());
            }
            f if f.is_financial() => r.amount_total = amount,
            _ => {}
        }
        r
    }

    fn offer(request: TransactionRequest) -> TransactionOffer {
        TransactionOffer {
            transaction_id: TransactionId::new(),
            register: RegisterInfo {
                key: RegisterKey {
                    register_id: "r1".into(),
                    business_name: "Shop".into(),
                    vendor_name: "V".into(),
                },
                register_name: "Front".into(),
            },
            request,
            request_timestamp: "20240101000000".into(),
        }
    }

    /// Runs one offer to its end, returning the outcome and the prompts shown.
    async fn run_with(
        sim: &Simulator,
        offer: TransactionOffer,
        history: &JournalHistory,
        cancel: CancellationToken,
    ) -> (BackendOutcome, Vec<Progress>) {
        run_configured(sim, offer, history, cancel, &Settings::default()).await
    }

    /// Like [`run_with`], with the cloud's configuration `settings`.
    async fn run_configured(
        sim: &Simulator,
        offer: TransactionOffer,
        history: &JournalHistory,
        cancel: CancellationToken,
        settings: &Settings,
    ) -> (BackendOutcome, Vec<Progress>) {
        let (tx, mut rx) = mpsc::channel(64);
        let outcome = sim
            .run(BackendTransaction {
                progress: ProgressSink::new(offer.transaction_id, tx),
                cancel,
                history: history.clone(),
                hardware: actions::tests::hardware(),
                settings: settings.clone(),
                offer,
            })
            .await;
        let mut prompts = Vec::new();
        while let Ok((_, note)) = rx.try_recv() {
            if let crate::backend::Note::Prompt(p) = note {
                prompts.push(p);
            }
        }
        (outcome, prompts)
    }

    async fn run(
        offer: TransactionOffer,
        history: &JournalHistory,
    ) -> (DeviceResult, Vec<Progress>) {
        let id = offer.transaction_id;
        match run_with(&sim(), offer, history, CancellationToken::new()).await {
            (BackendOutcome::Completed(r), p) => {
                assert_eq!(r.transaction_id, id);
                (r, p)
            }
            (other, _) => panic!("expected a result, got {other:?}"),
        }
    }

    fn field<'a>(r: &'a DeviceResult, k: &str) -> &'a str {
        r.fields.get(k).map(String::as_str).unwrap_or("")
    }

    fn prompts(p: &[Progress]) -> Vec<&str> {
        p.iter().map(|p| p.prompt.as_str()).collect()
    }

    #[tokio::test]
    async fn plain_purchase_is_approved_with_realistic_fields() {
        let (r, p) = run(
            offer(request_for(Function::CardPurchase, 1234)),
            &Default::default(),
        )
        .await;
        assert_eq!(r.transaction_result, Some(TransactionResult::Accepted));
        assert_eq!(r.result, ResultCode::Ok);
        assert_eq!(field(&r, "AmountTotal"), "1234");
        assert_eq!(field(&r, "AmountSurcharge"), "0");
        assert_eq!(field(&r, "AmountTip"), "0");
        assert_eq!(field(&r, "AuthId").len(), 6);
        assert!(field(&r, "AuthId").bytes().all(|b| b.is_ascii_digit()));
        assert!(field(&r, "CardPan").starts_with("...."));
        assert_eq!(field(&r, "CardPan").len(), 8);
        assert!(["VISA", "MASTERCARD", "EFTPOS"].contains(&field(&r, "CardType")));
        assert!(["CREDIT", "CHEQUE", "SAVINGS"].contains(&field(&r, "AccountType")));
        assert_eq!(field(&r, "TerminalRef"), "000001");
        assert_eq!(field(&r, "Timestamp").len(), 14);
        assert!(!field(&r, "AcquirerRef").is_empty());
        let receipt = field(&r, "Receipt");
        assert!(
            receipt.contains("APPROVED") && receipt.contains("12.34"),
            "{receipt}"
        );
        assert!(receipt.contains("SIM00001") && receipt.contains(field(&r, "AuthId")));
        for line in receipt.lines() {
            assert!(line.chars().count() <= RECEIPT_WIDTH, "{line:?}");
        }
        let shown = prompts(&p);
        assert_eq!(shown.first(), Some(&prompt::PRESENT_CARD));
        assert!(shown.contains(&prompt::ENTER_PIN));
        assert_eq!(shown.last(), Some(&prompt::PROCESSING));
    }

    #[tokio::test]
    async fn test_amount_51_declines() {
        let (r, _) = run(
            offer(request_for(Function::CardPurchase, 1051)),
            &Default::default(),
        )
        .await;
        assert_eq!(r.transaction_result, Some(TransactionResult::Declined));
        assert_eq!(r.result, ResultCode::Ok);
        assert_eq!(r.result_text, "DECLINED 51 INSUFFICIENT FUNDS");
        assert!(field(&r, "Receipt").contains("DECLINED"));
        assert!(field(&r, "Receipt").contains("INSUFFICIENT FUNDS"));
        assert!(!r.fields.contains_key("AmountTotal"), "nothing was charged");
    }

    #[tokio::test]
    async fn test_amount_52_cancels_on_the_device() {
        let (r, p) = run(
            offer(request_for(Function::CardPurchase, 1052)),
            &Default::default(),
        )
        .await;
        assert_eq!(r.transaction_result, Some(TransactionResult::Cancelled));
        assert_eq!(r.result, ResultCode::Cancelled);
        assert_eq!(prompts(&p), vec![prompt::PRESENT_CARD]);
    }

    #[tokio::test]
    async fn test_amount_53_is_slow_then_approved() {
        let started = std::time::Instant::now();
        let (r, _) = run(
            offer(request_for(Function::CardPurchase, 1053)),
            &Default::default(),
        )
        .await;
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(r.transaction_result, Some(TransactionResult::Accepted));
    }

    #[tokio::test]
    async fn test_amount_53_can_be_cancelled_by_the_pos() {
        let sim = Simulator::new(SimulatorConfig {
            step_delay: Duration::ZERO,
            slow: Duration::from_secs(60),
        });
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            trigger.cancel();
        });
        let o = offer(request_for(Function::CardPurchase, 1053));
        let (outcome, p) = run_with(&sim, o, &Default::default(), cancel).await;
        let _ = canceller.await;
        let BackendOutcome::Completed(r) = outcome else {
            panic!("expected a result")
        };
        assert_eq!(r.transaction_result, Some(TransactionResult::Cancelled));
        assert_eq!(r.result, ResultCode::Cancelled);
        assert_eq!(r.result_text, "CANCELLED BY POS");
        assert_eq!(
            p.last().map(|p| p.prompt.as_str()),
            Some(prompt::PROCESSING)
        );
    }

    #[tokio::test]
    async fn test_amount_54_is_a_power_failure() {
        for f in [Function::CardPurchase, Function::QrMerchantPurchase] {
            let o = offer(request_for(f, 1054));
            let (outcome, _) =
                run_with(&sim(), o, &Default::default(), CancellationToken::new()).await;
            assert_eq!(outcome, BackendOutcome::PowerFailure);
        }
    }

    #[tokio::test]
    async fn test_amount_55_adds_a_surcharge() {
        let (r, _) = run(
            offer(request_for(Function::CardPurchase, 10055)),
            &Default::default(),
        )
        .await;
        // round(100.55 * 1.5 %) = round(150.825 cents) = 151 cents.
        assert_eq!(field(&r, "AmountSurcharge"), "151");
        assert_eq!(field(&r, "AmountTotal"), "10206");
        assert!(field(&r, "Receipt").contains("SURCHARGE"));
        let (r, _) = run(
            offer(request_for(Function::CardRefund, 10055)),
            &Default::default(),
        )
        .await;
        assert_eq!(field(&r, "AmountSurcharge"), "0", "no surcharge on refunds");
        assert_eq!(field(&r, "AmountTotal"), "10055");
    }

    /// Runs `offer` with the cloud's configuration `settings`.
    async fn run_set(
        offer: TransactionOffer,
        settings: &Settings,
    ) -> (DeviceResult, Vec<Progress>) {
        let cancel = CancellationToken::new();
        match run_configured(&sim(), offer, &Default::default(), cancel, settings).await {
            (BackendOutcome::Completed(r), p) => (r, p),
            (other, _) => panic!("expected a result, got {other:?}"),
        }
    }

    /// `offer` with an id whose card is `card` (see `Card::for_transaction`).
    fn paid_with(card: &str, mut offer: TransactionOffer) -> TransactionOffer {
        let first = match card {
            "VISA" => 0,
            "MASTERCARD" => 1,
            _ => 2,
        };
        let mut bytes = [7u8; 16];
        bytes[0] = first;
        offer.transaction_id = TransactionId(uuid::Uuid::from_bytes(bytes));
        assert_eq!(Card::for_transaction(offer.transaction_id).card_type, card);
        offer
    }

    fn tipping(presets: Vec<u8>) -> Settings {
        Settings {
            tipping: true,
            tip_presets: presets,
            ..Settings::default()
        }
    }

    #[tokio::test]
    async fn tipping_adds_the_first_preset_to_a_purchase() {
        let settings = tipping(vec![15, 20]);
        let (r, p) = run_set(offer(request_for(Function::CardPurchase, 2010)), &settings).await;
        assert_eq!(r.transaction_result, Some(TransactionResult::Accepted));
        // 15 % of 20.10 is 3.015: 3.02, half up.
        assert_eq!(field(&r, "AmountTip"), "302");
        assert_eq!(field(&r, "AmountTotal"), "2312");
        assert_eq!(field(&r, "AmountSurcharge"), "0");
        let asked = p.first().map(|p| (p.prompt.as_str(), p.text.as_str()));
        assert!(
            asked.is_some_and(|(prompt, text)| prompt == TIP_PROMPT && text.contains("15% / 20%")),
            "{p:?}"
        );
        assert!(prompts(&p).contains(&prompt::PRESENT_CARD));
        let receipt = field(&r, "Receipt");
        assert!(
            receipt.contains("TIP") && receipt.contains("3.02"),
            "{receipt}"
        );
        assert!(receipt.contains("23.12"), "{receipt}");
        let Some(copy) = r.receipts.as_ref().and_then(|r| r.customer.as_ref()) else {
            panic!("a customer copy")
        };
        assert_eq!(receipt_field(copy, "Amount"), Some("AUD 20.10"));
        assert_eq!(receipt_field(copy, "Tip"), Some("AUD 3.02"));
        assert_eq!(receipt_field(copy, "Total"), Some("AUD 23.12"));

        // Only on a purchase, and never over a tip the request already carries.
        let (r, p) = run_set(offer(request_for(Function::CardRefund, 2010)), &settings).await;
        assert_eq!(field(&r, "AmountTip"), "0");
        assert!(!prompts(&p).contains(&TIP_PROMPT));
        let mut tipped = request_for(Function::CardPurchase, 2010);
        tipped.amount_tip = Some(100);
        let (r, p) = run_set(offer(tipped), &settings).await;
        assert_eq!(field(&r, "AmountTip"), "0");
        assert_eq!(field(&r, "AmountTotal"), "2010");
        assert!(!prompts(&p).contains(&TIP_PROMPT));
        // A declined purchase charges no tip.
        let (r, _) = run_set(offer(request_for(Function::CardPurchase, 2051)), &settings).await;
        assert_eq!(r.transaction_result, Some(TransactionResult::Declined));
        assert!(!r.fields.contains_key("AmountTip"));
    }

    #[tokio::test]
    async fn no_tip_when_tipping_is_off() {
        let settings = Settings {
            tipping: false,
            ..tipping(vec![15, 20])
        };
        let (r, p) = run_set(offer(request_for(Function::CardPurchase, 2010)), &settings).await;
        assert_eq!(field(&r, "AmountTip"), "0");
        assert_eq!(field(&r, "AmountTotal"), "2010");
        assert_eq!(prompts(&p).first(), Some(&prompt::PRESENT_CARD));
        assert!(!field(&r, "Receipt").contains("TIP"));
    }

    #[tokio::test]
    async fn surcharges_follow_the_rule_of_the_card_type_up_to_its_cap() {
        let rule = |card: &str, bps: u32, cap: Option<u64>| protocol::config::SurchargeRule {
            card: card.into(),
            bps,
            cap: cap.and_then(|c| Cents::new(c).ok()),
        };
        let settings = Settings {
            surcharges: vec![rule("VISA", 100, None), rule("MASTERCARD", 200, Some(30))],
            ..Settings::default()
        };
        let purchase = |card: &str, cents: u64| {
            paid_with(card, offer(request_for(Function::CardPurchase, cents)))
        };
        let charged = |r: &DeviceResult| {
            (
                field(r, "AmountSurcharge").to_string(),
                field(r, "AmountTotal").to_string(),
            )
        };
        // 1 % of 20.00 on a Visa.
        let (r, _) = run_set(purchase("VISA", 2000), &settings).await;
        assert_eq!(charged(&r), ("20".into(), "2020".into()));
        assert!(field(&r, "Receipt").contains("SURCHARGE"));
        let Some(copy) = r.receipts.as_ref().and_then(|r| r.merchant.as_ref()) else {
            panic!("a merchant copy")
        };
        assert_eq!(receipt_field(copy, "Surcharge"), Some("AUD 0.20"));
        assert_eq!(receipt_field(copy, "Total"), Some("AUD 20.20"));
        // 2 % of 20.00 is 0.40, capped at 0.30 on a Mastercard.
        let (r, _) = run_set(purchase("MASTERCARD", 2000), &settings).await;
        assert_eq!(charged(&r), ("30".into(), "2030".into()));
        // No rule for EFTPOS: the simulator's own behaviour, the test amount's 1.5 % included.
        let (r, _) = run_set(purchase("EFTPOS", 2000), &settings).await;
        assert_eq!(charged(&r), ("0".into(), "2000".into()));
        let (r, _) = run_set(purchase("EFTPOS", 10055), &settings).await;
        assert_eq!(charged(&r), ("151".into(), "10206".into()));
        // A rule replaces the test amount's surcharge: 1 % of 100.55 is 1.0055: 1.01.
        let (r, _) = run_set(purchase("VISA", 10055), &settings).await;
        assert_eq!(charged(&r), ("101".into(), "10156".into()));
        // `*` covers the cards no rule names.
        let mut any = settings.clone();
        any.surcharges.push(rule("*", 50, None));
        let (r, _) = run_set(purchase("EFTPOS", 2000), &any).await;
        assert_eq!(charged(&r), ("10".into(), "2010".into()));
        // Never on a refund; on the purchase part of a purchase with cash out.
        let refund = paid_with("VISA", offer(request_for(Function::CardRefund, 2000)));
        let (r, _) = run_set(refund, &settings).await;
        assert_eq!(charged(&r), ("0".into(), "2000".into()));
        let cash = paid_with(
            "VISA",
            offer(request_for(Function::CardPurchasePlusCash, 2000)),
        );
        let (r, _) = run_set(cash, &settings).await;
        assert_eq!(charged(&r), ("15".into(), "2015".into()));
        // With a tip, on the purchase and its tip: 10 % of 20.00, then 1 % of 22.00.
        let tipped = Settings {
            tipping: true,
            tip_presets: vec![10],
            ..settings
        };
        let (r, _) = run_set(purchase("VISA", 2000), &tipped).await;
        assert_eq!(field(&r, "AmountTip"), "200");
        assert_eq!(charged(&r), ("22".into(), "2222".into()));
    }

    #[tokio::test]
    async fn the_configured_header_and_footer_open_and_close_both_receipts() {
        let settings = Settings {
            receipt_header: "Joe's Coffee\n1 Main Street, Springfield North".into(),
            receipt_footer: "See you soon\nABN 12 345 678 901".into(),
            ..Settings::default()
        };
        for cents in [2000, 2051] {
            let (r, _) =
                run_set(offer(request_for(Function::CardPurchase, cents)), &settings).await;
            let receipt = field(&r, "Receipt");
            let lines: Vec<&str> = receipt.lines().map(str::trim).collect();
            assert_eq!(
                &lines[..3],
                ["Joe's Coffee", "1 Main Street, Springfield", "North"],
                "{receipt}"
            );
            assert_eq!(lines[3], "EFTCLOUD SIMULATOR");
            assert_eq!(
                &lines[lines.len() - 2..],
                ["See you soon", "ABN 12 345 678 901"],
                "{receipt}"
            );
            for line in receipt.lines() {
                assert!(line.chars().count() <= RECEIPT_WIDTH, "{line:?}");
            }
            let Some(receipts) = &r.receipts else {
                panic!("receipts")
            };
            assert_eq!(receipts.check(), Ok(()));
            let (Some(merchant), Some(customer)) = (&receipts.merchant, &receipts.customer) else {
                panic!("both copies")
            };
            assert_eq!(
                &customer.header[..3],
                ["Joe's Coffee", "1 Main Street, Springfield North", "Shop"]
            );
            assert_eq!(
                customer.footer,
                [
                    "Customer copy",
                    "Thank you",
                    "See you soon",
                    "ABN 12 345 678 901"
                ]
            );
            assert_eq!(merchant.header, customer.header);
            assert_eq!(merchant.footer[0], "Merchant copy");
        }
        // Other receipts carry them too (a logon's).
        let (r, _) = run_set(offer(request(Function::AcquirerLogon)), &settings).await;
        assert!(field(&r, "Receipt")
            .trim_start()
            .starts_with("Joe's Coffee"));
        assert!(field(&r, "Receipt").ends_with("ABN 12 345 678 901"));

        // Line breaks are bounded: a receipt stays within the protocol's 100 lines.
        let many = Settings {
            receipt_header: "x\n".repeat(150),
            receipt_footer: "\n".repeat(300),
            ..Settings::default()
        };
        let (r, _) = run_set(offer(request_for(Function::CardPurchase, 2000)), &many).await;
        let Some(receipts) = &r.receipts else {
            panic!("receipts")
        };
        assert_eq!(receipts.check(), Ok(()));
        let header = receipts.customer.as_ref().map(|c| c.header.len());
        assert_eq!(header, Some(MAX_CONFIGURED_LINES + 3));
        assert_eq!(
            field(&r, "Receipt")
                .lines()
                .filter(|l| l.trim() == "x")
                .count(),
            MAX_CONFIGURED_LINES
        );
    }

    #[tokio::test]
    async fn a_tip_adjustment_replaces_the_tip_in_the_settlement_totals() {
        let settings = tipping(vec![10]);
        let sale_offer = offer(request_for(Function::CardPurchase, 2000));
        let (sale, _) = run_set(sale_offer.clone(), &settings).await;
        assert_eq!(field(&sale, "AmountTotal"), "2200");
        let mut entries = vec![entry(sale_offer, sale.clone())];
        for new_tip in [500, 300] {
            let mut adjust = request(Function::CardTipAdjust);
            adjust.amount_tip = Some(new_tip);
            adjust.original = Some(protocol::OriginalPayment {
                transaction_id: sale.transaction_id,
                function: Function::CardPurchase,
                amount: 2000,
                fields: sale.fields.clone(),
            });
            let adjust = offer(adjust);
            let (r, _) = run(adjust.clone(), &Default::default()).await;
            assert_eq!(r.transaction_result, Some(TransactionResult::Accepted));
            entries.push(entry(adjust, r));
        }
        let history = JournalHistory::from_entries(entries);
        let (inq, _) = run(
            offer(request(Function::AcquirerSettlementInquiry)),
            &history,
        )
        .await;
        // 20.00 and the last tip, 3.00: neither the first tip nor the one before counted.
        assert_eq!(field(&inq, "PurchaseTotal"), "2300");
        assert_eq!(field(&inq, "PurchaseCount"), "1");
        // The batch lists the sale once, at what it settles for.
        let items = inq
            .settlement
            .and_then(|b| b.transactions)
            .unwrap_or_default();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].transaction_id, sale.transaction_id);
        assert_eq!(items[0].amount, 2300);
    }

    #[tokio::test]
    async fn a_void_takes_its_original_out_of_the_batch_and_one_from_elsewhere_changes_nothing() {
        let kept_offer = offer(request_for(Function::CardPurchase, 1000));
        let (kept, _) = run(kept_offer.clone(), &Default::default()).await;
        let voided_offer = offer(request_for(Function::CardPurchase, 2000));
        let (voided, _) = run(voided_offer.clone(), &Default::default()).await;
        let void_of = |id: TransactionId, fields: BTreeMap<String, String>| {
            let mut v = request(Function::CardVoid);
            v.original = Some(protocol::OriginalPayment {
                transaction_id: id,
                function: Function::CardPurchase,
                amount: 2000,
                fields,
            });
            offer(v)
        };
        let mut entries = vec![
            entry(kept_offer, kept.clone()),
            entry(voided_offer, voided.clone()),
        ];
        for v in [
            void_of(voided.transaction_id, voided.fields.clone()),
            // A payment of another terminal's batch.
            void_of(TransactionId::new(), voided.fields.clone()),
        ] {
            let (r, _) = run(v.clone(), &Default::default()).await;
            assert_eq!(r.transaction_result, Some(TransactionResult::Accepted));
            entries.push(entry(v, r));
        }
        let history = JournalHistory::from_entries(entries);
        let (cut, _) = run(
            offer(request(Function::AcquirerSettlementCutover)),
            &history,
        )
        .await;
        assert_eq!(field(&cut, "PurchaseCount"), "1");
        assert_eq!(field(&cut, "PurchaseTotal"), "1000");
        let Some(batch) = cut.settlement.clone() else {
            panic!("a cutover reports its batch")
        };
        let items = batch.transactions.unwrap_or_default();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].transaction_id, kept.transaction_id);
        assert_eq!(items[0].card_type, field(&kept, "CardType"));
        assert_eq!(batch.totals.len(), 1);
        assert_eq!(batch.totals[0].card_type, field(&kept, "CardType"));
        assert_eq!(batch.totals[0].purchase_amount, 1000);
        assert_eq!(batch.period_end, field(&cut, "Timestamp"));
        assert_eq!(
            batch.period_start.as_deref(),
            Some(field(&kept, "Timestamp"))
        );
    }

    #[tokio::test]
    async fn a_request_without_a_currency_takes_the_configured_one() {
        let settings = Settings {
            currency: protocol::Currency::parse("NZD").unwrap_or_default(),
            ..Settings::default()
        };
        let (r, p) = run_set(offer(request_for(Function::CardPurchase, 2000)), &settings).await;
        assert!(
            field(&r, "Receipt").contains("NZD"),
            "{}",
            field(&r, "Receipt")
        );
        assert!(p.iter().any(|p| p.text.contains("NZD 20.00")), "{p:?}");
        let amount = r
            .receipts
            .as_ref()
            .and_then(|r| r.customer.as_ref())
            .and_then(|c| receipt_field(c, "Amount").map(str::to_string));
        assert_eq!(amount.as_deref(), Some("NZD 20.00"));
        // A request that names its currency keeps it.
        let mut yen = request_for(Function::CardPurchase, 2000);
        yen.currency = protocol::Currency::parse("JPY").ok();
        let (r, _) = run_set(offer(yen), &settings).await;
        assert!(field(&r, "Receipt").contains("JPY"));
        assert!(!field(&r, "Receipt").contains("NZD"));
    }

    fn receipt_field<'a>(r: &'a protocol::action::Receipt, label: &str) -> Option<&'a str> {
        r.fields
            .iter()
            .find(|f| f.label == label)
            .map(|f| f.value.as_str())
    }

    #[tokio::test]
    async fn financial_results_carry_structured_receipts() {
        for f in Function::ALL.into_iter().filter(|f| f.is_financial()) {
            let (r, _) = run(offer(request_for(f, 2000)), &Default::default()).await;
            let Some(receipts) = &r.receipts else {
                panic!("{f}: no receipts")
            };
            assert_eq!(receipts.check(), Ok(()), "{f}");
            let (Some(merchant), Some(customer)) = (&receipts.merchant, &receipts.customer) else {
                panic!("{f}: both copies")
            };
            assert_eq!(merchant.footer, vec!["Merchant copy", "Thank you"]);
            assert_eq!(customer.footer, vec!["Customer copy", "Thank you"]);
            assert_eq!(merchant.fields, customer.fields);
            assert_eq!(merchant.header[0], "Shop", "the register's business name");
            assert!(merchant
                .header
                .contains(&"Terminal ID SIM00001".to_string()));
            let get = |label| receipt_field(customer, label);
            assert_eq!(get("Result"), Some("APPROVED"), "{f}");
            assert_eq!(get("Response"), None, "{f}");
            assert_eq!(get("Total"), Some("AUD 20.00"), "{f}");
            assert_eq!(get("Amount"), Some("AUD 20.00"), "{f}");
            assert_eq!(get("Transaction"), Some(label(f)));
            assert_eq!(get("Auth ID"), Some(field(&r, "AuthId")), "{f}");
            assert_eq!(get("Acquirer ref"), Some(field(&r, "AcquirerRef")), "{f}");
            assert!(get("Date/time").is_some_and(|t| t.len() == 16), "{f}");
            if is_qr(f) {
                assert_eq!(get("Wallet"), Some(field(&r, "CardType")), "{f}");
            } else {
                let card = format!("{} {}", field(&r, "CardType"), field(&r, "CardPan"));
                assert_eq!(get("Card"), Some(card.as_str()), "{f}");
                assert_eq!(get("Account"), Some(field(&r, "AccountType")), "{f}");
            }
            if f == Function::CardPurchasePlusCash {
                assert_eq!(get("Cash"), Some("AUD 5.00"));
            }
            // The text form of a copy fits the fixed-width receipt's paper and more.
            assert!(customer.to_text(40).contains("APPROVED"));
        }
    }

    #[tokio::test]
    async fn declined_and_foreign_receipts() {
        let (r, _) = run(
            offer(request_for(Function::CardPurchase, 1051)),
            &Default::default(),
        )
        .await;
        let Some(copy) = r.receipts.as_ref().and_then(|r| r.customer.as_ref()) else {
            panic!("a customer copy")
        };
        assert_eq!(receipt_field(copy, "Result"), Some("DECLINED"));
        assert_eq!(
            receipt_field(copy, "Response"),
            Some("DECLINED 51 INSUFFICIENT FUNDS")
        );
        assert_eq!(receipt_field(copy, "Amount"), Some("AUD 10.51"));
        assert_eq!(receipt_field(copy, "Total"), None, "nothing was charged");

        let mut yen = request_for(Function::CardPurchase, 10055);
        yen.currency = protocol::Currency::parse("JPY").ok();
        let (r, _) = run(offer(yen), &Default::default()).await;
        let Some(copy) = r.receipts.as_ref().and_then(|r| r.merchant.as_ref()) else {
            panic!("a merchant copy")
        };
        assert_eq!(receipt_field(copy, "Amount"), Some("JPY 10055"));
        assert_eq!(receipt_field(copy, "Surcharge"), Some("JPY 151"));
        assert_eq!(receipt_field(copy, "Total"), Some("JPY 10206"));

        // A business name past the limits is cut to fit them; no merchant name, the simulator's.
        let mut long = offer(request_for(Function::CardPurchase, 1000));
        long.register.key.business_name = "B".repeat(300);
        let (r, _) = run(long, &Default::default()).await;
        let Some(receipts) = &r.receipts else {
            panic!("receipts")
        };
        assert_eq!(receipts.check(), Ok(()));
        let mut nameless = offer(request_for(Function::CardPurchase, 1000));
        nameless.register.key.business_name = String::new();
        let (r, _) = run(nameless, &Default::default()).await;
        let header = r
            .receipts
            .and_then(|r| r.customer)
            .map(|c| c.header)
            .unwrap_or_default();
        assert_eq!(
            header.first().map(String::as_str),
            Some("EFTCLOUD SIMULATOR")
        );

        // A follow-up's receipt shows what its original comes to.
        let (sale, _) = run(
            offer(request_for(Function::CardPurchase, 4000)),
            &Default::default(),
        )
        .await;
        let original = protocol::OriginalPayment {
            transaction_id: sale.transaction_id,
            function: Function::CardPurchase,
            amount: 4000,
            fields: sale.fields.clone(),
        };
        let mut tip = request(Function::CardTipAdjust);
        tip.amount_tip = Some(500);
        tip.original = Some(original.clone());
        let (r, _) = run(offer(tip), &Default::default()).await;
        assert_eq!(r.transaction_result, Some(TransactionResult::Accepted));
        let Some(copy) = r.receipts.as_ref().and_then(|r| r.customer.as_ref()) else {
            panic!("a customer copy")
        };
        assert_eq!(receipt_field(copy, "Amount"), Some("AUD 40.00"));
        assert_eq!(receipt_field(copy, "Tip"), Some("AUD 5.00"));
        assert_eq!(receipt_field(copy, "Total"), Some("AUD 45.00"));
        assert_eq!(receipt_field(copy, "Transaction"), Some("TIP ADJUSTMENT"));
        let mut void = request(Function::CardVoid);
        void.original = Some(original);
        let (r, _) = run(offer(void), &Default::default()).await;
        let Some(receipts) = &r.receipts else {
            panic!("receipts")
        };
        assert_eq!(receipts.check(), Ok(()));
        let card = format!("{} {}", field(&sale, "CardType"), field(&sale, "CardPan"));
        assert_eq!(
            receipts
                .merchant
                .as_ref()
                .and_then(|m| receipt_field(m, "Card")),
            Some(card.as_str()),
            "the original's card"
        );

        // Only money movements have receipts.
        let (r, _) = run(
            offer(request(Function::TerminalGetStatus)),
            &Default::default(),
        )
        .await;
        assert_eq!(r.receipts, None);
    }

    #[tokio::test]
    async fn cancel_before_the_card_is_charged() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let o = offer(request_for(Function::CardPurchase, 1000));
        let (outcome, _) = run_with(&sim(), o, &Default::default(), cancel).await;
        let BackendOutcome::Completed(r) = outcome else {
            panic!("expected a result")
        };
        assert_eq!(r.transaction_result, Some(TransactionResult::Cancelled));
    }

    #[tokio::test]
    async fn every_financial_function_approves() {
        for f in Function::ALL.into_iter().filter(|f| f.is_financial()) {
            let (r, p) = run(offer(request_for(f, 2000)), &Default::default()).await;
            assert_eq!(
                r.transaction_result,
                Some(TransactionResult::Accepted),
                "{f}"
            );
            assert_eq!(r.result, ResultCode::Ok, "{f}");
            assert_eq!(field(&r, "AmountTotal"), "2000", "{f}");
            assert!(field(&r, "Receipt").contains("APPROVED"), "{f}");
            assert!(!p.is_empty(), "{f} shows prompts");
            match f {
                Function::CardPurchasePlusCash => assert_eq!(field(&r, "AmountCash"), "500"),
                Function::CardCashAdvance => assert_eq!(field(&r, "AmountCash"), "2000"),
                Function::CardAuthorise | Function::CardFinalise => {
                    assert_eq!(field(&r, "TransactionReference"), "AUTH-1");
                    assert_eq!(field(&r, "AuthId").len(), 6);
                }
                Function::QrMerchantPurchase => {
                    assert_eq!(prompts(&p).first(), Some(&prompt::SHOW_QR));
                    assert!(!r.fields.contains_key("CardPan"));
                }
                Function::QrConsumerPurchase | Function::QrRefund => {
                    assert_eq!(prompts(&p).first(), Some(&prompt::SCAN_QR));
                }
                _ => assert!(field(&r, "CardPan").starts_with("....")),
            }
        }
    }

    fn entry(o: TransactionOffer, r: DeviceResult) -> HistoryEntry {
        HistoryEntry {
            offer: o,
            result: r,
        }
    }

    #[tokio::test]
    async fn finalise_completes_its_authorisation() {
        let auth_offer = offer(request_for(Function::CardAuthorise, 5000));
        let (auth, _) = run(auth_offer.clone(), &Default::default()).await;
        let history = JournalHistory::from_entries(vec![entry(auth_offer, auth.clone())]);
        let (fin, p) = run(offer(request_for(Function::CardFinalise, 4500)), &history).await;
        assert_eq!(fin.transaction_result, Some(TransactionResult::Accepted));
        assert_eq!(field(&fin, "AuthId"), field(&auth, "AuthId"));
        assert_eq!(field(&fin, "CardPan"), field(&auth, "CardPan"));
        assert_eq!(field(&fin, "AmountTotal"), "4500");
        assert_eq!(field(&fin, "TerminalRef"), "000002");
        assert!(
            !prompts(&p).contains(&prompt::PRESENT_CARD),
            "card not present"
        );
    }

    #[tokio::test]
    async fn non_financial_functions_answer_without_transaction_result() {
        let all = Function::ALL.into_iter().chain(Function::ACTIONS);
        for f in all.filter(|f| !f.is_financial()) {
            let (r, _) = run(offer(request(f)), &Default::default()).await;
            assert!(!r.result_text.is_empty(), "{f}");
            assert_eq!(r.transaction_result, None, "{f}");
            assert!(!r.result_text.is_empty(), "{f}");
            assert!(!r.fields.contains_key("AmountTotal"), "{f}");
            match f {
                // With an empty journal there is nothing to reprint or look up.
                Function::JournalReprintReceipt | Function::JournalGetTransResult => {
                    assert_eq!(r.result, ResultCode::Failed, "{f}")
                }
                _ => assert_eq!(r.result, ResultCode::Ok, "{f}"),
            }
        }
    }

    #[tokio::test]
    async fn status_and_read_card() {
        let (r, _) = run(
            offer(request(Function::TerminalGetStatus)),
            &Default::default(),
        )
        .await;
        assert_eq!(field(&r, "Status"), "READY");
        assert_eq!(r.result, ResultCode::Ok);
        let (r, p) = run(
            offer(request(Function::TerminalReadCard)),
            &Default::default(),
        )
        .await;
        assert!(field(&r, "CardPan").starts_with("...."));
        assert!(!field(&r, "CardType").is_empty());
        assert_eq!(prompts(&p), vec![prompt::PRESENT_CARD]);
        let (r, _) = run(offer(request(Function::AcquirerLogon)), &Default::default()).await;
        assert_eq!(r.result, ResultCode::Ok);
        assert!(field(&r, "Receipt").contains("LOGON"));
    }

    #[tokio::test]
    async fn journal_functions_use_the_history() {
        let purchase = offer(request_for(Function::CardPurchase, 1500));
        let (paid, _) = run(purchase.clone(), &Default::default()).await;
        let status = offer(request(Function::TerminalGetStatus));
        let (st, _) = run(status.clone(), &Default::default()).await;
        let history = JournalHistory::from_entries(vec![
            entry(purchase.clone(), paid.clone()),
            entry(status, st),
        ]);

        let (reprint, _) = run(offer(request(Function::JournalReprintReceipt)), &history).await;
        assert_eq!(reprint.result, ResultCode::Ok);
        let copy = field(&reprint, "Receipt");
        assert!(copy.contains("DUPLICATE"));
        assert!(copy.ends_with(field(&paid, "Receipt")), "{copy}");

        let (last, _) = run(offer(request(Function::JournalGetTransResult)), &history).await;
        assert_eq!(last.result, ResultCode::Ok);
        assert_eq!(
            field(&last, "ReferenceId"),
            purchase.transaction_id.to_string()
        );
        assert_eq!(field(&last, "AuthId"), field(&paid, "AuthId"));
        assert_eq!(field(&last, "AmountTotal"), "1500");
        assert_eq!(field(&last, "LastTransactionResult"), "OK-ACCEPTED");
        assert_eq!(field(&last, "LastTransactionType"), "Card.Purchase");
    }

    #[tokio::test]
    async fn settlement_totals_come_from_the_journal() {
        let mut entries = Vec::new();
        for (f, cents) in [
            (Function::CardPurchase, 1000),
            (Function::CardPurchase, 1051), // declined: not counted
            (Function::QrMerchantPurchase, 2000),
            (Function::CardRefund, 300),
            (Function::CardAuthorise, 9000), // a hold, not a sale
        ] {
            let o = offer(request_for(f, cents));
            let (r, _) = run(o.clone(), &Default::default()).await;
            entries.push(entry(o, r));
        }
        let history = JournalHistory::from_entries(entries.clone());
        let (inq, _) = run(
            offer(request(Function::AcquirerSettlementInquiry)),
            &history,
        )
        .await;
        assert_eq!(inq.result, ResultCode::Ok);
        assert_eq!(inq.transaction_result, None);
        assert_eq!(field(&inq, "PurchaseCount"), "2");
        assert_eq!(field(&inq, "PurchaseTotal"), "3000");
        assert_eq!(field(&inq, "RefundCount"), "1");
        assert_eq!(field(&inq, "RefundTotal"), "300");
        assert_eq!(field(&inq, "NetTotal"), "2700");
        assert!(field(&inq, "Receipt").contains("27.00"));
        // The same in structured form: each settled transaction and the totals by card type.
        let Some(batch) = inq.settlement.clone() else {
            panic!("an inquiry reports its batch")
        };
        let items = batch.transactions.clone().unwrap_or_default();
        let ids: Vec<TransactionId> = items.iter().map(|i| i.transaction_id).collect();
        let settled: Vec<TransactionId> = [0, 2, 3]
            .iter()
            .map(|i: &usize| entries[*i].offer.transaction_id)
            .collect();
        assert_eq!(ids, settled);
        assert_eq!(items.iter().map(|i| i.amount).sum::<u64>(), 3300);
        let purchases: u64 = batch.totals.iter().map(|t| t.purchase_amount).sum();
        let refunds: u64 = batch.totals.iter().map(|t| t.refund_amount).sum();
        assert_eq!((purchases, refunds), (3000, 300));

        // A cutover closes the period: the next inquiry starts from zero.
        let cut_offer = offer(request(Function::AcquirerSettlementCutover));
        let (cut, _) = run(cut_offer.clone(), &history).await;
        assert_eq!(field(&cut, "NetTotal"), "2700");
        entries.push(entry(cut_offer, cut));
        let history = JournalHistory::from_entries(entries);
        let (inq, _) = run(
            offer(request(Function::AcquirerSettlementInquiry)),
            &history,
        )
        .await;
        assert_eq!(field(&inq, "PurchaseCount"), "0");
        assert_eq!(field(&inq, "NetTotal"), "0");

        // With a date, totals are that day's, whatever the cutovers.
        let today: String = device_local_now().chars().take(8).collect();
        let mut by_date = request(Function::AcquirerSettlementInquiry);
        by_date.date = Some(today.clone());
        let (inq, _) = run(offer(by_date), &history).await;
        assert_eq!(field(&inq, "SettlementDate"), today);
        assert_eq!(field(&inq, "PurchaseTotal"), "3000");
        let mut other_day = request(Function::AcquirerSettlementInquiry);
        other_day.date = Some("19990101".into());
        let (inq, _) = run(offer(other_day), &history).await;
        assert_eq!(field(&inq, "PurchaseCount"), "0");
    }
}
