//! Retention: completed transactions are kept for `retention` (lookup by reference or id works
//! all that time), then deleted with their timelines by a background sweep. The same sweep
//! removes devices the virtual terminal page enrolled once they are unused for
//! `virtual_terminal_ttl`, so that enrollments anyone may ask for cannot fill the store, and
//! dashboard sessions that ended (idle or too old) without a sign-out. Catalogue events are kept
//! as long as transactions, by the same period.

use super::Engine;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the sweep runs.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

impl Engine {
    /// Runs the retention sweep until `shutdown` is cancelled.
    pub async fn run_retention(self, shutdown: CancellationToken) {
        loop {
            self.sweep_once().await;
            self.purge_unused_virtual_devices().await;
            self.purge_ended_sessions().await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                () = self.sleep(SWEEP_EVERY) => {}
            }
        }
    }

    /// Deletes completed transactions older than the retention period, then the event log's
    /// events as old; returns how many transactions.
    pub async fn sweep_once(&self) -> u64 {
        let Ok(retention) = chrono::Duration::from_std(self.settings().retention) else {
            return 0;
        };
        let before = self.now() - retention;
        let deleted = match self.store().purge_completed_before(before).await {
            Ok(0) => 0,
            Ok(n) => {
                tracing::info!(deleted = n, "retention sweep");
                n
            }
            Err(e) => {
                tracing::error!(error = %e, "retention sweep failed");
                0
            }
        };
        match self.store().purge_events_before(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "retention sweep of the event log"),
            Err(e) => tracing::error!(error = %e, "retention sweep of the event log failed"),
        }
        deleted
    }

    /// Deletes self-enrolled (virtual terminal) devices that are not connected and were not
    /// seen for `virtual_terminal_ttl` (or never connected since their enrollment that long
    /// ago); returns how many. Their registers go with them: a register paired to a virtual
    /// terminal nobody uses does not keep it alive (or anyone could keep theirs forever by
    /// pairing one). A device with a transaction in progress stays: only it can report a
    /// started payment's outcome.
    pub async fn purge_unused_virtual_devices(&self) -> u64 {
        let Ok(ttl) = chrono::Duration::from_std(self.settings().virtual_terminal_ttl) else {
            return 0;
        };
        let before = self.now() - ttl;
        match self.store().purge_unused_self_enrolled(before).await {
            Ok(0) => 0,
            Ok(n) => {
                tracing::info!(deleted = n, "unused virtual terminals removed");
                n
            }
            Err(e) => {
                tracing::error!(error = %e, "removing unused virtual terminals failed");
                0
            }
        }
    }

    /// Deletes sessions idle for `session_idle` or older than `session_ttl` (they open nothing
    /// already; this only keeps the table small); returns how many.
    pub async fn purge_ended_sessions(&self) -> u64 {
        let settings = self.settings();
        let (Ok(idle), Ok(ttl)) = (
            chrono::Duration::from_std(settings.session_idle),
            chrono::Duration::from_std(settings.session_ttl),
        ) else {
            return 0;
        };
        let now = self.now();
        match self.store().purge_sessions(now - idle, now - ttl).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "removing ended sessions failed");
                0
            }
        }
    }
}
