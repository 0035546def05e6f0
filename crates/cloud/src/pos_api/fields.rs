//! Lenient request fields: form bodies (with or without a charset, `+` or `%20` for spaces),
//! JSON bodies, and the query string, merged with the body winning. Unknown keys are ignored;
//! a key given twice in the query or twice in the body is refused (400), never resolved by
//! picking one of the values.

use super::error::{ApiError, HttpError};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::{HashMap, HashSet};

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

/// A request whose fields cannot be read, or a field whose value is wrong: the family of
/// every handler's input. The message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    /// 413: the body is over the limit (named when known).
    #[error("Request body too large{}", .0.map(|n| format!(": at most {n} bytes")).unwrap_or_default())]
    TooLarge(Option<usize>),
    #[error("Field {0} given more than once")]
    Repeated(String),
    #[error("Too many fields: at most {MAX_FIELDS}")]
    TooMany,
    #[error("Field name too long: at most {MAX_KEY_BYTES} bytes")]
    KeyTooLong,
    #[error("Field {0} too long: at most {MAX_VALUE_BYTES} bytes")]
    ValueTooLong(String),
    #[error("Invalid JSON body: {0}")]
    InvalidJson(String),
    #[error("Unreadable request body: {0}")]
    Unreadable(String),
    /// 403: the POS API key belongs to another vendor than the request names.
    #[error("This POS API key does not belong to the POSVendorName in the request")]
    WrongVendor,
    /// A field is missing or its value is wrong.
    #[error("{0}")]
    Invalid(String),
}

impl FieldError {
    /// A missing or wrong field, saying what to fix.
    pub fn invalid(message: impl std::fmt::Display) -> Self {
        Self::Invalid(message.to_string())
    }
}

impl HttpError for FieldError {
    fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::WrongVendor => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Answers 413 at once when the declared `Content-Length` is over the body limit, before any
/// of the body is read: the request would be refused anyway, and waiting for a body the client
/// may never send would hold the connection until the body read timeout.
/// The body limit of a request: the API's, but for the one upload the cloud takes, an update
/// artifact's file (whose route sets the same larger limit on the body it reads).
fn limit_for(req: &Request, limit: usize) -> usize {
    let path = req.uri().path();
    if req.method() == axum::http::Method::PUT
        && path.starts_with("/admin/artifacts/")
        && path.ends_with("/file")
    {
        limit.max(crate::engine::campaigns::MAX_ARTIFACT_BYTES)
    } else {
        limit
    }
}

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
    let limit = limit_for(&req, limit.0);
    match declared {
        Some(n) if n > limit as u64 => {
            ApiError::from(FieldError::TooLarge(Some(limit))).into_response()
        }
        // No length (chunked), or one within the limit: the body limit counts what arrives.
        _ => next.run(req).await,
    }
}

/// The fields of a POS request.
#[derive(Debug, Default)]
pub struct Fields {
    /// By lower-cased key (clients spell `POSRegisterID` as `PosRegisterID` too); one entry per
    /// key, since a source may not repeat a key and the body replaces the query's.
    by_key: HashMap<String, String>,
    /// Fields seen so far, duplicates included.
    count: usize,
    /// Who the request acts as (keyless outside the POS routes' middleware).
    credential: super::credentials::Credential,
}

/// Keys seen so far in one part of the request (the query string, or the body).
#[derive(Default)]
struct Seen(HashSet<String>);

/// A JSON object's members in order, duplicates kept (`serde_json::Map` keeps only the last
/// value of a repeated key, which would hide the duplicate).
struct JsonMembers(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for JsonMembers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = JsonMembers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonMembers, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(JsonMembers(members))
            }
        }
        d.deserialize_map(Members)
    }
}

impl Fields {
    /// Adds a field of one part of the request, counting it against the limits (duplicates
    /// count too). A key that part already gave, in any case, is refused: `AmountTotal=100&
    /// AmountTotal=200` has no right reading, and guessing one could charge the wrong amount.
    fn insert(&mut self, seen: &mut Seen, k: String, v: String) -> Result<(), FieldError> {
        let folded = self.admit(seen, &k, v.len())?;
        self.by_key.insert(folded, v);
        Ok(())
    }

    /// Checks a field against the limits and the part's keys so far; its lower-cased key.
    fn admit(&mut self, seen: &mut Seen, k: &str, value_len: usize) -> Result<String, FieldError> {
        self.count += 1;
        if self.count > MAX_FIELDS {
            return Err(FieldError::TooMany);
        }
        if k.len() > MAX_KEY_BYTES {
            return Err(FieldError::KeyTooLong);
        }
        if value_len > MAX_VALUE_BYTES {
            return Err(FieldError::ValueTooLong(k.to_string()));
        }
        let folded = k.to_ascii_lowercase();
        // An empty key (`=x`, a stray `&=`) names no field a handler reads.
        if !k.is_empty() && !seen.0.insert(folded.clone()) {
            return Err(FieldError::Repeated(k.to_string()));
        }
        Ok(folded)
    }

    fn insert_urlencoded(&mut self, bytes: &[u8]) -> Result<(), FieldError> {
        let mut seen = Seen::default();
        for (k, v) in url::form_urlencoded::parse(bytes) {
            self.insert(&mut seen, k.into_owned(), v.into_owned())?;
        }
        Ok(())
    }

