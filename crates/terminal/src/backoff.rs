//! Reconnect delays: exponential with jitter, so a fleet of terminals does not reconnect in
//! lockstep after a cloud restart.

use rand::Rng;
use std::time::Duration;

/// The delay before the next connection attempt.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `min`, doubles per failure up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        let max = max.max(min);
        Self {
            min,
            max,
            current: min,
        }
    }

    /// The next delay: a random value in the upper half of the current step (never below
    /// `min`), then the step doubles.
    pub fn next_delay(&mut self) -> Duration {
        let high = self.current;
        let low = (high / 2).max(self.min).min(high);
        let delay = if high > low {
            rand::thread_rng().gen_range(low..=high)
        } else {
            high
        };
        self.current = (self.current * 2).min(self.max);
        delay
    }

    /// Back to the shortest delay (after a successful `welcome`).
    pub fn reset(&mut self) {
        self.current = self.min;
    }

    /// Straight to the longest delay (the cloud rejected us; retrying fast will not help).
    pub fn to_max(&mut self) {
        self.current = self.max;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_within_bounds_and_resets() {
        let min = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        let mut b = Backoff::new(min, max);
        let mut last_high = Duration::ZERO;
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d >= min && d <= max, "{d:?}");
            last_high = last_high.max(d);
        }
        assert!(last_high >= max / 2);
        b.reset();
        assert_eq!(b.next_delay(), min);
        b.to_max();
        assert!(b.next_delay() >= max / 2);
    }
}
