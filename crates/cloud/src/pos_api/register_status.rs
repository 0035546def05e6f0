//! `GET /pos/register`: what a POS wants to know before it starts a sale — is the register
//! paired, to which device, is that device online and is it busy.

use super::access::require_register;
use super::error::ApiError;
use super::fields::Fields;
use super::ApiState;
use crate::engine::queries::RegisterOverview;
use axum::extract::State;
use axum::Json;
use protocol::pos_api::ErrorBody;
use serde::Serialize;

/// The register status body (eftcloud extension). An unpaired register is
/// `{"paired": false, "online": false, "busy": false}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterStatus {
    /// Whether the register is paired to a device.
    pub paired: bool,
    /// Paired only: the `POSRegisterName` given at pairing.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub register_name: Option<String>,
    /// Paired only: the device the register is paired to.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub device_id: Option<String>,
    /// Whether the device is connected to the cloud now.
    pub online: bool,
    /// Whether the device has a transaction in progress (a new one would get 429).
    pub busy: bool,
    /// When busy: the id of the transaction in progress (it may belong to another register of
    /// the same device).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub active_transaction_id: Option<String>,
    /// When the device was last connected or last disconnected (RFC 3339), if ever.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "2024-01-31T09:15:00Z")]
    pub last_seen: Option<String>,
}

/// Register status
///
/// eftcloud extension. What a POS wants to know before it starts a sale: is the register
/// paired, to which device, is that device online, is it busy. Fields may also come in a form
/// or JSON body.
#[utoipa::path(
    get,
    path = "/pos/register",
    tag = "eftcloud extensions",
    params(
        ("POSRegisterID" = String, Query, min_length = 1, description = "Register identity"),
        ("POSBusinessName" = String, Query, min_length = 1, description = "Register identity"),
        ("POSVendorName" = String, Query, min_length = 1, description = "Register identity"),
    ),
    responses(
        (status = 200, description = "The register's status (also for an unknown register: `paired: false`)", body = RegisterStatus),
        (status = 400, description = "Missing or too long register field, or a field given twice in the body or twice in the query string (`Field <name> given more than once`)", body = ErrorBody),
        (status = 413, description = "Request body over the server's limit (`--max-body-bytes`, 64 KiB by default), refused before it is read: `Request body too large: at most <n> bytes`", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
)]
pub async fn status(
    State(state): State<ApiState>,
    fields: Fields,
) -> Result<Json<RegisterStatus>, ApiError> {
    let key = require_register(&fields)?;
    // A register paired to a device of another merchant is unpaired for this key.
    let overview = state
        .engine
        .register_overview(&fields.credential().principal, &key)
        .await?;
    let Some(overview) = overview else {
        return Ok(Json(RegisterStatus {
            paired: false,
            register_name: None,
            device_id: None,
            online: false,
            busy: false,
            active_transaction_id: None,
            last_seen: None,
        }));
    };
    let RegisterOverview {
        register,
        device,
        online,
        active,
    } = overview;
    let last_seen = device
        .and_then(|d| d.last_seen_at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    Ok(Json(RegisterStatus {
        paired: true,
        register_name: Some(register.info.register_name),
        device_id: Some(register.device_id.to_string()),
        online,
        busy: active.is_some(),
        // Busy is the device's state; the id is only shown to the register that owns it.
        active_transaction_id: active
            .filter(|t| t.register.key == key)
            .map(|t| t.id.to_string()),
        last_seen,
    }))
}
