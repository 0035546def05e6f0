//! Who a POS request acts as. `Authorization: Bearer <key>` names an API key (`eftk_…`,
//! created by `eftcloud api-key create`, checked against the store on every request so a
//! revocation holds at once on every node) or a key given with `--pos-api-key VENDOR=KEY`
//! (a vendor key for the POS scopes). Without a key a request is keyless, as SmartConnect
//! clients are: accepted unless the operator requires keys (`--require-pos-keys`, for all
//! vendors or some), and bounded by the register triple or the polling token.
//!
//! Each POS route needs one scope; the middleware refuses a key without it before the handler
//! runs, and hands the handler a [`Credential`] whose [`Credential::check`] answers "not
//! found" for anything of another merchant or vendor.

use super::error::{ApiError, HttpError, ServiceError};
use super::ApiState;
use crate::domain::accounts::{KeyOwner, KeylessPolicy, MerchantId, Principal, Scope, Scopes};
use crate::engine::accounts::KeyRefused;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// Why a request's credential does not let it through.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// 401 (with `WWW-Authenticate: Bearer`): keys are required and none was presented.
    #[error("A valid POS API key is required: Authorization: Bearer <key>")]
    KeyRequired,
    /// 401: the key presented is malformed, unknown, revoked or expired (one answer for all).
    #[error("Invalid API key: unknown, revoked or expired")]
    InvalidKey,
    /// 403: the key is valid but lacks the route's scope.
    #[error("This API key lacks the scope {0}")]
    MissingScope(Scope),
}

impl HttpError for CredentialError {
    fn status(&self) -> StatusCode {
        match self {
            Self::KeyRequired | Self::InvalidKey => StatusCode::UNAUTHORIZED,
            Self::MissingScope(_) => StatusCode::FORBIDDEN,
        }
    }
}

