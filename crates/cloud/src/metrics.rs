//! Prometheus metrics (`GET /metrics`, text format, names prefixed `eftcloud_`).
//!
//! One [`Metrics`] per [`crate::Application`], shared through an `Arc`: each app has its own
//! registry (never a process-global one), so the tests' many apps in one process do not mix
//! their numbers. The hooks that feed it are few and sit where the event is already decided:
//! the engine (started, completed, pending), the POS handler (POST → offer), the callback
//! dispatcher, the store wrapper ([`MeteredStore`]) and one response layer (rejections).

mod health;
mod metered_store;

pub use health::FleetHealth;

pub use metered_store::{metered, MeteredStore, StoreMeter};

use crate::domain::lifecycle::{Completion, Phase};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use protocol::{Function, TransactionId};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The content type Prometheus expects for the text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Labels of per-function counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: String,
}

/// Labels of completions: the function and its outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    function: String,
    outcome: String,
}

/// Labels of rejected requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    status: u16,
    reason: String,
}

/// Labels of store operations.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

/// A response's short reason for a rejection (`not_paired`, `busy`, ...), set by the error type
/// that built it; responses without one are named after their status.
#[derive(Clone, Copy, Debug)]
pub struct Rejection(pub &'static str);

/// Every metric of one cloud.
pub struct Metrics {
    registry: Registry,
    connected_devices: Gauge,
    pending_transactions: Gauge,
    started: Family<FunctionLabels, Counter>,
    completed: Family<OutcomeLabels, Counter>,
    post_to_offer: Histogram,
    post_to_completed: Histogram,
    callbacks_delivered: Counter,
    callbacks_failed: Counter,
    callbacks_given_up: Counter,
    store_seconds: Family<OperationLabels, Histogram>,
    rejected: Family<RejectLabels, Counter>,
    store_available: Gauge,
    store_outages: Counter,
    /// Offered and started transactions this node knows of; its size is the pending gauge.
    /// At most one per device, so it stays small.
    pending: Mutex<HashSet<TransactionId>>,
    /// Where the connected-devices count comes from at scrape time (set by the app).
    devices: Mutex<Option<Arc<dyn Fn() -> usize + Send + Sync>>>,
    /// Devices by agent version, low on battery, out of paper.
    pub fleet: FleetHealth,
}

/// Buckets for request latencies: 0.5 ms to ~33 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 17)
}

