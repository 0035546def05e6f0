//! Reconciliation of a settlement: the batch a terminal reported at its cutover against the
//! cloud's own records of that device for the same period, by transaction and by card type.
//!
//! No I/O. The engine reads the device's transactions completed between its previous approved
//! cutover and this one (with their voids and tip adjustments), [`cloud_batch`] turns them into
//! the batch the cloud expects, and [`reconcile`] compares the two. Nothing is stored: a report
//! is computed whenever it is read, so it can never disagree with the records it is made of.

use super::lifecycle::Phase;
use super::payments::{summarise, FollowUp, FollowUpState, Payment};
use super::records::TransactionRecord;
use chrono::{DateTime, Utc};
use protocol::settlement::{
    settles, totals_of, BatchTransaction, CardTotals, SettlementBatch, UNKNOWN_CARD_TYPE,
};
use protocol::{TransactionId, TransactionResult};
use serde::Serialize;
use std::collections::BTreeMap;

/// The batch the cloud's records make for a period, and why the period's other transactions
/// are not in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloudBatch {
    /// Each approved transaction that settles, at what it came to at the cutover, in the
    /// order given.
    pub entries: Vec<BatchTransaction>,
    /// Transactions of the period left out, with the reason (declined, voided, a hold...).
    pub excluded: BTreeMap<TransactionId, String>,
}

/// Whether a transaction completed approved.
fn approved(tx: &TransactionRecord) -> bool {
    matches!(&tx.phase, Phase::Completed(c) if c.transaction_result == Some(TransactionResult::Accepted))
}

/// A card type as both sides are compared by: trimmed, upper case, [`UNKNOWN_CARD_TYPE`]
/// when blank.
pub fn normal_card_type(s: &str) -> String {
    match s.trim() {
        "" => UNKNOWN_CARD_TYPE.to_string(),
        t => t.to_ascii_uppercase(),
    }
}

/// The card type a completed transaction's device reported.
pub fn card_type(tx: &TransactionRecord) -> String {
    match &tx.phase {
        Phase::Completed(c) => normal_card_type(c.fields.get("CardType").map_or("", |t| t)),
        _ => UNKNOWN_CARD_TYPE.to_string(),
    }
}

/// What an approved settling transaction comes to once the follow-ups completed by `until`
/// are applied (tip adjustments), or `None` when one of them voided it.
pub fn settled_amount(
    tx: &TransactionRecord,
    follow_ups: &[TransactionRecord],
    until: DateTime<Utc>,
) -> Option<u64> {
    let applied: Vec<FollowUp> = follow_ups
        .iter()
        .filter(|f| f.request.original.as_ref().map(|o| o.transaction_id) == Some(tx.id))
        .filter(|f| f.completed_at().is_some_and(|at| at <= until))
        .map(FollowUp::of)
        .filter(|f| f.state == FollowUpState::Approved)
        .collect();
    let summary = summarise(&Payment::of(tx, false), &applied);
    (!summary.voided).then_some(summary.amount)
}

/// The batch the cloud expects from `transactions` (a device's, completed in the period),
/// with `follow_ups` (their voids and tip adjustments, from any device) applied as they stood
/// at `until` (the cutover).
pub fn cloud_batch(
    transactions: &[TransactionRecord],
    follow_ups: &[TransactionRecord],
    until: DateTime<Utc>,
) -> CloudBatch {
    let mut batch = CloudBatch::default();
    for tx in transactions {
        let f = tx.request.function;
        let excluded = |why: String| (tx.id, why);
        let left_out = if !approved(tx) {
            Some(excluded(match &tx.phase {
                Phase::Completed(c) => format!(
                    "not approved in the cloud: {}",
                    c.transaction_result
                        .map_or_else(|| c.result.to_string(), |r| r.to_string())
                ),
                _ => "not completed in the cloud".to_string(),
            }))
        } else if settles(f).is_none() {
            Some(excluded(format!("a {f} does not settle")))
        } else {
            match settled_amount(tx, follow_ups, until) {
                Some(amount) => {
                    batch.entries.push(BatchTransaction {
                        transaction_id: tx.id,
                        function: f,
                        card_type: card_type(tx),
                        amount,
                    });
                    None
                }
                None => Some(excluded("voided in the cloud".to_string())),
            }
        };
        if let Some((id, why)) = left_out {
            batch.excluded.insert(id, why);
        }
    }
    batch
}

