//! Device frames the cloud could not apply because its store was unavailable (full disk,
//! database restarting). A frame that changes state is never answered in a way that leaves it
//! neither stored nor retried: the connection keeps it here and applies it again with backoff,
//! in arrival order, until the store takes it; the reply (`result_ack`, `pairing_code`, ...)
//! then goes out on the same connection. Frames are idempotent by id, so a retry, or the
//! device's own repeat of a result, is safe.

use protocol::device::DeviceMessage;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// Most frames kept per connection. A device runs one transaction at a time, so a handful
/// covers an outage; past this the connection closes with "try again later" and the device's
/// journal carries its results into the next `hello`.
pub const MAX_FRAMES: usize = 32;
/// First wait before a retry.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The queue is full: the connection should close.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// Whether a frame changes state in the store, and so must be retried when the store fails.
pub fn changes_state(msg: &DeviceMessage) -> bool {
    matches!(
        msg,
        DeviceMessage::Accept { .. }
            | DeviceMessage::Result(_)
            | DeviceMessage::Progress { .. }
            | DeviceMessage::Unpair { .. }
            | DeviceMessage::PairingCodeRequest
            | DeviceMessage::ConfigAck { .. }
    )
}

/// What [`Retries::push`] did with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Kept {
    /// Queued for the first time.
    New,
    /// The same frame was already queued (the device repeated it), or a newer prompt of the
    /// same transaction replaced an older one: nothing new to tell the device.
    Merged,
}

/// The frames of one connection waiting for the store, oldest first.
#[derive(Debug)]
pub struct Retries {
    frames: VecDeque<DeviceMessage>,
    backoff: Duration,
    due: Option<Instant>,
}

impl Default for Retries {
    fn default() -> Self {
        Self {
            frames: VecDeque::new(),
            backoff: BACKOFF_MIN,
            due: None,
        }
    }
}

impl Retries {
    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// How many frames wait.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// When the oldest frame should be tried again; none while nothing waits.
    pub fn due(&self) -> Option<Instant> {
        self.due.filter(|_| !self.frames.is_empty())
    }

    /// Keeps a frame the store refused (or one that arrived while others wait: order is kept).
    pub fn push(&mut self, msg: DeviceMessage, now: Instant) -> Result<Kept, Full> {
        if self.frames.contains(&msg) {
            return Ok(Kept::Merged);
        }
        // Only the latest prompt of a transaction matters.
        if let DeviceMessage::Progress { transaction_id, .. } = &msg {
            let same = |m: &DeviceMessage| matches!(m, DeviceMessage::Progress { transaction_id: t, .. } if t == transaction_id);
            if let Some(slot) = self.frames.iter_mut().find(|m| same(m)) {
                *slot = msg;
                return Ok(Kept::Merged);
            }
        }
        if self.frames.len() >= MAX_FRAMES {
            return Err(Full);
        }
        if self.frames.is_empty() {
            self.due = Some(now + self.backoff);
        }
        self.frames.push_back(msg);
        Ok(Kept::New)
    }

    /// Takes the oldest frame to try it again.
    pub fn take(&mut self) -> Option<DeviceMessage> {
        self.frames.pop_front()
    }

    /// The frame taken failed again: it goes back in front, and the wait doubles.
    pub fn failed_again(&mut self, msg: DeviceMessage, now: Instant) {
        self.frames.push_front(msg);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        self.due = Some(now + self.backoff);
    }

    /// The frame taken was applied: the store is back, so the next one goes at once.
    pub fn applied(&mut self, now: Instant) {
        self.backoff = BACKOFF_MIN;
        self.due = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::device::DeviceResult;
    use protocol::{ResultCode, TransactionId};

    fn result(id: TransactionId) -> DeviceMessage {
        DeviceMessage::Result(DeviceResult {
            transaction_id: id,
            transaction_result: None,
            result: ResultCode::Ok,
            result_text: "ok".into(),
            fields: Default::default(),
            receipts: None,
            settlement: None,
        })
    }

    fn progress(id: TransactionId, text: &str) -> DeviceMessage {
        DeviceMessage::Progress {
            transaction_id: id,
            prompt: "processing".into(),
            text: text.into(),
        }
    }

    #[test]
    fn frames_that_change_state_are_the_ones_retried() {
        let id = TransactionId::new();
        assert!(changes_state(&result(id)));
        assert!(changes_state(&DeviceMessage::Accept { transaction_id: id }));
        assert!(changes_state(&progress(id, "x")));
        assert!(changes_state(&DeviceMessage::Unpair { register: None }));
        assert!(changes_state(&DeviceMessage::PairingCodeRequest));
        assert!(!changes_state(&DeviceMessage::Pong { nonce: 1 }));
        assert!(!changes_state(&DeviceMessage::Status {
            status: protocol::TerminalStatus::Ready
        }));
    }

    #[test]
    fn retries_back_off_keep_order_and_reset_when_applied() {
        let t0 = Instant::now();
        let mut r = Retries::default();
        assert_eq!(r.due(), None);
        let (a, b) = (TransactionId::new(), TransactionId::new());
        assert_eq!(r.push(result(a), t0), Ok(Kept::New));
        assert_eq!(r.due(), Some(t0 + BACKOFF_MIN));
        assert_eq!(r.push(result(b), t0), Ok(Kept::New));
        // A repeat of a queued frame adds nothing.
        assert_eq!(r.push(result(a), t0), Ok(Kept::Merged));
        assert_eq!(r.len(), 2);

        let first = r.take();
        assert_eq!(first, Some(result(a)));
        r.failed_again(result(a), t0);
        assert_eq!(r.due(), Some(t0 + BACKOFF_MIN * 2));
        let again = r.take().unwrap_or(DeviceMessage::PairingCodeRequest);
        r.failed_again(again, t0);
        assert_eq!(r.due(), Some(t0 + BACKOFF_MIN * 4));
        for _ in 0..20 {
            let m = r.take().unwrap_or(DeviceMessage::PairingCodeRequest);
            r.failed_again(m, t0);
        }
        assert_eq!(r.due(), Some(t0 + BACKOFF_MAX), "the wait is capped");

        // Oldest first, still.
        assert_eq!(r.take(), Some(result(a)));
        r.applied(t0);
        assert_eq!(r.due(), Some(t0), "the next frame goes at once");
        assert_eq!(r.take(), Some(result(b)));
        r.applied(t0);
        assert!(r.is_empty());
        assert_eq!(r.due(), None);
        // A new outage starts from the shortest wait again.
        assert_eq!(r.push(result(b), t0), Ok(Kept::New));
        assert_eq!(r.due(), Some(t0 + BACKOFF_MIN));
    }

    #[test]
    fn a_newer_prompt_replaces_the_queued_one() {
        let t0 = Instant::now();
        let mut r = Retries::default();
        let id = TransactionId::new();
        assert_eq!(r.push(progress(id, "one"), t0), Ok(Kept::New));
        assert_eq!(r.push(progress(id, "two"), t0), Ok(Kept::Merged));
        assert_eq!(r.len(), 1);
        assert_eq!(r.take(), Some(progress(id, "two")));
    }

    #[test]
    fn the_queue_is_bounded() {
        let t0 = Instant::now();
        let mut r = Retries::default();
        for _ in 0..MAX_FRAMES {
            assert_eq!(r.push(result(TransactionId::new()), t0), Ok(Kept::New));
        }
        assert_eq!(r.push(result(TransactionId::new()), t0), Err(Full));
        assert_eq!(r.len(), MAX_FRAMES);
    }
}
