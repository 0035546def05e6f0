//! `/dashboard`, the operator's view of the fleet, and the admin JSON it reads (`/admin/...`).
//! Everything but the page's own files needs an admin credential ([`Admin`]): a person's
//! session cookie (with its CSRF token for changes), an API key, or the admin token; each
//! route then requires its scope and shows only what the credential's merchant may see.

use super::{asset, WebState};
use crate::domain::accounts::{MerchantId, Principal, Scope};
use crate::domain::lifecycle::{CompletedBy, Phase};
use crate::domain::orders::OrderId;
use crate::domain::{RegisterRecord, TransactionRecord};
use crate::engine::accounts::{Actor, KeyRefused, KEY_PREFIX};
use crate::engine::devices::EnrollError;
use crate::engine::queries::TransactionQuery;
use crate::pos_api::error::{ApiError, HttpError, ServiceError};
use crate::pos_api::pairing_guard::ClientAddr;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use futures_util::Stream;
use protocol::TransactionId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const HTML: &str = include_str!("dashboard.html");
const SCRIPT: &str = include_str!("dashboard.js");
const STYLE: &str = include_str!("dashboard.css");

/// How often the live stream looks for changes.
const LIVE_INTERVAL: Duration = Duration::from_secs(1);
/// Transactions sent in one live snapshot (the newest).
const LIVE_TRANSACTIONS: usize = 300;

const DISABLED: &str = "dashboard disabled: no admin token is configured (start the cloud with \
                        --admin-token or EFTCLOUD_ADMIN_TOKEN, or present an API key with the \
                        admin scope: eftcloud api-key create --scope admin)";

/// The dashboard's and the admin API's family of errors.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// 404: no admin token is configured, so the admin API does not exist.
    #[error("{DISABLED}")]
    Disabled,
    /// 429: too many wrong tokens from this source.
    #[error("Too many wrong admin tokens from this address; retry in {retry_after_secs} s")]
    TooManyWrongTokens { retry_after_secs: u64 },
    /// 401.
    #[error("sign in at /dashboard, or send Authorization: Bearer <admin token or API key>")]
    TokenRequired,
    /// 401: the session cookie names no live session (signed out, idle or too old).
    #[error("the session has ended; sign in again")]
    SessionEnded,
    /// 403: a change made with the session cookie but without its CSRF token.
    #[error("CSRF token missing or wrong: send the session's X-CSRF-Token")]
    Csrf,
    /// 403: the credential is valid but lacks the route's scope.
    #[error("this credential lacks the scope {0}")]
    MissingScope(Scope),
    /// 400: a search bound that is not a time.
    #[error("invalid time '{0}': use RFC 3339 or yyyy-mm-dd")]
    InvalidTime(String),
    /// 404.
    #[error("Transaction not found")]
    TransactionNotFound,
    /// 400: a device id in the path that is not one.
    #[error("{0}")]
    InvalidDeviceId(String),
    /// 404.
    #[error("no device '{0}' is enrolled")]
    DeviceNotEnrolled(protocol::DeviceId),
}

impl DashboardError {
    fn invalid_device_id(e: impl std::fmt::Display) -> Self {
        Self::InvalidDeviceId(e.to_string())
    }
}

