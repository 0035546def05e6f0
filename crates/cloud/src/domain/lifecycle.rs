//! The transaction lifecycle as a pure state machine: (phase, event) → (next phase, effects,
//! timeline).
//!
//! [`admit`] decides a new request's first phase (offered, or completed at once for an offline
//! device or a status asked of a busy one); then `offered` (sent to the device) → `started`
//! (device accepted, told to start) → `completed` (a result is stored), by [`step`]; and
//! [`shows_delayed`] says when a started transaction is reported to the POS as `OK-DELAYED`.
//! No I/O here: the engine loads the phase from the store, calls [`step`], writes the next
//! phase and its timeline with a compare-and-set, then carries out the effects.

use super::timeline::{outcome_text, EventKind, TimelineEvent};
use chrono::{DateTime, Utc};
use protocol::device::DeviceResult;
use protocol::{Function, ResultCode, TerminalStatus, TransactionRequest, TransactionResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Where a transaction stands.
// Most transactions a node holds are completed (records read for polls, searches, reports):
// boxing the completion would cost an allocation per record read to save the few bytes of the
// other two phases.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Sent to the device, waiting for `accept` until the deadline.
    Offered { accept_deadline: DateTime<Utc> },
    /// The device was told to start; only the device knows the outcome now.
    Started { started_at: DateTime<Utc> },
    /// Final. Never changes again.
    Completed(Completion),
}

/// Which side decided the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompletedBy {
    /// The device reported a result.
    Device,
    /// The cloud decided without the device (offline, no accept in time, cancelled before start).
    Cloud,
}

/// A final outcome, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    pub by: CompletedBy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_result: Option<TransactionResult>,
    pub result: ResultCode,
    pub result_text: String,
    /// Further `data` fields (device-reported, or `Status` for a cloud-answered status).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// The receipts as structured data, when the device reported them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipts: Option<protocol::action::Receipts>,
    /// A settlement's batch as the device reported it, kept for reconciliation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<Box<protocol::settlement::SettlementBatch>>,
    pub completed_at: DateTime<Utc>,
}

/// Why the cloud ended a transaction without the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudReason {
    /// The device was not connected, or its connection closed before it accepted.
    DeviceOffline,
    /// The device did not accept within the accept timeout.
    NoAcceptInTime,
    /// The POS cancelled before the device started.
    CancelledByPos,
}

impl CloudReason {
    fn text(self) -> &'static str {
        match self {
            CloudReason::DeviceOffline => "Device is offline",
            CloudReason::NoAcceptInTime => "Device did not respond in time",
            CloudReason::CancelledByPos => "Cancelled by the POS",
        }
    }
}

impl Completion {
    /// The outcome the cloud gives when it ends a transaction itself. The device never ran it,
    /// so no card was charged.
    pub fn by_cloud(function: Function, reason: CloudReason, now: DateTime<Utc>) -> Self {
        let (transaction_result, result) = match reason {
            CloudReason::DeviceOffline | CloudReason::NoAcceptInTime => {
                (TransactionResult::Cancelled, ResultCode::FailedInterface)
            }
            CloudReason::CancelledByPos => (TransactionResult::Cancelled, ResultCode::Cancelled),
        };
        let mut fields = BTreeMap::new();
        if function == Function::TerminalGetStatus && reason != CloudReason::CancelledByPos {
            fields.insert("Status".to_string(), TerminalStatus::Offline.to_string());
        }
        // An action the POS cancelled says so as a device's cancel would.
        if function.is_action() && reason == CloudReason::CancelledByPos {
            fields.insert(
                protocol::action::field::CANCEL_REASON.to_string(),
                protocol::action::cancel_reason::POS.to_string(),
            );
        }
        Completion {
            by: CompletedBy::Cloud,
            transaction_result: function.is_financial().then_some(transaction_result),
            result,
            result_text: reason.text().to_string(),
            fields,
            receipts: None,
            settlement: None,
            completed_at: now,
        }
    }

    /// The outcome the device reported (checked by [`valid_device_result`] first).
    pub fn from_device(r: &DeviceResult, now: DateTime<Utc>) -> Self {
        Completion {
            by: CompletedBy::Device,
            transaction_result: r.transaction_result,
            result: r.result,
            result_text: r.result_text.clone(),
            fields: r.fields.clone(),
            receipts: r.receipts.clone(),
            settlement: r.settlement.clone(),
            completed_at: now,
        }
    }

    /// A `Terminal.GetStatus` the cloud answers itself, for a device that is busy: the status
    /// it last reported (`REVERSAL_PENDING` while it reverses an interrupted payment), else
    /// `BUSY`.
    pub fn busy_status(reported: Option<TerminalStatus>, now: DateTime<Utc>) -> Self {
        let (status, text) = match reported {
            Some(TerminalStatus::ReversalPending) => {
                (TerminalStatus::ReversalPending, "Reversal pending")
            }
            _ => (TerminalStatus::Busy, "Device is busy"),
        };
        let mut fields = BTreeMap::new();
        fields.insert(
            protocol::pos_api::keys::STATUS.to_string(),
            status.to_string(),
        );
        Completion {
            by: CompletedBy::Cloud,
            transaction_result: None,
            result: ResultCode::Ok,
            result_text: text.to_string(),
            fields,
            receipts: None,
            settlement: None,
            completed_at: now,
        }
    }

