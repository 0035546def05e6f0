//! The HTTP client: pairing, starting transactions, polling, and waiting for the outcome.

use crate::endpoint::Endpoints;
use crate::error::PosError;
use crate::polling::{parse_retry_after, PollOutcome, WaitOptions, DEFAULT_RETRY_AFTER};
use crate::register::PairingDetails;
use crate::transaction::{TransactionMode, TransactionSpec};
use protocol::pos_api::{keys, ErrorBody, PairingResponse, TransactionEnvelope};
use protocol::{PairingCode, RegisterKey};
use reqwest::header::{HeaderValue, ACCEPT, RETRY_AFTER};
use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

/// How long to wait for a TCP/TLS connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an ordinary request (pairing, async start, poll) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a legacy synchronous transaction may hold the request open. Vendor clients used two
/// minutes; a little more lets the cloud answer with its own definite outcome first.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(3 * 60);

/// Longest error text kept from a non-JSON error body (a proxy's HTML page, say).
const MAX_ERROR_TEXT: usize = 200;

/// The HTTP client settings of [`PosClient::new`].
fn http_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("eftcloud-pos/", env!("CARGO_PKG_VERSION")))
}

/// A client for one cloud. Cheap to clone; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct PosClient {
    http: reqwest::Client,
    endpoints: Endpoints,
}

impl PosClient {
    /// A client for `base`: a cloud base (`http://127.0.0.1:8080`) or a SmartConnect-style
    /// environment (`https://host/POS`).
    pub fn new(base: &str) -> Result<Self, PosError> {
        Self::with_http_client(base, http_builder().build()?)
    }

    /// A client that trusts the CA certificates in the PEM file `ca_cert` besides the public
    /// roots: for a cloud with a self-signed or private certificate.
    pub fn with_ca_cert(base: &str, ca_cert: &std::path::Path) -> Result<Self, PosError> {
        Self::with_options(base, Some(ca_cert), None)
    }

