//! The transaction lifecycle as a pure state machine: (phase, event) → (next phase, effects).
//!
//! `offered` (sent to the device) → `started` (device accepted, told to start) → `completed`
//! (a result is stored). No I/O here: the engine loads the phase from the store, calls
//! [`step`], writes the next phase with a compare-and-set, then carries out the effects.

use chrono::{DateTime, Utc};
use protocol::device::DeviceResult;
use protocol::{Function, ResultCode, TerminalStatus, TransactionResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a transaction stands.
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
        Completion {
            by: CompletedBy::Cloud,
            transaction_result: function.is_financial().then_some(transaction_result),
            result,
            result_text: reason.text().to_string(),
            fields,
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
    RejectResult(&'static str),
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The phase to write, if it changes.
    pub next: Option<Phase>,
    /// What to do once it is written.
    pub effects: Vec<Effect>,
}

impl Step {
    fn stay(effects: Vec<Effect>) -> Self {
        Step {
            next: None,
            effects,
        }
    }
    fn to(next: Phase, effects: Vec<Effect>) -> Self {
        Step {
            next: Some(next),
            effects,
        }
    }
}

/// The state machine. Total: every (phase, event) pair has an answer, duplicates included.
pub fn step(function: Function, phase: &Phase, event: &Event, now: DateTime<Utc>) -> Step {
    use Effect::*;
    let cloud_end = |reason| Phase::Completed(Completion::by_cloud(function, reason, now));
    match (phase, event) {
        // Offered.
        (Phase::Offered { accept_deadline }, Event::Accepted) => {
            if now < *accept_deadline {
                Step::to(Phase::Started { started_at: now }, vec![SendStart])
            } else {
                Step::to(
                    cloud_end(CloudReason::NoAcceptInTime),
                    vec![SendAbort("accept arrived after the deadline"), Completed],
                )
            }
        }
        (Phase::Offered { accept_deadline }, Event::AcceptDeadlineCheck) => {
            if now >= *accept_deadline {
                Step::to(
                    cloud_end(CloudReason::NoAcceptInTime),
                    vec![SendAbort("not accepted in time"), Completed],
                )
            } else {
                Step::stay(vec![])
            }
        }
        (Phase::Offered { .. }, Event::DeviceGone) => Step::to(
            cloud_end(CloudReason::DeviceOffline),
            vec![SendAbort("device went offline before accepting"), Completed],
        ),
        (Phase::Offered { .. }, Event::CancelRequested) => Step::to(
            cloud_end(CloudReason::CancelledByPos),
            vec![SendAbort("cancelled by the POS"), Completed],
        ),
        // A result without a recorded start: the device is the only one that knows whether a
        // card was charged, so its report is the truth and is kept.
        (Phase::Offered { .. } | Phase::Started { .. }, Event::DeviceResult(r)) => {
            match valid_device_result(function, r) {
                Ok(()) => Step::to(
                    Phase::Completed(Completion::from_device(r, now)),
                    vec![SendResultAck, Completed],
                ),
                Err(why) => Step::stay(vec![RejectResult(why)]),
            }
        }

        // Started: only the device can end it.
        (Phase::Started { .. }, Event::Accepted) => Step::stay(vec![SendStart]),
        (Phase::Started { .. }, Event::AcceptDeadlineCheck | Event::DeviceGone) => {
            Step::stay(vec![])
        }
        (Phase::Started { .. }, Event::CancelRequested) => Step::stay(vec![SendCancel]),

        // Completed: final; answer duplicates and late messages without changing anything.
        (Phase::Completed(c), Event::Accepted) => match c.by {
            CompletedBy::Cloud => Step::stay(vec![SendAbort("transaction already ended")]),
            CompletedBy::Device => Step::stay(vec![]),
        },
        (Phase::Completed(c), Event::DeviceResult(_)) => match c.by {
            CompletedBy::Device => Step::stay(vec![SendResultAck]),
            CompletedBy::Cloud => Step::stay(vec![SendResultAck, Conflict]),
        },
        (Phase::Completed(_), Event::AcceptDeadlineCheck | Event::DeviceGone) => Step::stay(vec![]),
        (Phase::Completed(_), Event::CancelRequested) => Step::stay(vec![AlreadyCompleted]),
    }
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

    fn arb_function() -> impl Strategy<Value = Function> {
        proptest::sample::select(Function::ALL.to_vec())
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
        assert_eq!(s, Step::stay(vec![Effect::SendCancel]));
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
}
