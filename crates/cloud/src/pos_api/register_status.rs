//! `GET /pos/register`: what a POS wants to know before it starts a sale — is the register
//! paired, to which device, is that device online and is it busy.

use super::access::require_register;
use super::error::ApiError;
use super::fields::Fields;
use super::ApiState;
use axum::extract::State;
use axum::Json;
use serde::Serialize;

/// The register status body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterStatus {
    pub paired: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub register_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub online: bool,
    pub busy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_transaction_id: Option<String>,
    /// When the device was last connected or last disconnected (RFC 3339), if ever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

/// The status of the register named by the triple.
pub async fn status(
    State(state): State<ApiState>,
    fields: Fields,
) -> Result<Json<RegisterStatus>, ApiError> {
    let key = require_register(&fields)?;
    let store = state.engine.store();
    let Some(register) = store.register(&key).await.map_err(ApiError::internal)? else {
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
    let device = store
        .device(&register.device_id)
        .await
        .map_err(ApiError::internal)?;
    let active = store
        .active_transaction(&register.device_id)
        .await
        .map_err(ApiError::internal)?;
    let online = state.engine.bus().is_online(&register.device_id).await;
    let last_seen = device
        .and_then(|d| d.last_seen_at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    Ok(Json(RegisterStatus {
        paired: true,
        register_name: Some(register.info.register_name),
        device_id: Some(register.device_id.to_string()),
        online,
        busy: active.is_some(),
        active_transaction_id: active.map(|t| t.id.to_string()),
        last_seen,
    }))
}
