//! Delivers the event log to webhook endpoints. Every node runs it; an endpoint is leased to
//! one node at a time, which posts its redeliveries, then its queue in log order, one event at
//! a time, moving the endpoint's cursor in the commit that logs each delivery. A failure stops
//! the endpoint's queue until its backoff runs out (so order holds), and days of failure
//! disable it. An event may arrive twice (a crash between the answer and its record):
//! receivers dedupe by its `id`.
//!
//! The body is the event as `/v1/events` shows it; `Eftcloud-Signature` is the completion
//! callbacks' signature with the endpoint's own secret (two `v1` while a rotated secret's
//! grace runs).

use crate::domain::events::Event;
use crate::domain::webhooks::{signature_header, Attempt, DeliveryPolicy, Endpoint, Progress};
use crate::engine::{Engine, EngineError};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Delivery rules.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub policy: DeliveryPolicy,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// How often the dispatcher looks for work besides its wake-ups.
    pub recheck: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            policy: DeliveryPolicy::default(),
            timeout: Duration::from_secs(10),
            recheck: Duration::from_secs(5),
        }
    }
}

/// Events fetched from an endpoint's queue at a time.
const PAGE: u32 = 50;
/// Least time between two passes: under load every commit logs events, and one pass per
/// batch of them delivers as much as one per event would.
const MIN_PASS_INTERVAL: Duration = Duration::from_millis(50);
/// Endpoints delivered to at once by one node.
const PARALLEL: usize = 16;

