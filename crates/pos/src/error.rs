//! What can go wrong talking to the cloud, as one typed error.

use std::error::Error as _;

/// An error from the POS API client.
#[derive(Debug, thiserror::Error)]
pub enum PosError {
    /// The cloud answered with an error status; `message` is the `{"error": "..."}` text.
    #[error("{status}: {message}")]
    Api {
        /// The HTTP status code.
        status: u16,
        /// The human readable error text from the body.
        message: String,
    },
    /// The request never got an HTTP answer (DNS, connect, TLS, timeout, reset).
    #[error("cannot reach the cloud: {}", with_causes(.0))]
    Transport(#[from] reqwest::Error),
    /// The cloud answered 2xx with a body this client cannot use.
    #[error("unexpected response from the cloud: {0}")]
    BadResponse(String),
    /// The transaction did not complete within the wait timeout.
    #[error("timed out waiting for the transaction to complete")]
    Timeout,
    /// A base or polling URL that cannot be used.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The CA certificate to trust cannot be used.
    #[error("CA certificate {0}")]
    CaCert(String),
    /// The API key cannot be sent in a header (control characters).
    #[error("the API key contains characters a header cannot carry")]
    ApiKey,
}

impl PosError {
    /// Whether a poll that failed this way is worth repeating: transport failures and 5xx (and
    /// 408) are transient, every other answer is final.
    pub fn is_retryable(&self) -> bool {
        match self {
            PosError::Transport(_) => true,
            PosError::Api { status, .. } => *status >= 500 || *status == 408,
            PosError::BadResponse(_)
            | PosError::Timeout
            | PosError::InvalidUrl(_)
            | PosError::CaCert(_)
            | PosError::ApiKey => false,
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            PosError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// reqwest's top-level message ("error sending request") hides the useful part ("connection
/// refused"), so the causes are spelled out.
fn with_causes(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    // An http:// request to a server that speaks TLS reads a TLS alert as its answer, which
    // hyper calls an HTTP/0.9 response.
    let plain = e.url().is_some_and(|u| u.scheme() == "http");
    if plain && (out.contains("HTTP/0.9") || out.contains("invalid HTTP version")) {
        out.push_str(" (this server speaks TLS: use https:// for --cloud)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_reads_like_the_cli_prints_it() {
        let e = PosError::Api {
            status: 400,
            message: protocol::pos_api::NOT_PAIRED.into(),
        };
        assert_eq!(
            e.to_string(),
            "400: This register is not paired to a device, please pair it first."
        );
        assert_eq!(e.status(), Some(400));
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        let api = |status| PosError::Api {
            status,
            message: String::new(),
        };
        assert!(api(500).is_retryable());
        assert!(api(503).is_retryable());
        assert!(api(408).is_retryable());
        assert!(!api(400).is_retryable());
        assert!(!api(401).is_retryable());
        assert!(!api(404).is_retryable());
        assert!(!PosError::Timeout.is_retryable());
        assert!(!PosError::BadResponse("x".into()).is_retryable());
    }
}