impl HttpError for DashboardError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Disabled | Self::TransactionNotFound | Self::DeviceNotEnrolled(_) => {
                StatusCode::NOT_FOUND
            }
            Self::TooManyWrongTokens { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::TokenRequired | Self::SessionEnded => StatusCode::UNAUTHORIZED,
            Self::MissingScope(_) | Self::Csrf => StatusCode::FORBIDDEN,
            Self::InvalidTime(_) | Self::InvalidDeviceId(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::TooManyWrongTokens { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

/// `GET /dashboard`: the page; it signs people in (or takes an admin token or API key).
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", HTML)
}

/// `GET /dashboard/app.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /dashboard/style.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// An operator's request, its credential checked: the admin token (the installation's owner)
/// or an API key (`eftk_…`, checked against the store on every request). 404 when no admin
/// token is configured and no API key is presented (the dashboard is off), 401 when the
/// credential is missing or wrong, 429 (with `Retry-After`) after too many wrong ones from one
/// source. As an extractor, no admin handler can forget the check; each handler then requires
/// its scope ([`Admin::require`]) and sees only what the principal may ([`Admin::sees`]).
pub struct Admin {
    pub principal: Principal,
    /// Who acts and from where, for the audit log.
    pub actor: Actor,
}

impl Admin {
    /// 403 unless the credential holds `scope` (`admin` holds every admin scope).
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.principal.allows(scope) {
            Ok(())
        } else {
            Err(DashboardError::MissingScope(scope).into())
        }
    }

    /// 403 unless the credential holds one of `scopes`.
    pub fn require_any(&self, scopes: &[Scope]) -> Result<(), ApiError> {
        match scopes.iter().find(|s| self.principal.allows(**s)) {
            Some(_) => Ok(()),
            None => Err(DashboardError::MissingScope(scopes[0]).into()),
        }
    }

    /// Whether something of `merchant` exists for this credential (a merchant's key sees its
    /// own merchant only).
    pub fn sees(&self, merchant: &MerchantId) -> bool {
        self.principal.merchant().is_none_or(|m| m == merchant)
    }

    /// The merchant the credential is confined to, if one.
    pub fn merchant(&self) -> Option<&MerchantId> {
        self.principal.merchant()
    }
}

impl FromRequestParts<WebState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Self, Self::Rejection> {
        let ClientAddr(source) = match ClientAddr::from_request_parts(parts, state).await {
            Ok(a) => a,
            Err(never) => match never {},
        };
        let principal = match crate::pos_api::credentials::bearer(&parts.headers) {
            Some(presented) => authorize(state, presented, source).await?,
            None => from_session(state, &parts.method, &parts.headers).await?,
        };
        let actor = Actor::of(&principal, source);
        Ok(Admin { principal, actor })
    }
}

/// The person a session cookie signs in. A change (any method but GET and HEAD) must carry the
/// session's CSRF token: another site's page can make the browser send the cookie (were it
/// not `SameSite=Strict`), never read the token.
async fn from_session(
    state: &WebState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    let Some(token) = super::sign_in::session_token(headers) else {
        return Err(DashboardError::TokenRequired.into());
    };
    let Some(active) = state.engine.session(token).await? else {
        return Err(DashboardError::SessionEnded.into());
    };
    if method != Method::GET && method != Method::HEAD {
        let sent = headers
            .get(super::sign_in::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !crate::engine::devices::constant_time_eq(
            sent.as_bytes(),
            active.session.csrf_token.as_bytes(),
        ) {
            return Err(DashboardError::Csrf.into());
        }
    }
    Ok(active.principal)
}

async fn authorize(
    state: &WebState,
    presented: &str,
    source: Option<IpAddr>,
) -> Result<Principal, ApiError> {
    let is_key = presented.starts_with(KEY_PREFIX);
    if state.admin_token.is_none() && !is_key {
        return Err(DashboardError::Disabled.into());
    }
    // Counted from the start and refunded when right, so concurrent guesses cannot overtake
    // the count; a lockout refuses the right credential too, so guessing does not resume.
    let attempt = state
        .admin_guard
        .begin(source, Instant::now())
        .map_err(|refused| DashboardError::TooManyWrongTokens {
            retry_after_secs: refused.retry_after_secs(),
        })?;
    let principal = if is_key {
        match state.engine.authenticate_key(presented).await {
            Ok(p) => Some(p),
            Err(KeyRefused::Store(e)) => return Err(ServiceError::store(e).into()),
            Err(KeyRefused::Malformed | KeyRefused::Invalid) => None,
        }
    } else {
        let expected = state.admin_token.as_deref().unwrap_or("");
        // Both sides hashed first, so the comparison takes the same time wherever they differ.
        let same = crate::engine::devices::constant_time_eq(
            &Sha256::digest(expected.as_bytes()),
            &Sha256::digest(presented.as_bytes()),
        );
        same.then(Principal::owner_token)
    };
    let Some(principal) = principal else {
        if attempt.failures() == 1 {
            tracing::info!(source = ?source, "wrong admin credential (further ones this minute are not logged)");
        }
        return Err(DashboardError::TokenRequired.into());
    };
    state.admin_guard.succeeded(attempt);
    Ok(principal)
}

/// A time as the admin JSON shows it (RFC 3339, milliseconds, UTC).
pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A device as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView {
    pub device_id: String,
    pub vendor: String,
    pub model: String,
    pub merchant: String,
    /// The merchant account it belongs to.
    pub merchant_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_id: Option<String>,
    pub online: bool,
    pub busy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_transaction_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    pub enrolled_at: String,
    pub registers: Vec<RegisterView>,
    /// What it declared it can do in its last `hello` (`display`, `printer`, `void`, ...).
    pub capabilities: Vec<String>,
    /// Its screen and printer, as declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware: Option<protocol::device::Hardware>,
    /// Its latest health report, if it ever sent one.
    pub health: Option<HealthView>,
}

/// A paired register with its store metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterView {
    pub register_id: String,
    pub business_name: String,
    pub vendor_name: String,
    pub register_name: String,
    pub paired_at: String,
    /// Contact details given at pairing (`Contact Name`, `Address`, ...).
    pub contact: BTreeMap<String, String>,
}

