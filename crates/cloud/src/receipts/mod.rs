//! Sending receipts: the delivery worker that empties the receipt outbox by email (SMTP) and
//! by SMS (an HTTP provider's webhook). Deliveries are written by the POS's request
//! (`POST /pos/transaction/{id}/receipt`) and claimed here with a lease, so in a cluster one
//! node sends each; every attempt is recorded on the transaction's timeline, a failure is
//! retried with exponential backoff up to a limit, then the delivery is `failed` with its last
//! error. A delivery may be sent twice if the node dies between sending and recording it
//! (the email's `Message-ID` is the delivery's id, so mail clients show it once).

mod email;
mod sms;

use crate::domain::receipts::{
    receipt_of, sms_text, Address, AttemptOutcome, Channels, ReceiptDelivery, RetryRule,
};
use crate::domain::timeline::{EventKind, TimelineEvent};
use crate::engine::{Engine, EngineError};
use rand::Rng;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use url::Url;

pub use email::SmtpSettings;
pub use sms::SmsSettings;

/// How receipts are sent, and how often a failure is retried.
#[derive(Clone)]
pub struct ReceiptSettings {
    /// Email through this SMTP server; none: email receipts are refused.
    pub smtp: Option<SmtpSettings>,
    /// SMS through this webhook; none: SMS receipts are refused.
    pub sms: Option<SmsSettings>,
    /// First retry delay; doubles each attempt.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Attempts before a delivery is given up.
    pub max_attempts: u32,
    /// Timeout of one attempt (the SMTP conversation, or the webhook's answer).
    pub timeout: Duration,
}