/// Buckets for store calls: 50 µs to ~1.6 s.
fn store_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics in its own registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("eftcloud");
        let connected_devices = Gauge::default();
        registry.register(
            "connected_devices",
            "Devices with an open connection to this node",
            connected_devices.clone(),
        );
        let pending_transactions = Gauge::default();
        registry.register(
            "pending_transactions",
            "Transactions offered or started, not yet completed, known to this node",
            pending_transactions.clone(),
        );
        let started = Family::<FunctionLabels, Counter>::default();
        registry.register(
            "transactions_started",
            "Transactions stored on a POS request, by function (idempotent replays not counted)",
            started.clone(),
        );
        let completed = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "transactions_completed",
            "Transactions completed, by function and outcome (TransactionResult, or Result for \
             non-financial functions)",
            completed.clone(),
        );
        let post_to_offer = Histogram::new(latency_buckets());
        registry.register(
            "post_to_offer_seconds",
            "Time from the start of the POST /POS/Transaction handler until the offer is handed \
             to the bus for the device (the network hop to the device is not included)",
            post_to_offer.clone(),
        );
        let post_to_completed = Histogram::new(latency_buckets());
        registry.register(
            "post_to_completed_seconds",
            "Time from a transaction's creation (created_at) until it completed",
            post_to_completed.clone(),
        );
        let callbacks_delivered = Counter::default();
        registry.register(
            "callback_deliveries",
            "Completion callbacks delivered (2xx answer)",
            callbacks_delivered.clone(),
        );
        let callbacks_failed = Counter::default();
        registry.register(
            "callback_failures",
            "Completion callback attempts that failed (each attempt counts)",
            callbacks_failed.clone(),
        );
        let callbacks_given_up = Counter::default();
        registry.register(
            "callbacks_given_up",
            "Completion callbacks abandoned after the last attempt",
            callbacks_given_up.clone(),
        );
        let store_seconds =
            Family::<OperationLabels, Histogram>::new_with_constructor(store_buckets as fn() -> _);
        registry.register(
            "store_operation_seconds",
            "Duration of store calls, by operation",
            store_seconds.clone(),
        );
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "rejected_requests",
            "HTTP requests answered with an error, by status and reason",
            rejected.clone(),
        );
        let store_available = Gauge::default();
        store_available.set(1);
        registry.register(
            "store_available",
            "1 while the store commits writes, 0 from a failed write until a write succeeds again",
            store_available.clone(),
        );
        let store_outages = Counter::default();
        registry.register(
            "store_outages",
            "Times the store became unavailable (full disk, I/O error, database unreachable)",
            store_outages.clone(),
        );
        let fleet = FleetHealth::register(&mut registry);
        Self {
            fleet,
            registry,
            store_available,
            store_outages,
            connected_devices,
            pending_transactions,
            started,
            completed,
            post_to_offer,
            post_to_completed,
            callbacks_delivered,
            callbacks_failed,
            callbacks_given_up,
            store_seconds,
            rejected,
            pending: Mutex::new(HashSet::new()),
            devices: Mutex::new(None),
        }
    }

    /// Names where the connected-devices count is read at scrape time (counting there, rather
    /// than on connect and disconnect, stays right when a newer connection replaces an older).
    pub fn count_devices_with(&self, f: Arc<dyn Fn() -> usize + Send + Sync>) {
        *lock(&self.devices) = Some(f);
    }

    /// A transaction was stored for a POS request.
    pub fn transaction_started(&self, function: Function) {
        self.started
            .get_or_create(&FunctionLabels {
                function: function.as_str().to_string(),
            })
            .inc();
    }

    /// A transaction completed (once per transaction: called where the phase became completed).
    pub fn transaction_completed(
        &self,
        id: &TransactionId,
        function: Function,
        completion: &Completion,
        created_at: DateTime<Utc>,
    ) {
        let outcome = completion
            .transaction_result
            .map(|r| r.as_str())
            .unwrap_or_else(|| completion.result.as_str());
        self.completed
            .get_or_create(&OutcomeLabels {
                function: function.as_str().to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        let took = (completion.completed_at - created_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        self.post_to_completed.observe(took.as_secs_f64());
        self.forget_pending(id);
    }

    /// Tracks whether a transaction is pending on this node, from the phase it now has.
    pub fn track_phase(&self, id: &TransactionId, phase: &Phase) {
        let mut pending = lock(&self.pending);
        match phase {
            Phase::Offered { .. } | Phase::Started { .. } => pending.insert(*id),
            Phase::Completed(_) => pending.remove(id),
        };
    }

    /// A transaction completed (here or on another node): no longer pending.
    pub fn forget_pending(&self, id: &TransactionId) {
        lock(&self.pending).remove(id);
    }

    /// The offer of a POST was handed to the bus, `since` the handler started.
    pub fn offer_handed_over(&self, since: Instant) {
        self.post_to_offer.observe(since.elapsed().as_secs_f64());
    }

    /// One callback attempt: delivered, failed and retried later, or failed for good.
    pub fn callback_attempt(&self, delivered: bool, given_up: bool) {
        if delivered {
            self.callbacks_delivered.inc();
        } else {
            self.callbacks_failed.inc();
            if given_up {
                self.callbacks_given_up.inc();
            }
        }
    }

    /// Records how long a store call took.
    pub fn store_call(&self, operation: &'static str, took: Duration) {
        self.store_seconds
            .get_or_create(&OperationLabels { operation })
            .observe(took.as_secs_f64());
    }

    /// The store-availability gauge and outage counter, for [`crate::health::Health`] to set.
    pub fn store_availability(&self) -> (Gauge, Counter) {
        (self.store_available.clone(), self.store_outages.clone())
    }

    /// Counts a request answered with an error.
    pub fn rejected(&self, status: StatusCode, reason: &str) {
        self.rejected
            .get_or_create(&RejectLabels {
                status: status.as_u16(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        // Gauges read at scrape time.
        let devices = lock(&self.devices).clone();
        if let Some(count) = devices {
            self.connected_devices
                .set(i64::try_from(count()).unwrap_or(i64::MAX));
        }
        let pending = lock(&self.pending).len();
        self.pending_transactions
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// A lock that survives a panic elsewhere: each critical section here is one set or map call,
/// so a poisoned lock cannot hold a half-made change.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `GET /metrics`.
pub async fn serve(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Response layer: counts every error answer by status and reason. One place instead of a
/// hook in each handler; handlers name the reason through the [`Rejection`] extension.
pub async fn count_rejections(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let reason = match response.extensions().get::<Rejection>() {
            Some(Rejection(r)) => r,
            None => reason_of_status(status),
        };
        metrics.rejected(status, reason);
    }
    response
}

/// The default short reason of an error status.
pub fn reason_of_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 | 403 => "unauthorized",
        404 | 405 => "not_found",
        409 => "conflict",
        413 => "too_large",
        415 => "unsupported_media_type",
        429 => "rate_limited",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "other",
    }
}
