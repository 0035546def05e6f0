//! The event catalogue: a durable, ordered log of what happened to a merchant's transactions,
//! devices, pairings, configuration and updates, which integrators replay from a cursor
//! (`GET /v1/events`) and receive by webhook. Each event is written in the same commit as the
//! change it reports, so the log never disagrees with the state and a restart loses none.
//!
//! Everything here is pure: the types, the cursor, the filters, who may see what, and the
//! events a change yields. The store assigns each event its place in the log (the cursor).

use super::accounts::{KeyOwner, MerchantId};
use super::lifecycle::Phase;
use super::records::TransactionRecord;
use chrono::{DateTime, SecondsFormat, Utc};
use protocol::{DeviceId, Function, RegisterKey, TransactionResult};
use serde_json::{json, Value};
use std::fmt;
use std::str::FromStr;

/// The version of every event's `data` layout; it grows only when a field changes meaning or
/// goes away (new fields are added without it).
pub const SCHEMA_VERSION: u32 = 1;

/// What happened. The names are the API's (`transaction.completed`) and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// A transaction (of any function) was stored.
    TransactionCreated,
    /// A transaction reached its final state, approved or not.
    TransactionCompleted,
    /// An approved refund (besides its `transaction.completed`).
    RefundCompleted,
    /// An approved void.
    VoidCompleted,
    /// An approved tip adjustment.
    AdjustmentCompleted,
    /// An approved settlement cutover on a device.
    SettlementCompleted,
    /// A device connected.
    DeviceConnected,
    /// A device's connection closed.
    DeviceDisconnected,
    /// A register was paired to a device.
    PairingPaired,
    /// A register was unpaired.
    PairingUnpaired,
    /// A device confirmed it runs a configuration version.
    ConfigApplied,
    /// A device reported a step of a software update.
    UpdateStep,
}

impl EventType {
    /// Every type, in the order the catalogue lists them.
    pub const ALL: [EventType; 12] = [
        EventType::TransactionCreated,
        EventType::TransactionCompleted,
        EventType::RefundCompleted,
        EventType::VoidCompleted,
        EventType::AdjustmentCompleted,
        EventType::SettlementCompleted,
        EventType::DeviceConnected,
        EventType::DeviceDisconnected,
        EventType::PairingPaired,
        EventType::PairingUnpaired,
        EventType::ConfigApplied,
        EventType::UpdateStep,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TransactionCreated => "transaction.created",
            EventType::TransactionCompleted => "transaction.completed",
            EventType::RefundCompleted => "refund.completed",
            EventType::VoidCompleted => "void.completed",
            EventType::AdjustmentCompleted => "adjustment.completed",
            EventType::SettlementCompleted => "settlement.completed",
            EventType::DeviceConnected => "device.connected",
            EventType::DeviceDisconnected => "device.disconnected",
            EventType::PairingPaired => "pairing.paired",
            EventType::PairingUnpaired => "pairing.unpaired",
            EventType::ConfigApplied => "config.applied",
            EventType::UpdateStep => "update.step",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Input that is not a catalogue value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("Unknown event type '{0}': see docs/events.md for the catalogue")]
    UnknownType(String),
    #[error("Malformed cursor '{0}': pass the nextCursor or an event's cursor as given")]
    BadCursor(String),
    #[error("Malformed event id '{0}'")]
    BadId(String),
}

impl FromStr for EventType {
    type Err = EventError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| EventError::UnknownType(s.to_string()))
    }
}

/// An event's public id, `evt_` and a time-ordered UUID: unique across nodes, so a receiver
/// dedupes deliveries by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(String);

impl EventId {
    const PREFIX: &'static str = "evt_";

    pub fn new() -> Self {
        Self(format!("{}{}", Self::PREFIX, uuid::Uuid::now_v7().simple()))
    }

