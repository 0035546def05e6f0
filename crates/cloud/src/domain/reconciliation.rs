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
pub fn approved(tx: &TransactionRecord) -> bool {
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

/// Follow-ups grouped by the payment they follow, oldest first within each.
pub fn by_original(
    follow_ups: Vec<TransactionRecord>,
) -> BTreeMap<TransactionId, Vec<TransactionRecord>> {
    let mut by: BTreeMap<TransactionId, Vec<TransactionRecord>> = BTreeMap::new();
    for f in follow_ups {
        if let Some(o) = &f.request.original {
            by.entry(o.transaction_id).or_default().push(f);
        }
    }
    by
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
    let follow_ups = by_original(follow_ups.to_vec());
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
            let of = follow_ups.get(&tx.id).map_or(&[][..], Vec::as_slice);
            match settled_amount(tx, of, until) {
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
        .filter(|t| {
            *t != CardTotals {
                card_type: t.card_type.clone(),
                ..CardTotals::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::accounts::MerchantId;
    use crate::domain::lifecycle::{CompletedBy, Completion};
    use chrono::Duration;
    use proptest::prelude::*;
    use protocol::{Cents, DeviceId, Function, ResultCode, TransactionRequest};

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    fn device() -> DeviceId {
        DeviceId::parse("d1").unwrap_or_else(|_| unreachable!())
    }

    /// A transaction of `function` on d1 completed at `secs` with `outcome` and `fields`.
    fn tx(
        function: Function,
        amount: u64,
        outcome: TransactionResult,
        fields: &[(&str, &str)],
        secs: i64,
    ) -> TransactionRecord {
        let mut request = TransactionRequest::of(function);
        match function {
            Function::CardTipAdjust => request.amount_tip = Some(amount),
            Function::CardFinalise => request.amount_final = Cents::new(amount).ok(),
            _ => request.amount_total = Cents::new(amount).ok(),
        }
        TransactionRecord {
            id: TransactionId::new(),
            device_id: device(),
            register: protocol::RegisterInfo {
                key: protocol::RegisterKey {
                    register_id: "r".into(),
                    business_name: "b".into(),
                    vendor_name: "v".into(),
                },
                register_name: "R".into(),
            },
            merchant_id: MerchantId::default(),
            merchant: String::new(),
            request,
            sale_data: None,
            callback_url: None,
            pos_reference: None,
            fingerprint: String::new(),
            token: String::new(),
            token_expires_at: at(secs),
            created_at: at(secs),
            phase: Phase::Completed(Completion {
                by: CompletedBy::Device,
                transaction_result: Some(outcome),
                result: ResultCode::Ok,
                result_text: String::new(),
                fields: fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                receipts: None,
                settlement: None,
                completed_at: at(secs),
            }),
            display_text: None,
        }
    }

    fn follow_up_of(
        original: &TransactionRecord,
        function: Function,
        amount: u64,
        outcome: TransactionResult,
        secs: i64,
    ) -> TransactionRecord {
        let mut f = tx(function, amount, outcome, &[], secs);
        f.request.original = Some(protocol::OriginalPayment {
            transaction_id: original.id,
            function: original.request.function,
            amount: 0,
            fields: BTreeMap::new(),
        });
        f
    }

    use TransactionResult::{Accepted, Cancelled, Declined};

    #[test]
    fn the_cloud_batch_counts_approved_settling_transactions_with_their_follow_ups() {
        let visa = [
            ("CardType", "visa "),
            ("AmountTotal", "1100"),
            ("AmountTip", "100"),
        ];
        let sale = tx(Function::CardPurchase, 1000, Accepted, &visa, 1);
        let voided = tx(
            Function::CardPurchase,
            2000,
            Accepted,
            &[("CardType", "AMEX")],
            2,
        );
        let declined = tx(Function::CardPurchase, 3000, Declined, &[], 3);
        let hold = tx(Function::CardAuthorise, 9000, Accepted, &[], 4);
        let refund = tx(Function::CardRefund, 300, Accepted, &[], 5);
        let qr = tx(
            Function::QrMerchantPurchase,
            700,
            Accepted,
            &[("CardType", "ALIPAY")],
            6,
        );
        let follow_ups = vec![
            // The last approved tip stands; a declined one and one after the cutover do not.
            follow_up_of(&sale, Function::CardTipAdjust, 250, Accepted, 7),
            follow_up_of(&sale, Function::CardTipAdjust, 400, Declined, 8),
            follow_up_of(&sale, Function::CardTipAdjust, 999, Accepted, 100),
            follow_up_of(&voided, Function::CardVoid, 0, Accepted, 9),
            // A cancelled void voids nothing.
            follow_up_of(&qr, Function::CardVoid, 0, Cancelled, 9),
        ];
        let all = [
            sale.clone(),
            voided.clone(),
            declined.clone(),
            hold.clone(),
            refund.clone(),
            qr.clone(),
        ];
        let b = cloud_batch(&all, &follow_ups, at(50));
        let got: Vec<(TransactionId, &str, u64)> = b
            .entries
            .iter()
            .map(|e| (e.transaction_id, e.card_type.as_str(), e.amount))
            .collect();
        assert_eq!(
            got,
            vec![
                (sale.id, "VISA", 1250),
                (refund.id, UNKNOWN_CARD_TYPE, 300),
                (qr.id, "ALIPAY", 700),
            ]
        );
        assert_eq!(b.entries[1].kind(), protocol::settlement::BatchKind::Refund);
        assert_eq!(b.excluded.len(), 3);
        assert_eq!(
            b.excluded.get(&voided.id).map(String::as_str),
            Some("voided in the cloud")
        );
        assert!(
            b.excluded
                .get(&declined.id)
                .is_some_and(|w| w.contains("OK-DECLINED")),
            "{b:?}"
        );
        assert!(b
            .excluded
            .get(&hold.id)
            .is_some_and(|w| w.contains("does not settle")));
        // At a cutover before the tip, the sale counts as approved.
        let early = cloud_batch(&all[..1], &follow_ups, at(6));
        assert_eq!(early.entries[0].amount, 1100);
    }

    #[test]
    fn outside_the_period_says_where_the_cloud_has_it() {
        let d = device();
        assert!(outside_period(None, &d, None, at(10)).contains("no transaction"));
        let mut other = tx(Function::CardPurchase, 100, Accepted, &[], 5);
        other.device_id = DeviceId::parse("d2").unwrap_or_else(|_| unreachable!());
        assert_eq!(
            outside_period(Some(&other), &d, None, at(10)),
            "the cloud has it on device d2"
        );
        let later = tx(Function::CardPurchase, 100, Accepted, &[], 20);
        assert!(
            outside_period(Some(&later), &d, None, at(10)).contains("another settlement period")
        );
        let earlier = tx(Function::CardPurchase, 100, Accepted, &[], 1);
        assert!(outside_period(Some(&earlier), &d, Some(at(1)), at(10)).contains("another"));
        assert_eq!(
            outside_period(Some(&earlier), &d, Some(at(0)), at(10)),
            "not in the cloud's batch"
        );
        let mut running = earlier.clone();
        running.phase = Phase::Started { started_at: at(1) };
        assert_eq!(
            outside_period(Some(&running), &d, None, at(10)),
            "not completed in the cloud"
        );
    }

    fn entry(card: &str, kind_refund: bool, amount: u64) -> BatchTransaction {
        BatchTransaction {
            transaction_id: TransactionId::new(),
            function: if kind_refund {
                Function::CardRefund
            } else {
                Function::CardPurchase
            },
            card_type: card.into(),
            amount,
        }
    }

    fn batch_of(items: Vec<BatchTransaction>, listed: bool) -> SettlementBatch {
        SettlementBatch {
            period_start: None,
            period_end: "20261204120000".into(),
            totals: totals(&items),
            transactions: listed.then_some(items),
        }
    }

    #[test]
    fn one_missing_and_one_mismatching_are_listed_and_nothing_else() {
        let cloud = vec![
            entry("VISA", false, 1000),
            entry("VISA", false, 2000),
            entry("AMEX", true, 500),
        ];
        let mut terminal = cloud.clone();
        terminal.remove(0);
        terminal[0].amount = 2100;
        let r = reconcile(Some(&batch_of(terminal, true)), &cloud, &BTreeMap::new());
        assert_eq!(r.status, Status::Unbalanced);
        assert!(r.itemised);
        assert_eq!(r.terminal_consistent, Some(true));
        let got: Vec<(TransactionId, Vec<Reason>)> = r
            .mismatches
            .iter()
            .map(|m| (m.transaction_id, m.reasons.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (cloud[1].transaction_id, vec![Reason::AmountDiffers]),
                (cloud[0].transaction_id, vec![Reason::MissingOnTerminal]),
            ]
        );
        assert_eq!(
            r.differences,
            vec![CardDifference {
                card_type: "VISA".into(),
                purchase_count: -1,
                purchase_amount: -900,
                refund_count: 0,
                refund_amount: 0,
                net: -900,
            }]
        );
    }

    #[test]
    fn each_reason_is_named() {
        let cloud = vec![entry("VISA", false, 1000), entry("VISA", false, 2000)];
        let unknown = entry("MASTERCARD", false, 300);
        let mut changed = cloud[0].clone();
        changed.card_type = "mastercard".into();
        changed.function = Function::CardRefund;
        let same_type_lower = BatchTransaction {
            card_type: " visa".into(),
            ..cloud[1].clone()
        };
        let terminal = vec![
            changed.clone(),
            same_type_lower.clone(),
            unknown.clone(),
            same_type_lower,
        ];
        let notes = BTreeMap::from([(
            unknown.transaction_id,
            "the cloud has no transaction with this id".to_string(),
        )]);
        let r = reconcile(Some(&batch_of(terminal, true)), &cloud, &notes);
        assert_eq!(r.mismatches.len(), 3, "{r:#?}");
        assert_eq!(
            r.mismatches[0].reasons,
            vec![Reason::CardTypeDiffers, Reason::KindDiffers]
        );
        assert_eq!(r.mismatches[1].transaction_id, cloud[1].transaction_id);
        assert_eq!(r.mismatches[1].reasons, vec![Reason::DuplicateOnTerminal]);
        assert_eq!(r.mismatches[2].reasons, vec![Reason::MissingInCloud]);
        assert_eq!(
            r.mismatches[2].note.as_deref(),
            notes.get(&unknown.transaction_id).map(String::as_str)
        );
        assert_eq!(r.mismatches[2].cloud, None);
        for (reason, name) in [
            (Reason::MissingInCloud, "missing_in_cloud"),
            (Reason::MissingOnTerminal, "missing_on_terminal"),
            (Reason::AmountDiffers, "amount_differs"),
            (Reason::CardTypeDiffers, "card_type_differs"),
            (Reason::KindDiffers, "kind_differs"),
            (Reason::DuplicateOnTerminal, "duplicate_on_terminal"),
        ] {
            assert_eq!(reason.as_str(), name);
            assert_eq!(
                serde_json::to_value(reason).ok(),
                Some(serde_json::json!(name))
            );
        }
    }

    #[test]
    fn without_a_batch_it_is_unreported_and_without_a_list_only_totals_compare() {
        let cloud = vec![entry("VISA", false, 1000)];
        let r = reconcile(None, &cloud, &BTreeMap::new());
        assert_eq!(r.status, Status::Unreported);
        assert_eq!(r.cloud_totals, totals(&cloud));
        assert!(r.mismatches.is_empty() && r.differences.is_empty());
        let r = reconcile(
            Some(&batch_of(cloud.clone(), false)),
            &cloud,
            &BTreeMap::new(),
        );
        assert_eq!(
            (r.status, r.itemised, r.terminal_consistent),
            (Status::Balanced, false, None)
        );
        let r = reconcile(
            Some(&batch_of(vec![entry("VISA", false, 999)], false)),
            &cloud,
            &BTreeMap::new(),
        );
        assert_eq!(r.status, Status::Unbalanced);
        assert!(r.mismatches.is_empty());
        assert_eq!(r.differences[0].purchase_amount, -1);
        assert_eq!(Status::Unreported.as_str(), "unreported");
    }

    #[test]
    fn a_terminal_whose_list_and_totals_disagree_is_caught() {
        let cloud = vec![entry("VISA", false, 1000)];
        let mut b = batch_of(cloud.clone(), true);
        b.totals[0].purchase_amount = 1500;
        // Repeated lines of one card type merge; an all-zero line is no line.
        b.totals.push(CardTotals {
            card_type: "EFTPOS".into(),
            ..CardTotals::default()
        });
        let r = reconcile(Some(&b), &cloud, &BTreeMap::new());
        assert_eq!(r.terminal_consistent, Some(false));
        assert!(r.mismatches.is_empty());
        assert_eq!(r.terminal_totals.len(), 1);
        assert_eq!(r.status, Status::Unbalanced);
        assert_eq!(r.differences[0].net, 500);
    }

    /// What a test does to one cloud entry on its way to the terminal's batch.
    #[derive(Debug, Clone, Copy)]
    enum Change {
        Keep,
        Drop,
        Amount(u64),
        Card,
        Duplicate,
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            4 => Just(Change::Keep),
            1 => Just(Change::Drop),
            1 => (1u64..5000).prop_map(Change::Amount),
            1 => Just(Change::Card),
            1 => Just(Change::Duplicate),
        ]
    }

    fn cards() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("VISA"), Just("MASTERCARD"), Just("EFTPOS")]
    }

    proptest! {
        /// Exactly the entries changed on the way are listed, each for its change; the total
        /// differences are the terminal's totals less the cloud's; an unchanged batch balances.
        #[test]
        fn exactly_the_changed_transactions_are_listed(
            cloud_spec in proptest::collection::vec((cards(), any::<bool>(), 1u64..100_000, change()), 0..30),
            extra in proptest::collection::vec((cards(), 1u64..100_000), 0..3),
        ) {
            let cloud: Vec<BatchTransaction> =
                cloud_spec.iter().map(|(c, r, a, _)| entry(c, *r, *a)).collect();
            let mut terminal = Vec::new();
            let mut expected: BTreeMap<TransactionId, Vec<Reason>> = BTreeMap::new();
            for (e, (_, _, _, ch)) in cloud.iter().zip(&cloud_spec) {
                match ch {
                    Change::Keep => terminal.push(e.clone()),
                    Change::Drop => { expected.insert(e.transaction_id, vec![Reason::MissingOnTerminal]); }
                    Change::Amount(a) => {
                        let amount = e.amount + a;
                        terminal.push(BatchTransaction { amount, ..e.clone() });
                        expected.insert(e.transaction_id, vec![Reason::AmountDiffers]);
                    }
                    Change::Card => {
                        terminal.push(BatchTransaction { card_type: "AMEX".into(), ..e.clone() });
                        expected.insert(e.transaction_id, vec![Reason::CardTypeDiffers]);
                    }
                    Change::Duplicate => {
                        terminal.push(e.clone());
                        terminal.push(e.clone());
                        expected.insert(e.transaction_id, vec![Reason::DuplicateOnTerminal]);
                    }
                }
            }
            for (c, a) in &extra {
                let e = entry(c, false, *a);
                expected.insert(e.transaction_id, vec![Reason::MissingInCloud]);
                terminal.push(e);
            }
            let b = batch_of(terminal.clone(), true);
            let r = reconcile(Some(&b), &cloud, &BTreeMap::new());
            let got: BTreeMap<TransactionId, Vec<Reason>> =
                r.mismatches.iter().map(|m| (m.transaction_id, m.reasons.clone())).collect();
            prop_assert_eq!(got.len(), r.mismatches.len(), "each transaction listed once");
            prop_assert_eq!(&got, &expected);
            prop_assert_eq!(r.status == Status::Balanced, expected.is_empty());
            prop_assert_eq!(r.terminal_consistent, Some(true));
            // The differences add up to the totals' difference.
            let sum = |t: &[CardTotals]| t.iter().map(|t| t.net()).sum::<i128>();
            let diff: i128 = r.differences.iter().map(|d| i128::from(d.net)).sum();
            prop_assert_eq!(diff, sum(&r.terminal_totals) - sum(&r.cloud_totals));
            // Compared the other way round (the cloud never lists one twice), the same
            // transactions are listed.
            let mut once = std::collections::BTreeSet::new();
            terminal.retain(|t| once.insert(t.transaction_id));
            let back = batch_of(cloud.clone(), true);
            let r2 = reconcile(Some(&back), &terminal, &BTreeMap::new());
            let ids2: std::collections::BTreeSet<TransactionId> =
                r2.mismatches.iter().map(|m| m.transaction_id).collect();
            let ids: std::collections::BTreeSet<TransactionId> = expected
                .iter()
                .filter(|(_, r)| **r != [Reason::DuplicateOnTerminal])
                .map(|(id, _)| *id)
                .collect();
            prop_assert_eq!(ids2, ids);
        }

        /// A cloud batch reconciled against itself balances, itemised or not.
        #[test]
        fn a_batch_balances_against_itself(
            spec in proptest::collection::vec((cards(), any::<bool>(), 1u64..100_000), 0..30),
            listed in any::<bool>(),
        ) {
            let cloud: Vec<BatchTransaction> = spec.iter().map(|(c, r, a)| entry(c, *r, *a)).collect();
            let r = reconcile(Some(&batch_of(cloud.clone(), listed)), &cloud, &BTreeMap::new());
            prop_assert_eq!(r.status, Status::Balanced);
            prop_assert!(r.differences.is_empty());
            prop_assert_eq!(r.terminal_totals, r.cloud_totals);
        }
    }

    #[test]
    fn a_follow_up_of_another_payment_is_not_applied() {
        let a = tx(Function::CardPurchase, 1000, Accepted, &[], 1);
        let b = tx(Function::CardPurchase, 1000, Accepted, &[], 1);
        let void_b = follow_up_of(&b, Function::CardVoid, 0, Accepted, 2);
        assert_eq!(
            settled_amount(&a, std::slice::from_ref(&void_b), at(10)),
            Some(1000)
        );
        assert_eq!(
            settled_amount(&b, std::slice::from_ref(&void_b), at(10)),
            None
        );
        // A void after the cutover is the next period's business.
        assert_eq!(
            settled_amount(&b, &[void_b], at(1) + Duration::milliseconds(500)),
            Some(1000)
        );
    }
}
