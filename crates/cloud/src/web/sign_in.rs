//! Signing in to the dashboard: email and password for a session cookie, sign-out, "who am
//! I", and the one-time setup link that creates the first owner on a new installation.
//!
//! The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page
//! sends it) and `Secure` under TLS. Every state-changing request made with it must also
//! carry the session's CSRF token in `X-CSRF-Token`, which only the dashboard's own page
//! knows ([`super::dashboard::Admin`] checks it).

use super::{asset, WebState};
use crate::engine::accounts::Actor;
use crate::engine::people::{PeopleError, SignInError, SignedIn};
use crate::pos_api::error::{ApiError, HttpError, ServiceError};
use crate::pos_api::pairing_guard::ClientAddr;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The session cookie's name.
pub const COOKIE: &str = "eftcloud_session";
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Refusals of the sign-in routes.
#[derive(Debug, thiserror::Error)]
pub enum SignInRefusal {
    /// 401, whichever of email or password was wrong.
    #[error("wrong email or password")]
    Wrong,
    /// 429: the account is locked, or this source tried too many.
    #[error("too many failed sign-ins; try again in {retry_after_secs} s")]
    TooMany { retry_after_secs: u64 },
    /// 400: the body is not what the route reads, or a new password is too weak.
    #[error("{0}")]
    Invalid(String),
    /// 404: no valid setup link (used, expired, wrong, or people exist already).
    #[error("this setup link is not valid (used, expired, or the installation has people already); ask an owner, or run `eftcloud user add --role owner`")]
    NoSetup,
    /// 401: no live session.
    #[error("not signed in")]
    NotSignedIn,
}

