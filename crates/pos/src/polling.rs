//! Polling for the outcome: what one poll can answer, and how long to keep waiting.

use protocol::pos_api::TransactionEnvelope;
use std::time::Duration;

/// What one `GET {PollingUrl}` answered, short of an error.
// Returned from each poll and matched at once, never held in bulk: boxing the envelope would
// cost an allocation per poll to save stack nobody keeps.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// The transaction, pending or completed.
    Envelope(TransactionEnvelope),
    /// 429: polled too often; ask again after `retry_after`.
    TooFast {
        /// From the `Retry-After` header, or [`DEFAULT_RETRY_AFTER`] when it is absent.
        retry_after: Duration,
    },
}

/// How long to back off after a 429 that carries no usable `Retry-After`: the API allows about
/// one poll per 2 s per transaction.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(2);

/// How [`crate::PosClient::wait_for_completion`] polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitOptions {
    /// Pause between polls, and after a transient failure (default 2 s, the API's rate limit).
    pub interval: Duration,
    /// Give up (with [`crate::PosError::Timeout`]) after this long (default 10 minutes).
    pub timeout: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(10 * 60),
        }
    }
}

/// Parses a `Retry-After` value in whole seconds (the form the API sends). The HTTP-date form
/// is not used by the API and gives `None`, so the caller falls back to its own interval.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 10 "), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
    }

    #[test]
    fn unusable_retry_after() {
        assert_eq!(parse_retry_after(""), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("1.5"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("99999999999999999999999"), None);
    }

    #[test]
    fn defaults_follow_the_api() {
        let o = WaitOptions::default();
        assert_eq!(o.interval, Duration::from_secs(2));
        assert_eq!(o.timeout, Duration::from_secs(600));
    }
}
