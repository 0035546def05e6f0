//! The admin API of accounts: merchants and their sites, API keys, the audit log
//! (`/admin/merchants`, `/admin/api-keys`, `/admin/audit`). Each route needs the `admin` scope;
//! a merchant's key sees and changes its own merchant only, and cannot create merchants.

use super::dashboard::{rfc3339, Admin};
use super::WebState;
use crate::domain::accounts::{
    AccountError, ApiKeyRecord, AuditEntry, AuditQuery, KeyOwner, MerchantId, MerchantRecord,
    Scope, Scopes, SiteRecord,
};
use crate::engine::accounts::{owner_label, AccountsError, NewApiKey};
use crate::pos_api::error::{ApiError, HttpError, ServiceError};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Bad requests and refusals of the accounts API.
#[derive(Debug, thiserror::Error)]
pub enum AccountsApiError {
    /// 400: the body is not the JSON the route reads.
    #[error("invalid JSON body: {0}")]
    Body(String),
    /// 400: a value that does not parse, a name taken, a past expiry.
    #[error("{0}")]
    Invalid(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: a name already taken.
    #[error("{0}")]
    Conflict(String),
    /// 403: a merchant's key acting beyond its merchant.
    #[error("{0}")]
    Forbidden(&'static str),
}

impl HttpError for AccountsApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Body(_) | Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }
}

impl From<AccountsError> for ApiError {
    fn from(e: AccountsError) -> Self {
        match e {
            AccountsError::Store(e) => ServiceError::store(e).into(),
            e @ (AccountsError::MerchantExists(_) | AccountsError::SiteExists(..)) => {
                AccountsApiError::Conflict(e.to_string()).into()
            }
            e @ (AccountsError::NoMerchant(_)
            | AccountsError::NoSite(_)
            | AccountsError::NoKey(_)) => AccountsApiError::NotFound(e.to_string()).into(),
            e @ (AccountsError::Invalid(_)
            | AccountsError::ExpiryPassed
            | AccountsError::TipPercentOutOfRange) => {
                AccountsApiError::Invalid(e.to_string()).into()
            }
        }
    }
}

fn invalid(e: AccountError) -> ApiError {
    AccountsApiError::Invalid(e.to_string()).into()
}

fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| AccountsApiError::Body(e.to_string()).into())
}

/// A merchant as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MerchantView {
    pub merchant_id: String,
    pub name: String,
    pub created_at: String,
    /// The currency of a request that names none.
    pub currency: String,
    /// The largest tip adjustment, in percent of the amount asked for.
    pub max_tip_percent: u32,
}

impl From<MerchantRecord> for MerchantView {
    fn from(m: MerchantRecord) -> Self {
        Self {
            merchant_id: m.id.to_string(),
            name: m.name,
            created_at: rfc3339(m.created_at),
            currency: m.currency.to_string(),
            max_tip_percent: m.max_tip_percent,
        }
    }
}

/// A site as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteView {
    pub site_id: String,
    pub merchant_id: String,
    pub name: String,
    pub created_at: String,
    pub time_zone: String,
}

impl From<SiteRecord> for SiteView {
    fn from(s: SiteRecord) -> Self {
        Self {
            site_id: s.id.to_string(),
            merchant_id: s.merchant_id.to_string(),
            name: s.name,
            created_at: rfc3339(s.created_at),
            time_zone: s.time_zone,
        }
    }
}

/// A key as lists show it: never the secret or its hash.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    pub key_id: String,
    /// What the key starts with, to recognise it (`eftk_<id>_`).
    pub prefix: String,
    /// `installation`, `merchant:<id>` or `vendor:<name>`.
    pub owner: String,
    pub scopes: Vec<&'static str>,
    pub label: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
}

impl From<ApiKeyRecord> for ApiKeyView {
    fn from(k: ApiKeyRecord) -> Self {
        Self {
            prefix: format!("{}{}_", crate::engine::accounts::KEY_PREFIX, k.id),
            key_id: k.id,
            owner: owner_label(&k.owner),
            scopes: k.scopes.iter().map(Scope::as_str).collect(),
            label: k.label,
            created_at: rfc3339(k.created_at),
            expires_at: k.expires_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
        }
    }
}

/// A key just created: the only time the key itself is shown.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKeyView {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The key: shown once, stored only as a hash.
    pub api_key: String,
}

/// An audit entry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub action: String,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<String>,
    pub detail: serde_json::Value,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        Self {
            seq: e.seq,
            at: rfc3339(e.at),
            actor: e.actor,
            source: e.source,
            action: e.action,
            target: e.target,
            merchant_id: e.merchant_id.map(|m| m.to_string()),
            detail: serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::String(e.detail)),
        }
    }
}