impl Default for ReceiptSettings {
    fn default() -> Self {
        Self {
            smtp: None,
            sms: None,
            retry_min: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            max_attempts: 8,
            timeout: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for ReceiptSettings {
    // The SMTP URL may carry a password and the webhook has a secret: neither is printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptSettings")
            .field("smtp", &self.smtp.as_ref().map(SmtpSettings::redacted))
            .field("sms", &self.sms.as_ref().map(|s| s.url.as_str()))
            .field("retry_min", &self.retry_min)
            .field("retry_max", &self.retry_max)
            .field("max_attempts", &self.max_attempts)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A receipt setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptConfigError {
    #[error("invalid --smtp-url: {0} (expected smtp://[user:password@]host[:port][?tls=required|opportunistic] or smtps://...)")]
    SmtpUrl(String),
    #[error("--smtp-from is required with --smtp-url: the sender's address, such as \"Shop <receipts@example.com>\"")]
    MissingFrom,
    #[error(
        "invalid --smtp-from '{0}': expected an address such as \"Shop <receipts@example.com>\""
    )]
    From(String),
    #[error("invalid --sms-webhook-url '{0}': expected an http(s) URL")]
    SmsUrl(String),
    #[error("receipt HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Why one attempt failed, and whether trying again can help.
#[derive(Debug)]
struct Failure {
    message: String,
    /// The other side refused for good (an unknown mailbox, a rejected number).
    permanent: bool,
}

impl Failure {
    fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }
}

/// Deliveries in flight at once.
const BATCH: u32 = 16;
/// Longest sleep between passes (a safety net: requests on this node wake the worker, other
/// nodes' are found by this pass).
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Sends receipts until shutdown.
pub struct ReceiptWorker {
    engine: Engine,
    rule: RetryRule,
    timeout: Duration,
    email: Option<email::Mailer>,
    sms: Option<sms::Webhook>,
}

impl ReceiptWorker {
    /// Prepares the transports and tells the engine which channels this node sends through.
    pub fn new(engine: Engine, settings: &ReceiptSettings) -> Result<Self, ReceiptConfigError> {
        let email = settings
            .smtp
            .as_ref()
            .map(|s| email::Mailer::new(s, settings.timeout))
            .transpose()?;
        let sms = settings
            .sms
            .as_ref()
            .map(|s| sms::Webhook::new(s, settings.timeout))
            .transpose()?;
        if settings.sms.as_ref().is_some_and(|s| s.secret.is_none()) {
            tracing::warn!(
                "--sms-webhook-url without --sms-webhook-secret: SMS requests are not signed"
            );
        }
        match (&settings.smtp, &settings.sms) {
            (None, None) => tracing::debug!("receipts by email and SMS are off"),
            (smtp, sms) => tracing::info!(
                email = smtp
                    .as_ref()
                    .map(SmtpSettings::redacted)
                    .as_deref()
                    .unwrap_or("off"),
                sms = sms.as_ref().map(|s| s.url.as_str()).unwrap_or("off"),
                "receipts by email and SMS"
            ),
        }
        engine.offer_receipt_channels(Channels {
            email: email.is_some(),
            sms: sms.is_some(),
        });
        Ok(Self {
            engine,
            rule: RetryRule {
                min: settings.retry_min,
                max: settings.retry_max,
                max_attempts: settings.max_attempts.max(1),
            },
            timeout: settings.timeout,
            email,
            sms,
        })
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        if self.email.is_none() && self.sms.is_none() {
            // Nothing to send through: requests are refused, so nothing is queued here.
            return;
        }
        loop {
            let sleep = match self.pass().await {
                Ok(sleep) => sleep,
                // A storage outage is reported once, by the store's health.
                Err(e) if e.is_unavailable() => {
                    tracing::debug!(error = %e, "receipt pass failed");
                    Duration::from_secs(1)
                }
                Err(e) => {
                    tracing::error!(error = %e, "receipt pass failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                () = self.engine.receipt_queued() => {}
                () = self.engine.sleep(sleep) => {}
            }
        }
    }

    /// Sends what is due; returns how long to sleep until the next one.
    async fn pass(&self) -> Result<Duration, EngineError> {
        let engine = &self.engine;
        loop {
            // Claimed for longer than one attempt can take, so no other node sends them too.
            let now = engine.now();
            let lease = chrono::Duration::from_std(self.timeout * 2 + Duration::from_secs(5))
                .unwrap_or_else(|_| chrono::Duration::seconds(65));
            let due = engine.claim_receipts(now, BATCH, now + lease).await?;
            let n = due.len();
            futures_util::future::join_all(due.into_iter().map(|d| self.deliver(d))).await;
            if n < BATCH as usize {
                break;
            }
        }
        Ok(match engine.next_receipt_at().await? {
            Some(at) => (at - engine.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(MAX_SLEEP),
            None => MAX_SLEEP,
        })
    }

    async fn deliver(&self, d: ReceiptDelivery) {
        let result = self.attempt(&d).await;
        let now = self.engine.now();
        let attempts = d.attempts + 1;
        let what = d.describe();
        let (outcome, event) = match result {
            Ok(detail) => (
                AttemptOutcome::Sent { at: now },
                TimelineEvent::new(now, EventKind::ReceiptSent, format!("{what}: {detail}")),
            ),
            Err(f) => {
                let outcome = if f.permanent {
                    AttemptOutcome::GaveUp {
                        error: f.message.clone(),
                    }
                } else {
                    let jitter = rand::thread_rng().gen_range(0.8..1.2);
                    self.rule
                        .after_failure(attempts, f.message.clone(), now, jitter)
                };
                let then = match &outcome {
                    AttemptOutcome::Retry { at, .. } => {
                        format!("retry in {} ms", (*at - now).num_milliseconds().max(0))
                    }
                    _ => format!(
                        "giving up after {attempts} attempt{}",
                        if attempts == 1 { "" } else { "s" }
                    ),
                };
                let detail = format!("{what}: {}; {then}", f.message);
                (
                    outcome,
                    TimelineEvent::new(now, EventKind::ReceiptFailed, detail),
                )
            }
        };
        if let Err(e) = self
            .engine
            .record_receipt_attempt(&d.id, &outcome, &event)
            .await
        {
            tracing::error!(delivery = %d.id, transaction = %d.transaction_id, error = %e, "could not record a receipt attempt");
        }
    }

    /// One attempt; `Ok` with what the other side answered.
    async fn attempt(&self, d: &ReceiptDelivery) -> Result<String, Failure> {
        let tx = self
            .engine
            .transaction(&d.transaction_id)
            .await
            .map_err(|e| Failure::transient(e.to_string()))?
            .ok_or_else(|| Failure {
                message: "the transaction is no longer stored".into(),
                permanent: true,
            })?;
        let content = receipt_of(&tx, d.copy).map_err(|e| Failure {
            message: e.to_string(),
            permanent: true,
        })?;
        let not_here = |channel| {
            Failure::transient(format!("{channel} delivery is not configured on this node"))
        };
        match &d.address {
            Address::Email(to) => {
                let mailer = self.email.as_ref().ok_or_else(|| not_here("email"))?;
                mailer.send(&d.id, to, &tx.merchant, &content).await
            }
            Address::Phone(to) => {
                let webhook = self.sms.as_ref().ok_or_else(|| not_here("SMS"))?;
                let text = sms_text(&tx, &content);
                webhook.send(to, &text, self.engine.now()).await
            }
        }
    }
}

/// Parses an `http(s)` URL of a webhook.
fn http_url(s: &str) -> Option<Url> {
    Url::parse(s.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}
