//! The request router, `gateway::routes::find`, with any method and path.
//!
//! Input: the method's bytes, a newline, then the request target (path and
//! query); without a newline the whole input is the target of a GET. The
//! path is tried as the server sees it (parsed as a request target, the
//! way hyper hands it over) and as raw text.
#![no_main]

use gateway::routes::{find, ROUTES};
use http::{Method, StatusCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (method, target) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"GET"[..], data),
    };
    let Ok(method) = Method::from_bytes(method) else {
        return;
    };
    if let Ok(uri) = http::Uri::try_from(target) {
        check(&method, uri.path());
    }
    if let Ok(text) = std::str::from_utf8(target) {
        check(&method, text);
    }
});

/// A match names a route of the table with this method, one non-empty
/// parameter per template placeholder, each taken from the path; anything
/// else is 404 or 405.
fn check(method: &Method, path: &str) {
    match find(method, path) {
        Ok((endpoint, params)) => {
            let want = if method == Method::HEAD {
                "GET"
            } else {
                method.as_str()
            };
            let route = ROUTES
                .iter()
                .find(|r| r.endpoint == endpoint && r.method == want)
                .expect("a match is a route of the table with this method");
            assert_eq!(params.len(), route.path.matches('{').count(), "{path}");
            for p in &params {
                assert!(!p.is_empty() && path.contains(p), "{path}: {p:?}");
            }
        }
        Err(e) => assert!(
            e.status() == StatusCode::NOT_FOUND || e.status() == StatusCode::METHOD_NOT_ALLOWED,
            "{path}: {e:?}"
        ),
    }
}
