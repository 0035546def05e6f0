//! Optional POS API keys, per POS vendor (`Authorization: Bearer <key>`). Off by default:
//! SmartConnect has no keys, and existing clients must work unchanged. When keys are
//! configured, every POS route requires one, and a key only acts for its own vendor's
//! registers (`POSVendorName` must match, and another vendor's transactions are not found).

use super::error::{ApiError, HttpError};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// 401 (with `WWW-Authenticate: Bearer`): keys are required and none valid was presented.
#[derive(Debug, thiserror::Error)]
#[error("A valid POS API key is required: Authorization: Bearer <key>")]
pub struct KeyRequired;

impl HttpError for KeyRequired {
    fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }
}

/// The vendor a request's API key belongs to (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vendor(pub String);

/// Configured keys, by the SHA-256 of the key: looking a presented key up by its digest
/// compares digests, never the secret itself, so timing reveals nothing about the key.
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

    /// Whether keys are required.
    pub fn enabled(&self) -> bool {
        !self.by_digest.is_empty()
    }

    /// The vendor of a presented key.
    pub fn vendor_of(&self, key: &str) -> Option<&str> {
        self.by_digest.get(&digest(key)).map(String::as_str)
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Middleware on the POS routes: with keys configured, a valid `Authorization: Bearer` key is
/// required and its vendor is attached to the request.
pub async fn require_key(
    State(keys): State<Arc<ApiKeys>>,
    mut req: Request,
    next: Next,
) -> Response {
    if !keys.enabled() {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented.and_then(|k| keys.vendor_of(k)) {
        Some(vendor) => {
            let vendor = Vendor(vendor.to_string());
            req.extensions_mut().insert(vendor);
            next.run(req).await
        }
        None => {
            let mut r = ApiError::from(KeyRequired).into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_vendors() {
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
    }
}