impl From<RegisterRecord> for RegisterView {
    fn from(r: RegisterRecord) -> Self {
        Self {
            register_id: r.info.key.register_id,
            business_name: r.info.key.business_name,
            vendor_name: r.info.key.vendor_name,
            register_name: r.info.register_name,
            paired_at: rfc3339(r.paired_at),
            contact: r.contact,
        }
    }
}

/// A transaction as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionView {
    pub transaction_id: String,
    pub device_id: String,
    /// Whose transaction it is.
    pub merchant_id: String,
    pub register_id: String,
    pub register_name: String,
    pub business_name: String,
    pub vendor_name: String,
    pub function: String,
    /// In minor units of `currency` (the refund, the top-up, the new tip of a follow-up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_cents: Option<u64>,
    /// ISO 4217 code of the amounts.
    pub currency: String,
    /// How many digits follow the point in `currency` (JPY 0, AUD 2, KWD 3).
    pub minor_units: u8,
    /// A follow-up's original (refund, void, tip adjustment, top-up, capture, release).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_transaction_id: Option<String>,
    /// The order this is a tender of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pos_reference: Option<String>,
    pub created_at: String,
    /// `offered`, `started` or `completed`.
    pub phase: &'static str,
    /// `TransactionResult` when there is one, else `Result`; empty while in progress.
    pub outcome: String,
    pub result_text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_by: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// From the POS's request to the final outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_text: Option<String>,
}

impl From<&TransactionRecord> for TransactionView {
    fn from(t: &TransactionRecord) -> Self {
        let r = &t.request;
        let amount = match r.function {
            protocol::Function::CardTipAdjust => r.amount_tip,
            _ => r.headline_amount().map(protocol::Cents::get),
        };
        let (phase, outcome, text, by, done) = match &t.phase {
            Phase::Offered { .. } => ("offered", String::new(), String::new(), None, None),
            Phase::Started { .. } => ("started", String::new(), String::new(), None, None),
            Phase::Completed(c) => (
                "completed",
                c.transaction_result
                    .map(|x| x.as_str().to_string())
                    .unwrap_or_else(|| c.result.as_str().to_string()),
                c.result_text.clone(),
                Some(match c.by {
                    CompletedBy::Device => "device",
                    CompletedBy::Cloud => "cloud",
                }),
                Some(c.completed_at),
            ),
        };
        Self {
            transaction_id: t.id.to_string(),
            device_id: t.device_id.to_string(),
            merchant_id: t.merchant_id.to_string(),
            register_id: t.register.key.register_id.clone(),
            register_name: t.register.register_name.clone(),
            business_name: t.register.key.business_name.clone(),
            vendor_name: t.register.key.vendor_name.clone(),
            function: r.function.as_str().to_string(),
            amount_cents: amount,
            currency: r.currency().to_string(),
            minor_units: r.currency().minor_units(),
            original_transaction_id: r.original.as_ref().map(|o| o.transaction_id.to_string()),
            order_id: r.order_id.clone(),
            pos_reference: t.pos_reference.clone(),
            created_at: rfc3339(t.created_at),
            phase,
            outcome,
            result_text: text,
            completed_by: by,
            completed_at: done.map(rfc3339),
            duration_ms: done.map(|d| (d - t.created_at).num_milliseconds()),
            display_text: t.display_text.clone(),
        }
    }
}