    /// Parses an id from a path or a body.
    pub fn parse(s: &str) -> Result<Self, EventError> {
        let bad = || EventError::BadId(s.chars().take(64).collect());
        let rest = s.strip_prefix(Self::PREFIX).ok_or_else(bad)?;
        let u = uuid::Uuid::try_parse(rest).map_err(|_| bad())?;
        Ok(Self(format!("{}{}", Self::PREFIX, u.simple())))
    }

    /// Trusted: a value read back from the store.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A place in the log: every event gets one when it commits, and the log is read in cursor
/// order. `epoch` is what orders commits across writers (PostgreSQL's transaction id; 0 on
/// SQLite, whose single writer commits in `seq` order), `seq` the order within it. A reader is
/// only ever shown events no commit still in flight could come before, so replaying from a
/// cursor never skips one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor {
    pub epoch: u64,
    pub seq: u64,
}

impl Cursor {
    /// Before every event.
    pub const START: Cursor = Cursor { epoch: 0, seq: 0 };
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.seq)
    }
}

impl FromStr for Cursor {
    type Err = EventError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || EventError::BadCursor(s.chars().take(64).collect());
        let (epoch, seq) = s.trim().split_once('-').ok_or_else(bad)?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(epoch) || !digits(seq) {
            return Err(bad());
        }
        Ok(Cursor {
            epoch: epoch.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// An event before the store places it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub id: EventId,
    pub kind: EventType,
    pub at: DateTime<Utc>,
    /// Whose it is; none for an installation-wide event. The store fills it from the device's
    /// row when an event names only its device.
    pub merchant_id: Option<MerchantId>,
    /// The POS vendor whose register it concerns (transactions and pairings), so a vendor's
    /// key sees its own registers' events.
    pub vendor: Option<String>,
    /// The device it concerns, if any.
    pub device_id: Option<DeviceId>,
    /// The event's body, as the API shows it.
    pub data: Value,
}

/// An event as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub cursor: Cursor,
    pub schema_version: u32,
    pub event: NewEvent,
}

impl Event {
    /// The API's JSON of it (the body of `/v1/events` entries and of webhook deliveries).
    pub fn to_json(&self) -> Value {
        let e = &self.event;
        json!({
            "id": e.id.as_str(),
            "cursor": self.cursor.to_string(),
            "type": e.kind.as_str(),
            "createdAt": e.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "schemaVersion": self.schema_version,
            "merchantId": e.merchant_id.as_ref().map(MerchantId::as_str),
            "data": e.data,
        })
    }
}

/// Which types a reader or an endpoint wants: exact names and `prefix.*` families; empty means
/// every type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TypeFilter {
    exact: Vec<EventType>,
    families: Vec<String>,
}

impl TypeFilter {
    /// Every type.
    pub fn all() -> Self {
        Self::default()
    }

    /// Parses names given one by one (`*` alone: every type). A family must name at least one
    /// type, so a typo is refused rather than matching nothing forever.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, EventError> {
        let mut filter = Self::default();
        for name in names.into_iter().map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return Ok(Self::all());
            }
            if let Some(prefix) = name.strip_suffix(".*") {
                let family = format!("{prefix}.");
                if !EventType::ALL
                    .iter()
                    .any(|t| t.as_str().starts_with(&family))
                {
                    return Err(EventError::UnknownType(name.to_string()));
                }
                if !filter.families.contains(&family) {
                    filter.families.push(family);
                }
            } else {
                let t: EventType = name.parse()?;
                if !filter.exact.contains(&t) {
                    filter.exact.push(t);
                }
            }
        }
        Ok(filter)
    }

    /// Parses a comma-separated list (`transaction.completed,device.*`).
    pub fn parse_list(list: &str) -> Result<Self, EventError> {
        Self::parse(list.split(','))
    }

    pub fn matches(&self, t: EventType) -> bool {
        self.is_all()
            || self.exact.contains(&t)
            || self.families.iter().any(|f| t.as_str().starts_with(f))
    }

    pub fn is_all(&self) -> bool {
        self.exact.is_empty() && self.families.is_empty()
    }

    /// The types it admits, for the store's query.
    pub fn types(&self) -> Vec<EventType> {
        EventType::ALL
            .into_iter()
            .filter(|t| self.matches(*t))
            .collect()
    }

    /// The names as given back to a client (`["*"]` for every type).
    pub fn names(&self) -> Vec<String> {
        if self.is_all() {
            return vec!["*".into()];
        }
        let mut names: Vec<String> = self.exact.iter().map(|t| t.as_str().into()).collect();
        names.extend(self.families.iter().map(|f| format!("{f}*")));
        names
    }
}

