//! "Polled too fast": at most one poll per transaction per interval, answered with 429 and
//! `Retry-After`, as SmartConnect clients expect. In memory: a restart forgets it, harmlessly.

use protocol::TransactionId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept before old ones are swept; bounds memory whatever the traffic.
const MAX_ENTRIES: usize = 100_000;

/// Last poll time per transaction.
pub struct PollLimiter {
    interval: Duration,
    last: Mutex<HashMap<TransactionId, Instant>>,
}

impl PollLimiter {
    /// A limiter allowing one poll per `interval` (zero disables it).
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Records a poll at `now`; `Err(retry_after)` if it came too soon after the previous one.
    /// A tenth of the interval is forgiven, so a client that polls exactly every interval is
    /// never refused because of network jitter.
    pub fn check(&self, id: TransactionId, now: Instant) -> Result<(), Duration> {
        if self.interval.is_zero() {
            return Ok(());
        }
        let min_gap = self.interval - self.interval / 10;
        let mut map = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(prev) = map.get(&id) {
            let gap = now.saturating_duration_since(*prev);
            if gap < min_gap {
                return Err(self.interval - gap);
            }
        }
        if map.len() >= MAX_ENTRIES {
            let interval = self.interval;
            map.retain(|_, t| now.saturating_duration_since(*t) < interval);
        }
        map.insert(id, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_fast_polls_and_allows_paced_ones() {
        let l = PollLimiter::new(Duration::from_secs(2));
        let id = TransactionId::new();
        let t = Instant::now();
        assert!(l.check(id, t).is_ok());
        let retry = l.check(id, t + Duration::from_millis(500));
        assert_eq!(retry, Err(Duration::from_millis(1500)));
        assert!(l.check(id, t + Duration::from_millis(1900)).is_ok());
        // Another transaction is independent.
        assert!(l.check(TransactionId::new(), t).is_ok());
    }

    #[test]
    fn zero_disables() {
        let l = PollLimiter::new(Duration::ZERO);
        let id = TransactionId::new();
        let t = Instant::now();
        assert!(l.check(id, t).is_ok());
        assert!(l.check(id, t).is_ok());
    }
}