/// Filters of `GET /admin/transactions` (all optional, combined with "and").
#[derive(Debug, Default, Deserialize)]
pub struct TransactionFilter {
    /// Part of the register id or name (case-insensitive).
    pub register: Option<String>,
    /// Part of the device id (case-insensitive).
    pub device: Option<String>,
    /// Part of the POS reference or the transaction id.
    pub reference: Option<String>,
    /// `TransactionResult`/`Result` exactly, or `pending`.
    pub outcome: Option<String>,
    /// Created on or after (RFC 3339, or `yyyy-mm-dd`).
    pub since: Option<String>,
    /// Created before (RFC 3339, or `yyyy-mm-dd`: before the end of that day).
    pub until: Option<String>,
    /// At most this many, newest first (default 200, at most 1000).
    pub limit: Option<usize>,
}

fn parse_time(s: &str, end_of_day: bool) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| DashboardError::InvalidTime(s.to_string()))?;
    let day = if end_of_day {
        day.succ_opt().unwrap_or(day)
    } else {
        day
    };
    Ok(day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

impl TransactionFilter {
    /// The matching transactions from the store, newest first. Every criterion but the outcome
    /// is part of the store query; the outcome (inside the stored completion) is checked here,
    /// over a larger page so the limit still holds.
    async fn run(
        &self,
        state: &WebState,
        principal: &Principal,
    ) -> Result<Vec<TransactionView>, ApiError> {
        let text = |o: &Option<String>| {
            o.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let limit = self.limit.unwrap_or(200).clamp(1, 1000);
        let outcome = text(&self.outcome);
        let pending_only = outcome
            .as_deref()
            .is_some_and(|o| o.eq_ignore_ascii_case("pending"));
        let by_outcome = outcome.filter(|_| !pending_only);
        let query = TransactionQuery {
            since: text(&self.since)
                .map(|s| parse_time(&s, false))
                .transpose()?,
            until: text(&self.until)
                .map(|s| parse_time(&s, true))
                .transpose()?,
            register: text(&self.register),
            device: text(&self.device),
            reference: text(&self.reference),
            pending_only,
            merchant: None,
            limit: if by_outcome.is_some() {
                OUTCOME_SCAN
            } else {
                limit as u32
            },
        };
        let found = state.engine.search_transactions(principal, &query).await?;
        Ok(found
            .iter()
            .map(TransactionView::from)
            .filter(|v| {
                by_outcome
                    .as_deref()
                    .is_none_or(|o| v.outcome.eq_ignore_ascii_case(o))
            })
            .take(limit)
            .collect())
    }
}

/// How many recent transactions an outcome search looks through.
const OUTCOME_SCAN: u32 = 5000;

async fn device_views(
    state: &WebState,
    principal: &Principal,
) -> Result<Vec<DeviceView>, ApiError> {
    let devices = state.engine.device_overviews(principal).await?;
    // One read for the whole fleet's latest reports, not one per device.
    let mut health = state.engine.latest_health().await?;
    Ok(devices
        .into_iter()
        .map(|o| {
            let h = health.remove(&o.device.id).map(HealthView::from);
            device_view(o, h)
        })
        .collect())
}

/// The view of one device's overview, with its latest health report.
fn device_view(
    o: crate::engine::queries::DeviceOverview,
    health: Option<HealthView>,
) -> DeviceView {
    let d = o.device;
    DeviceView {
        device_id: d.id.to_string(),
        vendor: d.vendor,
        model: d.model,
        merchant: d.merchant,
        merchant_id: d.merchant_id.to_string(),
        site_id: d.site_id.map(|s| s.to_string()),
        online: o.online,
        busy: o.active.is_some(),
        active_transaction_id: o.active.map(|t| t.id.to_string()),
        last_seen: d.last_seen_at.map(rfc3339),
        enrolled_at: rfc3339(d.created_at),
        registers: o.registers.into_iter().map(RegisterView::from).collect(),
        capabilities: d.capabilities,
        hardware: d.hardware,
        health,
    }
}

/// A device with its health: the latest report and the newest ones before it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceDetail {
    /// With the latest health report in `health`.
    #[serde(flatten)]
    pub device: DeviceView,
    /// Newest first, at most [`HEALTH_SHOWN`].
    pub health_history: Vec<HealthView>,
}

/// One health report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthView {
    pub reported_at: String,
    pub low_battery: bool,
    pub out_of_paper: bool,
    #[serde(flatten)]
    pub health: protocol::health::Health,
}

