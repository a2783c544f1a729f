//! Small HTTP helpers (named `web` so the `http` crate keeps its name): bounded body reading and JSON/text responses.

use crate::error::ApiError;
use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

pub type Resp = Response<Full<Bytes>>;

pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Resp {
    match serde_json::to_vec(value) {
        Ok(body) => bytes(status, "application/json", body),
        Err(e) => {
            tracing::error!(error = %e, "serializing a response");
            error(&ApiError::internal())
        }
    }
}

pub fn bytes(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub fn with_cache(mut r: Resp, cache_control: &'static str) -> Resp {
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(cache_control));
    r
}

pub fn error(e: &ApiError) -> Resp {
    let body = serde_json::to_vec(&e.body()).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = bytes(e.status, "application/json", body);
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(s) = e.retry_after_s {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
    }
    if e.status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
    }
    r
}

/// Reads a body of at most `limit` bytes; refuses early on a larger
/// declared length so an oversized upload is never buffered.
pub async fn read_body(
    headers: &http::HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("Content-Length is not a number"))
        })
        .transpose()?;
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::payload_too_large(limit))
        }
        Err(_) => Err(ApiError::bad_request("the request body could not be read")),
    }
}

/// Whether the request says its body is JSON (`application/json`, any parameters).
pub fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Parses a JSON body, requiring the JSON content type. An empty body parses
/// as `{}` when `empty_ok`.
pub fn parse_json<T: DeserializeOwned>(
    headers: &http::HeaderMap,
    body: &[u8],
    empty_ok: bool,
) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        if !empty_ok {
            return Err(ApiError::bad_request("a JSON body is required"));
        }
        b"{}"
    } else {
        if !is_json(headers) {
            return Err(ApiError::bad_request(
                "Content-Type must be application/json",
            ));
        }
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}
