//! `/v1/webhook-endpoints`: webhook endpoints managed by their owners with an API key holding
//! `webhooks:manage` (a merchant's key manages its merchant's endpoints, a vendor's its own,
//! the installation's every one). The admin API serves the same under `/admin/webhooks` for
//! the operator and the dashboard (`web::webhooks_api`), through the functions here.

use super::credentials::Credential;
use super::error::{ApiError, HttpError};
use crate::domain::accounts::{KeyOwner, MerchantId, Principal};
use crate::domain::events::{EventId, TypeFilter};
use crate::domain::webhooks::{Attempt, Endpoint, EndpointId, Owner};
use crate::engine::accounts::Actor;
use crate::engine::webhooks::{WebhookAdminError, WebhookChange};
use crate::engine::Engine;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use protocol::pos_api::ErrorBody;
use serde::{Deserialize, Serialize};

/// Why a request is refused, beyond the engine's reasons.
#[derive(Debug, thiserror::Error)]
pub enum WebhooksApiError {
    #[error("A valid POS API key is required: Authorization: Bearer <key>")]
    KeyRequired,
    /// 400: a body or query that does not parse.
    #[error("Invalid request: {0}")]
    Json(String),
    #[error(transparent)]
    Admin(WebhookAdminError),
}

impl HttpError for WebhooksApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::KeyRequired => StatusCode::UNAUTHORIZED,
            Self::Json(_) => StatusCode::BAD_REQUEST,
            Self::Admin(e) => match e {
                WebhookAdminError::Bad(_) | WebhookAdminError::Types(_) => StatusCode::BAD_REQUEST,
                WebhookAdminError::NotFound | WebhookAdminError::EventNotFound => {
                    StatusCode::NOT_FOUND
                }
                WebhookAdminError::OwnerForbidden => StatusCode::FORBIDDEN,
                // Answered through `ServiceError` below, never here.
                WebhookAdminError::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}

impl From<WebhookAdminError> for ApiError {
    fn from(e: WebhookAdminError) -> Self {
        match e {
            WebhookAdminError::Engine(e) => e.into(),
            e => WebhooksApiError::Admin(e).into(),
        }
    }
}

/// An endpoint as the API shows it (its secret only on creation and rotation).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub merchant_id: Option<String>,
    pub vendor: Option<String>,
    pub created_at: String,
    pub failing_since: Option<String>,
    pub disabled_reason: Option<String>,
    /// Attempts at the event at the head of its queue (0 while healthy).
    pub attempts: u32,
    /// Set while a rotated secret still signs, beside the new one.
    pub previous_secret_expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl EndpointView {
    pub fn of(e: &Endpoint, with_secret: bool) -> Self {
        let (merchant_id, vendor) = match &e.owner {
            Owner::Installation => (None, None),
            Owner::Merchant(m) => (Some(m.as_str().to_string()), None),
            Owner::Vendor(v) => (None, Some(v.clone())),
        };
        Self {
            id: e.id.to_string(),
            url: e.url.to_string(),
            event_types: e.types.names(),
            description: e.description.clone(),
            enabled: e.enabled,
            merchant_id,
            vendor,
            created_at: rfc3339(e.created_at),
            failing_since: e.failing_since.map(rfc3339),
            disabled_reason: e.disabled_reason.clone(),
            attempts: e.attempts,
            previous_secret_expires_at: e.previous_secret.as_ref().map(|(_, t)| rfc3339(*t)),
            secret: with_secret.then(|| e.secret.clone()),
        }
    }
}

/// One attempt of the delivery log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub event_id: String,
    pub event_type: String,
    pub attempt: u32,
    pub delivered: bool,
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub at: String,
}

