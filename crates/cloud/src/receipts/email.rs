//! Email receipts through an SMTP server (lettre): a multipart/alternative message with the
//! receipt as plain text and as a small HTML table.

use super::{Failure, ReceiptConfigError};
use crate::domain::receipts::{
    html_body, subject, text_body, DeliveryId, EmailAddress, ReceiptContent,
};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// Where email receipts go out, and from whom.
#[derive(Clone)]
pub struct SmtpSettings {
    /// `smtp://[user:password@]host[:port][?tls=required|opportunistic]` or `smtps://...`.
    url: String,
    from: Mailbox,
}

impl SmtpSettings {
    /// Checks the URL (its scheme and TLS mode, as the transport reads it) and the sender.
    pub fn parse(url: &str, from: Option<&str>) -> Result<Self, ReceiptConfigError> {
        let url = url.trim().to_string();
        AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
            .map_err(|e| ReceiptConfigError::SmtpUrl(e.to_string()))?;
        let from = from
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .ok_or(ReceiptConfigError::MissingFrom)?;
        let from = from
            .parse::<Mailbox>()
            .map_err(|_| ReceiptConfigError::From(from.to_string()))?;
        Ok(Self { url, from })
    }

    /// The sender, as the `From` header shows it.
    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    /// The URL without its password, for logs and `Debug`.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            Ok(u) => u.to_string(),
            Err(_) => "(unparsable)".into(),
        }
    }
}

/// Sends email receipts.
pub(super) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub(super) fn new(s: &SmtpSettings, timeout: Duration) -> Result<Self, ReceiptConfigError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&s.url)
            .map_err(|e| ReceiptConfigError::SmtpUrl(e.to_string()))?
            .timeout(Some(timeout))
            .build();
        Ok(Self {
            transport,
            from: s.from.clone(),
        })
    }

    /// The message of one delivery. Its `Message-ID` is the delivery's, so a copy sent again
    /// after a crash is the same message to the reader's mail client.
    pub(super) fn message(
        &self,
        id: &DeliveryId,
        to: &EmailAddress,
        merchant: &str,
        content: &ReceiptContent,
    ) -> Result<Message, Failure> {
        let permanent = |message: String| Failure {
            message,
            permanent: true,
        };
        let to: Mailbox = to
            .as_str()
            .parse()
            .map_err(|e| permanent(format!("invalid recipient: {e}")))?;
        let domain = self.from.email.domain().to_string();
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject(merchant))
            .message_id(Some(format!("<{id}@{domain}>")))
            .multipart(MultiPart::alternative_plain_html(
                text_body(content),
                html_body(merchant, content),
            ))
            .map_err(|e| permanent(format!("cannot build the message: {e}")))
    }

    /// One SMTP delivery; `Ok` with the server's answer (`250 ...`).
    pub(super) async fn send(
        &self,
        id: &DeliveryId,
        to: &EmailAddress,
        merchant: &str,
        content: &ReceiptContent,
    ) -> Result<String, Failure> {
        let message = self.message(id, to, merchant, content)?;
        match self.transport.send(message).await {
            Ok(response) => {
                let text: Vec<&str> = response.message().collect();
                Ok(format!("{} {}", response.code(), text.join(" "))
                    .trim()
                    .chars()
                    .take(200)
                    .collect())
            }
            Err(e) => Err(Failure {
                permanent: e.is_permanent(),
                message: format!("SMTP: {e}").chars().take(500).collect(),
            }),
        }
    }
}
