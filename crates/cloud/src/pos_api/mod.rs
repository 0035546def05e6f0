//! The POS API: SmartConnect's routes (pairing, transactions, polling) and eftcloud's additions.

pub mod access;
pub mod actions;
pub mod callbacks;
pub mod cancel;
pub mod credentials;
pub mod envelope;
pub mod error;
pub mod events;
pub mod fields;
pub mod follow_ups;
pub mod lookup;
pub mod openapi;
pub mod orders;
pub mod pairing;
pub mod pairing_guard;
pub mod polling;
pub mod rate_limit;
pub mod receipts;
pub mod register_status;
pub mod sale_data;
pub mod timeline;
pub mod transaction;
pub mod versioning;
pub mod webhook_delivery;
pub mod webhooks;

use crate::engine::Engine;
use pairing_guard::{PairingGuard, PairingGuardSettings};
use rate_limit::PollLimiter;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use url::Url;

/// Settings of the POS API.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The base written into `PollingUrl`.
    pub public_url: Url,
    /// Minimum time between two polls of one transaction (zero: no limit).
    pub poll_interval_min: Duration,
    /// How long a legacy synchronous request is held before the pending body is returned.
    pub sync_timeout: Duration,
    /// Abuse limits: body size, pairing brute force.
    pub limits: ApiLimits,
    /// Command-line keys and where keyless requests are accepted.
    pub auth: credentials::PosAuth,
}

/// Limits that keep hostile or broken clients harmless, on the POS API and on the pages' own
/// endpoints (same listener). Field count and length limits are constants in [`fields`];
/// `SaleData` limits in [`sale_data`].
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Largest request body in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Failed pairing attempts allowed per source and globally. Its `trust_forwarded_for`
    /// says how every HTTP budget finds a request's source.
    pub pairing: PairingGuardSettings,
    /// Devices the virtual terminal page may enroll per source and globally (each counts).
    pub enrollment: PairingGuardSettings,
    /// Wrong admin tokens allowed per source.
    pub admin_tokens: PairingGuardSettings,
    /// Failed dashboard sign-ins allowed per source (each account also locks itself after
    /// five wrong passwords in a row).
    pub sign_ins: PairingGuardSettings,
}

impl Default for ApiLimits {
    fn default() -> Self {
        let minute = std::time::Duration::from_secs(60);
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            pairing: PairingGuardSettings::default(),
            // A developer clicks "create" a few times; a script gets five, then waits.
            enrollment: PairingGuardSettings {
                failures_per_source: 5,
                failures_global: 100,
                window: minute,
                trust_forwarded_for: false,
            },
            // No global budget: it would let anyone lock the operator out.
            admin_tokens: PairingGuardSettings {
                failures_per_source: 10,
                failures_global: 0,
                window: minute,
                trust_forwarded_for: false,
            },
            sign_ins: PairingGuardSettings {
                failures_per_source: 10,
                failures_global: 0,
                window: minute,
                trust_forwarded_for: false,
            },
        }
    }
}

/// Default largest request body: a SmartConnect request is a few hundred bytes, a big
/// `SaleData` basket a few tens of kilobytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// What every POS handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub engine: Engine,
    pub settings: Arc<ApiSettings>,
    pub limiter: Arc<PollLimiter>,
    /// Counts failed pairing attempts (brute-force protection).
    pub pairing_guard: Arc<PairingGuard>,
    /// Cancelled on shutdown, to release held requests (sync mode, long-poll) at once.
    pub shutdown: CancellationToken,
    /// How credentials are checked.
    pub auth: Arc<credentials::PosAuth>,
}

impl ApiState {
    /// Builds the state.
    pub fn new(engine: Engine, settings: ApiSettings, shutdown: CancellationToken) -> Self {
        let limiter = Arc::new(PollLimiter::new(settings.poll_interval_min));
        let pairing_guard = Arc::new(PairingGuard::new(settings.limits.pairing.clone()));
        let auth = Arc::new(settings.auth.clone());
        Self {
            auth,
            engine,
            settings: Arc::new(settings),
            limiter,
            pairing_guard,
            shutdown,
        }
    }

    fn limiter_interval_secs(&self) -> String {
        format!("{:.1}", self.settings.poll_interval_min.as_secs_f64())
    }
}