impl HttpError for SignInRefusal {
    fn status(&self) -> StatusCode {
        match self {
            Self::Wrong | Self::NotSignedIn => StatusCode::UNAUTHORIZED,
            Self::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::NoSetup => StatusCode::NOT_FOUND,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::TooMany { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

/// The one-time link that lets the first owner choose their email and password: created at
/// start-up while nobody has an account (not under `--production`), printed by `serve`, valid
/// for 24 hours and once.
#[derive(Debug)]
pub struct SetupLink {
    digest: [u8; 32],
    expires_at: DateTime<Utc>,
    used: AtomicBool,
}

impl SetupLink {
    /// A link for `token`, valid until `expires_at`.
    pub fn new(token: &str, expires_at: DateTime<Utc>) -> Self {
        Self {
            digest: Sha256::digest(token.as_bytes()).into(),
            expires_at,
            used: AtomicBool::new(false),
        }
    }

    fn accepts(&self, token: &str, now: DateTime<Utc>) -> bool {
        let d: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        !self.used.load(Ordering::Acquire)
            && now < self.expires_at
            && crate::engine::devices::constant_time_eq(&d, &self.digest)
    }
}

/// The person as the page shows them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub email: String,
    pub role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<String>,
    /// Echo it in `X-CSRF-Token` with every change.
    pub csrf_token: String,
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

/// A body as JSON (`Content-Type: application/json`) or as a form (anything else); a body
/// that is neither is a 400 saying what was `expected`.
fn form_or_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
    expected: &str,
) -> Result<T, SignInRefusal> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let parsed = if json {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    } else {
        serde_urlencoded::from_bytes(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| SignInRefusal::Invalid(format!("expected {expected}: {e}")))
}

/// The session token of the request's cookie.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

fn cookie(state: &WebState, value: &str, max_age_secs: u64) -> HeaderValue {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let c = format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    );
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn signed_in(state: &WebState, s: SignedIn, status: StatusCode) -> Response {
    let max_age = state.engine.settings().session_ttl.as_secs();
    let me = Me {
        email: s.user.email.to_string(),
        role: s.user.role.as_str(),
        merchant_id: s.user.merchant_id.map(|m| m.to_string()),
        csrf_token: s.session.csrf_token,
    };
    let mut r = (status, Json(me)).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie(state, &s.token, max_age));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn people_error(e: PeopleError) -> ApiError {
    match e {
        PeopleError::Store(e) => ServiceError::store(e).into(),
        e @ PeopleError::Invalid(_) => SignInRefusal::Invalid(e.to_string()).into(),
        e => ServiceError::internal(e).into(),
    }
}

/// Counts a failed sign-in of `source`; 429 once it tried too many this window.
fn begin(
    state: &WebState,
    source: Option<IpAddr>,
) -> Result<crate::pos_api::pairing_guard::Attempt, ApiError> {
    state
        .sign_in_guard
        .begin(source, Instant::now())
        .map_err(|refused| {
            SignInRefusal::TooMany {
                retry_after_secs: refused.retry_after_secs(),
            }
            .into()
        })
}

/// `POST /dashboard/sign-in` (`email`, `password` as JSON or a form): a session cookie and
/// the CSRF token, or a generic 401.
pub async fn sign_in(
    State(state): State<WebState>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let c: Credentials = form_or_json(&headers, &body, "email and password")?;
    let attempt = begin(&state, source)?;
    let actor = Actor {
        name: format!("user:{}", c.email.trim().to_lowercase()),
        source: source.map(|s| s.to_string()),
    };
    match state.engine.sign_in(&c.email, &c.password, &actor).await {
        Ok(s) => {
            state.sign_in_guard.succeeded(attempt);
            Ok(signed_in(&state, s, StatusCode::OK))
        }
        Err(SignInError::Wrong) => Err(SignInRefusal::Wrong.into()),
        Err(SignInError::Locked { retry_after_secs }) => {
            Err(SignInRefusal::TooMany { retry_after_secs }.into())
        }
        Err(SignInError::Failed(e)) => Err(people_error(e)),
    }
}

/// `POST /dashboard/sign-out`: ends the session (the CSRF token is required, as for any
/// change) and clears the cookie.
pub async fn sign_out(
    State(state): State<WebState>,
    admin: super::dashboard::Admin,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = session_token(&headers) {
        state.engine.sign_out(token, &admin.actor).await?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie(&state, "", 0));
    Ok(r)
}

/// `GET /dashboard/session`: who is signed in, with the CSRF token; 401 if nobody.
pub async fn session(
    State(state): State<WebState>,
    headers: HeaderMap,
) -> Result<Json<Me>, ApiError> {
    let token = session_token(&headers).ok_or(SignInRefusal::NotSignedIn)?;
    let s = state
        .engine
        .session(token)
        .await?
        .ok_or(SignInRefusal::NotSignedIn)?;
    Ok(Json(Me {
        email: s.user.email.to_string(),
        role: s.user.role.as_str(),
        merchant_id: s.user.merchant_id.map(|m| m.to_string()),
        csrf_token: s.session.csrf_token,
    }))
}

#[derive(Deserialize)]
pub struct SetupQuery {
    token: Option<String>,
}

const SETUP_HTML: &str = include_str!("setup.html");
const SETUP_SCRIPT: &str = include_str!("setup.js");

/// `GET /dashboard/setup.js`.
pub async fn setup_script() -> Response {
    asset("text/javascript; charset=utf-8", SETUP_SCRIPT)
}

/// `GET /dashboard/setup?token=…`: the page where the first owner chooses email and password.
pub async fn setup_page(State(state): State<WebState>, Query(q): Query<SetupQuery>) -> Response {
    let valid = state
        .setup
        .as_ref()
        .zip(q.token.as_deref())
        .is_some_and(|(link, t)| link.accepts(t, state.engine.now()));
    if !valid {
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Setup · \
             eftcloud</title></head><body><main><h1>Setup link not valid</h1><p>{}</p>\
             <p><a href=\"/dashboard\">Sign in</a></p></main></body></html>",
            SignInRefusal::NoSetup
        );
        let mut r = asset("text/html; charset=utf-8", body);
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    asset("text/html; charset=utf-8", SETUP_HTML)
}

#[derive(Deserialize)]
struct SetupBody {
    token: String,
    email: String,
    password: String,
}

/// `POST /dashboard/setup` (`token`, `email`, `password`): creates the first owner, uses up
/// the link and signs them in.
pub async fn setup(
    State(state): State<WebState>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: SetupBody = form_or_json(&headers, &body, "token, email and password")?;
    // Wrong tokens count like wrong passwords.
    let attempt = begin(&state, source)?;
    let Some(link) = state
        .setup
        .as_ref()
        .filter(|l| l.accepts(&b.token, state.engine.now()))
    else {
        return Err(SignInRefusal::NoSetup.into());
    };
    let actor = Actor {
        name: "setup-link".into(),
        source: source.map(|s| s.to_string()),
    };
    // Checked before the link is spent, so a weak password does not waste it.
    crate::domain::people::check_password(&b.password)
        .and_then(|()| crate::domain::people::Email::parse(&b.email).map(|_| ()))
        .map_err(|e| SignInRefusal::Invalid(e.to_string()))?;
    if link.used.swap(true, Ordering::AcqRel) {
        return Err(SignInRefusal::NoSetup.into());
    }
    match state
        .engine
        .create_first_owner(&b.email, &b.password, &actor)
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) => return Err(SignInRefusal::NoSetup.into()),
        Err(e) => {
            // Not spent by a failure of ours: the owner may try again.
            link.used.store(false, Ordering::Release);
            return Err(people_error(e));
        }
    }
    state.sign_in_guard.succeeded(attempt);
    match state.engine.sign_in(&b.email, &b.password, &actor).await {
        Ok(s) => Ok(signed_in(&state, s, StatusCode::CREATED)),
        Err(SignInError::Failed(e)) => Err(people_error(e)),
        Err(e) => Err(ServiceError::internal(e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        assert_eq!(session_token(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; eftcloud_session=tok; b=2"),
        );
        assert_eq!(session_token(&h), Some("tok"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("eftcloud_session="),
        );
        assert_eq!(session_token(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("xeftcloud_session=t"),
        );
        assert_eq!(session_token(&h), None);
    }

    #[test]
    fn a_setup_link_opens_once_with_its_token_before_it_expires() {
        let now = Utc::now();
        let link = SetupLink::new("secret", now + chrono::Duration::hours(24));
        assert!(link.accepts("secret", now));
        assert!(!link.accepts("secreT", now));
        assert!(!link.accepts("secret", now + chrono::Duration::hours(24)));
        link.used.store(true, Ordering::Release);
        assert!(!link.accepts("secret", now));
    }
}