/// Whose events a reader sees: the operator sees all, a merchant its own, a vendor those of
/// its registers (transactions and pairings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    Everything,
    Merchant(MerchantId),
    Vendor(String),
}

impl Audience {
    /// The audience of a key's owner.
    pub fn of(owner: &KeyOwner) -> Self {
        match owner {
            KeyOwner::Installation => Audience::Everything,
            KeyOwner::Merchant(m) => Audience::Merchant(m.clone()),
            KeyOwner::Vendor(v) => Audience::Vendor(v.clone()),
        }
    }

    pub fn sees(&self, e: &NewEvent) -> bool {
        match self {
            Audience::Everything => true,
            Audience::Merchant(m) => e.merchant_id.as_ref() == Some(m),
            Audience::Vendor(v) => e.vendor.as_deref() == Some(v.as_str()),
        }
    }
}

/// A transaction's part of every event about it, in `phase`.
fn transaction_data(tx: &TransactionRecord, phase: &Phase) -> Value {
    let key = &tx.register.key;
    let mut data = json!({
        "transactionId": tx.id.to_string(),
        "deviceId": tx.device_id.as_str(),
        "function": tx.request.function.as_str(),
        "registerId": key.register_id,
        "businessName": key.business_name,
        "vendorName": key.vendor_name,
        "posReference": tx.pos_reference,
        "originalTransactionId": tx.request.original.as_ref().map(|o| o.transaction_id.to_string()),
        "orderId": tx.request.order_id,
        "currency": tx.request.currency().code(),
        "amountAsked": super::payments::asked_amount(&tx.request).to_string(),
        "createdAt": tx.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
    });
    let (status, completion) = match phase {
        Phase::Completed(c) => ("COMPLETED", Some(c)),
        _ => ("PENDING", None),
    };
    data["transactionStatus"] = status.into();
    if let Some(c) = completion {
        data["result"] = c.result.as_str().into();
        data["resultText"] = c.result_text.as_str().into();
        data["transactionResult"] = c.transaction_result.map(|r| r.as_str()).into();
        data["amountTotal"] = c.fields.get("AmountTotal").cloned().into();
        data["amountTip"] = c.fields.get("AmountTip").cloned().into();
        data["amountSurcharge"] = c.fields.get("AmountSurcharge").cloned().into();
        data["cardType"] = c.fields.get("CardType").cloned().into();
        data["authId"] = c.fields.get("AuthId").cloned().into();
        data["completedAt"] = c
            .completed_at
            .to_rfc3339_opts(SecondsFormat::Millis, true)
            .into();
    }
    data
}

fn about_transaction(
    kind: EventType,
    tx: &TransactionRecord,
    phase: &Phase,
    at: DateTime<Utc>,
) -> NewEvent {
    NewEvent {
        id: EventId::new(),
        kind,
        at,
        merchant_id: Some(tx.merchant_id.clone()),
        vendor: Some(tx.register.key.vendor_name.clone()),
        device_id: Some(tx.device_id.clone()),
        data: transaction_data(tx, phase),
    }
}