impl From<crate::engine::health::HealthReport> for HealthView {
    fn from(r: crate::engine::health::HealthReport) -> Self {
        HealthView {
            reported_at: rfc3339(r.at),
            low_battery: r.health.low_battery(),
            out_of_paper: r.health.out_of_paper(),
            health: r.health,
        }
    }
}

/// How many reports a device's page shows.
pub const HEALTH_SHOWN: u32 = 20;

/// `GET /admin/devices/{id}`: one device, with its health and its recent history.
pub async fn device(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<DeviceDetail>, ApiError> {
    admin.require_any(&[Scope::DevicesManage, Scope::ReportsRead])?;
    let device_id = protocol::DeviceId::parse(&id).map_err(DashboardError::invalid_device_id)?;
    let overview = state
        .engine
        .device_overview(&admin.principal, &device_id)
        .await?
        .ok_or_else(|| DashboardError::DeviceNotEnrolled(device_id.clone()))?;
    let history: Vec<HealthView> = state
        .engine
        .health_history(&device_id, HEALTH_SHOWN)
        .await?
        .into_iter()
        .map(HealthView::from)
        .collect();
    Ok(Json(DeviceDetail {
        device: device_view(overview, history.first().cloned()),
        health_history: history,
    }))
}

/// `GET /admin/devices`: every device (of the key's merchant) with its state and registers.
pub async fn devices(
    State(state): State<WebState>,
    admin: Admin,
) -> Result<Json<Vec<DeviceView>>, ApiError> {
    admin.require_any(&[Scope::DevicesManage, Scope::ReportsRead])?;
    Ok(Json(device_views(&state, &admin.principal).await?))
}

/// `GET /admin/transactions`: recent transactions (of the key's merchant), newest first,
/// filtered.
pub async fn transactions(
    State(state): State<WebState>,
    admin: Admin,
    Query(filter): Query<TransactionFilter>,
) -> Result<Json<Vec<TransactionView>>, ApiError> {
    admin.require(Scope::ReportsRead)?;
    Ok(Json(filter.run(&state, &admin.principal).await?))
}

/// A transaction with its timeline.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionDetail {
    #[serde(flatten)]
    pub transaction: TransactionView,
    pub events: Vec<EventView>,
    /// For a payment: what it comes to with its follow-ups (refunds, void, tips; top-ups,
    /// capture, release), each listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment: Option<crate::pos_api::follow_ups::PaymentView>,
    /// For a tender: its order, with what is paid, in flight and left, and every tender.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<crate::pos_api::orders::OrderView>,
}

/// One timeline event.
#[derive(Debug, Serialize)]
pub struct EventView {
    pub at: String,
    pub event: &'static str,
    pub detail: String,
}