impl From<&Attempt> for AttemptView {
    fn from(a: &Attempt) -> Self {
        Self {
            event_id: a.event_id.to_string(),
            event_type: a.event_type.clone(),
            attempt: a.attempt,
            delivered: a.delivered,
            response_code: a.response_code,
            error: a.error.clone(),
            at: rfc3339(a.at),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateBody {
    pub url: String,
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    #[serde(default)]
    pub description: Option<String>,
    /// Installation credentials only: the merchant the endpoint is for.
    #[serde(default)]
    pub merchant_id: Option<String>,
    /// Installation credentials only: the vendor the endpoint is for.
    #[serde(default)]
    pub vendor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeBody {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateBody {
    pub grace_seconds: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedeliverBody {
    pub event_id: String,
}

/// `limit` of a delivery log query (1 to 500, default 50).
pub fn log_limit(query: Option<&str>) -> Result<u32, ApiError> {
    let limit = query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("limit"))
        .map(|(_, v)| v);
    match limit {
        None => Ok(50),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| {
                WebhooksApiError::Json("limit must be a whole number from 1 to 500".into()).into()
            }),
    }
}

/// Parses a JSON body (an empty one as `T::default()` where `empty` is given).
pub fn json_body<T: serde::de::DeserializeOwned>(
    body: &Bytes,
    empty: Option<T>,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        if let Some(default) = empty {
            return Ok(default);
        }
    }
    serde_json::from_slice(body).map_err(|e| WebhooksApiError::Json(e.to_string()).into())
}

fn types(names: Option<&Vec<String>>) -> Result<TypeFilter, ApiError> {
    match names {
        None => Ok(TypeFilter::all()),
        Some(n) => TypeFilter::parse(n.iter().map(String::as_str))
            .map_err(|e| WebhookAdminError::Types(e).into()),
    }
}

fn endpoint_id(id: &str) -> Result<EndpointId, ApiError> {
    // A malformed id names no endpoint.
    EndpointId::parse(id).map_err(|_| WebhookAdminError::NotFound.into())
}

/// The endpoint's owner a creation asks for: the credential's own, or (installation only) the
/// merchant or vendor named.
fn owner_for(manager: &KeyOwner, body: &CreateBody) -> Result<Owner, ApiError> {
    let named = match (&body.merchant_id, &body.vendor) {
        (Some(_), Some(_)) => {
            return Err(WebhooksApiError::Json("give merchantId or vendor, not both".into()).into())
        }
        (Some(m), None) => {
            Some(Owner::Merchant(MerchantId::parse(m).map_err(|e| {
                ApiError::from(WebhooksApiError::Json(e.to_string()))
            })?))
        }
        (None, Some(v)) if !v.trim().is_empty() => Some(Owner::Vendor(v.trim().to_string())),
        _ => None,
    };
    Ok(named.unwrap_or_else(|| Owner::of(manager)))
}

// The operations, shared by both APIs.

pub async fn create_as(
    engine: &Engine,
    manager: &KeyOwner,
    actor: &Actor,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let b: CreateBody = json_body(body, None)?;
    let owner = owner_for(manager, &b)?;
    let e = engine
        .create_webhook(
            manager,
            owner,
            &b.url,
            types(b.event_types.as_ref())?,
            b.description.as_deref().unwrap_or(""),
            actor,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(EndpointView::of(&e, true))).into_response())
}

pub async fn list_as(engine: &Engine, manager: &KeyOwner) -> Result<Response, ApiError> {
    let endpoints: Vec<EndpointView> = engine
        .webhooks_of(manager)
        .await?
        .iter()
        .map(|e| EndpointView::of(e, false))
        .collect();
    Ok(Json(serde_json::json!({ "endpoints": endpoints })).into_response())
}

pub async fn get_as(engine: &Engine, manager: &KeyOwner, id: &str) -> Result<Response, ApiError> {
    let e = engine.webhook_of(manager, &endpoint_id(id)?).await?;
    Ok(Json(EndpointView::of(&e, false)).into_response())
}

pub async fn change_as(
    engine: &Engine,
    manager: &KeyOwner,
    actor: &Actor,
    id: &str,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let b: ChangeBody = json_body(body, None)?;
    let change = WebhookChange {
        url: b.url,
        types: b.event_types.as_ref().map(|t| types(Some(t))).transpose()?,
        description: b.description,
        enabled: b.enabled,
    };
    let e = engine
        .change_webhook(manager, &endpoint_id(id)?, change, actor)
        .await?;
    Ok(Json(EndpointView::of(&e, false)).into_response())
}

pub async fn delete_as(
    engine: &Engine,
    manager: &KeyOwner,
    actor: &Actor,
    id: &str,
) -> Result<Response, ApiError> {
    engine
        .delete_webhook(manager, &endpoint_id(id)?, actor)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn rotate_as(
    engine: &Engine,
    manager: &KeyOwner,
    actor: &Actor,
    id: &str,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let b: RotateBody = json_body(body, Some(RotateBody::default()))?;
    let e = engine
        .rotate_webhook_secret(manager, &endpoint_id(id)?, b.grace_seconds, actor)
        .await?;
    Ok(Json(serde_json::json!({
        "secret": e.secret,
        "previousSecretExpiresAt": e.previous_secret.as_ref().map(|(_, t)| rfc3339(*t)),
    }))
    .into_response())
}

pub async fn deliveries_as(
    engine: &Engine,
    manager: &KeyOwner,
    id: &str,
    limit: u32,
) -> Result<Response, ApiError> {
    let log = engine
        .webhook_log(manager, &endpoint_id(id)?, limit)
        .await?;
    let deliveries: Vec<AttemptView> = log.iter().map(AttemptView::from).collect();
    Ok(Json(serde_json::json!({ "deliveries": deliveries })).into_response())
}

pub async fn redeliver_as(
    engine: &Engine,
    manager: &KeyOwner,
    id: &str,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let b: RedeliverBody = json_body(body, None)?;
    let event = EventId::parse(&b.event_id).map_err(|_| WebhookAdminError::EventNotFound)?;
    engine
        .redeliver_webhook(manager, &endpoint_id(id)?, &event)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "queued": 1 })),
    )
        .into_response())
}

