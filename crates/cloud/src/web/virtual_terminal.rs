//! `/virtual-terminal`: a page that is a device. It speaks the device protocol to `/device/v1`
//! from the browser, exactly as a terminal would; the cloud treats it like any other device.
//! On dev deployments it can enroll its own device with one click.

use super::{asset, WebState};
use crate::engine::devices::{EnrollError, NewDevice};
use crate::pos_api::error::{ApiError, HttpError, ServiceError};
use crate::pos_api::pairing_guard::ClientAddr;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::DeviceId;
use serde::Serialize;

const HTML: &str = include_str!("virtual_terminal.html");
// The QR code and barcode encoders first: the page's script uses them (one file per concept,
// one request for the browser).
const SCRIPT: &str = concat!(
    include_str!("virtual_terminal_codes.js"),
    "\n",
    include_str!("virtual_terminal.js")
);
const STYLE: &str = include_str!("virtual_terminal.css");

/// Vendor and model recorded for devices the page enrolls.
const VENDOR: &str = "eftcloud";
const MODEL: &str = "virtual";
/// Merchant recorded for devices the page enrolls (an operator can tell them apart).
const MERCHANT: &str = "Virtual terminals";

/// `GET /virtual-terminal`. Whether the page may enroll its own device is written into it, so
/// it can say so before anyone clicks.
pub async fn page(State(state): State<WebState>) -> Response {
    let enabled = if state.enrollment.is_ok() {
        "true"
    } else {
        "false"
    };
    asset(
        "text/html; charset=utf-8",
        HTML.replace("{{VIRTUAL_TERMINALS}}", enabled),
    )
}

/// `GET /virtual-terminal/app.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /virtual-terminal/style.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// A device the page enrolled; the secret is shown once, like `eftcloud device add`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedDevice {
    pub device_id: String,
    pub secret: String,
}

/// The virtual terminal page's family of errors (enrolling a device from the page).
#[derive(Debug, thiserror::Error)]
pub enum EnrollmentError {
    /// 403: self-enrollment is off, and why.
    #[error(
        "creating virtual terminals from this page is off on this cloud: {0}. It is on by \
         itself only on a local development cloud (loopback listen address, no admin token or \
         POS API key, not --production); an operator can turn it on with \
         --virtual-terminals, or enroll a device with `eftcloud device add` and type its id \
         and secret into the page"
    )]
    Off(String),
    /// 429: the per-source budget is spent.
    #[error("Too many virtual terminals created from here; retry in {retry_after_secs} s")]
    TooMany { retry_after_secs: u64 },
}

impl HttpError for EnrollmentError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Off(_) => StatusCode::FORBIDDEN,
            Self::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Off(_) => None,
            Self::TooMany { retry_after_secs } => Some(*retry_after_secs),
        }
    }
}

/// `POST /virtual-terminal/devices`: enrolls a fresh `virtual-…` device and returns its
/// credentials. 403 unless self-enrollment is on (it hands out device credentials to anyone
/// who asks), 429 past the per-source budget. Such devices are removed when unused (see
/// `engine/retention.rs`).
pub async fn create_device(
    State(state): State<WebState>,
    ClientAddr(source): ClientAddr,
) -> Result<Response, ApiError> {
    if let Err(why) = state.enrollment {
        return Err(EnrollmentError::Off(why.to_string()).into());
    }
    // Every enrollment counts: the budget bounds how fast the store can be filled.
    let attempt = state
        .enrollment_guard
        .begin(source, std::time::Instant::now())
        .map_err(|refused| EnrollmentError::TooMany {
            retry_after_secs: refused.retry_after_secs(),
        })?;
    drop(attempt);
    let details = NewDevice {
        vendor: VENDOR.into(),
        model: MODEL.into(),
        merchant: MERCHANT.into(),
        site: None,
    };
    // 48 random bits: a collision is practically impossible, and retried once anyway.
    for _ in 0..2 {
        let raw = format!("virtual-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let id = DeviceId::parse(&raw).map_err(ServiceError::internal)?;
        match state.engine.enroll_virtual_device(&id, &details).await {
            Ok(secret) => {
                tracing::info!(device = %id, "virtual terminal enrolled");
                let body = CreatedDevice {
                    device_id: id.to_string(),
                    secret,
                };
                return Ok((StatusCode::CREATED, Json(body)).into_response());
            }
            Err(EnrollError::AlreadyEnrolled(_)) => continue,
            Err(EnrollError::Store(e)) => return Err(ServiceError::store(e).into()),
            Err(EnrollError::Accounts(crate::engine::accounts::AccountsError::Store(e))) => {
                return Err(ServiceError::store(e).into())
            }
            Err(e @ (EnrollError::NotEnrolled(_) | EnrollError::Accounts(_))) => {
                return Err(ServiceError::internal(e).into())
            }
        }
    }
    Err(ServiceError::internal("could not pick a free virtual device id").into())
}
