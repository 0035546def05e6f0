//! The event timeline of a transaction: received, offered, accepted, started, each prompt,
//! result, acknowledgement, cancellation, callbacks. Written in the same commit as the state
//! change it describes, so the timeline never disagrees with the state.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The POS's request was stored.
    Received,
    /// The request was sent to the device.
    Offered,
    /// The device accepted it.
    Accepted,
    /// The device was told to start.
    Started,
    /// The device showed a prompt (present card, PIN, signature required, ...).
    Prompt,
    /// The POS asked to cancel.
    CancelRequested,
    /// The device was asked to stop.
    CancelSent,
    /// The device was told not to run it.
    Aborted,
    /// The device reported its result.
    Result,
    /// The cloud acknowledged the device's result.
    ResultAcknowledged,
    /// A result the cloud could not store was refused.
    ResultRefused,
    /// The transaction reached its final state.
    Completed,
    /// The device reported a result after the cloud had ended the transaction.
    Conflict,
    /// The completion callback was delivered.
    CallbackDelivered,
    /// A completion callback attempt failed.
    CallbackFailed,
    /// A payment: a follow-up of it (refund, void, tip adjustment, ...) was stored.
    FollowUp,
    /// A payment: a follow-up of it completed.
    FollowUpCompleted,
    /// The POS asked for the receipt to be sent by email or SMS.
    ReceiptQueued,
    /// A receipt was handed to the mail server or the SMS provider.
    ReceiptSent,
    /// An attempt to send a receipt failed (retried, or given up).
    ReceiptFailed,
}

impl EventKind {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Received => "received",
            EventKind::Offered => "offered",
            EventKind::Accepted => "accepted",
            EventKind::Started => "started",
            EventKind::Prompt => "prompt",
            EventKind::CancelRequested => "cancel_requested",
            EventKind::CancelSent => "cancel_sent",
            EventKind::Aborted => "aborted",
            EventKind::Result => "result",
            EventKind::ResultAcknowledged => "result_acknowledged",
            EventKind::ResultRefused => "result_refused",
            EventKind::Completed => "completed",
            EventKind::Conflict => "conflict",
            EventKind::CallbackDelivered => "callback_delivered",
            EventKind::CallbackFailed => "callback_failed",
            EventKind::FollowUp => "follow_up",
            EventKind::FollowUpCompleted => "follow_up_completed",
            EventKind::ReceiptQueued => "receipt_queued",
            EventKind::ReceiptSent => "receipt_sent",
            EventKind::ReceiptFailed => "receipt_failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// Every kind, in lifecycle order.
pub const ALL: [EventKind; 20] = [
    EventKind::Received,
    EventKind::Offered,
    EventKind::Accepted,
    EventKind::Started,
    EventKind::Prompt,
    EventKind::CancelRequested,
    EventKind::CancelSent,
    EventKind::Aborted,
    EventKind::Result,
    EventKind::ResultAcknowledged,
    EventKind::ResultRefused,
    EventKind::Completed,
    EventKind::Conflict,
    EventKind::CallbackDelivered,
    EventKind::CallbackFailed,
    EventKind::FollowUp,
    EventKind::FollowUpCompleted,
    EventKind::ReceiptQueued,
    EventKind::ReceiptSent,
    EventKind::ReceiptFailed,
];

/// One entry of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEvent {
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    pub detail: String,
}

impl TimelineEvent {
    /// An event at `at`.
    pub fn new(at: DateTime<Utc>, kind: EventKind, detail: impl Into<String>) -> Self {
        Self {
            at,
            kind,
            detail: detail.into(),
        }
    }
}

/// `OK-ACCEPTED / OK: APPROVED`, or `OK: READY` for non-financial functions.
pub fn outcome_text(c: &super::lifecycle::Completion) -> String {
    match c.transaction_result {
        Some(t) => format!("{t} / {}: {}", c.result, c.result_text),
        None => format!("{}: {}", c.result, c.result_text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lifecycle::{step, Event, Phase};
    use protocol::Function;

    #[test]
    fn kinds_round_trip() {
        for k in ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn accept_in_time_records_accepted_and_started() {
        let now = Utc::now();
        let prev = Phase::Offered {
            accept_deadline: now + chrono::Duration::seconds(5),
        };
        let s = step(Function::CardPurchase, &prev, &Event::Accepted, now);
        let kinds: Vec<_> = s.timeline.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec![EventKind::Accepted, EventKind::Started]);
        // A duplicate accept records nothing more.
        let started = s.next.unwrap_or(prev);
        let s2 = step(Function::CardPurchase, &started, &Event::Accepted, now);
        assert!(s2.timeline.is_empty());
    }
}
