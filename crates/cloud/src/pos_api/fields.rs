//! Lenient request fields: form bodies (with or without a charset, `+` or `%20` for spaces),
//! JSON bodies, and the query string, merged with the body winning. Unknown keys are ignored.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use std::collections::HashMap;

/// The fields of a POS request.
#[derive(Debug, Default)]
pub struct Fields {
    exact: HashMap<String, String>,
    /// Lower-cased keys, for clients that spell a key in another case (`PosRegisterID`).
    folded: HashMap<String, String>,
}

impl Fields {
    fn insert(&mut self, k: String, v: String) {
        self.folded.insert(k.to_ascii_lowercase(), v.clone());
        self.exact.insert(k, v);
    }

    fn insert_urlencoded(&mut self, bytes: &[u8]) {
        for (k, v) in url::form_urlencoded::parse(bytes) {
            self.insert(k.into_owned(), v.into_owned());
        }
    }

    /// Builds fields from a query string and a body (tests and other callers).
    pub fn from_parts(
        query: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Result<Self, ApiError> {
        let mut f = Fields::default();
        if let Some(q) = query {
            f.insert_urlencoded(q.as_bytes());
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
                f.insert(k, s);
            }
        } else {
            f.insert_urlencoded(body);
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
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("Unreadable request body: {e}")))?;
        Fields::from_parts(query.as_deref(), &content_type, &body)
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
}
