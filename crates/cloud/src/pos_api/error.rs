//! Every POS API error is `{"error": "..."}` with the status clients expect.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::pos_api::ErrorBody;

/// The body of a 503 while the store cannot commit (the POS retries after `Retry-After`).
pub const STORAGE_UNAVAILABLE: &str = "storage unavailable, retry later";
/// `Retry-After` of a storage outage: the store probe runs twice a second.
const STORAGE_RETRY_AFTER_SECS: u64 = 1;

/// An error answer of the POS API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after_secs: Option<u64>,
    /// The metrics reason, where the status alone does not name the cause.
    reason: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_secs: None,
            reason: None,
        }
    }

    /// 503 `storage unavailable` with `Retry-After`: the store cannot commit (full disk,
    /// database down). Nothing was stored; the same request may be sent again.
    pub fn storage_unavailable() -> Self {
        Self {
            retry_after_secs: Some(STORAGE_RETRY_AFTER_SECS),
            reason: Some("storage_unavailable"),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, STORAGE_UNAVAILABLE)
        }
    }

    /// Like [`Self::storage_unavailable`], saying why (for `/readyz`, which operators read).
    pub fn storage_unavailable_because(why: &str) -> Self {
        Self {
            message: format!("storage unavailable: {why}"),
            ..Self::storage_unavailable()
        }
    }

    /// A store failure: 503 when the store is unavailable, else 500 (logged).
    pub fn store(e: crate::store::StoreError) -> Self {
        if e.is_unavailable() {
            // Logged once per outage by `Health`, not per request.
            Self::storage_unavailable()
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
            e @ EngineError::Contended(_) => Self {
                retry_after_secs: Some(1),
                ..Self::unavailable(e.to_string())
            },
            e => Self::internal(e),
        }
    }

    /// 400: the request is wrong; the message says what to fix.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 400 `This register is not paired to a device, please pair it first.` (SmartConnect's
    /// wording, which clients match).
    pub fn not_paired() -> Self {
        Self {
            reason: Some("not_paired"),
            ..Self::bad_request(protocol::pos_api::NOT_PAIRED)
        }
    }

    /// 429 `device is busy`: the device runs another transaction (one at a time per device).
    pub fn device_busy() -> Self {
        Self {
            reason: Some("busy"),
            ..Self::too_many(protocol::pos_api::DEVICE_BUSY, None)
        }
    }

    /// 401: the polling token is wrong or expired.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403: authenticated, but not allowed to do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404: unknown transaction, unknown path, or a known path with the wrong method (the
    /// SmartConnect convention clients rely on).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 429, with `Retry-After` when the client should wait a known time.
    pub fn too_many(message: impl Into<String>, retry_after_secs: Option<u64>) -> Self {
        Self {
            retry_after_secs,
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }

    /// 413: the request body is larger than the configured limit.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// 409: the request contradicts what is stored (a reused POS reference, a cancel too late).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 500: our fault. The detail goes to the log, not to the client.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error answering a POS request");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error, please retry",
        )
    }

    /// 503: shutting down or storage unavailable; clients keep polling through it.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The short reason counted in `eftcloud_rejected_requests_total`: the status's own, or
    /// the one the constructor named where one status has several causes a dashboard wants to
    /// see apart (`not_paired`, `busy`, `storage_unavailable`), never read from the message.
    pub fn reason(&self) -> &'static str {
        self.reason
            .unwrap_or_else(|| crate::metrics::reason_of_status(self.status))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let reason = self.reason();
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
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

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::store(e)
    }
}

impl From<crate::engine::EngineError> for ApiError {
    fn from(e: crate::engine::EngineError) -> Self {
        Self::engine(e)
    }
}

/// Fallback for unknown paths and wrong methods.
pub async fn not_found() -> ApiError {
    ApiError::not_found("Not found")
}