/// The merchant named in a path, if the credential sees it.
async fn seen_merchant(
    state: &WebState,
    admin: &Admin,
    id: &str,
) -> Result<MerchantRecord, ApiError> {
    let not_found = || AccountsApiError::NotFound(format!("no merchant '{id}'"));
    let id = MerchantId::parse(id).map_err(|_| not_found())?;
    match state.engine.merchant(&id).await? {
        Some(m) if admin.sees(&m.id) => Ok(m),
        _ => Err(not_found().into()),
    }
}

/// `GET /admin/merchants`: every merchant (a merchant's key: its own).
pub async fn merchants(
    State(state): State<WebState>,
    admin: Admin,
) -> Result<Json<Vec<MerchantView>>, ApiError> {
    admin.require(Scope::Admin)?;
    let all = state.engine.merchants().await?;
    Ok(Json(
        all.into_iter()
            .filter(|m| admin.sees(&m.id))
            .map(MerchantView::from)
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameBody {
    name: String,
}

/// `POST /admin/merchants` `{"name": "..."}`: a new merchant (the installation's keys only).
pub async fn create_merchant(
    State(state): State<WebState>,
    admin: Admin,
    bytes: Bytes,
) -> Result<(StatusCode, Json<MerchantView>), ApiError> {
    admin.require(Scope::Admin)?;
    if admin.merchant().is_some() {
        return Err(AccountsApiError::Forbidden("a merchant's key cannot create merchants").into());
    }
    let NameBody { name } = body(&bytes)?;
    let m = state.engine.create_merchant(&name, &admin.actor).await?;
    Ok((StatusCode::CREATED, Json(m.into())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TermsBody {
    currency: Option<String>,
    max_tip_percent: Option<u32>,
}

/// `PATCH /admin/merchants/{id}` `{"currency": "NZD", "maxTipPercent": 20}`: the merchant's
/// default currency and tip limit (either may be left out).
pub async fn set_merchant_terms(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<MerchantView>, ApiError> {
    admin.require(Scope::Admin)?;
    let m = seen_merchant(&state, &admin, &id).await?;
    let TermsBody {
        currency,
        max_tip_percent,
    } = body(&bytes)?;
    let currency = currency
        .as_deref()
        .map(protocol::Currency::parse)
        .transpose()
        .map_err(|e| AccountsApiError::Body(e.to_string()))?;
    let m = state
        .engine
        .set_merchant_terms(&m, currency, max_tip_percent, &admin.actor)
        .await?;
    Ok(Json(m.into()))
}

/// `GET /admin/merchants/{id}/sites`.
pub async fn sites(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Vec<SiteView>>, ApiError> {
    admin.require(Scope::Admin)?;
    let m = seen_merchant(&state, &admin, &id).await?;
    let sites = state.engine.sites(Some(&m.id)).await?;
    Ok(Json(sites.into_iter().map(SiteView::from).collect()))
}

/// `POST /admin/merchants/{id}/sites` `{"name": "..."}`.
pub async fn create_site(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<(StatusCode, Json<SiteView>), ApiError> {
    admin.require(Scope::Admin)?;
    let m = seen_merchant(&state, &admin, &id).await?;
    let NameBody { name } = body(&bytes)?;
    let site = state.engine.create_site(&m, &name, &admin.actor).await?;
    Ok((StatusCode::CREATED, Json(site.into())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SiteBody {
    time_zone: String,
}

/// `PATCH /admin/sites/{id}` `{"timeZone": "Australia/Sydney"}`: the site's time zone, in which
/// update campaigns keep their maintenance windows.
pub async fn set_site(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<SiteView>, ApiError> {
    admin.require(Scope::Admin)?;
    let site_id = crate::domain::accounts::SiteId::parse(&id).map_err(invalid)?;
    let site = state
        .engine
        .site(&site_id)
        .await?
        .filter(|s| admin.sees(&s.merchant_id))
        .ok_or_else(|| AccountsApiError::NotFound(format!("no site {id}")))?;
    let SiteBody { time_zone } = body(&bytes)?;
    let site = state
        .engine
        .set_site_time_zone(&site, &time_zone, &admin.actor)
        .await?;
    Ok(Json(site.into()))
}

/// `GET /admin/api-keys`: the keys the credential sees, newest first.
pub async fn api_keys(
    State(state): State<WebState>,
    admin: Admin,
) -> Result<Json<Vec<ApiKeyView>>, ApiError> {
    admin.require(Scope::Admin)?;
    let keys = state.engine.api_keys(&admin.principal).await?;
    Ok(Json(keys.into_iter().map(ApiKeyView::from).collect()))
}

/// The body of `POST /admin/api-keys`: one of `merchantId` or `vendor` (neither: an
/// installation key), scopes, and optionally a label and an expiry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewKeyBody {
    merchant_id: Option<String>,
    vendor: Option<String>,
    scopes: Vec<String>,
    #[serde(default)]
    label: String,
    expires_at: Option<String>,
}

/// `POST /admin/api-keys`: a new key, shown once in the answer.
pub async fn create_api_key(
    State(state): State<WebState>,
    admin: Admin,
    bytes: Bytes,
) -> Result<(StatusCode, Json<CreatedKeyView>), ApiError> {
    admin.require(Scope::Admin)?;
    let b: NewKeyBody = body(&bytes)?;
    let owner = match (b.merchant_id, b.vendor) {
        (Some(_), Some(_)) => {
            return Err(
                AccountsApiError::Invalid("give merchantId or vendor, not both".into()).into(),
            )
        }
        (Some(m), None) => KeyOwner::Merchant(seen_merchant(&state, &admin, &m).await?.id),
        (None, Some(v)) if !v.trim().is_empty() => KeyOwner::Vendor(v.trim().to_string()),
        (None, Some(_)) => {
            return Err(AccountsApiError::Invalid("vendor must not be empty".into()).into())
        }
        (None, None) => KeyOwner::Installation,
    };
    // A merchant's key makes keys of its own merchant only.
    if let Some(own) = admin.merchant() {
        if owner != KeyOwner::Merchant(own.clone()) {
            return Err(AccountsApiError::Forbidden(
                "a merchant's key creates keys of its own merchant only",
            )
            .into());
        }
    }
    let scopes = Scopes::parse(&b.scopes.join(" ")).map_err(invalid)?;
    let expires_at = b
        .expires_at
        .map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    AccountsApiError::Invalid(format!("invalid expiresAt '{t}': use RFC 3339"))
                })
        })
        .transpose()?;
    let created = state
        .engine
        .create_api_key(
            NewApiKey {
                owner,
                scopes,
                label: b.label,
                expires_at,
            },
            &admin.actor,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKeyView {
            key: created.record.into(),
            api_key: created.key,
        }),
    ))
}

/// `POST /admin/api-keys/{id}/revoke`: refused at once on every node.
pub async fn revoke_api_key(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<ApiKeyView>, ApiError> {
    admin.require(Scope::Admin)?;
    let revoked = state
        .engine
        .revoke_api_key(&id, &admin.principal, &admin.actor)
        .await?;
    Ok(Json(revoked.into()))
}

/// A person as the API shows them (never the password hash).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub email: String,
    pub role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<String>,
    pub created_at: String,
    /// Sign-in refused until then, after too many wrong passwords.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<String>,
}

/// `GET /admin/users`: the people the credential sees (its merchant's, or all).
pub async fn users(
    State(state): State<WebState>,
    admin: Admin,
) -> Result<Json<Vec<UserView>>, ApiError> {
    admin.require(Scope::Admin)?;
    let users = state.engine.users(&admin.principal).await?;
    Ok(Json(
        users
            .into_iter()
            .map(|u| UserView {
                email: u.email.to_string(),
                role: u.role.as_str(),
                merchant_id: u.merchant_id.map(|m| m.to_string()),
                created_at: rfc3339(u.created_at),
                locked_until: u.locked_until.map(rfc3339),
            })
            .collect(),
    ))
}

/// Filters of `GET /admin/audit`.
#[derive(Debug, Default, Deserialize)]
pub struct AuditFilter {
    /// Only this merchant's entries.
    pub merchant: Option<String>,
    /// Actions starting with this (`api_key.`).
    pub action: Option<String>,
    pub actor: Option<String>,
    /// Entries older than this sequence number (the next page).
    pub before: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// `GET /admin/audit`: the audit log, newest first.
pub async fn audit(
    State(state): State<WebState>,
    admin: Admin,
    Query(f): Query<AuditFilter>,
) -> Result<Json<Vec<AuditView>>, ApiError> {
    admin.require(Scope::Admin)?;
    let text = |o: Option<String>| o.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let merchant = text(f.merchant)
        .map(|m| MerchantId::parse(&m))
        .transpose()
        .map_err(invalid)?;
    let q = AuditQuery {
        merchant,
        action: text(f.action),
        actor: text(f.actor),
        before: f.before,
        limit: f.limit.unwrap_or(100).clamp(1, 1000),
    };
    let entries = state.engine.audit_log(&admin.principal, q).await?;
    Ok(Json(entries.into_iter().map(AuditView::from).collect()))
}
