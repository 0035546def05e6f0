//! Every HTTP API error is `{"error": "..."}` with the status clients expect: each handler
//! family has its error enum ([`HttpError`]), rendered as an [`ApiError`].

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::pos_api::ErrorBody;

/// The body of a 503 while the store cannot commit (the POS retries after `Retry-After`).
pub const STORAGE_UNAVAILABLE: &str = "storage unavailable, retry later";
/// `Retry-After` of a storage outage: the store probe runs twice a second.
const STORAGE_RETRY_AFTER_SECS: u64 = 1;

/// An error of one handler family: each variant names its status, its body (`Display`) and,
/// where one status has several causes a dashboard wants to see apart, its metrics reason.
/// Handlers return [`ApiError`], into which each family converts with `?`.
pub trait HttpError: std::fmt::Display {
    fn status(&self) -> StatusCode;
    /// The reason counted in `eftcloud_rejected_requests_total` when the status's own
    /// (`crate::metrics::reason_of_status`) is not precise enough.
    fn reason(&self) -> Option<&'static str> {
        None
    }
    /// `Retry-After`, when the client should wait a known time.
    fn retry_after_secs(&self) -> Option<u64> {
        None
    }
    /// Fields beside `error` that let a client act without parsing the message (a refused
    /// refund's `amountRefundable`).
    fn details(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// An error answer of the HTTP API as sent: `{"error": "..."}`, its status, `Retry-After`
/// and metrics reason. Built only from a family's error ([`HttpError`]).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after_secs: Option<u64>,
    reason: Option<&'static str>,
    details: Vec<(&'static str, String)>,
}

impl<E: HttpError> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self {
            status: e.status(),
            message: e.to_string(),
            retry_after_secs: e.retry_after_secs(),
            reason: e.reason(),
            details: e.details(),
        }
    }
}

impl ApiError {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The short reason counted in `eftcloud_rejected_requests_total`: the status's own, or
    /// the one its family named (`not_paired`, `busy`, `storage_unavailable`), never read from
    /// the message.
    pub fn reason(&self) -> &'static str {
        self.reason
            .unwrap_or_else(|| crate::metrics::reason_of_status(self.status))
    }
}

/// The service itself could not answer: the family every handler shares.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// 503 with `Retry-After`: the store cannot commit (full disk, database down). Nothing was
    /// stored; the same request may be sent again.
    #[error("{STORAGE_UNAVAILABLE}")]
    StorageUnavailable,
    /// Like `StorageUnavailable`, saying why (for `/readyz`, which operators read).
    #[error("storage unavailable: {0}")]
    StorageUnavailableBecause(String),
    /// 503 with `Retry-After`: a write kept losing a race; it passes.
    #[error("{0}")]
    Contended(String),
    /// 503: a part the node needs is down (the bus), or it is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// 500: our fault. The detail went to the log when it was built, not to the client.
    #[error("internal error, please retry")]
    Internal,
}

impl ServiceError {
    /// A 500, logging the detail.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error answering an HTTP request");
        Self::Internal
    }

    /// A store failure: 503 when the store is unavailable, else 500 (logged).
    pub fn store(e: crate::engine::StoreError) -> Self {
        if e.is_unavailable() {
            // Logged once per outage by `Health`, not per request.
            Self::StorageUnavailable
        } else {
            Self::internal(e)
        }
    }

    /// An engine failure: 503 when the store is unavailable or a write kept losing a race
    /// (both pass), else 500.
    pub fn engine(e: crate::engine::EngineError) -> Self {
        use crate::engine::EngineError;
        match e {
            EngineError::Store(e) => Self::store(e),
            e @ EngineError::Contended(_) => Self::Contended(e.to_string()),
            e => Self::internal(e),
        }
    }
}

impl HttpError for ServiceError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::StorageUnavailable | Self::StorageUnavailableBecause(_) => {
                Some("storage_unavailable")
            }
            _ => None,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::StorageUnavailable | Self::StorageUnavailableBecause(_) => {
                Some(STORAGE_RETRY_AFTER_SECS)
            }
            Self::Contended(_) => Some(1),
            Self::Unavailable(_) | Self::Internal => None,
        }
    }
}

/// 404 for unknown paths, and for a known path with the wrong method (the SmartConnect
/// convention clients rely on).
#[derive(Debug, thiserror::Error)]
#[error("Not found")]
pub struct RouteNotFound;

