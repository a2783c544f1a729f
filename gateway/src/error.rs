//! The one place where failures become HTTP: every error a client can see
//! has a stable snake_case code and a status, decided here.

use engine::Rejection;
use http::StatusCode;

macro_rules! codes {
    ($($variant:ident = $code:literal => $status:literal,)*) => {
        /// Every error code the server can emit, with its one status. The
        /// list is what `openapi.json` and README must document (a test
        /// checks both).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }

            pub fn status(self) -> StatusCode {
                let s = match self {
                    $(Code::$variant => $status,)*
                };
                StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    };
}

codes! {
    BadRequest = "bad_request" => 400,
    Unauthorized = "unauthorized" => 401,
    Forbidden = "forbidden" => 403,
    QuizFailed = "quiz_failed" => 403,
    NotAdmitted = "not_admitted" => 403,
    BadTicket = "bad_ticket" => 403,
    NotFound = "not_found" => 404,
    CampaignNotFound = "campaign_not_found" => 404,
    OrderNotFound = "order_not_found" => 404,
    MethodNotAllowed = "method_not_allowed" => 405,
    RequestTimeout = "request_timeout" => 408,
    AlreadyBought = "already_bought" => 409,
    CampaignExists = "campaign_exists" => 409,
    CampaignStopped = "campaign_stopped" => 409,
    NeedsReconcile = "needs_reconcile" => 409,
    OrderNotConfirmed = "order_not_confirmed" => 409,
    OrderExpired = "order_expired" => 409,
    OrderCancelled = "order_cancelled" => 409,
    NoWaitingRoom = "no_waiting_room" => 409,
    QueueReset = "queue_reset" => 409,
    SoldOut = "sold_out" => 410,
    Ended = "ended" => 410,
    AdmissionExpired = "admission_expired" => 410,
    PayloadTooLarge = "payload_too_large" => 413,
    Paused = "paused" => 423,
    NotStarted = "not_started" => 425,
    RateLimited = "rate_limited" => 429,
    Internal = "internal" => 500,
    Overloaded = "overloaded" => 503,
    Unavailable = "unavailable" => 503,
    QueueFull = "queue_full" => 503,
    TooManyCampaigns = "too_many_campaigns" => 507,
}

impl From<Rejection> for Code {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::NotStarted => Code::NotStarted,
            Rejection::Ended => Code::Ended,
            Rejection::Paused => Code::Paused,
            Rejection::SoldOut => Code::SoldOut,
            Rejection::AlreadyBought => Code::AlreadyBought,
            Rejection::RateLimited => Code::RateLimited,
            Rejection::Overloaded => Code::Overloaded,
        }
    }
}

/// An error answer: stable code (which decides the status), human message,
/// optional extras.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after_s: Option<u64>,
    /// Extra JSON fields merged into the body (e.g. an order id to poll).
    pub extra: Option<serde_json::Value>,
    /// The bucket behind a 429: `X-RateLimit-Limit` / `X-RateLimit-Remaining`.
    pub rate_limit: Option<RateLimitInfo>,
    /// The methods a 405's path takes (`Allow`).
    pub allow: Option<String>,
}

/// What a rate-limit refusal tells the client about the bucket it hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitInfo {
    /// The bucket's size: the most requests that may arrive at once.
    pub limit: u32,
    /// What is left in it now (0 when refused).
    pub remaining: u32,
}