impl CredentialError {
    /// The answer, with `WWW-Authenticate` on a 401.
    fn into_response(self) -> Response {
        let unauthorized = self.status() == StatusCode::UNAUTHORIZED;
        let mut r = ApiError::from(self).into_response();
        if unauthorized {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// Keys given on the command line (`--pos-api-key VENDOR=KEY`), by the SHA-256 of the key:
/// looking a presented key up by its digest compares digests, never the secret itself, so
/// timing reveals nothing about the key. Each acts as a vendor key with the POS scopes.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    by_digest: HashMap<[u8; 32], String>,
}

/// Shortest key accepted: a key is a password that never changes hands by hand. The admin
/// token is held to the same minimum.
pub const MIN_KEY_LEN: usize = 16;

impl ApiKeys {
    /// Parses `VENDOR=KEY` entries.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut by_digest = HashMap::new();
        for e in entries {
            let (vendor, key) = e
                .split_once('=')
                .map(|(v, k)| (v.trim(), k.trim()))
                .filter(|(v, k)| !v.is_empty() && !k.is_empty())
                .ok_or_else(|| {
                    format!(
                        "POS API key '{}…': expected VENDOR=KEY",
                        e.chars().take(8).collect::<String>()
                    )
                })?;
            if key.len() < MIN_KEY_LEN {
                return Err(format!("POS API key for vendor '{vendor}' is too short: at least {MIN_KEY_LEN} characters"));
            }
            by_digest.insert(digest(key), vendor.to_string());
        }
        Ok(Self { by_digest })
    }

    /// Whether any key was given (then every POS request needs a key, as before keys could be
    /// created at run time).
    pub fn enabled(&self) -> bool {
        !self.by_digest.is_empty()
    }

    /// The vendor of a presented key.
    pub fn vendor_of(&self, key: &str) -> Option<&str> {
        self.by_digest.get(&digest(key)).map(String::as_str)
    }

    /// The principal of a presented command-line key.
    fn principal_of(&self, key: &str) -> Option<Principal> {
        self.vendor_of(key).map(|vendor| Principal::Key {
            id: format!("flag:{vendor}"),
            owner: KeyOwner::Vendor(vendor.to_string()),
            scopes: Scopes::of(Scope::ALL.into_iter().filter(|s| s.is_pos())),
        })
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// How the POS API checks credentials: the command-line keys and where keyless requests are
/// still accepted.
#[derive(Debug, Clone, Default)]
pub struct PosAuth {
    pub keys: ApiKeys,
    pub keyless: KeylessPolicy,
}

impl PosAuth {
    /// Whether a request without a key is refused before anything is read: keys required of
    /// all, or (as before keys lived in the store) command-line keys given.
    fn refuses_keyless_outright(&self) -> bool {
        self.keyless.required_for_all || self.keys.enabled()
    }
}

/// The checked credential of a POS request (a request extension), and the rule of what it
/// may see.
#[derive(Debug, Clone)]
pub struct Credential {
    pub principal: Principal,
    keyless: Arc<PosAuth>,
}

impl Default for Credential {
    /// Keyless under the default policy (requests outside the POS routes' middleware).
    fn default() -> Self {
        Self {
            principal: Principal::Keyless,
            keyless: Arc::default(),
        }
    }
}

impl Credential {
    /// Whether something of `merchant`, reached through a register of `vendor`, is this
    /// credential's to see: `Err(NotFound)` for a key of another merchant or vendor (as if it
    /// did not exist), `Err(KeyRequired)` for a keyless request where the vendor needs keys.
    pub fn check(&self, merchant: &MerchantId, vendor: &str) -> Result<(), Refusal> {
        match &self.principal {
            Principal::Keyless if !self.keyless.keyless.accepts(Some(vendor)) => {
                Err(Refusal::KeyRequired)
            }
            p if p.sees(merchant, Some(vendor)) => Ok(()),
            _ => Err(Refusal::NotFound),
        }
    }

    /// Whether a keyless request naming `vendor` is accepted (checked as soon as the vendor
    /// is read).
    pub fn check_vendor(&self, vendor: &str) -> Result<(), CredentialError> {
        match self.principal {
            Principal::Keyless if !self.keyless.keyless.accepts(Some(vendor)) => {
                Err(CredentialError::KeyRequired)
            }
            _ => Ok(()),
        }
    }

    /// A scope a route needs only for some requests (a refund by reference on the
    /// SmartConnect route, an order's cancel with reversal): the middleware's own check, later.
    pub fn require(&self, scope: Scope) -> Result<(), CredentialError> {
        if self.principal.allows(scope) {
            Ok(())
        } else {
            Err(CredentialError::MissingScope(scope))
        }
    }

    /// The merchant a key is confined to.
    pub fn merchant(&self) -> Option<&MerchantId> {
        self.principal.merchant()
    }

    /// The vendor a key is confined to.
    pub fn vendor(&self) -> Option<&str> {
        self.principal.vendor()
    }
}

/// What [`Credential::check`] refuses with; the handler says "not found" in its own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    KeyRequired,
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// Middleware of the POS routes: authenticates the request, requires `scope`, and attaches
/// the [`Credential`].
pub async fn authenticate(
    State((state, scope)): State<(ApiState, Scope)>,
    mut req: Request,
    next: Next,
) -> Response {
    let auth = state.auth.clone();
    let presented = bearer(req.headers()).filter(|key| {
        // Before keys existed the header was ignored: a SmartConnect client (or a proxy in
        // front of it) that sends a bearer token of its own stays keyless, unless command-line
        // keys are configured (then every bearer must be one of them, as before).
        key.starts_with(crate::engine::accounts::KEY_PREFIX) || auth.keys.enabled()
    });
    let principal = match presented {
        Some(key) => match auth.keys.principal_of(key) {
            Some(p) => p,
            None => match state.engine.authenticate_key(key).await {
                Ok(p) => p,
                Err(KeyRefused::Malformed | KeyRefused::Invalid) => {
                    return CredentialError::InvalidKey.into_response()
                }
                Err(KeyRefused::Store(e)) => {
                    return ApiError::from(ServiceError::store(e)).into_response()
                }
            },
        },
        None if auth.refuses_keyless_outright() => {
            return CredentialError::KeyRequired.into_response()
        }
        None => Principal::Keyless,
    };
    if !principal.allows(scope) {
        // A route no register may use without a key (events, webhooks) asks for one.
        if principal == Principal::Keyless {
            return CredentialError::KeyRequired.into_response();
        }
        return CredentialError::MissingScope(scope).into_response();
    }
    req.extensions_mut().insert(Credential {
        principal,
        keyless: auth,
    });
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_keys_map_to_vendors() {
        let keys = ApiKeys::parse(&[
            "Till2Go=0123456789abcdef".into(),
            "Other = fedcba9876543210".into(),
        ]);
        let Ok(keys) = keys else { panic!("parses") };
        assert!(keys.enabled());
        assert_eq!(keys.vendor_of("0123456789abcdef"), Some("Till2Go"));
        assert_eq!(keys.vendor_of("fedcba9876543210"), Some("Other"));
        assert_eq!(keys.vendor_of("nope"), None);
        assert!(ApiKeys::parse(&["novendor".into()]).is_err());
        assert!(ApiKeys::parse(&["V=short".into()]).is_err());
        assert!(!ApiKeys::default().enabled());
        let Some(p) = keys.principal_of("0123456789abcdef") else {
            panic!("a vendor key")
        };
        assert_eq!(p.vendor(), Some("Till2Go"));
        assert!(p.allows(Scope::PosTransact) && p.allows(Scope::PosRefund));
        assert!(!p.allows(Scope::Admin));
    }

    #[test]
    fn a_credential_sees_its_own_and_keyless_follows_the_policy() {
        let (a, b) = (MerchantId::new(), MerchantId::new());
        let strict = Arc::new(PosAuth {
            keys: ApiKeys::default(),
            keyless: KeylessPolicy::parse(&["Till2Go".into()]),
        });
        let keyless = Credential {
            principal: Principal::Keyless,
            keyless: strict.clone(),
        };
        assert_eq!(keyless.check(&a, "Till2Go"), Err(Refusal::KeyRequired));
        assert_eq!(keyless.check(&a, "Other"), Ok(()));
        assert!(keyless.check_vendor("Till2Go").is_err());
        assert!(keyless.check_vendor("Other").is_ok());
        let of_a = Credential {
            principal: Principal::Key {
                id: "k".into(),
                owner: KeyOwner::Merchant(a.clone()),
                scopes: Scopes::of([Scope::PosRead]),
            },
            keyless: strict,
        };
        assert_eq!(of_a.check(&a, "Till2Go"), Ok(()));
        assert_eq!(of_a.check(&b, "Till2Go"), Err(Refusal::NotFound));
        assert!(of_a.check_vendor("Till2Go").is_ok());
    }

    #[test]
    fn bearer_tokens_are_read_in_either_case_and_blank_is_none() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  k1 "),
        );
        assert_eq!(bearer(&h), Some("k1"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer k2"));
        assert_eq!(bearer(&h), Some("k2"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }
}
