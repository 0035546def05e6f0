//! Retention: completed transactions are kept for `retention` (lookup by reference or id works
//! all that time), then deleted with their timelines by a background sweep.

use super::Engine;
use chrono::Utc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the sweep runs.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

impl Engine {
    /// Runs the retention sweep until `shutdown` is cancelled.
    pub async fn run_retention(self, shutdown: CancellationToken) {
        loop {
            self.sweep_once().await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
            }
        }
    }

    /// Deletes completed transactions older than the retention period; returns how many.
    pub async fn sweep_once(&self) -> u64 {
        let Ok(retention) = chrono::Duration::from_std(self.settings().retention) else {
            return 0;
        };
        let before = Utc::now() - retention;
        match self.store().purge_completed_before(before).await {
            Ok(0) => 0,
            Ok(n) => {
                tracing::info!(deleted = n, "retention sweep");
                n
            }
            Err(e) => {
                tracing::error!(error = %e, "retention sweep failed");
                0
            }
        }
    }
}
