//! Request bodies, decoded by the functions the handlers use: the grab body
//! (`web::parse_json::<GrabBody>`) and the campaign an operator creates
//! (`web::parse_json::<CampaignSpec>`, then `CampaignSpec::validate`).
//!
//! Input: one byte choosing the body kind (even: grab, odd: campaign) and
//! the request's content type (bits 1-2), then the body.
#![no_main]

use engine::campaign::{INT_FIELD_MAX, STOCK_MAX, TITLE_LEN_MAX};
use engine::{CampaignId, CampaignSpec};
use gateway::funnel::GrabBody;
use gateway::web::parse_json;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [Option<&str>; 4] = [
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    None,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    if let Some(ct) = CONTENT_TYPES[usize::from((selector >> 1) & 3)] {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    if selector & 1 == 0 {
        match parse_json::<GrabBody>(&headers, body, true) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.status(), StatusCode::BAD_REQUEST),
        }
        return;
    }
    let spec = match parse_json::<CampaignSpec>(&headers, body, false) {
        Ok(spec) => spec,
        Err(e) => {
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            return;
        }
    };
    let fallback = CampaignId::parse("fallback").expect("a valid id");
    if let Ok(c) = spec.validate(fallback) {
        // What validation lets through is what the stores can hold.
        assert!(!c.title.is_empty() && c.title.chars().count() <= TITLE_LEN_MAX);
        assert!(c.price_cents <= INT_FIELD_MAX);
        assert!(c.starts_at_ms < c.ends_at_ms && c.ends_at_ms <= INT_FIELD_MAX);
        assert!(c.stock_total >= 1 && c.stock_total <= STOCK_MAX);
        assert!(c.per_user_limit >= 1 && c.payment_window_s >= 1);
    }
});
