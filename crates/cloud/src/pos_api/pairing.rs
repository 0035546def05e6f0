//! `PUT /POS/Pairing/{pairingCode}`.

use super::error::{ApiError, HttpError};
use super::fields::{FieldError, Fields};
use super::pairing_guard::ClientAddr;
use super::ApiState;
use crate::engine::pairing::PairError;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use protocol::pos_api::{ErrorBody, PairingResponse, INVALID_PAIRING_CODE};
use protocol::register::required_field;
use protocol::{PairingCode, RegisterInfo, RegisterKey};
use std::collections::BTreeMap;

/// Pairing a register: the family of `PUT /POS/Pairing/{code}`.
#[derive(Debug, thiserror::Error)]
pub enum PairingError {
    /// 400 with SmartConnect's wording (clients match it): malformed, unknown, used or
    /// expired; which one is not said, so codes cannot be probed.
    #[error("{INVALID_PAIRING_CODE}")]
    InvalidCode,
    /// 429: too many wrong codes from this source.
    #[error("Too many failed pairing attempts; wait before trying again")]
    TooManyAttempts { retry_after_secs: u64 },
}

impl HttpError for PairingError {
    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidCode => StatusCode::BAD_REQUEST,
            Self::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::InvalidCode => None,
            Self::TooManyAttempts { retry_after_secs } => Some(*retry_after_secs),
        }
    }
}

/// Contact metadata stored with the register: (stored key, accepted spellings).
const CONTACT_FIELDS: &[(&str, &[&str])] = &[
    ("ContactName", &["Contact Name", "ContactName"]),
    ("Address", &["Address"]),
    ("City", &["City"]),
    ("State", &["State"]),
    ("ZipCode", &["ZipCode"]),
    ("Email", &["Email"]),
    ("Phone", &["Phone"]),
];

/// Longest contact value kept.
const MAX_CONTACT_LEN: usize = 200;

/// Documentation only: the pairing fields as `/openapi.json` lists them; the handler reads
/// them through [`Fields`].
#[derive(utoipa::ToSchema)]
#[schema(description = "The pairing fields (form body, JSON body or query string; the body wins).")]
pub struct PairingForm {
    /// The register's id, unique across all of the POS vendor's customers (a UUID is typical).
    #[schema(
        rename = "POSRegisterID",
        example = "7444ae07-dc63-e49c-33e3-59a7c108cc80",
        min_length = 1,
        max_length = 200
    )]
    pub register_id: String,
    /// The register's name, shown on the device.
    #[schema(
        rename = "POSRegisterName",
        example = "Main Register",
        min_length = 1,
        max_length = 200
    )]
    pub register_name: String,
    #[schema(
        rename = "POSBusinessName",
        example = "Toys Shop",
        min_length = 1,
        max_length = 200
    )]
    pub business_name: String,
    #[schema(
        rename = "POSVendorName",
        example = "Till2Go",
        min_length = 1,
        max_length = 200
    )]
    pub vendor_name: String,
    /// Contact metadata stored with the register (`ContactName` is accepted too). Contact
    /// values are cut to 200 characters.
    #[schema(rename = "Contact Name", required = false)]
    pub contact_name: String,
    #[schema(rename = "Address", required = false)]
    pub address: String,
    #[schema(rename = "City", required = false)]
    pub city: String,
    #[schema(rename = "State", required = false)]
    pub state: String,
    #[schema(rename = "ZipCode", required = false)]
    pub zip_code: String,
    #[schema(rename = "Email", required = false)]
    pub email: String,
    #[schema(rename = "Phone", required = false)]
    pub phone: String,
}

/// Pair a register with a device
///
/// The operator reads the 8-digit code off the device's screen and types it into the POS. A
/// code is single-use and short-lived. Pairing a register that is paired to another device
/// moves it. Fields may come as a form body, a JSON body or the query string.
#[utoipa::path(
    put,
    path = "/POS/Pairing/{pairingCode}",
    tag = "SmartConnect",
    params(
        ("pairingCode" = String, Path, min_length = 1, description = "The 8 digits shown on the device (spaces and dashes are ignored)", example = "12345678"),
    ),
    request_body(
        description = "The register triple, its name and optional contact metadata.",
        content(
            (PairingForm = "application/x-www-form-urlencoded"),
            (PairingForm = "application/json"),
        ),
    ),
    responses(
        (status = 200, description = "Paired", body = PairingResponse),
        (status = 400, description = "Missing or too long field, or `Invalid Pairing Code. Please make sure you entered the code correctly` for an unknown, used or expired code, or a field given twice in the body or twice in the query string (`Field <name> given more than once`)", body = ErrorBody),
        (status = 413, description = "Request body over the server's limit (`--max-body-bytes`, 64 KiB by default), refused before it is read: `Request body too large: at most <n> bytes`", body = ErrorBody),
        (status = 429, description = "Too many failed pairing attempts from this source (or from everywhere); retry after `Retry-After` seconds", body = ErrorBody),
        (status = 500, description = "Internal error; retry", body = ErrorBody),
    ),
)]
pub async fn pair(
    State(state): State<ApiState>,
    ClientAddr(source): ClientAddr,
    Path(code): Path<String>,
    fields: Fields,
) -> Result<Json<PairingResponse>, ApiError> {
    let key = RegisterKey::parse(
        fields.get("POSRegisterID"),
        fields.get("POSBusinessName"),
        fields.get("POSVendorName"),
    )
    .map_err(FieldError::invalid)?;
    let register_name = required_field("POSRegisterName", fields.get("POSRegisterName"))
        .map_err(FieldError::invalid)?;
    // Every guess counts, malformed codes too; only a successful pairing is refunded.
    let attempt = state
        .pairing_guard
        .begin(source, std::time::Instant::now())
        .map_err(|refused| PairingError::TooManyAttempts {
            retry_after_secs: refused.retry_after_secs(),
        })?;
    let code = PairingCode::parse(&code).map_err(|_| PairingError::InvalidCode)?;
    let contact: BTreeMap<String, String> = CONTACT_FIELDS
        .iter()
        .filter_map(|(stored, spellings)| {
            fields.get_any(spellings).map(|v| {
                (
                    stored.to_string(),
                    v.chars().take(MAX_CONTACT_LEN).collect(),
                )
            })
        })
        .collect();
    let register = RegisterInfo { key, register_name };
    let merchant = fields.credential().merchant().cloned();
    match state
        .engine
        .pair(&code, register, contact, merchant.as_ref())
        .await
    {
        Ok(_) => {
            state.pairing_guard.succeeded(attempt);
            Ok(Json(PairingResponse {
                result: "success".into(),
            }))
        }
        Err(PairError::InvalidCode) => Err(PairingError::InvalidCode.into()),
        Err(PairError::Store(e)) => {
            // Our failure, not a wrong guess.
            state.pairing_guard.succeeded(attempt);
            Err(ApiError::from(e))
        }
    }
}