impl ApiError {
    /// The error of `code`, with the status that code always has.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_s: None,
            extra: None,
            rate_limit: None,
            allow: None,
        }
    }

    /// 429 `rate_limited` from a bucket of `limit` that refills in
    /// `retry_after_ms`: `Retry-After` in whole seconds, at least 1.
    pub fn rate_limited(message: impl Into<String>, limit: u32, retry_after_ms: u64) -> Self {
        let mut e = Self::new(Code::RateLimited, message)
            .retry_after(retry_after_ms.div_ceil(1_000).max(1));
        e.rate_limit = Some(RateLimitInfo {
            limit,
            remaining: 0,
        });
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Code::BadRequest, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(Code::Unauthorized, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    pub fn campaign_not_found() -> Self {
        Self::new(Code::CampaignNotFound, "no campaign has this id")
    }

    /// 408 `request_timeout`: the body did not arrive within `timeout_ms`
    /// (the connection is closed after the answer).
    pub fn request_timeout(timeout_ms: u64) -> Self {
        Self::new(
            Code::RequestTimeout,
            format!("the request body did not arrive within {timeout_ms} ms"),
        )
    }

    pub fn payload_too_large(limit_bytes: usize) -> Self {
        Self::new(
            Code::PayloadTooLarge,
            format!("request body is larger than {limit_bytes} bytes"),
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            Code::MethodNotAllowed,
            "this path does not accept this method",
        )
    }

    /// Sets the methods a 405 lists in `Allow` (e.g. `"GET, HEAD"`).
    pub fn allow(mut self, methods: impl Into<String>) -> Self {
        self.allow = Some(methods.into());
        self
    }

    /// A dependency failed; the client may retry later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, message).retry_after(1)
    }

    /// Our own bug or broken invariant; details go to the log, not the client.
    pub fn internal() -> Self {
        Self::new(Code::Internal, "internal error; it has been logged")
    }

    /// The HTTP status, the one its code always has.
    pub fn status(&self) -> StatusCode {
        self.code.status()
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
        let mut body = serde_json::json!({ "code": self.code.as_str(), "message": self.message });
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
        let message = match r {
            Rejection::NotStarted => "the sale has not started yet",
            Rejection::Ended => "the sale has ended",
            Rejection::Paused => "the sale is paused",
            Rejection::SoldOut => "sold out",
            Rejection::AlreadyBought => "you already hold the most units this sale allows",
            Rejection::RateLimited => "too many requests",
            Rejection::Overloaded => "the server is shedding load; try again shortly",
        };
        let err = ApiError::new(Code::from(r), message);
        match r {
            Rejection::RateLimited | Rejection::Overloaded => err.retry_after(1),
            _ => err,
        }
    }
}

/// Infrastructure failures: the client sees which dependency failed and
/// may retry; the details go to the log. A store conflict or a missing row
/// reaching a client unmapped is our bug, so it is `internal`.
impl From<engine::ports::StoreError> for ApiError {
    fn from(e: engine::ports::StoreError) -> Self {
        use engine::ports::StoreError;
        tracing::warn!(error = %e, "order store call failed");
        match e {
            StoreError::Unavailable(_) => ApiError::unavailable("the order store is unavailable"),
            StoreError::Conflict(_) | StoreError::NotFound(_) | StoreError::Invariant(_) => {
                ApiError::internal()
            }
        }
    }
}

impl From<engine::ports::LedgerError> for ApiError {
    fn from(e: engine::ports::LedgerError) -> Self {
        tracing::warn!(error = %e, "stock ledger call failed");
        ApiError::unavailable("the stock ledger is unavailable")
    }
}

impl From<engine::ports::SharedStateError> for ApiError {
    fn from(e: engine::ports::SharedStateError) -> Self {
        tracing::warn!(error = %e, "shared state call failed");
        ApiError::unavailable("the shared state (single-use marks) is unavailable")
    }
}

impl From<engine::ports::AppendError> for ApiError {
    fn from(e: engine::ports::AppendError) -> Self {
        use engine::ports::AppendError;
        match e {
            AppendError::Overloaded => Rejection::Overloaded.into(),
            AppendError::Failed(why) => {
                tracing::error!(%why, "order log append failed");
                ApiError::unavailable("the order log is unavailable")
            }
            AppendError::Unknown(why) => {
                tracing::error!(%why, "order log outcome unknown");
                ApiError::unavailable("the order's outcome is not known yet; poll the order id")
            }
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
            assert_eq!(e.status().as_u16(), status, "{r:?}");
            assert_eq!(e.code.as_str(), r.code());
        }
        assert_eq!(
            ApiError::from(Rejection::RateLimited).retry_after_s,
            Some(1)
        );
    }

    #[test]
    fn codes_are_distinct_snake_case_and_rejections_keep_theirs() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            let s = c.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s}"
            );
        }
        for (i, c) in Code::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "Code::ALL is in declaration order");
        }
        for r in Rejection::ALL {
            assert_eq!(Code::from(r).as_str(), r.code());
        }
    }

    #[test]
    fn rate_limited_rounds_retry_after_up_to_whole_seconds() {
        for (ms, s) in [
            (0, 1),
            (1, 1),
            (999, 1),
            (1_000, 1),
            (1_001, 2),
            (59_500, 60),
        ] {
            let e = ApiError::rate_limited("x", 10, ms);
            assert_eq!(
                (e.status().as_u16(), e.retry_after_s),
                (429, Some(s)),
                "{ms}"
            );
            assert_eq!(
                e.rate_limit,
                Some(RateLimitInfo {
                    limit: 10,
                    remaining: 0
                })
            );
        }
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