    /// A client with an optional CA certificate file (see [`PosClient::with_ca_cert`]) and an
    /// optional API key, sent as `Authorization: Bearer <key>` with every request (eftcloud
    /// keys from `eftcloud api-key create`; SmartConnect clients send none).
    pub fn with_options(
        base: &str,
        ca_cert: Option<&std::path::Path>,
        api_key: Option<&str>,
    ) -> Result<Self, PosError> {
        let mut builder = http_builder();
        if let Some(key) = api_key {
            let mut value =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.trim()))
                    .map_err(|_| PosError::ApiKey)?;
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, value);
            builder = builder.default_headers(headers);
        }
        if let Some(ca_cert) = ca_cert {
            let bad = |reason: String| PosError::CaCert(format!("{}: {reason}", ca_cert.display()));
            let pem = std::fs::read(ca_cert).map_err(|e| bad(e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| bad(format!("not valid PEM ({e})")))?;
            if certs.is_empty() {
                return Err(bad("no CERTIFICATE block in the file".into()));
            }
            builder = certs
                .into_iter()
                .fold(builder, |b, cert| b.add_root_certificate(cert));
        }
        Self::with_http_client(base, builder.build()?)
    }

    /// A client that uses the given reqwest client (its own timeouts, TLS roots or proxy);
    /// the synchronous mode still sets its own longer per-request timeout.
    pub fn with_http_client(base: &str, http: reqwest::Client) -> Result<Self, PosError> {
        Ok(Self {
            http,
            endpoints: Endpoints::parse(base)?,
        })
    }

    /// The HTTP client (for eftcloud's extension calls).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The cloud's URLs.
    pub(crate) fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// `{root}/POS/Transaction`, where transactions are posted.
    pub fn transaction_url(&self) -> &Url {
        self.endpoints.transaction()
    }

    /// `{root}/POS/Pairing/{code}`. A code typed with spaces or dashes (`1234 5678`) is sent as
    /// its eight digits; anything else is sent as given and the cloud judges it.
    pub fn pairing_url(&self, code: &str) -> Result<Url, PosError> {
        match PairingCode::parse(code) {
            Ok(c) => self.endpoints.pairing(c.as_str()),
            Err(_) => self.endpoints.pairing(code.trim()),
        }
    }

    /// Pairs `register` with the device showing `code`.
    pub async fn pair(
        &self,
        code: &str,
        register: &RegisterKey,
        details: &PairingDetails,
    ) -> Result<(), PosError> {
        let resp = self
            .http
            .put(self.pairing_url(code)?)
            .header(ACCEPT, json())
            .form(&details.form(register))
            .send()
            .await?;
        let body: PairingResponse = read_json(resp).await?;
        if body.result.eq_ignore_ascii_case("success") {
            Ok(())
        } else {
            Err(PosError::BadResponse(format!(
                "pairing answered result '{}'",
                body.result
            )))
        }
    }

    /// Starts a transaction in async mode; the answer is the pending envelope with its
    /// `PollingUrl`, to pass to [`PosClient::wait_for_completion`].
    pub async fn start(
        &self,
        register: &RegisterKey,
        spec: &TransactionSpec,
    ) -> Result<TransactionEnvelope, PosError> {
        let resp = self
            .http
            .post(self.transaction_url().clone())
            .header(ACCEPT, json())
            .form(&spec.form(register, TransactionMode::Async))
            .send()
            .await?;
        let env: TransactionEnvelope = read_json(resp).await?;
        if env.transaction_id.trim().is_empty() {
            return Err(PosError::BadResponse("no transactionId".into()));
        }
        // Real clients refuse a start they cannot follow up; so does this one.
        polling_url(&env)
            .map_err(|e| PosError::BadResponse(format!("no usable data.PollingUrl: {e}")))?;
        Ok(env)
    }

    /// Runs a transaction in the legacy synchronous mode: the request is held open until the
    /// transaction completes, and the answer is the completed envelope.
    pub async fn transact_sync(
        &self,
        register: &RegisterKey,
        spec: &TransactionSpec,
    ) -> Result<TransactionEnvelope, PosError> {
        let resp = self
            .http
            .post(self.transaction_url().clone())
            .header(ACCEPT, json())
            .timeout(SYNC_TIMEOUT)
            .form(&spec.form(register, TransactionMode::Sync))
            .send()
            .await?;
        read_json(resp).await
    }

    /// Polls once. A 429 is an answer, not an error, so that the caller can honour its
    /// `Retry-After`; every other non-2xx status is [`PosError::Api`].
    pub async fn poll(&self, polling_url: &str) -> Result<PollOutcome, PosError> {
        let url = parse_polling_url(polling_url)?;
        let resp = self.http.get(url).header(ACCEPT, json()).send().await?;
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after)
                .unwrap_or(DEFAULT_RETRY_AFTER);
            return Ok(PollOutcome::TooFast { retry_after });
        }
        read_json(resp).await.map(PollOutcome::Envelope)
    }

    /// Polls `started`'s `PollingUrl` until the transaction is `COMPLETED`, calling `on_update`
    /// with each pending body (its `DisplayText`, `OK-DELAYED`, ...). Waits `opts.interval`
    /// between polls, longer when a 429 says so; polls on through 5xx and transport errors as
    /// real clients do, since the cloud or the network may be restarting. 400, 401 (token
    /// expired) and 404 are final. Gives up with [`PosError::Timeout`] after `opts.timeout`.
    pub async fn wait_for_completion(
        &self,
        started: &TransactionEnvelope,
        opts: WaitOptions,
        mut on_update: impl FnMut(&TransactionEnvelope),
    ) -> Result<TransactionEnvelope, PosError> {
        if started.is_completed() {
            return Ok(started.clone());
        }
        let url = polling_url(started)?.to_string();
        let deadline = Instant::now() + opts.timeout;
        let mut delay = opts.interval;
        loop {
            // Pause before every poll, the first included: the API rate-limits polling.
            tokio::time::sleep_until((Instant::now() + delay).min(deadline)).await;
            if Instant::now() >= deadline {
                return Err(PosError::Timeout);
            }
            let polled = tokio::time::timeout_at(deadline, self.poll(&url))
                .await
                .map_err(|_| PosError::Timeout)?;
            delay = match polled {
                Ok(PollOutcome::Envelope(env)) if env.is_completed() => return Ok(env),
                Ok(PollOutcome::Envelope(env)) => {
                    on_update(&env);
                    opts.interval
                }
                Ok(PollOutcome::TooFast { retry_after }) => {
                    tracing::debug!(?retry_after, "polled too fast; backing off");
                    retry_after.max(opts.interval)
                }
                Err(e) if e.is_retryable() => {
                    tracing::debug!(error = %e, "poll failed; will retry");
                    opts.interval
                }
                Err(e) => return Err(e),
            };
        }
    }
}