impl HttpError for RouteNotFound {
    fn status(&self) -> StatusCode {
        StatusCode::NOT_FOUND
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let reason = self.reason();
        let mut response = if self.details.is_empty() {
            (
                self.status,
                Json(ErrorBody {
                    error: self.message,
                }),
            )
                .into_response()
        } else {
            let mut body = serde_json::Map::new();
            body.insert("error".into(), self.message.into());
            for (k, v) in self.details {
                body.insert(k.into(), v.into());
            }
            (self.status, Json(serde_json::Value::Object(body))).into_response()
        };
        response
            .extensions_mut()
            .insert(crate::metrics::Rejection(reason));
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<crate::engine::StoreError> for ApiError {
    fn from(e: crate::engine::StoreError) -> Self {
        ServiceError::store(e).into()
    }
}

impl From<crate::engine::EngineError> for ApiError {
    fn from(e: crate::engine::EngineError) -> Self {
        ServiceError::engine(e).into()
    }
}

/// Fallback for unknown paths and wrong methods.
pub async fn not_found() -> ApiError {
    RouteNotFound.into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pos_api::access::AccessError;
    use crate::pos_api::fields::FieldError;
    use crate::pos_api::pairing::PairingError;
    use crate::pos_api::transaction::TransactionError;

    /// (status, body, reason, Retry-After) as sent.
    type Sent<Body> = (u16, Body, &'static str, Option<String>);

    async fn sent(e: ApiError) -> Sent<String> {
        let reason = e.reason();
        let r = e.into_response();
        let status = r.status().as_u16();
        assert_eq!(
            r.extensions()
                .get::<crate::metrics::Rejection>()
                .map(|r| r.0),
            Some(reason),
            "the response carries the reason the metrics layer counts"
        );
        let retry = r
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (
            status,
            v["error"].as_str().unwrap().to_owned(),
            reason,
            retry,
        )
    }

    #[tokio::test]
    async fn each_family_maps_to_status_body_reason_and_retry_after() {
        let one = Some("1".to_owned());
        let cases: Vec<(ApiError, Sent<&str>)> = vec![
            (
                TransactionError::NotPaired.into(),
                (400, protocol::pos_api::NOT_PAIRED, "not_paired", None),
            ),
            (
                TransactionError::DeviceBusy.into(),
                (429, protocol::pos_api::DEVICE_BUSY, "busy", None),
            ),
            (
                TransactionError::ReferenceConflict("r-1".into()).into(),
                (
                    409,
                    "PosReference 'r-1' was already used by this register for a different request",
                    "conflict",
                    None,
                ),
            ),
            (
                ServiceError::StorageUnavailable.into(),
                (503, STORAGE_UNAVAILABLE, "storage_unavailable", one.clone()),
            ),
            (
                ServiceError::Contended("lost".into()).into(),
                (503, "lost", "unavailable", one.clone()),
            ),
            (
                ServiceError::Internal.into(),
                (500, "internal error, please retry", "internal", None),
            ),
            (
                AccessError::NotFound.into(),
                (404, "Transaction not found", "not_found", None),
            ),
            (
                AccessError::TokenExpired.into(),
                (401, "Token expired", "unauthorized", None),
            ),
            (
                AccessError::PollingTooFast {
                    interval_secs: "0.5".into(),
                    retry_after_secs: 2,
                }
                .into(),
                (
                    429,
                    "Polling too fast: poll this transaction at most every 0.5 s",
                    "rate_limited",
                    Some("2".into()),
                ),
            ),
            (
                PairingError::InvalidCode.into(),
                (
                    400,
                    protocol::pos_api::INVALID_PAIRING_CODE,
                    "bad_request",
                    None,
                ),
            ),
            (
                FieldError::TooLarge(Some(10)).into(),
                (
                    413,
                    "Request body too large: at most 10 bytes",
                    "too_large",
                    None,
                ),
            ),
            (
                FieldError::TooLarge(None).into(),
                (413, "Request body too large", "too_large", None),
            ),
            (
                FieldError::WrongVendor.into(),
                (
                    403,
                    "This POS API key does not belong to the POSVendorName in the request",
                    "unauthorized",
                    None,
                ),
            ),
        ];
        for (error, (status, body, reason, retry)) in cases {
            assert_eq!(
                sent(error).await,
                (status, body.to_owned(), reason, retry),
                "for {body}"
            );
        }
    }
}