// The POS API's handlers.

fn manager(c: &Credential) -> Result<(KeyOwner, Actor), ApiError> {
    match &c.principal {
        Principal::Keyless => Err(WebhooksApiError::KeyRequired.into()),
        p @ (Principal::Key { owner, .. } | Principal::Person { owner, .. }) => {
            Ok((owner.clone(), Actor::of(p, None)))
        }
    }
}

/// Create a webhook endpoint
///
/// eftcloud extension. An endpoint for the key's merchant or vendor (an installation key may
/// name `merchantId` or `vendor`; without either, the endpoint receives every event). It gets
/// events logged from now on, in order, signed with its own `secret` (shown here only). Needs
/// `webhooks:manage`. See docs/events.md.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints",
    tag = "eftcloud extensions",
    request_body = CreateBody,
    responses(
        (status = 201, description = "The endpoint, with its secret", body = EndpointView),
        (status = 400, description = "Invalid URL (or, under production, a private target), unknown event type, a body that is not the JSON described (an unknown field, a field given more than once: `duplicate field`)", body = ErrorBody),
        (status = 413, description = "Request body over the server's limit, refused before it is read", body = ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<super::ApiState>,
    Extension(c): Extension<Credential>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (owner, actor) = manager(&c)?;
    create_as(&state.engine, &owner, &actor, &body).await
}

/// List webhook endpoints
///
/// eftcloud extension. The key's endpoints (an installation key: all), without secrets.
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints",
    tag = "eftcloud extensions",
    responses((status = 200, description = "`{\"endpoints\": [...]}`", body = Object)),
)]
pub async fn list(
    State(state): State<super::ApiState>,
    Extension(c): Extension<Credential>,
) -> Result<Response, ApiError> {
    list_as(&state.engine, &manager(&c)?.0).await
}

/// One webhook endpoint
///
/// eftcloud extension.
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints/{id}",
    tag = "eftcloud extensions",
    params(("id" = String, Path, min_length = 1, description = "`we_…`")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 404, description = "No such endpoint for this key", body = ErrorBody),
    ),
)]
pub async fn get_one(
    State(state): State<super::ApiState>,
    Extension(c): Extension<Credential>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    get_as(&state.engine, &manager(&c)?.0, &id).await
}

