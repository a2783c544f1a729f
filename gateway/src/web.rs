//! Small HTTP helpers (named `web` so the `http` crate keeps its name): bounded body reading and JSON/text responses.

use crate::error::ApiError;
use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use serde::de::DeserializeOwned;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A response body: whole (most answers) or streamed (exports). A streamed
/// body that fails midway ends with an error, so hyper cuts the connection
/// and the client sees a broken transfer, never a short file that looks
/// complete.
pub type Body = BoxBody<Bytes, std::io::Error>;
pub type Resp = Response<Body>;

fn whole(body: Bytes) -> Body {
    Full::new(body).map_err(|never| match never {}).boxed()
}

/// Chunks a producer task sends; the channel is bounded, so a slow client
/// slows the producer instead of growing memory.
#[derive(Debug)]
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|r| r.map(Frame::data)))
    }
}

/// Chunks in flight between a streaming producer and the client.
pub const STREAM_CHUNKS_MAX: usize = 4;

/// A streamed `200` whose chunks come from `produce`, which gets the
/// sending half (a send fails once the client is gone: stop then).
pub fn stream<F, Fut>(content_type: &'static str, produce: F) -> Resp
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_CHUNKS_MAX);
    tokio::spawn(produce(tx));
    let mut r = Response::new(ChannelBody(rx).boxed());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A JSON answer. `Cache-Control: no-store` unless the caller replaces it
/// (`with_cache`): tokens, orders and admin views are per-caller and must
/// not sit in a shared or browser cache.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Resp {
    match serde_json::to_vec(value) {
        Ok(body) => with_cache(bytes(status, "application/json", body), "no-store"),
        Err(e) => {
            tracing::error!(error = %e, "serializing a response");
            error(&ApiError::internal())
        }
    }
}

pub fn bytes(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(whole(body.into()));
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
    let mut r = bytes(e.status(), "application/json", body);
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(s) = e.retry_after_s {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
    }
    if let Some(rl) = e.rate_limit {
        r.headers_mut()
            .insert("x-ratelimit-limit", HeaderValue::from(rl.limit));
        r.headers_mut()
            .insert("x-ratelimit-remaining", HeaderValue::from(rl.remaining));
    }
    if let Some(allow) = e
        .allow
        .as_deref()
        .and_then(|a| HeaderValue::from_str(a).ok())
    {
        r.headers_mut().insert(http::header::ALLOW, allow);
    }
    // A body cut off (or refused) before its end leaves the connection in
    // an unknown state: close it after the answer.
    if matches!(
        e.code,
        crate::error::Code::RequestTimeout | crate::error::Code::PayloadTooLarge
    ) {
        r.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    if e.code == crate::error::Code::Unauthorized {
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
    }
    r
}

/// Reads a body of at most `limit` bytes within `timeout`, into one
/// buffer sized from `Content-Length` (frames are copied in and dropped at
/// once, so a body trickled one byte per packet costs one byte per byte,
/// not a buffer per packet). Refuses early on a larger declared length so
/// an oversized upload is never buffered; a body still arriving at the
/// deadline is refused with 408 (the answer closes the connection) and
/// counted as shed.
pub async fn read_body(
    headers: &http::HeaderMap,
    mut body: Incoming,
    limit: usize,
    timeout: std::time::Duration,
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
        crate::shed::count(crate::shed::Reason::BodyTooLarge);
        return Err(ApiError::payload_too_large(limit));
    }
    // Chunked bodies start small and grow, never past `limit`.
    let capacity = declared.map_or(limit.min(CHUNKED_START_BYTES), |n| n as usize);
    let mut buf = BytesMut::with_capacity(capacity);
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|_| ApiError::bad_request("the request body could not be read"))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limit {
                    crate::shed::count(crate::shed::Reason::BodyTooLarge);
                    return Err(ApiError::payload_too_large(limit));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r.map(|()| buf.freeze()),
        Err(_) => {
            crate::shed::count(crate::shed::Reason::BodyTimeout);
            let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            Err(ApiError::request_timeout(ms))
        }
    }
}

/// First allocation for a body without `Content-Length`.
const CHUNKED_START_BYTES: usize = 1024;

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