/// `GET /admin/transactions/{id}`: one transaction (by id, even one the list has not seen) and
/// its timeline.
pub async fn transaction(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<TransactionDetail>, ApiError> {
    admin.require(Scope::ReportsRead)?;
    let id: TransactionId = id
        .parse()
        .map_err(|_| DashboardError::TransactionNotFound)?;
    let engine = &state.engine;
    let Some(tx) = engine.transaction_as(&admin.principal, &id).await? else {
        return Err(DashboardError::TransactionNotFound.into());
    };
    let events = engine.timeline(&id).await?;
    let view = TransactionView::from(&tx);
    // Only payments have follow-ups worth a summary; a follow-up names its original instead.
    let payment = if tx.request.function.is_financial() && tx.request.original.is_none() {
        engine
            .payment_as(&admin.principal, &id)
            .await?
            .map(|p| crate::pos_api::follow_ups::view(&p))
    } else {
        None
    };
    // A tender shows its order (an id that is not one names no order).
    let order = match tx.request.order_id.as_deref().map(OrderId::parse) {
        Some(Ok(order_id)) => engine
            .order_as(&admin.principal, &order_id)
            .await?
            .as_ref()
            .map(|sheet| crate::pos_api::orders::view(sheet, None)),
        _ => None,
    };
    Ok(Json(TransactionDetail {
        transaction: view,
        payment,
        order,
        events: events
            .into_iter()
            .map(|e| EventView {
                at: rfc3339(e.at),
                event: e.kind.as_str(),
                detail: e.detail,
            })
            .collect(),
    }))
}

/// What the live stream sends: the whole picture, whenever it changed.
#[derive(Debug, Serialize, PartialEq)]
struct Snapshot {
    devices: Vec<DeviceView>,
    transactions: Vec<TransactionView>,
}

async fn snapshot(state: &WebState, principal: &Principal) -> Result<String, ApiError> {
    let devices = device_views(state, principal).await?;
    let transactions = TransactionFilter {
        limit: Some(LIVE_TRANSACTIONS),
        ..TransactionFilter::default()
    }
    .run(state, principal)
    .await?;
    serde_json::to_string(&Snapshot {
        devices,
        transactions,
    })
    .map_err(|e| ServiceError::internal(e).into())
}

/// `GET /admin/events`: server-sent events. A `snapshot` event (devices and recent transactions)
/// at once and whenever something changed; the stream ends when the cloud shuts down.
pub async fn live(State(state): State<WebState>, admin: Admin) -> Result<Response, ApiError> {
    admin.require(Scope::ReportsRead)?;
    Ok(Sse::new(live_stream(state, admin.principal))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn live_stream(
    state: WebState,
    principal: Principal,
) -> impl Stream<Item = Result<Event, Infallible>> {
    struct Live {
        state: WebState,
        principal: Principal,
        last: Option<String>,
        ticker: tokio::time::Interval,
    }
    let mut ticker = tokio::time::interval(LIVE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    futures_util::stream::unfold(
        Live {
            state,
            principal,
            last: None,
            ticker,
        },
        |mut live| async move {
            loop {
                tokio::select! {
                    _ = live.state.shutdown.cancelled() => return None,
                    _ = live.ticker.tick() => {}
                }
                match snapshot(&live.state, &live.principal).await {
                    Ok(json) if live.last.as_deref() != Some(json.as_str()) => {
                        let event = Event::default().event("snapshot").data(json.clone());
                        live.last = Some(json);
                        return Some((Ok(event), live));
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(status = %e.status(), "dashboard snapshot failed");
                        let event = Event::default()
                            .event("problem")
                            .data("cloud storage unavailable, retrying");
                        return Some((Ok(event), live));
                    }
                }
            }
        },
    )
}

/// A device's new secret.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotatedSecret {
    pub device_id: String,
    pub secret: String,
}

fn enroll_error(e: EnrollError) -> ApiError {
    match e {
        EnrollError::NotEnrolled(id) => DashboardError::DeviceNotEnrolled(id).into(),
        EnrollError::Store(e) => ServiceError::store(e).into(),
        EnrollError::Accounts(e) => e.into(),
        e @ EnrollError::AlreadyEnrolled(_) => ServiceError::internal(e).into(),
    }
}

/// The device named in the path, if the credential may manage it (another merchant's device
/// is not enrolled, for a merchant's key).
async fn managed_device(
    state: &WebState,
    admin: &Admin,
    id: &str,
) -> Result<protocol::DeviceId, ApiError> {
    admin.require(Scope::DevicesManage)?;
    let id = protocol::DeviceId::parse(id).map_err(DashboardError::invalid_device_id)?;
    match state.engine.device(&id).await? {
        Some(d) if admin.sees(&d.merchant_id) => Ok(id),
        _ => Err(DashboardError::DeviceNotEnrolled(id).into()),
    }
}

/// `POST /admin/devices/{id}/rotate-secret`: a new secret (shown once); the old one stops
/// working and a connection made with it is closed at once.
pub async fn rotate_secret(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<RotatedSecret>, ApiError> {
    let id = managed_device(&state, &admin, &id).await?;
    let secret = state
        .engine
        .rotate_secret(&id, &admin.actor)
        .await
        .map_err(enroll_error)?;
    tracing::warn!(device = %id, "device secret rotated by an operator");
    Ok(Json(RotatedSecret {
        device_id: id.to_string(),
        secret,
    }))
}

/// `POST /admin/devices/{id}/revoke`: the device can no longer connect, and is disconnected
/// at once (rotating its secret later brings it back).
pub async fn revoke(
    State(state): State<WebState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = managed_device(&state, &admin, &id).await?;
    state
        .engine
        .revoke(&id, &admin.actor)
        .await
        .map_err(enroll_error)?;
    tracing::warn!(device = %id, "device revoked by an operator");
    Ok(StatusCode::NO_CONTENT)
}
