//! Pages the cloud serves to people: the virtual terminal (a device in the browser) and the
//! operator dashboard. Assets are compiled into the binary: no front-end build step, no CDN,
//! nothing to deploy beside it.

pub mod accounts_api;
pub mod config_api;
pub mod dashboard;
pub mod reports_api;
pub mod sign_in;
pub mod updates_api;
pub mod virtual_terminal;
pub mod webhooks_api;

use crate::config::EnrollmentOff;
use crate::engine::Engine;
use crate::pos_api::pairing_guard::{ForwardedFor, PairingGuard};
use crate::pos_api::ApiLimits;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use axum::Router;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What the pages need.
#[derive(Clone)]
pub struct WebState {
    pub engine: Engine,
    /// Whether `POST /virtual-terminal/devices` may enroll devices (a developer's local
    /// cloud, or `--virtual-terminals`), or why not.
    pub enrollment: Result<(), EnrollmentOff>,
    /// The dashboard's token; `None` turns the dashboard off.
    pub admin_token: Option<Arc<str>>,
    /// Self-enrollments per source address (every one counts).
    pub enrollment_guard: Arc<PairingGuard>,
    /// Wrong admin tokens per source address.
    pub admin_guard: Arc<PairingGuard>,
    /// Failed sign-ins per source address (each account counts its own in the store).
    pub sign_in_guard: Arc<PairingGuard>,
    /// The first owner's setup link, while nobody has an account.
    pub setup: Option<Arc<sign_in::SetupLink>>,
    /// Whether session cookies are `Secure` (served over TLS).
    pub secure_cookies: bool,
    /// Whether sources are taken from `X-Forwarded-For`.
    trust_forwarded_for: bool,
    /// Cancelled on shutdown: ends the dashboard's live streams.
    pub shutdown: CancellationToken,
}

impl WebState {
    /// The pages' state; an empty admin token counts as none.
    pub fn new(
        engine: Engine,
        enrollment: Result<(), EnrollmentOff>,
        admin_token: Option<&str>,
        limits: &ApiLimits,
        shutdown: CancellationToken,
    ) -> Self {
        Self::with_people(
            engine,
            enrollment,
            admin_token,
            limits,
            shutdown,
            None,
            false,
        )
    }

    /// The pages' state with the first owner's setup link and the cookies' `Secure` flag.
    pub fn with_people(
        engine: Engine,
        enrollment: Result<(), EnrollmentOff>,
        admin_token: Option<&str>,
        limits: &ApiLimits,
        shutdown: CancellationToken,
        setup: Option<Arc<sign_in::SetupLink>>,
        secure_cookies: bool,
    ) -> Self {
        Self {
            engine,
            enrollment,
            admin_token: admin_token.filter(|t| !t.trim().is_empty()).map(Arc::from),
            enrollment_guard: Arc::new(PairingGuard::named(
                "virtual terminal enrollment",
                limits.enrollment.clone(),
            )),
            admin_guard: Arc::new(PairingGuard::named(
                "admin token",
                limits.admin_tokens.clone(),
            )),
            sign_in_guard: Arc::new(PairingGuard::named(
                "dashboard sign-in",
                limits.sign_ins.clone(),
            )),
            setup,
            secure_cookies,
            trust_forwarded_for: limits.pairing.trust_forwarded_for,
            shutdown,
        }
    }
}

impl ForwardedFor for WebState {
    fn trust_forwarded_for(&self) -> bool {
        self.trust_forwarded_for
    }
}