/// What a change of a transaction adds to the log as it moves from `before` (none: it is being
/// stored) to `phase`: `transaction.created` when it is stored, `transaction.completed` when it
/// completes, and for an approved follow-up or settlement its own event beside it. Nothing for
/// the steps between.
pub fn for_transaction(
    before: Option<&Phase>,
    tx: &TransactionRecord,
    phase: &Phase,
) -> Vec<NewEvent> {
    let mut events = Vec::new();
    let at = match phase {
        Phase::Completed(c) => c.completed_at,
        _ => tx.created_at,
    };
    if before.is_none() {
        events.push(about_transaction(
            EventType::TransactionCreated,
            tx,
            phase,
            tx.created_at,
        ));
    }
    let was_completed = matches!(before, Some(Phase::Completed(_)));
    if let (Phase::Completed(c), false) = (phase, was_completed) {
        events.push(about_transaction(
            EventType::TransactionCompleted,
            tx,
            phase,
            at,
        ));
        let approved = c.transaction_result == Some(TransactionResult::Accepted)
            || (!tx.request.function.is_financial() && c.result == protocol::ResultCode::Ok);
        let special = match tx.request.function {
            Function::CardRefund => Some(EventType::RefundCompleted),
            Function::CardVoid => Some(EventType::VoidCompleted),
            Function::CardTipAdjust => Some(EventType::AdjustmentCompleted),
            Function::AcquirerSettlementCutover => Some(EventType::SettlementCompleted),
            _ => None,
        };
        if let (Some(kind), true) = (special, approved) {
            let mut e = about_transaction(kind, tx, phase, at);
            if kind == EventType::SettlementCompleted {
                // The terminal's totals as it reported them; the reconciliation report is
                // computed from the stored result on request.
                let totals: serde_json::Map<String, Value> = c
                    .fields
                    .iter()
                    .filter(|(k, _)| {
                        k.ends_with("Count") || k.ends_with("Total") || *k == "SettlementDate"
                    })
                    .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                    .collect();
                e.data["terminalTotals"] = Value::Object(totals);
                // The batch by card type, when the terminal reported one, and where its
                // reconciliation against the cloud's records is read.
                if let Some(batch) = &c.settlement {
                    e.data["periodStart"] = batch.period_start.clone().into();
                    e.data["periodEnd"] = batch.period_end.clone().into();
                    e.data["totalsByCardType"] = batch
                        .totals
                        .iter()
                        .map(|t| {
                            json!({
                                "cardType": t.card_type,
                                "purchaseCount": t.purchase_count,
                                "purchaseAmount": t.purchase_amount.to_string(),
                                "refundCount": t.refund_count,
                                "refundAmount": t.refund_amount.to_string(),
                            })
                        })
                        .collect();
                }
                e.data["reconciliation"] =
                    format!("/admin/settlements/{}/reconciliation", tx.id).into();
            }
            events.push(e);
        }
    }
    events
}

/// A device's connection opened (`connected`) or closed.
pub fn device_connection(
    device: &DeviceId,
    node: &str,
    connected: bool,
    at: DateTime<Utc>,
) -> NewEvent {
    NewEvent {
        id: EventId::new(),
        kind: if connected {
            EventType::DeviceConnected
        } else {
            EventType::DeviceDisconnected
        },
        at,
        merchant_id: None,
        vendor: None,
        device_id: Some(device.clone()),
        data: json!({ "deviceId": device.as_str(), "node": node }),
    }
}

fn pairing(kind: EventType, device: &DeviceId, key: &RegisterKey, at: DateTime<Utc>) -> NewEvent {
    NewEvent {
        id: EventId::new(),
        kind,
        at,
        merchant_id: None,
        vendor: Some(key.vendor_name.clone()),
        device_id: Some(device.clone()),
        data: json!({
            "deviceId": device.as_str(),
            "registerId": key.register_id,
            "businessName": key.business_name,
            "vendorName": key.vendor_name,
        }),
    }
}

/// A register was paired to a device (`name`: the register's name).
pub fn paired(device: &DeviceId, key: &RegisterKey, name: &str, at: DateTime<Utc>) -> NewEvent {
    let mut e = pairing(EventType::PairingPaired, device, key, at);
    e.data["registerName"] = name.into();
    e
}

/// A register was unpaired from a device.
pub fn unpaired(device: &DeviceId, key: &RegisterKey, at: DateTime<Utc>) -> NewEvent {
    pairing(EventType::PairingUnpaired, device, key, at)
}

