//! Time as an input. The engine, the deadlines, polling-token checks, retention and callbacks
//! ask a [`Clock`] instead of the system, both for "now" and to wait, so tests can stand still
//! or jump ahead and the background loops follow at once.

use chrono::{DateTime, Utc};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;

/// A wait on a [`Clock`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where "now" comes from, and how long a wait takes.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current time (wall-clock, UTC, as stored).
    fn now(&self) -> DateTime<Utc>;

    /// Resolves once `d` has passed on this clock (the background loops' sleeps, so that a
    /// test that moves the clock wakes them rather than waiting in real time).
    fn sleep(&self, d: Duration) -> Sleep;
}

/// The system's clock: what `eftcloud serve` runs on.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that moves only when told (tests). Its sleeps end when it is moved past their end.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    /// Stopped at `at`.
    pub fn at(at: DateTime<Utc>) -> Self {
        Self {
            now: watch::Sender::new(at),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        self.now.send_modify(|now| {
            *now = now
                .checked_add_signed(by)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
        });
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        self.now.send_replace(at);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep(&self, d: Duration) -> Sleep {
        let mut changes = self.now.subscribe();
        let until = chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| self.now().checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Box::pin(async move {
            // The sender lives as long as the clock; if it is gone, nothing will move it again.
            if changes.wait_for(|now| *now >= until).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::at(t0());
        assert_eq!(c.now(), t0());
        c.advance(Duration::from_secs(90));
        assert_eq!(c.now(), t0() + chrono::Duration::seconds(90));
        c.set(t0());
        assert_eq!(c.now(), t0());
    }

    #[tokio::test(start_paused = true)]
    async fn a_manual_sleep_ends_when_the_clock_passes_its_end_and_not_before() {
        let c = std::sync::Arc::new(ManualClock::at(t0()));
        let mut sleep = tokio::spawn(c.sleep(Duration::from_secs(60)));
        // Real (here: paused tokio) time does not end it; only the clock does.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(futures_util::poll!(&mut sleep).is_pending());
        c.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(futures_util::poll!(&mut sleep).is_pending());
        c.advance(Duration::from_secs(1));
        let woken = tokio::time::timeout(Duration::from_secs(1), sleep).await;
        assert!(matches!(woken, Ok(Ok(()))), "woken by the clock: {woken:?}");
        // A zero sleep on a stopped clock is already over.
        let zero = tokio::time::timeout(Duration::from_secs(1), c.sleep(Duration::ZERO)).await;
        assert!(zero.is_ok(), "over at once");
    }

    #[tokio::test(start_paused = true)]
    async fn the_system_clock_sleeps_in_tokio_time() {
        let begun = tokio::time::Instant::now();
        SystemClock.sleep(Duration::from_secs(5)).await;
        assert_eq!(begun.elapsed(), Duration::from_secs(5));
    }
}