/// Why the cloud does not count a transaction the terminal settled, for one outside the
/// period's records: unknown, another device's, or completed in another period.
pub fn outside_period(
    tx: Option<&TransactionRecord>,
    device: &protocol::DeviceId,
    since: Option<DateTime<Utc>>,
    until: DateTime<Utc>,
) -> String {
    let Some(tx) = tx else {
        return "the cloud has no transaction with this id".to_string();
    };
    if &tx.device_id != device {
        return format!("the cloud has it on device {}", tx.device_id);
    }
    match tx.completed_at() {
        None => "not completed in the cloud".to_string(),
        Some(at) if at > until || since.is_some_and(|s| at <= s) => format!(
            "completed in another settlement period ({})",
            at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
        Some(_) => "not in the cloud's batch".to_string(),
    }
}

/// Why a transaction is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The terminal settled it; the cloud has no approved record of it in this period.
    MissingInCloud,
    /// The cloud has it approved in this period; the terminal's batch does not list it.
    MissingOnTerminal,
    /// Both have it, for different amounts.
    AmountDiffers,
    /// Both have it, with different card types.
    CardTypeDiffers,
    /// One counts it as a purchase, the other as a refund.
    KindDiffers,
    /// The terminal lists it more than once.
    DuplicateOnTerminal,
}

impl Reason {
    /// The wire name (`missing_in_cloud`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingInCloud => "missing_in_cloud",
            Reason::MissingOnTerminal => "missing_on_terminal",
            Reason::AmountDiffers => "amount_differs",
            Reason::CardTypeDiffers => "card_type_differs",
            Reason::KindDiffers => "kind_differs",
            Reason::DuplicateOnTerminal => "duplicate_on_terminal",
        }
    }
}

/// One transaction on which the terminal and the cloud disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mismatch {
    pub transaction_id: TransactionId,
    /// Every way they disagree, in the order of [`Reason`].
    pub reasons: Vec<Reason>,
    /// As the terminal listed it (the first listing when it is duplicated).
    pub terminal: Option<BatchTransaction>,
    /// As the cloud counts it.
    pub cloud: Option<BatchTransaction>,
    /// For one missing in the cloud: what the cloud knows of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// How one card type's totals differ: the terminal's less the cloud's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CardDifference {
    pub card_type: String,
    pub purchase_count: i64,
    pub purchase_amount: i64,
    pub refund_count: i64,
    pub refund_amount: i64,
    pub net: i64,
}

impl CardDifference {
    fn is_zero(&self) -> bool {
        self.purchase_count == 0
            && self.purchase_amount == 0
            && self.refund_count == 0
            && self.refund_amount == 0
    }
}

/// The outcome of a reconciliation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every transaction and every total agrees.
    Balanced,
    /// At least one transaction or one total differs.
    Unbalanced,
    /// The terminal reported no batch (an older device): only the cloud's side is known.
    Unreported,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Balanced => "balanced",
            Status::Unbalanced => "unbalanced",
            Status::Unreported => "unreported",
        }
    }
}

/// A settlement's reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reconciliation {
    pub status: Status,
    /// Whether the terminal listed its transactions (else only totals were compared).
    pub itemised: bool,
    /// As the terminal reported them, by card type.
    pub terminal_totals: Vec<CardTotals>,
    /// As the cloud's records make them, by card type.
    pub cloud_totals: Vec<CardTotals>,
    /// The card types whose totals differ, terminal less cloud.
    pub differences: Vec<CardDifference>,
    /// Whether the terminal's own list sums to its own totals (none when it listed nothing).
    pub terminal_consistent: Option<bool>,
    /// Each transaction they disagree on, terminal's order first, then the cloud's.
    pub mismatches: Vec<Mismatch>,
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Per card type, `terminal` less `cloud`, where they differ, by card type.
pub fn differences(terminal: &[CardTotals], cloud: &[CardTotals]) -> Vec<CardDifference> {
    let mut by_type: BTreeMap<&str, CardDifference> = BTreeMap::new();
    for (sign, totals) in [(1i64, terminal), (-1i64, cloud)] {
        for t in totals {
            let d = by_type
                .entry(t.card_type.as_str())
                .or_insert_with(|| CardDifference {
                    card_type: t.card_type.clone(),
                    ..CardDifference::default()
                });
            let add = |acc: &mut i64, v: u64| *acc = acc.saturating_add(sign * signed(v));
            add(&mut d.purchase_count, t.purchase_count);
            add(&mut d.purchase_amount, t.purchase_amount);
            add(&mut d.refund_count, t.refund_count);
            add(&mut d.refund_amount, t.refund_amount);
        }
    }
    by_type
        .into_values()
        .filter(|d| !d.is_zero())
        .map(|mut d| {
            d.net = d.purchase_amount.saturating_sub(d.refund_amount);
            d
        })
        .collect()
}

/// Totals by card type of a list of settled transactions.
pub fn totals(entries: &[BatchTransaction]) -> Vec<CardTotals> {
    totals_of(
        entries
            .iter()
            .map(|e| (e.card_type.as_str(), e.kind(), e.amount)),
    )
}