/// A device confirmed it runs configuration `version`.
pub fn config_applied(device: &DeviceId, version: u64, at: DateTime<Utc>) -> NewEvent {
    NewEvent {
        id: EventId::new(),
        kind: EventType::ConfigApplied,
        at,
        merchant_id: None,
        vendor: None,
        device_id: Some(device.clone()),
        data: json!({ "deviceId": device.as_str(), "configVersion": version }),
    }
}

/// A device reported a step of an update campaign.
pub fn update_step(campaign: &str, s: &super::campaigns::StepRecord) -> NewEvent {
    NewEvent {
        id: EventId::new(),
        kind: EventType::UpdateStep,
        at: s.at,
        merchant_id: None,
        vendor: None,
        device_id: Some(s.device_id.clone()),
        data: json!({
            "deviceId": s.device_id.as_str(),
            "campaignId": campaign,
            "version": s.version,
            "step": s.step.as_str(),
            "reason": s.reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_and_unknown_names_are_refused() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
        }
        assert!(matches!(
            "transaction.complete".parse::<EventType>(),
            Err(EventError::UnknownType(_))
        ));
        let mut names: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventType::ALL.len());
    }

    #[test]
    fn cursors_round_trip_and_order_by_epoch_then_seq() {
        let c = Cursor { epoch: 7, seq: 42 };
        assert_eq!(c.to_string(), "7-42");
        assert_eq!("7-42".parse::<Cursor>(), Ok(c));
        assert_eq!("0-0".parse::<Cursor>(), Ok(Cursor::START));
        for bad in [
            "",
            "7",
            "7-",
            "-1",
            "a-1",
            "1-b",
            "1--2",
            "+1-2",
            "1-2-3",
            "99999999999999999999-1",
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad}");
        }
        assert!(Cursor { epoch: 1, seq: 0 } > Cursor { epoch: 0, seq: 99 });
        assert!(Cursor { epoch: 1, seq: 5 } > Cursor { epoch: 1, seq: 4 });
    }

    #[test]
    fn event_ids_parse_only_their_own_shape() {
        let id = EventId::new();
        assert_eq!(EventId::parse(id.as_str()), Ok(id.clone()));
        assert!(id.as_str().starts_with("evt_") && id.as_str().len() == 36);
        assert!(EventId::parse("evt_nope").is_err());
        assert!(EventId::parse(&id.as_str()[4..]).is_err());
        // Later ids sort later (time-ordered), which keeps logs readable.
        assert!(EventId::new() > id);
    }

    #[test]
    fn type_filters_take_names_families_and_star() {
        let f = TypeFilter::parse_list("transaction.completed, device.*").unwrap_or_default();
        assert!(f.matches(EventType::TransactionCompleted));
        assert!(f.matches(EventType::DeviceConnected));
        assert!(f.matches(EventType::DeviceDisconnected));
        assert!(!f.matches(EventType::TransactionCreated));
        assert_eq!(
            f.types(),
            vec![
                EventType::TransactionCompleted,
                EventType::DeviceConnected,
                EventType::DeviceDisconnected
            ]
        );
        assert_eq!(f.names(), vec!["transaction.completed", "device.*"]);
        let all = TypeFilter::parse_list("*").unwrap_or_default();
        assert!(all.is_all() && EventType::ALL.iter().all(|t| all.matches(*t)));
        assert_eq!(all.names(), vec!["*"]);
        assert!(TypeFilter::parse_list("").is_ok_and(|f| f.is_all()));
        assert!(TypeFilter::parse_list("nope.*").is_err());
        assert!(TypeFilter::parse_list("transaction.created,bogus").is_err());
        // Repeats collapse.
        let twice = TypeFilter::parse_list("refund.completed,refund.completed").unwrap_or_default();
        assert_eq!(twice.names(), vec!["refund.completed"]);
    }

    fn record(function: Function, phase: Phase) -> TransactionRecord {
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let mut request = protocol::TransactionRequest::of(function);
        request.amount_total = protocol::Cents::new(500).ok();
        TransactionRecord {
            id: protocol::TransactionId::new(),
            device_id: DeviceId::parse("dev-1").unwrap_or_else(|_| unreachable!()),
            register: protocol::RegisterInfo {
                key: RegisterKey {
                    register_id: "r1".into(),
                    business_name: "Shop".into(),
                    vendor_name: "Till2Go".into(),
                },
                register_name: "Main".into(),
            },
            merchant_id: MerchantId::new(),
            merchant: String::new(),
            request,
            sale_data: None,
            callback_url: None,
            pos_reference: Some("sale-1".into()),
            fingerprint: String::new(),
            token: String::new(),
            token_expires_at: at,
            created_at: at,
            phase,
            display_text: None,
        }
    }

    fn completed(result: Option<TransactionResult>, fields: &[(&str, &str)]) -> Phase {
        use crate::domain::lifecycle::{CompletedBy, Completion};
        Phase::Completed(Completion {
            by: CompletedBy::Device,
            transaction_result: result,
            result: protocol::ResultCode::Ok,
            result_text: "APPROVED".into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            completed_at: DateTime::<Utc>::from_timestamp(1_700_000_009, 0).unwrap_or_default(),
            receipts: None,
            settlement: None,
        })
    }

    fn kinds(events: &[NewEvent]) -> Vec<EventType> {
        events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn a_transaction_logs_its_creation_and_its_completion_once() {
        let started = Phase::Started {
            started_at: Utc::now(),
        };
        let tx = record(Function::CardPurchase, started.clone());
        let created = for_transaction(None, &tx, &tx.phase);
        assert_eq!(kinds(&created), vec![EventType::TransactionCreated]);
        let e = &created[0];
        assert_eq!(e.merchant_id.as_ref(), Some(&tx.merchant_id));
        assert_eq!(e.vendor.as_deref(), Some("Till2Go"));
        assert_eq!(e.data["transactionId"], tx.id.to_string());
        assert_eq!(e.data["transactionStatus"], "PENDING");
        assert_eq!(e.data["posReference"], "sale-1");
        assert_eq!(e.data["amountAsked"], "500");
        // Steps between creation and completion log nothing.
        assert!(for_transaction(Some(&started), &tx, &tx.phase).is_empty());
        let done = record(
            Function::CardPurchase,
            completed(
                Some(TransactionResult::Accepted),
                &[("AmountTotal", "500"), ("CardType", "VISA")],
            ),
        );
        let completion = for_transaction(Some(&started), &done, &done.phase);
        assert_eq!(kinds(&completion), vec![EventType::TransactionCompleted]);
        let d = &completion[0].data;
        assert_eq!(d["transactionStatus"], "COMPLETED");
        assert_eq!(d["transactionResult"], "OK-ACCEPTED");
        assert_eq!(d["amountTotal"], "500");
        assert_eq!(d["cardType"], "VISA");
        assert_eq!(completion[0].at, done.completed_at().unwrap_or_default());
        // Completed to completed (a late result kept out) logs nothing more.
        assert!(for_transaction(Some(&done.phase), &done, &done.phase).is_empty());
        // Stored already completed (a status answered by the cloud): both at once.
        assert_eq!(
            kinds(&for_transaction(None, &done, &done.phase)),
            vec![
                EventType::TransactionCreated,
                EventType::TransactionCompleted
            ]
        );
    }

    #[test]
    fn approved_follow_ups_and_cutovers_log_their_own_event() {
        let started = Phase::Started {
            started_at: Utc::now(),
        };
        let approved = || completed(Some(TransactionResult::Accepted), &[]);
        for (function, kind) in [
            (Function::CardRefund, EventType::RefundCompleted),
            (Function::CardVoid, EventType::VoidCompleted),
            (Function::CardTipAdjust, EventType::AdjustmentCompleted),
        ] {
            let tx = record(function, approved());
            assert_eq!(
                kinds(&for_transaction(Some(&started), &tx, &tx.phase)),
                vec![EventType::TransactionCompleted, kind],
                "{function:?}"
            );
            let declined = record(function, completed(Some(TransactionResult::Declined), &[]));
            assert_eq!(
                kinds(&for_transaction(Some(&started), &declined, &declined.phase)),
                vec![EventType::TransactionCompleted]
            );
        }
        let cutover = record(
            Function::AcquirerSettlementCutover,
            completed(
                None,
                &[
                    ("PurchaseCount", "2"),
                    ("PurchaseTotal", "1500"),
                    ("Receipt", "..."),
                ],
            ),
        );
        let events = for_transaction(Some(&started), &cutover, &cutover.phase);
        assert_eq!(
            kinds(&events),
            vec![
                EventType::TransactionCompleted,
                EventType::SettlementCompleted
            ]
        );
        assert_eq!(
            events[1].data["terminalTotals"],
            json!({"PurchaseCount": "2", "PurchaseTotal": "1500"})
        );
        // Not a follow-up: a purchase logs no refund.
        let purchase = record(Function::CardPurchase, approved());
        assert_eq!(
            kinds(&for_transaction(Some(&started), &purchase, &purchase.phase)).len(),
            1
        );
    }

    #[test]
    fn device_pairing_config_and_update_events_name_their_device() {
        let d = DeviceId::parse("dev-9").unwrap_or_else(|_| unreachable!());
        let key = RegisterKey {
            register_id: "r".into(),
            business_name: "b".into(),
            vendor_name: "V".into(),
        };
        let at = Utc::now();
        let events = [
            device_connection(&d, "node-1", true, at),
            device_connection(&d, "node-1", false, at),
            paired(&d, &key, "Front", at),
            unpaired(&d, &key, at),
            config_applied(&d, 3, at),
            update_step(
                "c1",
                &crate::domain::campaigns::StepRecord {
                    device_id: d.clone(),
                    at,
                    version: "2.0.0".into(),
                    step: protocol::update::UpdateStep::Installed,
                    reason: None,
                },
            ),
        ];
        assert_eq!(
            kinds(&events),
            vec![
                EventType::DeviceConnected,
                EventType::DeviceDisconnected,
                EventType::PairingPaired,
                EventType::PairingUnpaired,
                EventType::ConfigApplied,
                EventType::UpdateStep
            ]
        );
        for e in &events {
            assert_eq!(e.device_id.as_ref(), Some(&d));
            assert_eq!(e.data["deviceId"], "dev-9");
            // The store fills the merchant from the device's row.
            assert_eq!(e.merchant_id, None);
        }
        assert_eq!(events[2].vendor.as_deref(), Some("V"));
        assert_eq!(events[2].data["registerName"], "Front");
        assert_eq!(events[4].data["configVersion"], 3);
    }

    fn event(merchant: Option<MerchantId>, vendor: Option<&str>) -> NewEvent {
        NewEvent {
            id: EventId::new(),
            kind: EventType::TransactionCreated,
            at: Utc::now(),
            merchant_id: merchant,
            vendor: vendor.map(str::to_string),
            device_id: None,
            data: json!({}),
        }
    }

    #[test]
    fn audiences_see_their_own_only() {
        let (a, b) = (MerchantId::new(), MerchantId::new());
        let of_a = event(Some(a.clone()), Some("Till2Go"));
        let of_b = event(Some(b), Some("Other"));
        let installation = event(None, None);
        let merchant = Audience::of(&KeyOwner::Merchant(a));
        assert!(merchant.sees(&of_a) && !merchant.sees(&of_b) && !merchant.sees(&installation));
        let vendor = Audience::of(&KeyOwner::Vendor("Till2Go".into()));
        assert!(vendor.sees(&of_a) && !vendor.sees(&of_b) && !vendor.sees(&installation));
        let all = Audience::of(&KeyOwner::Installation);
        assert!(all.sees(&of_a) && all.sees(&of_b) && all.sees(&installation));
    }
}