    /// Whether the function succeeded: accepted for financial functions, `Result: OK` otherwise.
    pub fn is_success(&self) -> bool {
        match self.transaction_result {
            Some(t) => t.is_accepted(),
            None => self.result == ResultCode::Ok,
        }
    }
}

/// Whether a device's result can be stored as the outcome of `function`. A financial result
/// must say what happened to the money: guessing it from `Result` could turn a decline into an
/// approval, so such a result is refused (and stays in the device's journal until fixed).
pub fn valid_device_result(function: Function, r: &DeviceResult) -> Result<(), &'static str> {
    if function.is_financial() && r.transaction_result.is_none() {
        return Err("a financial result needs transaction_result");
    }
    if r.transaction_result == Some(TransactionResult::Delayed) {
        return Err("OK-DELAYED is not a final result");
    }
    Ok(())
}

/// Something that happened to a transaction.
// An event lives from a frame's parsing to its step, one at a time: boxing the device's result
// would cost an allocation per result to save stack that is never held in bulk.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The device sent `accept`.
    Accepted,
    /// The deadline loop found the accept deadline passed (or checks it at `now`).
    AcceptDeadlineCheck,
    /// The device reported an outcome.
    DeviceResult(DeviceResult),
    /// The device's connection closed (and no other connection for it exists).
    DeviceGone,
    /// The POS asked to cancel.
    CancelRequested,
}

/// What the engine must do after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send the request to the device (`transaction`): it runs nothing before `start`.
    SendOffer,
    /// Tell the device to go ahead.
    SendStart,
    /// Tell the device not to run it (it may have the offer, it must not charge).
    SendAbort(&'static str),
    /// Ask the device to stop.
    SendCancel,
    /// Acknowledge the device's result so it can drop it from its outbox.
    SendResultAck,
    /// The transaction reached its final state: wake waiters, send callbacks.
    Completed,
    /// The device reported a result for a transaction the cloud had already ended itself.
    /// The stored outcome stands (the POS has it); this must be looked at by a person.
    Conflict,
    /// The POS asked to cancel a transaction that is already final.
    AlreadyCompleted,
    /// The device's result cannot be stored (see [`valid_device_result`]); it is not
    /// acknowledged, so the device keeps it.
    RejectResult(String),
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The phase to write, if it changes.
    pub next: Option<Phase>,
    /// What to do once it is written.
    pub effects: Vec<Effect>,
    /// What to append to the transaction's timeline, in the same write.
    pub timeline: Vec<TimelineEvent>,
}

/// What [`decide`] returns before the timeline is added.
struct Decision {
    next: Option<Phase>,
    effects: Vec<Effect>,
}

impl Decision {
    fn stay(effects: Vec<Effect>) -> Self {
        Decision {
            next: None,
            effects,
        }
    }
    fn to(next: Phase, effects: Vec<Effect>) -> Self {
        Decision {
            next: Some(next),
            effects,
        }
    }
}

/// What the cloud knows of the device when a POS request for it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceState {
    /// Some node holds a connection for it.
    pub online: bool,
    /// It has a transaction in progress (one at a time per device).
    pub busy: bool,
    /// The state it last reported (`status` frame), where known.
    pub reported: Option<TerminalStatus>,
}

/// A request the device cannot take now: it already runs a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceBusy;

/// A new request's beginning, decided by [`admit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The first phase to store.
    pub phase: Phase,
    /// What to do once it is stored: [`Effect::SendOffer`], or [`Effect::Completed`].
    pub effects: Vec<Effect>,
    /// The first entries of its timeline.
    pub timeline: Vec<TimelineEvent>,
}

/// The first decision about a new request: its first phase, what to do, and its first timeline
/// entries. A busy device refuses everything but `Terminal.GetStatus`,
/// which the cloud answers itself ("busy" is the status the POS wants to know); an offline
/// device gets a definite `FAILED-INTERFACE` at once; otherwise the request is offered, to be
/// accepted within `accept_timeout`.
pub fn admit(
    function: Function,
    device: DeviceState,
    now: DateTime<Utc>,
    accept_timeout: Duration,
) -> Result<Admission, DeviceBusy> {
    let (phase, effects) = if device.busy {
        if function != Function::TerminalGetStatus {
            return Err(DeviceBusy);
        }
        (
            Phase::Completed(Completion::busy_status(device.reported, now)),
            vec![Effect::Completed],
        )
    } else if !device.online {
        (
            Phase::Completed(Completion::by_cloud(
                function,
                CloudReason::DeviceOffline,
                now,
            )),
            vec![Effect::Completed],
        )
    } else {
        let accept_deadline =
            now + chrono::Duration::from_std(accept_timeout).unwrap_or(chrono::Duration::MAX);
        (Phase::Offered { accept_deadline }, vec![Effect::SendOffer])
    };
    let mut timeline = vec![TimelineEvent::new(
        now,
        EventKind::Received,
        function.as_str(),
    )];
    match &phase {
        Phase::Offered { .. } => timeline.push(TimelineEvent::new(now, EventKind::Offered, "")),
        Phase::Completed(c) => timeline.push(TimelineEvent::new(
            now,
            EventKind::Completed,
            outcome_text(c),
        )),
        Phase::Started { .. } => {}
    }
    Ok(Admission {
        phase,
        effects,
        timeline,
    })
}