fn json() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

/// The envelope's `data.PollingUrl`, which must be absolute.
fn polling_url(env: &TransactionEnvelope) -> Result<Url, PosError> {
    let raw = env
        .field(keys::POLLING_URL)
        .ok_or_else(|| PosError::BadResponse("the envelope has no data.PollingUrl".into()))?;
    parse_polling_url(raw)
}

fn parse_polling_url(raw: &str) -> Result<Url, PosError> {
    let url = Url::parse(raw.trim())
        .map_err(|e| PosError::InvalidUrl(format!("polling URL '{raw}': {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(PosError::InvalidUrl(format!(
            "polling URL '{raw}': the scheme must be http or https"
        )));
    }
    Ok(url)
}

/// Reads a 2xx JSON body, or turns any other status into [`PosError::Api`].
pub(crate) async fn read_json<T: DeserializeOwned>(resp: Response) -> Result<T, PosError> {
    let status = resp.status();
    let body = resp.bytes().await?;
    if !status.is_success() {
        return Err(api_error(status, &body));
    }
    serde_json::from_slice(&body)
        .map_err(|e| PosError::BadResponse(format!("HTTP {}: {e}", status.as_u16())))
}

/// The `{"error": "..."}` text, or whatever the body says when an intermediary (a proxy, a load
/// balancer) answered instead of the cloud.
fn api_error(status: StatusCode, body: &[u8]) -> PosError {
    let message = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => b.error,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                status.canonical_reason().unwrap_or("error").to_string()
            } else {
                text.chars().take(MAX_ERROR_TEXT).collect()
            }
        }
    };
    PosError::Api {
        status: status.as_u16(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_text_becomes_the_message() {
        let e = api_error(
            StatusCode::BAD_REQUEST,
            br#"{"error":"This register is not paired to a device, please pair it first."}"#,
        );
        assert_eq!(
            e.to_string(),
            "400: This register is not paired to a device, please pair it first."
        );
        let e = api_error(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert_eq!(e.to_string(), "502: <html>bad gateway</html>");
        let e = api_error(StatusCode::SERVICE_UNAVAILABLE, b"");
        assert_eq!(e.to_string(), "503: Service Unavailable");
    }

    #[test]
    fn polling_url_must_be_absolute_http() {
        assert!(parse_polling_url("https://h/pos/transaction/1?merchantAccessToken=k").is_ok());
        assert!(matches!(
            parse_polling_url("/pos/transaction/1"),
            Err(PosError::InvalidUrl(_))
        ));
        assert!(matches!(
            parse_polling_url("ftp://h/x"),
            Err(PosError::InvalidUrl(_))
        ));
    }

    #[test]
    fn pairing_code_is_tidied_when_it_is_a_code() {
        let c = PosClient::new("http://h/POS").map_err(|e| e.to_string());
        let url = c.and_then(|c| c.pairing_url("1234 5678").map_err(|e| e.to_string()));
        assert_eq!(
            url.map(|u| u.to_string()),
            Ok("http://h/POS/Pairing/12345678".to_string())
        );
    }
}
