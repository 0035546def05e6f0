//! Lenient request fields: form bodies (with or without a charset, `+` or `%20` for spaces),
//! JSON bodies, and the query string, merged with the body winning. Unknown keys are ignored.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

/// Most fields one request may carry (query and body together); SmartConnect requests use
/// about twenty.
pub const MAX_FIELDS: usize = 100;
/// Longest field name, in bytes.
pub const MAX_KEY_BYTES: usize = 64;
/// Longest field value, in bytes (after decoding); the default body limit.
pub const MAX_VALUE_BYTES: usize = super::DEFAULT_MAX_BODY_BYTES;

/// The body limit in force, put in the request's extensions so the 413 can say it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// The 413 answer, naming the limit when it is known.
fn too_large(limit: Option<usize>) -> ApiError {
    ApiError::payload_too_large(match limit {
        Some(n) => format!("Request body too large: at most {n} bytes"),
        None => "Request body too large".to_owned(),
    })
}

/// Answers 413 at once when the declared `Content-Length` is over the body limit, before any
/// of the body is read: the request would be refused anyway, and waiting for a body the client
/// may never send would hold the connection until the body read timeout.
pub async fn refuse_declared_oversize(
    State(limit): State<BodyLimit>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limit.0 as u64 => too_large(Some(limit.0)).into_response(),
        // No length (chunked), or one within the limit: the body limit counts what arrives.
        _ => next.run(req).await,
    }
}

/// The fields of a POS request.
#[derive(Debug, Default)]
pub struct Fields {
    exact: HashMap<String, String>,
    /// Lower-cased keys, for clients that spell a key in another case (`PosRegisterID`).
    folded: HashMap<String, String>,
    /// Fields seen so far, duplicates included.
    count: usize,
    /// The vendor of the request's POS API key, when keys are required.
    vendor: Option<String>,
}

impl Fields {
    /// Adds a field, counting it against the limits (duplicates count too).
    fn insert(&mut self, k: String, v: String) -> Result<(), ApiError> {
        self.count += 1;
        if self.count > MAX_FIELDS {
            return Err(ApiError::bad_request(format!(
                "Too many fields: at most {MAX_FIELDS}"
            )));
        }
        if k.len() > MAX_KEY_BYTES {
            return Err(ApiError::bad_request(format!(
                "Field name too long: at most {MAX_KEY_BYTES} bytes"
            )));
        }
        if v.len() > MAX_VALUE_BYTES {
            return Err(ApiError::bad_request(format!(
                "Field {k} too long: at most {MAX_VALUE_BYTES} bytes"
            )));
        }
        self.folded.insert(k.to_ascii_lowercase(), v.clone());
        self.exact.insert(k, v);
        Ok(())
    }

    fn insert_urlencoded(&mut self, bytes: &[u8]) -> Result<(), ApiError> {
        for (k, v) in url::form_urlencoded::parse(bytes) {
            self.insert(k.into_owned(), v.into_owned())?;
        }
        Ok(())
    }

    /// Builds fields from a query string and a body (tests and other callers).
    pub fn from_parts(
        query: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Result<Self, ApiError> {
        let mut f = Fields::default();
        if let Some(q) = query {
            f.insert_urlencoded(q.as_bytes())?;
        }
        let is_json = content_type.to_ascii_lowercase().contains("json");
        if is_json && !body.is_empty() {
            let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))?;
            for (k, v) in v {
                let s = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => continue,
                    // SaleData sent as an object rather than a string is kept as its JSON text.
                    other => other.to_string(),
                };
                f.insert(k, s)?;
            }
        } else {
            f.insert_urlencoded(body)?;
        }
        Ok(f)
    }

    /// A field by its exact name, else by the name in any case. Blank values count as absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.exact
            .get(key)
            .or_else(|| self.folded.get(&key.to_ascii_lowercase()))
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// The vendor of the request's POS API key, when keys are required.
    pub fn key_vendor(&self) -> Option<&str> {
        self.vendor.as_deref()
    }

    /// The first of several spellings that is present (`Contact Name` / `ContactName`).
    pub fn get_any(&self, keys: &[&str]) -> Option<&str> {
        keys.iter().find_map(|k| self.get(k))
    }
}

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().map(str::to_owned);
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let limit = req.extensions().get::<BodyLimit>().map(|l| l.0);
        let vendor = req
            .extensions()
            .get::<super::api_keys::Vendor>()
            .map(|v| v.0.clone());
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large(limit)
            } else {
                ApiError::bad_request(format!("Unreadable request body: {e}"))
            }
        })?;
        let mut fields = Fields::from_parts(query.as_deref(), &content_type, &body)?;
        if let Some(vendor) = vendor {
            // A key acts only for its own vendor's registers.
            if fields
                .get("POSVendorName")
                .is_some_and(|v| v.trim() != vendor)
            {
                return Err(ApiError::forbidden(
                    "This POS API key does not belong to the POSVendorName in the request",
                ));
            }
            fields.vendor = Some(vendor);
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_wins_over_query_and_spaces_decode() {
        let f = Fields::from_parts(
            Some("POSRegisterID=q&POSBusinessName=Toys%20Shop"),
            "application/x-www-form-urlencoded; charset=UTF-8",
            b"POSRegisterID=b&Contact+Name=Jo+Bloggs&Extra=1",
        );
        let Ok(f) = f else { panic!("parses") };
        assert_eq!(f.get("POSRegisterID"), Some("b"));
        assert_eq!(f.get("POSBusinessName"), Some("Toys Shop"));
        assert_eq!(
            f.get_any(&["Contact Name", "ContactName"]),
            Some("Jo Bloggs")
        );
        assert_eq!(f.get("posregisterid"), Some("b"));
        assert_eq!(f.get("Missing"), None);
    }

    #[test]
    fn json_bodies_and_blank_values() {
        let f = Fields::from_parts(
            None,
            "application/json",
            br#"{"AmountTotal": 500, "A": "", "S": {"x": 1}}"#,
        );
        let Ok(f) = f else { panic!("parses") };
        assert_eq!(f.get("AmountTotal"), Some("500"));
        assert_eq!(f.get("A"), None);
        assert_eq!(f.get("S"), Some(r#"{"x":1}"#));
        assert!(Fields::from_parts(None, "application/json", b"{nope").is_err());
    }

    #[test]
    fn field_count_and_lengths_are_limited() {
        let status = |q: Option<&str>, ct: &str, body: &[u8]| {
            Fields::from_parts(q, ct, body).map_err(|e| e.status().as_u16())
        };
        let many: Vec<String> = (0..=MAX_FIELDS).map(|i| format!("k{i}=v")).collect();
        assert_eq!(status(None, "", many.join("&").as_bytes()).err(), Some(400));
        // Duplicates count; the query and the body count together.
        let half: Vec<String> = (0..60).map(|_| "k=v".to_owned()).collect();
        let half = half.join("&");
        assert_eq!(status(Some(&half), "", half.as_bytes()).err(), Some(400));
        assert!(status(Some("a=1"), "", half.as_bytes()).is_ok());
        let long_key = format!("{}=v", "k".repeat(MAX_KEY_BYTES + 1));
        assert_eq!(status(None, "", long_key.as_bytes()).err(), Some(400));
        let long_value = format!("k={}", "v".repeat(MAX_VALUE_BYTES + 1));
        assert_eq!(status(None, "", long_value.as_bytes()).err(), Some(400));
        let json_key = format!(r#"{{"{}": "v"}}"#, "k".repeat(MAX_KEY_BYTES + 1));
        assert_eq!(
            status(None, "application/json", json_key.as_bytes()).err(),
            Some(400)
        );
    }
}
