//! `GET /device/v1/artifacts/{id}`: a stored update artifact, for a device that authenticates
//! with its id and secret (HTTP Basic), as it does in `hello`. The file is signed, so this
//! keeps the operator's software to the operator's devices rather than protecting its
//! integrity (which the device checks itself).

use super::Gateway;
use crate::engine::devices::AuthError;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use protocol::DeviceId;

fn refuse(status: StatusCode, why: &str) -> Response {
    let mut r = (status, axum::Json(serde_json::json!({ "error": why }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"eftcloud devices\""),
        );
    }
    r
}

/// The device id and secret of a `Basic` authorization header.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?.trim();
    let decoded = String::from_utf8(base64_decode(encoded)?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// Standard base64 (RFC 4648, with padding), as HTTP Basic uses.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let bytes = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        let take = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&n.to_be_bytes()[1..=take]);
    }
    Some(out)
}

pub async fn download(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some((device, secret)) = basic(&headers) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "authenticate with the device's id and secret (HTTP Basic)",
        );
    };
    let Ok(device) = DeviceId::parse(&device) else {
        return refuse(StatusCode::UNAUTHORIZED, "unknown device or wrong secret");
    };
    match gw.engine.authenticate(&device, &secret).await {
        Ok(_) => {}
        Err(AuthError::Store(_)) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable, retry",
            )
        }
        Err(_) => return refuse(StatusCode::UNAUTHORIZED, "unknown device or wrong secret"),
    }
    match gw.engine.artifact_file(&id).await {
        Ok(Some(file)) => {
            let mut r = file.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        Ok(None) => refuse(StatusCode::NOT_FOUND, "no stored artifact with this id"),
        Err(_) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage unavailable, retry",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode() {
        // "dev-1:s3cret"
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic ZGV2LTE6czNjcmV0"),
        );
        assert_eq!(basic(&h), Some(("dev-1".into(), "s3cret".into())));
        assert_eq!(base64_decode("YQ=="), Some(b"a".to_vec()));
        assert_eq!(base64_decode("YWI="), Some(b"ab".to_vec()));
        assert_eq!(base64_decode("YWJj"), Some(b"abc".to_vec()));
        assert_eq!(base64_decode("!!!!"), None);
        assert_eq!(base64_decode("Y"), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(basic(&h), None);
    }
}
