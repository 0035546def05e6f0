//! API versions: dated, chosen per request by the `Eftcloud-Version` header (none: the newest),
//! echoed on every answer. The SmartConnect surface (`/POS/...`) is frozen and answers the same
//! under every version; what a new version changes is the extensions. A version being retired
//! is announced on each answer that uses it with `Deprecation` (RFC 9745) and `Sunset`
//! (RFC 8594). The written policy is docs/api-versioning.md.

use super::error::{ApiError, HttpError};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

/// The request and response header.
pub const HEADER: &str = "eftcloud-version";

/// One dated version of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersion {
    /// `YYYY-MM-DD`, the day it was released.
    pub name: &'static str,
    /// When its retirement was announced, if it was.
    pub deprecated: Option<DateTime<Utc>>,
    /// When it stops being served, once announced.
    pub sunset: Option<DateTime<Utc>>,
}

/// Every version served, oldest first; the last is the newest (the default).
pub const VERSIONS: &[ApiVersion] = &[ApiVersion {
    name: "2026-12-01",
    deprecated: None,
    sunset: None,
}];

/// The newest version.
pub fn newest() -> &'static ApiVersion {
    // VERSIONS is a non-empty constant.
    &VERSIONS[VERSIONS.len() - 1]
}

/// A version the request asked for that is not served.
#[derive(Debug, thiserror::Error)]
#[error("Unknown API version '{asked}': supported: {supported}")]
pub struct UnknownVersion {
    asked: String,
    supported: String,
}

impl HttpError for UnknownVersion {
    fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
}

/// The version a request selects among `versions`.
pub fn select<'a>(
    versions: &'a [ApiVersion],
    headers: &HeaderMap,
) -> Result<&'a ApiVersion, UnknownVersion> {
    let Some(asked) = headers.get(HEADER) else {
        return versions.last().ok_or_else(|| UnknownVersion {
            asked: String::new(),
            supported: String::new(),
        });
    };
    let asked = asked.to_str().unwrap_or("").trim();
    versions
        .iter()
        .find(|v| v.name == asked)
        .ok_or_else(|| UnknownVersion {
            asked: asked.chars().take(40).collect(),
            supported: versions
                .iter()
                .map(|v| v.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The headers an answer under `v` carries.
pub fn answer_headers(v: &ApiVersion) -> Vec<(HeaderName, HeaderValue)> {
    let mut h = vec![(
        HeaderName::from_static(HEADER),
        HeaderValue::from_static(v.name),
    )];
    if let Some(d) = v.deprecated {
        if let Ok(value) = HeaderValue::from_str(&format!("@{}", d.timestamp())) {
            h.push((HeaderName::from_static("deprecation"), value));
        }
    }
    if let Some(s) = v.sunset {
        if let Ok(value) = HeaderValue::from_str(&s.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        {
            h.push((HeaderName::from_static("sunset"), value));
        }
    }
    h
}

/// Middleware of the POS listener's API routes: refuses an unknown version, marks the answer.
pub async fn negotiate(req: Request, next: Next) -> Response {
    let version = match select(VERSIONS, req.headers()) {
        Ok(v) => *v,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in answer_headers(&version) {
        headers.insert(name, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn the_newest_is_the_default_and_unknown_versions_are_refused() {
        let versions = [
            ApiVersion {
                name: "2026-01-01",
                deprecated: Some(at("2026-06-01T00:00:00Z")),
                sunset: Some(at("2027-01-01T00:00:00Z")),
            },
            ApiVersion {
                name: "2026-12-01",
                deprecated: None,
                sunset: None,
            },
        ];
        let mut h = HeaderMap::new();
        assert_eq!(
            select(&versions, &h).map(|v| v.name).ok(),
            Some("2026-12-01")
        );
        h.insert(HEADER, HeaderValue::from_static(" 2026-01-01 "));
        assert_eq!(
            select(&versions, &h).map(|v| v.name).ok(),
            Some("2026-01-01")
        );
        h.insert(HEADER, HeaderValue::from_static("2025-01-01"));
        let e = select(&versions, &h)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            e,
            "Unknown API version '2025-01-01': supported: 2026-01-01, 2026-12-01"
        );
        // A retiring version says so; the current one says only its name.
        let old = answer_headers(&versions[0]);
        let names: Vec<&str> = old.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["eftcloud-version", "deprecation", "sunset"]);
        assert_eq!(old[1].1, "@1780272000");
        assert_eq!(old[2].1, "Fri, 01 Jan 2027 00:00:00 GMT");
        assert_eq!(answer_headers(&versions[1]).len(), 1);
    }

    #[test]
    fn the_served_versions_are_dated_and_in_order() {
        assert!(!VERSIONS.is_empty());
        for v in VERSIONS {
            assert!(
                chrono::NaiveDate::parse_from_str(v.name, "%Y-%m-%d").is_ok(),
                "{}",
                v.name
            );
        }
        assert!(VERSIONS.windows(2).all(|w| w[0].name < w[1].name));
        assert_eq!(newest().name, VERSIONS[VERSIONS.len() - 1].name);
        assert!(
            newest().sunset.is_none(),
            "the newest version is never being retired"
        );
    }
}