/// The routes of the pages and of the endpoints only they use.
pub fn routes(state: WebState) -> Router {
    use crate::pos_api::error::not_found;
    Router::new()
        .route("/", get(index).fallback(not_found))
        .route(
            "/virtual-terminal",
            get(virtual_terminal::page).fallback(not_found),
        )
        .route(
            "/virtual-terminal/app.js",
            get(virtual_terminal::script).fallback(not_found),
        )
        .route(
            "/virtual-terminal/style.css",
            get(virtual_terminal::style).fallback(not_found),
        )
        .route(
            "/virtual-terminal/devices",
            post(virtual_terminal::create_device).fallback(not_found),
        )
        .route("/dashboard", get(dashboard::page).fallback(not_found))
        .route(
            "/dashboard/sign-in",
            post(sign_in::sign_in).fallback(not_found),
        )
        .route(
            "/dashboard/sign-out",
            post(sign_in::sign_out).fallback(not_found),
        )
        .route(
            "/dashboard/session",
            get(sign_in::session).fallback(not_found),
        )
        .route(
            "/dashboard/setup",
            get(sign_in::setup_page)
                .post(sign_in::setup)
                .fallback(not_found),
        )
        .route(
            "/dashboard/setup.js",
            get(sign_in::setup_script).fallback(not_found),
        )
        .route(
            "/dashboard/app.js",
            get(dashboard::script).fallback(not_found),
        )
        .route(
            "/dashboard/style.css",
            get(dashboard::style).fallback(not_found),
        )
        .route(
            "/admin/devices",
            get(dashboard::devices).fallback(not_found),
        )
        .route(
            "/admin/devices/{id}",
            get(dashboard::device).fallback(not_found),
        )
        .route(
            "/admin/devices/{id}/config",
            get(config_api::device_config).fallback(not_found),
        )
        .route(
            "/admin/config/operator",
            get(config_api::get_operator)
                .put(config_api::put_operator)
                .fallback(not_found),
        )
        .route(
            "/admin/config/operator/history",
            get(config_api::operator_history).fallback(not_found),
        )
        .route(
            "/admin/config/{kind}/{id}",
            get(config_api::get_scoped)
                .put(config_api::put_scoped)
                .fallback(not_found),
        )
        .route(
            "/admin/config/{kind}/{id}/history",
            get(config_api::scoped_history).fallback(not_found),
        )
        .route(
            "/admin/devices/{id}/rotate-secret",
            post(dashboard::rotate_secret).fallback(not_found),
        )
        .route(
            "/admin/devices/{id}/revoke",
            post(dashboard::revoke).fallback(not_found),
        )
        .route(
            "/admin/transactions",
            get(dashboard::transactions).fallback(not_found),
        )
        .route(
            "/admin/transactions/{id}",
            get(dashboard::transaction).fallback(not_found),
        )
        .route("/admin/events", get(dashboard::live).fallback(not_found))
        .route(
            "/admin/event-log",
            get(webhooks_api::event_log).fallback(not_found),
        )
        .route(
            "/admin/webhooks",
            get(webhooks_api::list)
                .post(webhooks_api::create)
                .fallback(not_found),
        )
        .route(
            "/admin/webhooks/{id}",
            get(webhooks_api::get_one)
                .patch(webhooks_api::change)
                .delete(webhooks_api::delete)
                .fallback(not_found),
        )
        .route(
            "/admin/webhooks/{id}/rotate-secret",
            post(webhooks_api::rotate).fallback(not_found),
        )
        .route(
            "/admin/webhooks/{id}/deliveries",
            get(webhooks_api::deliveries).fallback(not_found),
        )
        .route(
            "/admin/webhooks/{id}/redeliver",
            post(webhooks_api::redeliver).fallback(not_found),
        )
        .route(
            "/admin/merchants",
            get(accounts_api::merchants)
                .post(accounts_api::create_merchant)
                .fallback(not_found),
        )
        .route(
            "/admin/merchants/{id}",
            patch(accounts_api::set_merchant_terms).fallback(not_found),
        )
        .route(
            "/admin/merchants/{id}/sites",
            get(accounts_api::sites)
                .post(accounts_api::create_site)
                .fallback(not_found),
        )
        .route(
            "/admin/release-keys",
            get(updates_api::release_keys)
                .post(updates_api::add_release_key)
                .fallback(not_found),
        )
        .route(
            "/admin/artifacts",
            get(updates_api::artifacts)
                .post(updates_api::add_artifact)
                .fallback(not_found),
        )
        .route(
            "/admin/artifacts/{id}/file",
            put(updates_api::upload_artifact).fallback(not_found).layer(
                axum::extract::DefaultBodyLimit::max(crate::engine::campaigns::MAX_ARTIFACT_BYTES),
            ),
        )
        .route(
            "/admin/campaigns",
            get(updates_api::campaigns)
                .post(updates_api::create_campaign)
                .fallback(not_found),
        )
        .route(
            "/admin/campaigns/{id}",
            get(updates_api::campaign).fallback(not_found),
        )
        .route(
            "/admin/campaigns/{id}/rollback",
            post(updates_api::rollback).fallback(not_found),
        )
        .route(
            "/admin/campaigns/{id}/{action}",
            post(updates_api::act).fallback(not_found),
        )
        .route(
            "/admin/sites/{id}",
            patch(accounts_api::set_site).fallback(not_found),
        )
        .route(
            "/admin/api-keys",
            get(accounts_api::api_keys)
                .post(accounts_api::create_api_key)
                .fallback(not_found),
        )
        .route(
            "/admin/api-keys/{id}/revoke",
            post(accounts_api::revoke_api_key).fallback(not_found),
        )
        .route(
            "/admin/settlements",
            get(reports_api::settlements).fallback(not_found),
        )
        .route(
            "/admin/settlements/{id}/reconciliation",
            get(reports_api::reconciliation).fallback(not_found),
        )
        .route(
            "/admin/reports/daily",
            get(reports_api::daily).fallback(not_found),
        )
        .route(
            "/admin/exports/transactions",
            get(reports_api::export_transactions).fallback(not_found),
        )
        .route(
            "/admin/exports/settlements",
            get(reports_api::export_settlements).fallback(not_found),
        )
        .route("/admin/audit", get(accounts_api::audit).fallback(not_found))
        .route("/admin/users", get(accounts_api::users).fallback(not_found))
        .with_state(state)
}

/// `GET /`: where the pages are.
async fn index() -> Response {
    asset(
        "text/html; charset=utf-8",
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>eftcloud</title><link rel=\"stylesheet\" href=\"/dashboard/style.css\"></head>\
         <body><header class=\"topbar\"><h1>eftcloud</h1></header><main class=\"layout\">\
         <section class=\"panel\"><h2>This cloud</h2><ul>\
         <li><a href=\"/dashboard\">Dashboard</a>: devices, transactions, keys and the audit log \
         (sign in)</li>\
         <li><a href=\"/virtual-terminal\">Virtual terminal</a>: a payment terminal in the browser</li>\
         <li><a href=\"/openapi.json\">API reference</a> (OpenAPI 3.1) of the POS API</li>\
         </ul></section></main></body></html>",
    )
}

/// A compiled-in asset with its content type. Pages load only their own assets and talk only
/// to their own origin (the WebSocket included), which the policy states.
fn asset(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    let mut response = body.into().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    response
}