/// Change a webhook endpoint
///
/// eftcloud extension. Any of `url`, `eventTypes`, `description`, `enabled`; enabling an
/// endpoint the cloud disabled resumes it from where it stopped.
#[utoipa::path(
    patch,
    path = "/v1/webhook-endpoints/{id}",
    tag = "eftcloud extensions",
    params(("id" = String, Path, min_length = 1, description = "`we_…`")),
    request_body = ChangeBody,
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 400, description = "A body that is not the JSON described (an unknown field, a field given more than once: `duplicate field`), or a bad value", body = ErrorBody),
        (status = 413, description = "Request body over the server's limit, refused before it is read", body = ErrorBody),
        (status = 404, description = "No such endpoint for this key", body = ErrorBody),
    ),
)]
pub async fn change(
    State(state): State<super::ApiState>,
    Extension(c): Extension<Credential>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (owner, actor) = manager(&c)?;
    change_as(&state.engine, &owner, &actor, &id, &body).await
}

/// Delete a webhook endpoint
///
/// eftcloud extension. Its delivery log goes with it.
#[utoipa::path(
    delete,
    path = "/v1/webhook-endpoints/{id}",
    tag = "eftcloud extensions",
    params(("id" = String, Path, min_length = 1, description = "`we_…`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such endpoint for this key", body = ErrorBody),
    ),
)]
pub async fn delete(
    State(state): State<super::ApiState>,
    Extension(c): Extension<Credential>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (owner, actor) = manager(&c)?;
    delete_as(&state.engine, &owner, &actor, &id).await
}

/// Rotate a webhook endpoint's secret
///
/// eftcloud extension. A new secret; the old one still signs beside it for `graceSeconds`
/// (default 86400, at most a week; 0 drops it at once).
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints/{id}/rotate-secret",
    tag = "eftcloud extensions",
    params(("id" = String, Path, min_length = 1, description = "`we_…`")),
    request_body = RotateBody,
    responses(
        (status = 200, description = "`{\"secret\", \"previousSecretExpiresAt\"}`", body = Object),
        (status = 400, description = "A body that is not the JSON described (an unknown field, a field given more than once: `duplicate field`), or a bad value", body = ErrorBody),
        (status = 413, description = "Request body over the server's limit, refused before it is read", body = ErrorBody),
        (status = 404, description = "No such endpoint for this key", body = ErrorBody),
    ),
)]
pub async fn rotate(
    State(state): State<super::ApiState>,
    Extension(c): Extension<Credential>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (owner, actor) = manager(&c)?;
    rotate_as(&state.engine, &owner, &actor, &id, &body).await
}

/// A webhook endpoint's delivery log
///
/// eftcloud extension. Its newest attempts, newest first, with response codes.
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints/{id}/deliveries",
    tag = "eftcloud extensions",
    params(
        ("id" = String, Path, min_length = 1, description = "`we_…`"),
        ("limit" = Option<u32>, Query, description = "1 to 500, default 50"),
    ),
    responses(
        (status = 200, description = "`{\"deliveries\": [...]}`", body = Object),
        (status = 400, description = "A body that is not the JSON described (an unknown field, a field given more than once: `duplicate field`), or a bad value", body = ErrorBody),
        (status = 413, description = "Request body over the server's limit, refused before it is read", body = ErrorBody),
        (status = 404, description = "No such endpoint for this key", body = ErrorBody),
    ),
)]
pub async fn deliveries(
    State(state): State<super::ApiState>,
    Extension(c): Extension<Credential>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let limit = log_limit(q.as_deref())?;
    deliveries_as(&state.engine, &manager(&c)?.0, &id, limit).await
}

/// Redeliver an event
///
/// eftcloud extension. Delivers an event the endpoint receives again, ahead of its queue.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints/{id}/redeliver",
    tag = "eftcloud extensions",
    params(("id" = String, Path, min_length = 1, description = "`we_…`")),
    request_body = RedeliverBody,
    responses(
        (status = 202, description = "`{\"queued\": 1}`", body = Object),
        (status = 400, description = "A body that is not the JSON described (an unknown field, a field given more than once: `duplicate field`), or a bad value", body = ErrorBody),
        (status = 413, description = "Request body over the server's limit, refused before it is read", body = ErrorBody),
        (status = 404, description = "No such endpoint for this key", body = ErrorBody),
    ),
)]
pub async fn redeliver(
    State(state): State<super::ApiState>,
    Extension(c): Extension<Credential>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (owner, _) = manager(&c)?;
    redeliver_as(&state.engine, &owner, &id, &body).await
}