/// Compares the terminal's batch (none from an older device) with the cloud's. `notes` says,
/// for a transaction the terminal lists and the cloud's batch does not, what the cloud knows
/// of it (see [`CloudBatch::excluded`] and [`outside_period`]).
pub fn reconcile(
    terminal: Option<&SettlementBatch>,
    cloud: &[BatchTransaction],
    notes: &BTreeMap<TransactionId, String>,
) -> Reconciliation {
    let cloud_totals = totals(cloud);
    let Some(batch) = terminal else {
        return Reconciliation {
            status: Status::Unreported,
            itemised: false,
            terminal_totals: Vec::new(),
            cloud_totals,
            differences: Vec::new(),
            terminal_consistent: None,
            mismatches: Vec::new(),
        };
    };
    let terminal_totals = normalised(&batch.totals);
    let differences = differences(&terminal_totals, &cloud_totals);
    let mut mismatches = Vec::new();
    let mut terminal_consistent = None;
    if let Some(listed) = &batch.transactions {
        let as_compared: Vec<BatchTransaction> = listed
            .iter()
            .map(|t| BatchTransaction {
                card_type: normal_card_type(&t.card_type),
                ..t.clone()
            })
            .collect();
        terminal_consistent = Some(totals(&as_compared) == terminal_totals);
        let by_id: BTreeMap<TransactionId, &BatchTransaction> =
            cloud.iter().map(|c| (c.transaction_id, c)).collect();
        let mut seen: BTreeMap<TransactionId, usize> = BTreeMap::new();
        for t in listed {
            if let Some(&at) = seen.get(&t.transaction_id) {
                let m: &mut Mismatch = &mut mismatches[at];
                if !m.reasons.contains(&Reason::DuplicateOnTerminal) {
                    m.reasons.push(Reason::DuplicateOnTerminal);
                    m.reasons.sort();
                }
                continue;
            }
            let cloud_entry = by_id.get(&t.transaction_id).copied();
            let reasons = match cloud_entry {
                None => vec![Reason::MissingInCloud],
                Some(c) => {
                    let mut r = Vec::new();
                    if c.amount != t.amount {
                        r.push(Reason::AmountDiffers);
                    }
                    if c.card_type != normal_card_type(&t.card_type) {
                        r.push(Reason::CardTypeDiffers);
                    }
                    if c.kind() != t.kind() {
                        r.push(Reason::KindDiffers);
                    }
                    r
                }
            };
            seen.insert(t.transaction_id, mismatches.len());
            mismatches.push(Mismatch {
                transaction_id: t.transaction_id,
                note: cloud_entry
                    .is_none()
                    .then(|| notes.get(&t.transaction_id).cloned())
                    .flatten(),
                reasons,
                terminal: Some(t.clone()),
                cloud: cloud_entry.cloned(),
            });
        }
        // Only the disagreements stay (a duplicate of an agreeing entry among them).
        mismatches.retain(|m| !m.reasons.is_empty());
        for c in cloud {
            if !seen.contains_key(&c.transaction_id) {
                mismatches.push(Mismatch {
                    transaction_id: c.transaction_id,
                    reasons: vec![Reason::MissingOnTerminal],
                    terminal: None,
                    cloud: Some(c.clone()),
                    note: None,
                });
            }
        }
    }
    let status = if mismatches.is_empty() && differences.is_empty() {
        Status::Balanced
    } else {
        Status::Unbalanced
    };
    Reconciliation {
        status,
        itemised: batch.transactions.is_some(),
        terminal_totals,
        cloud_totals,
        differences,
        terminal_consistent,
        mismatches,
    }
}

/// The terminal's totals merged by card type (a terminal may repeat one) and sorted, as the
/// cloud's are, so the two compare line by line.
fn normalised(totals: &[CardTotals]) -> Vec<CardTotals> {
    let mut by_type: BTreeMap<String, CardTotals> = BTreeMap::new();
    for t in totals {
        let e = by_type
            .entry(normal_card_type(&t.card_type))
            .or_insert_with_key(|k| CardTotals {
                card_type: k.clone(),
                ..CardTotals::default()
            });
        e.purchase_count = e.purchase_count.saturating_add(t.purchase_count);
        e.purchase_amount = e.purchase_amount.saturating_add(t.purchase_amount);
        e.refund_count = e.refund_count.saturating_add(t.refund_count);
        e.refund_amount = e.refund_amount.saturating_add(t.refund_amount);
    }
    by_type
        .into_values()
        .filter(|t| *t != CardTotals { card_type: t.card_type.clone(), ..CardTotals::default() })
        .collect()
}