/// Why the dispatcher could not start.
#[derive(Debug, thiserror::Error)]
#[error("webhook HTTP client: {0}")]
pub struct DispatcherError(#[from] reqwest::Error);

/// A resolver that drops loopback, private and link-local addresses, so a public name that
/// resolves (or is made to resolve) to an internal address is never called.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !crate::domain::webhooks::is_private(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{host} resolves only to loopback, private or link-local addresses"
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Delivers webhooks until shutdown.
pub struct Dispatcher {
    engine: Engine,
    settings: WebhookSettings,
    http: reqwest::Client,
    /// This node's name on leases: its id and a random part, so a restarted node does not
    /// take over a lease its previous run still had.
    holder: String,
}

impl Dispatcher {
    pub fn new(
        engine: Engine,
        settings: WebhookSettings,
        node: &str,
    ) -> Result<Self, DispatcherError> {
        let mut http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // A webhook URL must not bounce the cloud somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("eftcloud/", env!("CARGO_PKG_VERSION")));
        if engine.settings().refuse_private_webhooks {
            http = http.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Self {
            engine,
            settings,
            http: http.build()?,
            holder: format!("{node}:{}", uuid::Uuid::new_v4().simple()),
        })
    }

    /// Runs until `shutdown` is cancelled; deliveries in flight are dropped then (an
    /// unrecorded delivery is made again by the next holder).
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let mut running: JoinSet<crate::domain::webhooks::EndpointId> = JoinSet::new();
        let mut busy = HashSet::new();
        let mut watch = this.engine.events_watch();
        loop {
            watch.borrow_and_update();
            let sleep = match this.start_due(&mut running, &mut busy).await {
                Ok(sleep) => sleep,
                Err(e) => {
                    if !e.is_unavailable() {
                        tracing::error!(error = %e, "webhook pass failed");
                    }
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {
                    running.abort_all();
                    return;
                }
                Some(done) = running.join_next() => {
                    if let Ok(id) = done {
                        busy.remove(&id);
                    } else {
                        // A delivery task panicked or was aborted: look at everything again.
                        busy.clear();
                    }
                }
                _ = watch.changed() => {
                    // Let a burst of events gather (cancelled with the rest on shutdown).
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        () = tokio::time::sleep(MIN_PASS_INTERVAL) => {}
                    }
                }
                () = this.engine.sleep(sleep) => {}
            }
        }
    }

    /// Starts a delivery run for each due endpoint not already running here; how long to
    /// sleep until the next retry falls due.
    async fn start_due(
        self: &Arc<Self>,
        running: &mut JoinSet<crate::domain::webhooks::EndpointId>,
        busy: &mut HashSet<crate::domain::webhooks::EndpointId>,
    ) -> Result<Duration, EngineError> {
        let now = self.engine.now();
        let endpoints = self.engine.enabled_webhooks().await?;
        // When the earliest endpoint waiting out a backoff is due again.
        let next = endpoints
            .iter()
            .map(|e| e.next_attempt_at)
            .filter(|at| *at > now)
            .min();
        for e in endpoints.into_iter().filter(|e| e.next_attempt_at <= now) {
            if busy.len() >= PARALLEL {
                break;
            }
            // Nothing for it: no lease to take (a read, not two writes, per idle endpoint).
            if busy.contains(&e.id) || !self.engine.webhook_has_work(&e).await? {
                continue;
            }
            if busy.insert(e.id.clone()) {
                let this = self.clone();
                running.spawn(async move {
                    let id = e.id.clone();
                    if let Err(err) = this.serve(e).await {
                        if !err.is_unavailable() {
                            tracing::error!(endpoint = %id, error = %err, "webhook delivery run failed");
                        }
                    }
                    id
                });
            }
        }
        Ok(next
            .and_then(|at| (at - self.engine.now()).to_std().ok())
            .unwrap_or(self.settings.recheck)
            .min(self.settings.recheck))
    }

    /// The lease this run asks for or extends: longer than a page of attempts takes.
    fn lease_until(&self) -> DateTime<Utc> {
        let lease = self.settings.timeout * 3 + Duration::from_secs(10);
        self.engine.now()
            + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60))
    }

    /// One delivery run on an endpoint: lease it, post its redeliveries, then its queue,
    /// until it is empty or an attempt fails; then give the lease up.
    async fn serve(&self, endpoint: Endpoint) -> Result<(), EngineError> {
        let Some(mut e) = self
            .engine
            .lease_webhook(&endpoint.id, &self.holder, self.lease_until())
            .await?
        else {
            return Ok(());
        };
        let result = self.drain(&mut e).await;
        self.engine.release_webhook(&e.id, &self.holder).await?;
        result
    }

    async fn drain(&self, e: &mut Endpoint) -> Result<(), EngineError> {
        for asked in self.engine.webhook_redeliveries(e).await? {
            let event = match asked {
                Ok(event) => event,
                // Purged since it was asked for: say so in the log, and drop the request.
                Err(id) => {
                    let attempt = Attempt {
                        event_id: id.clone(),
                        event_type: String::new(),
                        attempt: 1,
                        delivered: false,
                        response_code: None,
                        error: Some("the event is no longer kept".into()),
                        at: self.engine.now(),
                    };
                    let progress = Progress::Redelivered(id);
                    if !self
                        .engine
                        .record_webhook(e, &self.holder, &attempt, &progress, self.lease_until())
                        .await?
                    {
                        return Ok(());
                    }
                    continue;
                }
            };
            let id = event.event.id.clone();
            if !self.attempt(e, &event, Progress::Redelivered(id)).await? {
                return Ok(());
            }
        }
        loop {
            let page = self.engine.webhook_queue(e, PAGE).await?;
            if page.is_empty() {
                return Ok(());
            }
            for event in &page {
                if !self
                    .attempt(e, event, Progress::Advance(event.cursor))
                    .await?
                {
                    return Ok(());
                }
                e.cursor = event.cursor;
                e.attempts = 0;
                e.failing_since = None;
            }
        }
    }

    /// Posts one event and records the attempt: whether the run goes on (delivered, and the
    /// lease still held).
    async fn attempt(
        &self,
        e: &Endpoint,
        event: &Event,
        on_success: Progress,
    ) -> Result<bool, EngineError> {
        let outcome = self.post(e, event).await;
        let now = self.engine.now();
        let attempt_no = e.attempts + 1;
        let (delivered, code, error) = match &outcome {
            Ok(code) => (true, Some(*code), None),
            Err((code, error)) => (false, *code, Some(error.clone())),
        };
        let attempt = Attempt {
            event_id: event.event.id.clone(),
            event_type: event.event.kind.as_str().into(),
            attempt: attempt_no,
            delivered,
            response_code: code,
            error,
            at: now,
        };
        let progress = if delivered {
            on_success
        } else {
            Progress::Failed(
                self.settings
                    .policy
                    .after_failure(attempt_no, e.failing_since, now),
            )
        };
        let held = self
            .engine
            .record_webhook(e, &self.holder, &attempt, &progress, self.lease_until())
            .await?;
        Ok(held && delivered)
    }

    /// One POST: the status of a 2xx answer, or the status (if any) and what went wrong.
    async fn post(&self, e: &Endpoint, event: &Event) -> Result<u16, (Option<u16>, String)> {
        let refuse = self.engine.settings().refuse_private_webhooks;
        let literal_private = match e.url.host() {
            Some(url::Host::Ipv4(ip)) => crate::domain::webhooks::is_private(ip.into()),
            Some(url::Host::Ipv6(ip)) => crate::domain::webhooks::is_private(ip.into()),
            _ => false,
        };
        if refuse && literal_private {
            return Err((
                None,
                "the target is a loopback, private or link-local address".into(),
            ));
        }
        let body = event.to_json().to_string();
        let now = self.engine.now();
        let signature = signature_header(&e.signing_secrets(now), now.timestamp(), body.as_bytes());
        let sent = self
            .http
            .post(e.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Eftcloud-Signature", signature)
            .header("Eftcloud-Event-Id", event.event.id.as_str())
            .header("Eftcloud-Event-Type", event.event.kind.as_str())
            .header("Eftcloud-Webhook-Id", e.id.as_str())
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
            Ok(r) => Err((
                Some(r.status().as_u16()),
                format!("HTTP {}", r.status().as_u16()),
            )),
            Err(err) => Err((None, error_text(&err))),
        }
    }
}

/// A transport error in one line, with its cause (reqwest's own text says only "error sending
/// request").
fn error_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.chars().take(300).collect()
}
