//! Completion callbacks (`PosNotificationCallbackUrl`): the completed body is POSTed as JSON,
//! signed, from a durable outbox, with retries and exponential backoff — never on the
//! transaction path. The outbox entry is written in the same commit that completes the
//! transaction, so a restart loses no callback; a callback may be delivered more than once
//! (after a crash between delivery and recording it), so receivers dedupe by `transactionId`.
//!
//! Signature, as integrators know it from Stripe: header
//! `Eftcloud-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.

use super::envelope;
use crate::domain::timeline::{EventKind, TimelineEvent};
use crate::engine::outbox::CallbackJob;
use crate::engine::Engine;
use crate::engine::StoreError;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use url::Url;

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "Eftcloud-Signature";
/// Name of the generated signing secret in the store.
pub const SECRET_NAME: &str = "callback_signing_secret";

/// Delivery rules.
#[derive(Debug, Clone)]
pub struct CallbackSettings {
    /// Signing secret; when absent, one is generated and kept in the store.
    pub secret: Option<String>,
    /// First retry delay; doubles each attempt.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// Timeout of one attempt.
    pub timeout: Duration,
}

impl Default for CallbackSettings {
    fn default() -> Self {
        Self {
            secret: None,
            retry_min: Duration::from_secs(2),
            retry_max: Duration::from_secs(3600),
            max_attempts: 15,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Deliveries in flight at once.
const BATCH: u32 = 32;
/// Longest sleep between passes (a safety net; completions wake the dispatcher).
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// `v1` signature: hex HMAC-SHA256 over `"<t>.<body>"`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A generated secret: 256 random bits, hex.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::thread_rng().gen();
    hex::encode(bytes)
}

/// Why the dispatcher could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    #[error("callback signing secret: {0}")]
    Secret(#[from] StoreError),
    #[error("callback HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Delivers callbacks until shutdown.
pub struct Dispatcher {
    engine: Engine,
    settings: CallbackSettings,
    secret: String,
    public_url: Url,
    http: reqwest::Client,
}

impl Dispatcher {
    /// Prepares the dispatcher (reads or creates the signing secret).
    pub async fn new(
        engine: Engine,
        settings: CallbackSettings,
        public_url: Url,
    ) -> Result<Self, DispatcherError> {
        let secret = match &settings.secret {
            Some(s) => s.clone(),
            None => engine.secret(SECRET_NAME, &generate_secret).await?,
        };
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // A callback URL must not bounce the cloud somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("eftcloud/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            engine,
            settings,
            secret,
            public_url,
            http,
        })
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let sleep = match self.pass().await {
                Ok(sleep) => sleep,
                // A storage outage is reported once, by the store's health.
                Err(e) if e.is_unavailable() => {
                    tracing::debug!(error = %e, "callback pass failed");
                    Duration::from_secs(1)
                }
                Err(e) => {
                    tracing::error!(error = %e, "callback pass failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                // A completion here queued a callback (others' are found by the periodic pass).
                () = self.engine.callback_queued() => {}
                () = self.engine.sleep(sleep) => {}
            }
        }
    }

    /// Delivers what is due; returns how long to sleep until the next one.
    async fn pass(&self) -> Result<Duration, crate::engine::EngineError> {
        let engine = &self.engine;
        loop {
            // Claimed for longer than one attempt can take, so no other node posts them too.
            let now = self.engine.now();
            let lease =
                chrono::Duration::from_std(self.settings.timeout * 2 + Duration::from_secs(5))
                    .unwrap_or_else(|_| chrono::Duration::seconds(30));
            let jobs = engine.claim_callbacks(now, BATCH, now + lease).await?;
            let n = jobs.len();
            futures_util::future::join_all(jobs.into_iter().map(|j| self.deliver(j))).await;
            if n < BATCH as usize {
                break;
            }
        }
        Ok(match engine.next_callback_at().await? {
            Some(at) => (at - self.engine.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(MAX_SLEEP),
            None => MAX_SLEEP,
        })
    }

    async fn deliver(&self, job: CallbackJob) {
        let id = job.transaction_id;
        let outcome = self.attempt(&job).await;
        let now = self.engine.now();
        let attempts = job.attempts + 1;
        let (delivered, retry_at, event, error) = match outcome {
            Ok(status) => (
                true,
                None,
                TimelineEvent::new(now, EventKind::CallbackDelivered, format!("HTTP {status}")),
                String::new(),
            ),
            Err(e) if attempts >= self.settings.max_attempts => (
                false,
                None,
                TimelineEvent::new(
                    now,
                    EventKind::CallbackFailed,
                    format!("{e}; giving up after {attempts} attempts"),
                ),
                e,
            ),
            Err(e) => {
                let delay = self.backoff(attempts);
                let retry = now + chrono::Duration::from_std(delay).unwrap_or_default();
                (
                    false,
                    Some(retry),
                    TimelineEvent::new(
                        now,
                        EventKind::CallbackFailed,
                        format!("{e}; retry in {} ms", delay.as_millis()),
                    ),
                    e,
                )
            }
        };
        self.engine
            .metrics()
            .callback_attempt(delivered, !delivered && retry_at.is_none());
        if let Err(e) = self
            .engine
            .record_callback_attempt(&id, delivered, retry_at, &error, &event)
            .await
        {
            tracing::error!(transaction = %id, error = %e, "could not record a callback attempt");
        }
    }

    /// One POST; `Ok(status)` for a 2xx answer.
    async fn attempt(&self, job: &CallbackJob) -> Result<u16, String> {
        let tx = self
            .engine
            .transaction(&job.transaction_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("transaction no longer stored")?;
        let body = envelope::build(
            &tx,
            &self.public_url,
            self.engine.now(),
            self.engine.settings().delayed_after,
        );
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let t = self.engine.now().timestamp();
        let signature = format!("t={t},v1={}", sign(&self.secret, t, &body));
        let response = self
            .http
            .post(&job.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    }

    /// `retry_min * 2^(attempts-1)`, capped, with ±20% jitter so retries spread out.
    fn backoff(&self, attempts: u32) -> Duration {
        let exp = self
            .settings
            .retry_min
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
            .min(self.settings.retry_max);
        exp.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Python: hmac.new(b"secret", b"1700000000.{}", hashlib.sha256).hexdigest()
        let s = sign("secret", 1_700_000_000, b"{}");
        assert_eq!(
            s,
            "b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
        assert_ne!(s, sign("other", 1_700_000_000, b"{}"));
        assert_ne!(s, sign("secret", 1_700_000_001, b"{}"));
    }
}