/// Whether a transaction in `phase` is reported to the POS as `OK-DELAYED` at `now`: started,
/// and for at least `delayed_after` (the device is late; only it knows the outcome). An offer
/// is never delayed (it ends definitely at its deadline), nor is a completed transaction.
pub fn shows_delayed(phase: &Phase, now: DateTime<Utc>, delayed_after: Duration) -> bool {
    match phase {
        Phase::Started { started_at } => (now - *started_at)
            .to_std()
            .is_ok_and(|running| running >= delayed_after),
        Phase::Offered { .. } | Phase::Completed(_) => false,
    }
}

/// What a step knows of the job it moves: its function and, when the caller has it, what was
/// asked, so that a terminal action's answer is checked against its request. A bare function
/// (the tables of the tests) checks what the function alone decides.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    pub function: Function,
    pub request: Option<&'a TransactionRequest>,
}

impl From<Function> for Job<'static> {
    fn from(function: Function) -> Self {
        Job {
            function,
            request: None,
        }
    }
}

impl<'a> From<&'a TransactionRequest> for Job<'a> {
    fn from(request: &'a TransactionRequest) -> Self {
        Job {
            function: request.function,
            request: Some(request),
        }
    }
}

/// Whether a device's result can be stored as the job's outcome: the function's rules
/// ([`valid_device_result`]), then a terminal action's ([`super::actions::check_result`]).
fn valid_result(job: Job<'_>, r: &DeviceResult) -> Result<(), String> {
    valid_device_result(job.function, r).map_err(str::to_string)?;
    match job.request {
        Some(request) => super::actions::check_result(request, r),
        None => Ok(()),
    }
}

/// The state machine. Total: every (phase, event) pair has an answer, duplicates included.
pub fn step<'a>(job: impl Into<Job<'a>>, phase: &Phase, event: &Event, now: DateTime<Utc>) -> Step {
    let job = job.into();
    let Decision { next, effects } = decide(job, phase, event, now);
    let timeline = timeline_of(phase, event, next.as_ref(), &effects, now);
    Step {
        next,
        effects,
        timeline,
    }
}

/// The transitions.
fn decide(job: Job<'_>, phase: &Phase, event: &Event, now: DateTime<Utc>) -> Decision {
    let function = job.function;
    use Effect::*;
    let cloud_end = |reason| Phase::Completed(Completion::by_cloud(function, reason, now));
    match (phase, event) {
        // Offered.
        (Phase::Offered { accept_deadline }, Event::Accepted) => {
            if now < *accept_deadline {
                Decision::to(Phase::Started { started_at: now }, vec![SendStart])
            } else {
                Decision::to(
                    cloud_end(CloudReason::NoAcceptInTime),
                    vec![SendAbort("accept arrived after the deadline"), Completed],
                )
            }
        }
        (Phase::Offered { accept_deadline }, Event::AcceptDeadlineCheck) => {
            if now >= *accept_deadline {
                Decision::to(
                    cloud_end(CloudReason::NoAcceptInTime),
                    vec![SendAbort("not accepted in time"), Completed],
                )
            } else {
                Decision::stay(vec![])
            }
        }
        (Phase::Offered { .. }, Event::DeviceGone) => Decision::to(
            cloud_end(CloudReason::DeviceOffline),
            vec![SendAbort("device went offline before accepting"), Completed],
        ),
        (Phase::Offered { .. }, Event::CancelRequested) => Decision::to(
            cloud_end(CloudReason::CancelledByPos),
            vec![SendAbort("cancelled by the POS"), Completed],
        ),
        // A result without a recorded start: the device is the only one that knows whether a
        // card was charged, so its report is the truth and is kept.
        (Phase::Offered { .. } | Phase::Started { .. }, Event::DeviceResult(r)) => {
            match valid_result(job, r) {
                Ok(()) => Decision::to(
                    Phase::Completed(Completion::from_device(r, now)),
                    vec![SendResultAck, Completed],
                ),
                Err(why) => Decision::stay(vec![RejectResult(why)]),
            }
        }

        // Started: only the device can end it.
        (Phase::Started { .. }, Event::Accepted) => Decision::stay(vec![SendStart]),
        (Phase::Started { .. }, Event::AcceptDeadlineCheck | Event::DeviceGone) => {
            Decision::stay(vec![])
        }
        (Phase::Started { .. }, Event::CancelRequested) => Decision::stay(vec![SendCancel]),

        // Completed: final; answer duplicates and late messages without changing anything.
        (Phase::Completed(c), Event::Accepted) => match c.by {
            CompletedBy::Cloud => Decision::stay(vec![SendAbort("transaction already ended")]),
            CompletedBy::Device => Decision::stay(vec![]),
        },
        (Phase::Completed(c), Event::DeviceResult(_)) => match c.by {
            CompletedBy::Device => Decision::stay(vec![SendResultAck]),
            CompletedBy::Cloud => Decision::stay(vec![SendResultAck, Conflict]),
        },
        (Phase::Completed(_), Event::AcceptDeadlineCheck | Event::DeviceGone) => {
            Decision::stay(vec![])
        }
        (Phase::Completed(_), Event::CancelRequested) => Decision::stay(vec![AlreadyCompleted]),
    }
}

