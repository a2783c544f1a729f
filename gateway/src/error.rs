//! The one place where failures become HTTP: every error a client can see
//! has a stable snake_case code and a status, decided here.

use engine::Rejection;
use http::StatusCode;

/// An error answer: status, stable code, human message, optional extras.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after_s: Option<u64>,
    /// Extra JSON fields merged into the body (e.g. an order id to poll).
    pub extra: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
            extra: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn campaign_not_found() -> Self {
        Self::not_found("campaign_not_found", "no campaign has this id")
    }

    pub fn payload_too_large(limit_bytes: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than {limit_bytes} bytes"),
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this path does not accept this method",
        )
    }

    /// A dependency failed; the client may retry later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).retry_after(1)
    }

    /// Our own bug or broken invariant; details go to the log, not the client.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(extra);
        self
    }

    /// The JSON body of the contract: `{"code", "message", ...extra}`.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "code": self.code, "message": self.message });
        if let (Some(serde_json::Value::Object(extra)), serde_json::Value::Object(map)) =
            (&self.extra, &mut body)
        {
            for (k, v) in extra {
                map.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        body
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let (status, message) = match r {
            Rejection::NotStarted => (StatusCode::from_u16(425), "the sale has not started yet"),
            Rejection::Ended => (Ok(StatusCode::GONE), "the sale has ended"),
            Rejection::Paused => (Ok(StatusCode::LOCKED), "the sale is paused"),
            Rejection::SoldOut => (Ok(StatusCode::GONE), "sold out"),
            Rejection::AlreadyBought => (
                Ok(StatusCode::CONFLICT),
                "you already hold the most units this sale allows",
            ),
            Rejection::RateLimited => (Ok(StatusCode::TOO_MANY_REQUESTS), "too many requests"),
            Rejection::Overloaded => (
                Ok(StatusCode::SERVICE_UNAVAILABLE),
                "the server is shedding load; try again shortly",
            ),
        };
        let err = ApiError::new(status.unwrap_or(StatusCode::BAD_REQUEST), r.code(), message);
        match r {
            Rejection::RateLimited | Rejection::Overloaded => err.retry_after(1),
            _ => err,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_map_to_contract_statuses() {
        let want = [
            (Rejection::NotStarted, 425),
            (Rejection::Ended, 410),
            (Rejection::Paused, 423),
            (Rejection::SoldOut, 410),
            (Rejection::AlreadyBought, 409),
            (Rejection::RateLimited, 429),
            (Rejection::Overloaded, 503),
        ];
        for (r, status) in want {
            let e = ApiError::from(r);
            assert_eq!(e.status.as_u16(), status, "{r:?}");
            assert_eq!(e.code, r.code());
        }
        assert_eq!(
            ApiError::from(Rejection::RateLimited).retry_after_s,
            Some(1)
        );
    }

    #[test]
    fn extra_fields_never_override_code() {
        let e = ApiError::unavailable("x")
            .with_extra(serde_json::json!({"order_id": "o1", "code": "evil"}));
        let b = e.body();
        assert_eq!(b["code"], "unavailable");
        assert_eq!(b["order_id"], "o1");
    }
}