    /// Builds fields from a query string and a body (tests and other callers).
    pub fn from_parts(
        query: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Result<Self, FieldError> {
        let mut f = Fields::default();
        if let Some(q) = query {
            f.insert_urlencoded(q.as_bytes())?;
        }
        let is_json = content_type.to_ascii_lowercase().contains("json");
        if is_json && !body.is_empty() {
            let JsonMembers(members) =
                serde_json::from_slice(body).map_err(|e| FieldError::InvalidJson(e.to_string()))?;
            let mut seen = Seen::default();
            for (k, v) in members {
                let s = match v {
                    serde_json::Value::String(s) => s,
                    // As if absent (the query's value, if any, stays), but a use of the key.
                    serde_json::Value::Null => {
                        f.admit(&mut seen, &k, 0)?;
                        continue;
                    }
                    // SaleData sent as an object rather than a string is kept as its JSON text.
                    other => other.to_string(),
                };
                f.insert(&mut seen, k, s)?;
            }
        } else {
            f.insert_urlencoded(body)?;
        }
        Ok(f)
    }

    /// A field by its name in any case. Blank values count as absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.by_key
            .get(&key.to_ascii_lowercase())
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// Who the request acts as.
    pub fn credential(&self) -> &super::credentials::Credential {
        &self.credential
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
        let credential = req
            .extensions()
            .get::<super::credentials::Credential>()
            .cloned();
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                FieldError::TooLarge(limit)
            } else {
                FieldError::Unreadable(e.to_string())
            }
        })?;
        let mut fields = Fields::from_parts(query.as_deref(), &content_type, &body)?;
        if let Some(credential) = credential {
            if let Some(named) = fields.get("POSVendorName").map(str::trim) {
                // A vendor key acts only for its own vendor's registers.
                if credential.vendor().is_some_and(|v| v != named) {
                    return Err(FieldError::WrongVendor.into());
                }
                credential.check_vendor(named)?;
            }
            fields.credential = credential;
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
        // The query and the body count together, a key in both twice.
        let half: Vec<String> = (0..60).map(|i| format!("k{i}=v")).collect();
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

    /// The error message of a refused request, or `None` when it parses.
    async fn refusal(q: Option<&str>, ct: &str, body: &[u8]) -> Option<(u16, String)> {
        let e = Fields::from_parts(q, ct, body).err()?;
        let status = e.status().as_u16();
        let body = axum::response::IntoResponse::into_response(ApiError::from(e)).into_body();
        let bytes = axum::body::to_bytes(body, 4096).await.ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        Some((status, v["error"].as_str()?.to_owned()))
    }

    #[tokio::test]
    async fn a_key_repeated_in_one_part_is_refused_naming_it() {
        let form = "application/x-www-form-urlencoded";
        let json = "application/json";
        let dup = |e: &str| Some((400, format!("Field {e} given more than once")));
        for (query, ct, body, expected) in [
            (
                None,
                form,
                "AmountTotal=100&AmountTotal=200",
                dup("AmountTotal"),
            ),
            // In another case it is the same field (lookups ignore case).
            (
                None,
                form,
                "AmountTotal=100&amounttotal=200",
                dup("amounttotal"),
            ),
            // A blank repeat is still a repeat.
            (
                None,
                form,
                "AmountTotal=&AmountTotal=200",
                dup("AmountTotal"),
            ),
            (
                None,
                json,
                r#"{"AmountTotal": "100", "AmountTotal": "200"}"#,
                dup("AmountTotal"),
            ),
            (
                None,
                json,
                r#"{"AmountTotal": 100, "AMOUNTTOTAL": 200}"#,
                dup("AMOUNTTOTAL"),
            ),
            (
                None,
                json,
                r#"{"AmountTotal": null, "AmountTotal": "200"}"#,
                dup("AmountTotal"),
            ),
            // The query string is a part of its own, refused the same way.
            (Some("wait=1&wait=2"), form, "", dup("wait")),
            (
                Some("POSRegisterID=a&posregisterid=b"),
                json,
                "{}",
                dup("posregisterid"),
            ),
        ] {
            assert_eq!(
                refusal(query, ct, body.as_bytes()).await,
                expected,
                "{query:?} {body}"
            );
        }
        // Nested objects are SaleData's own business; only top-level keys are fields.
        let nested = br#"{"SaleData": {"a": 1, "a": 2}, "AmountTotal": "5"}"#;
        assert_eq!(refusal(None, json, nested).await, None);
        // Empty keys name nothing and are not fields a handler could read.
        assert_eq!(refusal(None, form, b"=1&=2&AmountTotal=5").await, None);
    }

    #[test]
    fn the_body_replaces_the_query_in_any_case() {
        // One key in the query and in the body is not a duplicate: the body wins, whatever the
        // case of either spelling.
        for (query, body) in [
            ("AmountTotal=100", "AmountTotal=200"),
            ("AmountTotal=100", "amounttotal=200"),
            ("amounttotal=100", "AmountTotal=200"),
        ] {
            let f = Fields::from_parts(Some(query), "", body.as_bytes());
            let Ok(f) = f else {
                panic!("{query} {body} parses")
            };
            assert_eq!(f.get("AmountTotal"), Some("200"), "{query} {body}");
        }
        // A JSON null leaves the query's value, as if the key were absent.
        let f = Fields::from_parts(
            Some("AmountTotal=100"),
            "application/json",
            br#"{"AmountTotal": null}"#,
        );
        let Ok(f) = f else { panic!("parses") };
        assert_eq!(f.get("AmountTotal"), Some("100"));
    }

    #[tokio::test]
    async fn a_json_body_must_be_an_object() {
        for body in [&b"[1, 2]"[..], b"\"s\"", b"3"] {
            let r = refusal(None, "application/json", body).await;
            assert!(
                r.as_ref()
                    .is_some_and(|(s, m)| *s == 400 && m.contains("JSON object")),
                "{r:?}"
            );
        }
    }
}