/// The timeline entries of one step.
fn timeline_of(
    prev: &Phase,
    event: &Event,
    next: Option<&Phase>,
    effects: &[Effect],
    now: DateTime<Utc>,
) -> Vec<TimelineEvent> {
    let mut out = Vec::new();
    let mut push = |kind, detail: String| out.push(TimelineEvent::new(now, kind, detail));
    if matches!(event, Event::CancelRequested) && !effects.contains(&Effect::AlreadyCompleted) {
        push(EventKind::CancelRequested, String::new());
    }
    for effect in effects {
        match effect {
            Effect::SendOffer => push(EventKind::Offered, String::new()),
            Effect::SendStart => {
                if matches!(prev, Phase::Offered { .. }) {
                    push(EventKind::Accepted, String::new());
                    push(EventKind::Started, String::new());
                }
            }
            Effect::SendAbort(reason) => push(EventKind::Aborted, (*reason).to_string()),
            Effect::SendCancel => push(EventKind::CancelSent, String::new()),
            Effect::SendResultAck => {
                // Only the result that completed the transaction is worth a line; duplicates
                // are answered without noise.
                if let Some(Phase::Completed(c)) = next {
                    if c.by == CompletedBy::Device {
                        push(EventKind::Result, outcome_text(c));
                        push(EventKind::ResultAcknowledged, String::new());
                    }
                }
            }
            Effect::Completed => {
                if let Some(Phase::Completed(c)) = next {
                    push(EventKind::Completed, outcome_text(c));
                }
            }
            Effect::Conflict => push(
                EventKind::Conflict,
                "result after the cloud ended the transaction; stored outcome kept".into(),
            ),
            Effect::RejectResult(why) => push(EventKind::ResultRefused, why.clone()),
            Effect::AlreadyCompleted => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use proptest::prelude::*;
    use protocol::TransactionId;

    fn t0() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn device_result(r: TransactionResult) -> DeviceResult {
        DeviceResult {
            transaction_id: TransactionId::new(),
            transaction_result: Some(r),
            result: ResultCode::Ok,
            result_text: "APPROVED".into(),
            fields: BTreeMap::new(),
            receipts: None,
            settlement: None,
        }
    }

    fn arb_phase() -> impl Strategy<Value = Phase> {
        prop_oneof![
            (-5i64..5).prop_map(|s| Phase::Offered {
                accept_deadline: t0() + Duration::seconds(s)
            }),
            Just(Phase::Started { started_at: t0() }),
            prop_oneof![Just(CompletedBy::Device), Just(CompletedBy::Cloud)].prop_map(|by| {
                let mut c =
                    Completion::by_cloud(Function::CardPurchase, CloudReason::DeviceOffline, t0());
                c.by = by;
                Phase::Completed(c)
            }),
        ]
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            Just(Event::Accepted),
            Just(Event::AcceptDeadlineCheck),
            Just(Event::DeviceGone),
            Just(Event::CancelRequested),
            prop_oneof![
                Just(TransactionResult::Accepted),
                Just(TransactionResult::Declined),
                Just(TransactionResult::Cancelled)
            ]
            .prop_map(|r| Event::DeviceResult(device_result(r))),
        ]
    }

    /// Every function a job can have: SmartConnect's, the follow-ups and the actions.
    fn every_function() -> Vec<Function> {
        Function::ALL
            .into_iter()
            .chain(Function::FOLLOW_UPS)
            .chain(Function::ACTIONS)
            .collect()
    }

    fn arb_function() -> impl Strategy<Value = Function> {
        proptest::sample::select(every_function())
    }

    proptest! {
        /// A completed transaction never changes, whatever arrives later.
        #[test]
        fn completed_is_final(phase in arb_phase(), event in arb_event(), f in arb_function()) {
            if let Phase::Completed(_) = phase {
                let s = step(f, &phase, &event, t0());
                prop_assert_eq!(s.next, None);
                prop_assert!(!s.effects.contains(&Effect::Completed));
                prop_assert!(!s.effects.contains(&Effect::SendStart));
            }
        }

        /// `Completed` is announced exactly when the phase becomes completed.
        #[test]
        fn completed_effect_iff_transition_to_completed(phase in arb_phase(), event in arb_event(), f in arb_function()) {
            let s = step(f, &phase, &event, t0());
            let became_completed = matches!(s.next, Some(Phase::Completed(_)));
            prop_assert_eq!(became_completed, s.effects.contains(&Effect::Completed));
        }

        /// The device is told to start only from offered (in time) or started (duplicate accept):
        /// never for a transaction the POS may already have been told failed.
        #[test]
        fn start_only_when_safe(phase in arb_phase(), event in arb_event(), f in arb_function()) {
            let s = step(f, &phase, &event, t0());
            if s.effects.contains(&Effect::SendStart) {
                prop_assert_eq!(&event, &Event::Accepted);
                match &phase {
                    Phase::Offered { accept_deadline } => prop_assert!(t0() < *accept_deadline),
                    Phase::Started { .. } => {}
                    Phase::Completed(_) => prop_assert!(false, "start after completion"),
                }
            }
        }

        /// Every valid device result is acknowledged, so the device can always empty its outbox;
        /// an invalid one is refused and never becomes the outcome.
        #[test]
        fn every_valid_result_is_acked(phase in arb_phase(), r in arb_event(), f in arb_function(), drop_result in any::<bool>()) {
            if let Event::DeviceResult(mut res) = r {
                if drop_result {
                    res.transaction_result = None;
                }
                let valid = valid_device_result(f, &res).is_ok();
                let s = step(f, &phase, &Event::DeviceResult(res), t0());
                let completed = matches!(phase, Phase::Completed(_));
                prop_assert_eq!(s.effects.contains(&Effect::SendResultAck), valid || completed);
                if !valid {
                    prop_assert!(!matches!(s.next, Some(Phase::Completed(_))));
                }
            }
        }

        /// Applying the same event twice changes nothing the second time (idempotent duplicates),
        /// except that a repeated accept or result is answered again.
        #[test]
        fn duplicates_are_harmless(phase in arb_phase(), event in arb_event(), f in arb_function()) {
            let first = step(f, &phase, &event, t0());
            let after = first.next.clone().unwrap_or(phase.clone());
            let second = step(f, &after, &event, t0());
            prop_assert_eq!(second.next, None);
            prop_assert!(!second.effects.contains(&Effect::Completed));
        }

        /// The cloud never invents an approval: whatever it completes by itself is not a success.
        #[test]
        fn cloud_never_approves(phase in arb_phase(), event in arb_event(), f in arb_function()) {
            let s = step(f, &phase, &event, t0());
            if let Some(Phase::Completed(c)) = s.next {
                if c.by == CompletedBy::Cloud {
                    prop_assert!(!c.is_success() || !f.is_financial());
                    prop_assert_ne!(c.result, ResultCode::Ok);
                }
            }
        }
    }

    #[test]
    fn happy_path() {
        let f = Function::CardPurchase;
        let offered = Phase::Offered {
            accept_deadline: t0() + Duration::seconds(10),
        };
        let s = step(f, &offered, &Event::Accepted, t0());
        assert_eq!(s.effects, vec![Effect::SendStart]);
        let started = s.next.unwrap_or(offered);
        let s = step(
            f,
            &started,
            &Event::DeviceResult(device_result(TransactionResult::Accepted)),
            t0(),
        );
        assert_eq!(s.effects, vec![Effect::SendResultAck, Effect::Completed]);
        let Some(Phase::Completed(c)) = s.next else {
            panic!("completed")
        };
        assert_eq!(c.transaction_result, Some(TransactionResult::Accepted));
        assert_eq!(c.by, CompletedBy::Device);
    }

    #[test]
    fn late_accept_is_aborted_and_offline_is_definite() {
        let f = Function::CardPurchase;
        let offered = Phase::Offered {
            accept_deadline: t0(),
        };
        let s = step(f, &offered, &Event::Accepted, t0());
        assert!(matches!(s.effects[0], Effect::SendAbort(_)));
        let Some(Phase::Completed(c)) = s.next else {
            panic!("completed")
        };
        assert_eq!(c.transaction_result, Some(TransactionResult::Cancelled));
        assert_eq!(c.result, ResultCode::FailedInterface);
        // Then the late device, should it accept again, is aborted again.
        let s = step(f, &Phase::Completed(c), &Event::Accepted, t0());
        assert!(matches!(s.effects[..], [Effect::SendAbort(_)]));
    }

    #[test]
    fn success_is_an_approval_or_an_ok_status() {
        let approved = Completion::from_device(&device_result(TransactionResult::Accepted), t0());
        assert!(approved.is_success());
        let declined = Completion::from_device(&device_result(TransactionResult::Declined), t0());
        assert!(!declined.is_success());
        let mut status = device_result(TransactionResult::Accepted);
        status.transaction_result = None;
        assert!(Completion::from_device(&status, t0()).is_success());
        status.result = ResultCode::FailedInterface;
        assert!(!Completion::from_device(&status, t0()).is_success());
        assert!(Completion::busy_status(None, t0()).is_success());
    }

    #[test]
    fn status_of_offline_device() {
        let c = Completion::by_cloud(
            Function::TerminalGetStatus,
            CloudReason::DeviceOffline,
            t0(),
        );
        assert_eq!(c.transaction_result, None);
        assert_eq!(c.fields.get("Status").map(String::as_str), Some("OFFLINE"));
    }

    #[test]
    fn cancel_while_started_asks_device() {
        let s = step(
            Function::CardPurchase,
            &Phase::Started { started_at: t0() },
            &Event::CancelRequested,
            t0(),
        );
        assert_eq!(s.next, None);
        assert_eq!(s.effects, vec![Effect::SendCancel]);
    }

    #[test]
    fn financial_result_without_transaction_result_is_refused() {
        let mut r = device_result(TransactionResult::Accepted);
        r.transaction_result = None;
        let started = Phase::Started { started_at: t0() };
        let s = step(
            Function::CardRefund,
            &started,
            &Event::DeviceResult(r.clone()),
            t0(),
        );
        assert_eq!(s.next, None);
        assert!(matches!(s.effects[..], [Effect::RejectResult(_)]));
        // A status result has none, and is fine.
        let s = step(
            Function::TerminalGetStatus,
            &started,
            &Event::DeviceResult(r),
            t0(),
        );
        assert!(matches!(s.next, Some(Phase::Completed(_))));
    }

    // The exhaustive table: every function × phase × event, the next phase, the effects and
    // the timeline written with it.

    /// Phases of the table.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum P {
        OfferedInTime,
        OfferedExpired,
        Started,
        DoneByDevice,
        DoneByCloud,
    }

    /// Events of the table; a result is valid or not for the function at hand.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum E {
        Accept,
        DeadlineCheck,
        Gone,
        Cancel,
        ValidResult,
        InvalidResult,
    }

    /// Where the table says a step goes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum N {
        Stay,
        Start,
        ByDevice,
        ByCloud(CloudReason),
    }

    use EventKind as K;
    const OFFLINE: CloudReason = CloudReason::DeviceOffline;
    const LATE: CloudReason = CloudReason::NoAcceptInTime;
    const CANCELLED: CloudReason = CloudReason::CancelledByPos;

    /// One row: phase, event, where it goes, the effects, the timeline kinds.
    type Row = (P, E, N, Vec<Effect>, Vec<EventKind>);

    #[rustfmt::skip]
    fn table() -> Vec<Row> {
        use Effect::*;
        let refuse = || RejectResult(String::new());
        vec![
            (P::OfferedInTime, E::Accept, N::Start, vec![SendStart], vec![K::Accepted, K::Started]),
            (P::OfferedInTime, E::DeadlineCheck, N::Stay, vec![], vec![]),
            (P::OfferedInTime, E::Gone, N::ByCloud(OFFLINE), vec![SendAbort("device went offline before accepting"), Completed], vec![K::Aborted, K::Completed]),
            (P::OfferedInTime, E::Cancel, N::ByCloud(CANCELLED), vec![SendAbort("cancelled by the POS"), Completed], vec![K::CancelRequested, K::Aborted, K::Completed]),
            (P::OfferedInTime, E::ValidResult, N::ByDevice, vec![SendResultAck, Completed], vec![K::Result, K::ResultAcknowledged, K::Completed]),
            (P::OfferedInTime, E::InvalidResult, N::Stay, vec![refuse()], vec![K::ResultRefused]),

            (P::OfferedExpired, E::Accept, N::ByCloud(LATE), vec![SendAbort("accept arrived after the deadline"), Completed], vec![K::Aborted, K::Completed]),
            (P::OfferedExpired, E::DeadlineCheck, N::ByCloud(LATE), vec![SendAbort("not accepted in time"), Completed], vec![K::Aborted, K::Completed]),
            (P::OfferedExpired, E::Gone, N::ByCloud(OFFLINE), vec![SendAbort("device went offline before accepting"), Completed], vec![K::Aborted, K::Completed]),
            (P::OfferedExpired, E::Cancel, N::ByCloud(CANCELLED), vec![SendAbort("cancelled by the POS"), Completed], vec![K::CancelRequested, K::Aborted, K::Completed]),
            (P::OfferedExpired, E::ValidResult, N::ByDevice, vec![SendResultAck, Completed], vec![K::Result, K::ResultAcknowledged, K::Completed]),
            (P::OfferedExpired, E::InvalidResult, N::Stay, vec![refuse()], vec![K::ResultRefused]),

            // Started: only the device can end it; the cloud never does, whatever happens.
            (P::Started, E::Accept, N::Stay, vec![SendStart], vec![]),
            (P::Started, E::DeadlineCheck, N::Stay, vec![], vec![]),
            (P::Started, E::Gone, N::Stay, vec![], vec![]),
            (P::Started, E::Cancel, N::Stay, vec![SendCancel], vec![K::CancelRequested, K::CancelSent]),
            (P::Started, E::ValidResult, N::ByDevice, vec![SendResultAck, Completed], vec![K::Result, K::ResultAcknowledged, K::Completed]),
            (P::Started, E::InvalidResult, N::Stay, vec![refuse()], vec![K::ResultRefused]),

            // Completed: final.
            (P::DoneByDevice, E::Accept, N::Stay, vec![], vec![]),
            (P::DoneByDevice, E::DeadlineCheck, N::Stay, vec![], vec![]),
            (P::DoneByDevice, E::Gone, N::Stay, vec![], vec![]),
            (P::DoneByDevice, E::Cancel, N::Stay, vec![AlreadyCompleted], vec![]),
            (P::DoneByDevice, E::ValidResult, N::Stay, vec![SendResultAck], vec![]),
            (P::DoneByDevice, E::InvalidResult, N::Stay, vec![SendResultAck], vec![]),

            (P::DoneByCloud, E::Accept, N::Stay, vec![SendAbort("transaction already ended")], vec![K::Aborted]),
            (P::DoneByCloud, E::DeadlineCheck, N::Stay, vec![], vec![]),
            (P::DoneByCloud, E::Gone, N::Stay, vec![], vec![]),
            (P::DoneByCloud, E::Cancel, N::Stay, vec![AlreadyCompleted], vec![]),
            (P::DoneByCloud, E::ValidResult, N::Stay, vec![SendResultAck, Conflict], vec![K::Conflict]),
            (P::DoneByCloud, E::InvalidResult, N::Stay, vec![SendResultAck, Conflict], vec![K::Conflict]),
        ]
    }

    fn phase_of(p: P, f: Function) -> Phase {
        match p {
            P::OfferedInTime => Phase::Offered {
                accept_deadline: t0() + Duration::seconds(1),
            },
            // The deadline is the moment itself: from then on an accept is late.
            P::OfferedExpired => Phase::Offered {
                accept_deadline: t0(),
            },
            P::Started => Phase::Started {
                started_at: t0() - Duration::seconds(5),
            },
            P::DoneByDevice => Phase::Completed(Completion::from_device(
                &device_result(TransactionResult::Declined),
                t0() - Duration::seconds(1),
            )),
            P::DoneByCloud => Phase::Completed(Completion::by_cloud(
                f,
                CloudReason::NoAcceptInTime,
                t0() - Duration::seconds(1),
            )),
        }
    }

    /// The result events: valid for `f`, and the invalid ones (a financial result without its
    /// `transaction_result`; `OK-DELAYED`, which is never final).
    fn results(f: Function, valid: bool) -> Vec<DeviceResult> {
        let mut ok = device_result(TransactionResult::Accepted);
        if valid {
            let mut v = vec![ok.clone()];
            if !f.is_financial() {
                ok.transaction_result = None;
                v.push(ok);
            }
            v
        } else {
            let mut v = vec![device_result(TransactionResult::Delayed)];
            if f.is_financial() {
                ok.transaction_result = None;
                v.push(ok);
            }
            v
        }
    }

    fn events_of(e: E, f: Function) -> Vec<Event> {
        match e {
            E::Accept => vec![Event::Accepted],
            E::DeadlineCheck => vec![Event::AcceptDeadlineCheck],
            E::Gone => vec![Event::DeviceGone],
            E::Cancel => vec![Event::CancelRequested],
            E::ValidResult => results(f, true)
                .into_iter()
                .map(Event::DeviceResult)
                .collect(),
            E::InvalidResult => results(f, false)
                .into_iter()
                .map(Event::DeviceResult)
                .collect(),
        }
    }

    /// Refusal reasons are checked apart (`financial_result_without_transaction_result_is_refused`).
    fn without_refusal_reason(effects: &[Effect]) -> Vec<Effect> {
        effects
            .iter()
            .map(|e| match e {
                Effect::RejectResult(_) => Effect::RejectResult(String::new()),
                other => other.clone(),
            })
            .collect()
    }

    #[test]
    fn every_function_phase_and_event_steps_as_the_table_says() {
        let rows = table();
        assert_eq!(rows.len(), 5 * 6, "one row per phase and event");
        let mut checked = 0;
        for f in every_function() {
            for (p, e, next, effects, timeline) in &rows {
                let phase = phase_of(*p, f);
                for event in events_of(*e, f) {
                    let s = step(f, &phase, &event, t0());
                    let ctx = format!("{f} {p:?} {event:?}");
                    let want_next = match next {
                        N::Stay => None,
                        N::Start => Some(Phase::Started { started_at: t0() }),
                        N::ByDevice => match &event {
                            Event::DeviceResult(r) => {
                                Some(Phase::Completed(Completion::from_device(r, t0())))
                            }
                            _ => unreachable!("{ctx}"),
                        },
                        N::ByCloud(reason) => {
                            Some(Phase::Completed(Completion::by_cloud(f, *reason, t0())))
                        }
                    };
                    assert_eq!(s.next, want_next, "{ctx}");
                    assert_eq!(without_refusal_reason(&s.effects), *effects, "{ctx}");
                    let kinds: Vec<EventKind> = s.timeline.iter().map(|t| t.kind).collect();
                    assert_eq!(kinds, *timeline, "{ctx}");
                    assert!(s.timeline.iter().all(|t| t.at == t0()), "{ctx}");
                    checked += 1;
                }
            }
        }
        assert!(checked >= every_function().len() * 30, "{checked}");
    }

    #[test]
    fn timeline_details_name_the_outcome_and_the_reason() {
        let f = Function::CardPurchase;
        let s = step(f, &phase_of(P::OfferedInTime, f), &Event::DeviceGone, t0());
        assert_eq!(s.timeline[0].detail, "device went offline before accepting");
        assert_eq!(
            s.timeline[1].detail,
            "CANCELLED / FAILED-INTERFACE: Device is offline"
        );
        let r = device_result(TransactionResult::Accepted);
        let s = step(f, &phase_of(P::Started, f), &Event::DeviceResult(r), t0());
        assert_eq!(s.timeline[0].detail, "OK-ACCEPTED / OK: APPROVED");
        let s = step(
            f,
            &phase_of(P::DoneByCloud, f),
            &Event::DeviceResult(device_result(TransactionResult::Accepted)),
            t0(),
        );
        assert!(s.timeline[0].detail.contains("stored outcome kept"));
    }

    #[test]
    fn each_reason_the_cloud_ends_a_transaction_says_what_happened() {
        let f = Function::CardPurchase;
        let by = |reason| Completion::by_cloud(f, reason, t0());
        let offline = by(CloudReason::DeviceOffline);
        let late = by(CloudReason::NoAcceptInTime);
        let cancelled = by(CloudReason::CancelledByPos);
        assert_eq!(offline.result, ResultCode::FailedInterface);
        assert_eq!(offline.result_text, "Device is offline");
        assert_eq!(late.result, ResultCode::FailedInterface);
        assert_eq!(late.result_text, "Device did not respond in time");
        assert_eq!(cancelled.result, ResultCode::Cancelled);
        assert_eq!(cancelled.result_text, "Cancelled by the POS");
        for c in [&offline, &late, &cancelled] {
            assert_eq!(c.transaction_result, Some(TransactionResult::Cancelled));
            assert_eq!(c.by, CompletedBy::Cloud);
            assert!(c.fields.is_empty());
            assert!(!c.is_success());
        }
        // A status request the POS cancelled has no status to report.
        let status = |reason| Completion::by_cloud(Function::TerminalGetStatus, reason, t0());
        assert!(status(CloudReason::CancelledByPos).fields.is_empty());
        assert_eq!(
            status(CloudReason::NoAcceptInTime)
                .fields
                .get("Status")
                .map(String::as_str),
            Some("OFFLINE")
        );
    }

    fn state(online: bool, busy: bool, reported: Option<TerminalStatus>) -> DeviceState {
        DeviceState {
            online,
            busy,
            reported,
        }
    }

    #[test]
    fn admission_offers_refuses_or_answers_at_once() {
        let timeout = std::time::Duration::from_secs(10);
        for f in every_function() {
            // Online and idle: offered, with the deadline `accept_timeout` away.
            let a = admit(f, state(true, false, None), t0(), timeout).unwrap_or_else(|_| panic!());
            assert_eq!(
                a.phase,
                Phase::Offered {
                    accept_deadline: t0() + Duration::seconds(10)
                }
            );
            assert_eq!(a.effects, vec![Effect::SendOffer]);
            let kinds: Vec<_> = a.timeline.iter().map(|t| t.kind).collect();
            assert_eq!(kinds, vec![K::Received, K::Offered]);
            assert_eq!(a.timeline[0].detail, f.as_str());

            // Offline: a definite failure, not "cancelled by the POS".
            let a = admit(f, state(false, false, None), t0(), timeout).unwrap_or_else(|_| panic!());
            assert_eq!(
                a.phase,
                Phase::Completed(Completion::by_cloud(f, CloudReason::DeviceOffline, t0()))
            );
            assert_eq!(a.effects, vec![Effect::Completed]);
            let kinds: Vec<_> = a.timeline.iter().map(|t| t.kind).collect();
            assert_eq!(kinds, vec![K::Received, K::Completed]);

            // Busy: refused, except the status, which the cloud answers itself.
            for online in [true, false] {
                let busy = admit(f, state(online, true, None), t0(), timeout);
                if f == Function::TerminalGetStatus {
                    let a = busy.unwrap_or_else(|_| panic!());
                    let Phase::Completed(c) = &a.phase else {
                        panic!("{a:?}")
                    };
                    assert_eq!(c.fields.get("Status").map(String::as_str), Some("BUSY"));
                    assert_eq!(c.result_text, "Device is busy");
                    assert_eq!(c.result, ResultCode::Ok);
                    assert_eq!(c.by, CompletedBy::Cloud);
                    assert_eq!(a.effects, vec![Effect::Completed]);
                } else {
                    assert_eq!(busy, Err(DeviceBusy), "{f}");
                }
            }
        }
        let a = admit(
            Function::TerminalGetStatus,
            state(true, true, Some(TerminalStatus::ReversalPending)),
            t0(),
            timeout,
        )
        .unwrap_or_else(|_| panic!());
        let Phase::Completed(c) = &a.phase else {
            panic!("{a:?}")
        };
        assert_eq!(
            c.fields.get("Status").map(String::as_str),
            Some("REVERSAL_PENDING")
        );
        assert_eq!(c.result_text, "Reversal pending");
    }

    #[test]
    fn delayed_only_once_started_for_long_enough() {
        let after = std::time::Duration::from_secs(60);
        let started = |s: i64| Phase::Started {
            started_at: t0() - Duration::seconds(s),
        };
        assert!(!shows_delayed(&started(59), t0(), after));
        assert!(shows_delayed(&started(60), t0(), after));
        assert!(shows_delayed(&started(61), t0(), after));
        // A clock that went backwards is not "late".
        assert!(!shows_delayed(&started(-1), t0(), after));
        let old_offer = Phase::Offered {
            accept_deadline: t0() - Duration::seconds(600),
        };
        assert!(!shows_delayed(&old_offer, t0(), after));
        let done = phase_of(P::DoneByDevice, Function::CardPurchase);
        assert!(!shows_delayed(&done, t0() + Duration::days(1), after));
    }

    proptest! {
        /// The main safety rule: once started, only the device ends a transaction. The cloud
        /// never completes it (the card may be charged), whatever else happens.
        #[test]
        fn the_cloud_never_completes_a_started_transaction(event in arb_event(), f in arb_function(), s in -100i64..100) {
            let started = Phase::Started { started_at: t0() + Duration::seconds(s) };
            let step = step(f, &started, &event, t0());
            if let Some(Phase::Completed(c)) = &step.next {
                prop_assert_eq!(c.by, CompletedBy::Device);
                prop_assert!(matches!(event, Event::DeviceResult(_)));
            }
            prop_assert!(!step.effects.iter().any(|e| matches!(e, Effect::SendAbort(_))));
        }

        /// An offer not accepted by its deadline fails definitely (FAILED-INTERFACE, nothing
        /// charged) and the device is told to drop it; a late accept is aborted, never started.
        #[test]
        fn an_unaccepted_offer_fails_definitely(f in arb_function(), late_by in 0i64..100, accept in any::<bool>()) {
            let offered = Phase::Offered { accept_deadline: t0() - Duration::seconds(late_by) };
            let event = if accept { Event::Accepted } else { Event::AcceptDeadlineCheck };
            let s = step(f, &offered, &event, t0());
            let Some(Phase::Completed(c)) = &s.next else {
                return Err(TestCaseError::fail("an expired offer must complete"));
            };
            prop_assert_eq!(c.by, CompletedBy::Cloud);
            prop_assert_eq!(c.result, ResultCode::FailedInterface);
            prop_assert!(!c.is_success());
            prop_assert!(matches!(s.effects.first(), Some(Effect::SendAbort(_))));
            prop_assert!(!s.effects.contains(&Effect::SendStart));
            // And an accept after that is aborted again.
            let again = step(f, &s.next.clone().unwrap_or(offered), &Event::Accepted, t0());
            prop_assert!(matches!(again.effects[..], [Effect::SendAbort(_)]));
        }

        /// The timeline says "completed" exactly when the step completes the transaction.
        #[test]
        fn the_timeline_records_each_completion_once(phase in arb_phase(), event in arb_event(), f in arb_function()) {
            let s = step(f, &phase, &event, t0());
            let completions = s.timeline.iter().filter(|t| t.kind == EventKind::Completed).count();
            prop_assert_eq!(completions, usize::from(matches!(s.next, Some(Phase::Completed(_)))));
        }
    }
}
