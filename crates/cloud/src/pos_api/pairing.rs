//! `PUT /POS/Pairing/{pairingCode}`.

use super::error::ApiError;
use super::fields::Fields;
use super::ApiState;
use crate::engine::pairing::PairError;
use axum::extract::{Path, State};
use axum::Json;
use protocol::pos_api::{PairingResponse, INVALID_PAIRING_CODE};
use protocol::register::required_field;
use protocol::{PairingCode, RegisterInfo, RegisterKey};
use std::collections::BTreeMap;

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

/// Pairs the register named in the body with the device showing `code`.
pub async fn pair(
    State(state): State<ApiState>,
    Path(code): Path<String>,
    fields: Fields,
) -> Result<Json<PairingResponse>, ApiError> {
    let key = RegisterKey::parse(
        fields.get("POSRegisterID"),
        fields.get("POSBusinessName"),
        fields.get("POSVendorName"),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let register_name = required_field("POSRegisterName", fields.get("POSRegisterName"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let code =
        PairingCode::parse(&code).map_err(|_| ApiError::bad_request(INVALID_PAIRING_CODE))?;
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
    match state.engine.pair(&code, register, contact).await {
        Ok(_) => Ok(Json(PairingResponse {
            result: "success".into(),
        })),
        Err(PairError::InvalidCode) => Err(ApiError::bad_request(INVALID_PAIRING_CODE)),
        Err(PairError::Store(e)) => Err(ApiError::internal(e)),
    }
}
