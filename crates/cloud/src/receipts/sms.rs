//! SMS receipts through an HTTP provider's webhook: `POST <url>` with the JSON body
//! `{"to": "+61...", "text": "..."}`, signed as completion callbacks are
//! (`Eftcloud-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`) when a secret
//! is configured. A 2xx answer means the provider took the message.

use super::{http_url, Failure, ReceiptConfigError};
use crate::domain::receipts::PhoneNumber;
use crate::pos_api::callbacks::{sign, SIGNATURE_HEADER};
use chrono::{DateTime, Utc};
use std::time::Duration;
use url::Url;

/// Where SMS receipts are posted, and the key that signs them.
#[derive(Clone)]
pub struct SmsSettings {
    pub url: Url,
    /// HMAC-SHA256 key of the signature header; none: requests are not signed.
    pub secret: Option<String>,
}

impl SmsSettings {
    /// Checks the webhook's URL (`http` or `https`).
    pub fn parse(url: &str, secret: Option<&str>) -> Result<Self, ReceiptConfigError> {
        let url = http_url(url).ok_or_else(|| ReceiptConfigError::SmsUrl(url.to_string()))?;
        Ok(Self {
            url,
            secret: secret
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        })
    }
}

/// The JSON body posted to the provider.
#[derive(serde::Serialize)]
struct SmsBody<'a> {
    to: &'a str,
    text: &'a str,
}

/// Posts SMS receipts.
pub(super) struct Webhook {
    http: reqwest::Client,
    url: Url,
    secret: Option<String>,
}

impl Webhook {
    pub(super) fn new(s: &SmsSettings, timeout: Duration) -> Result<Self, ReceiptConfigError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // The provider's URL must not bounce the cloud somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("eftcloud/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            url: s.url.clone(),
            secret: s.secret.clone(),
        })
    }

    /// One POST; `Ok` with the status for a 2xx answer. A 400 or 422 is the provider refusing
    /// this message for good; anything else may pass (a wrong secret can be fixed, a provider
    /// comes back).
    pub(super) async fn send(
        &self,
        to: &PhoneNumber,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<String, Failure> {
        let body = serde_json::to_vec(&SmsBody {
            to: to.as_str(),
            text,
        })
        .map_err(|e| Failure::transient(e.to_string()))?;
        let mut request = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            let t = now.timestamp();
            request = request.header(
                SIGNATURE_HEADER,
                format!("t={t},v1={}", sign(secret, t, &body)),
            );
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::transient(format!("SMS webhook request failed: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(format!("HTTP {}", status.as_u16()));
        }
        Err(Failure {
            message: format!("SMS webhook answered HTTP {}", status.as_u16()),
            permanent: status == reqwest::StatusCode::BAD_REQUEST
                || status == reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        })
    }
}
