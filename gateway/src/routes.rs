//! The router: maps (method, path) to a handler and every failure to the
//! contract's error body. Only this module and `server` know hyper's types
//! beyond the helpers in `http`.

use crate::app::App;
use crate::error::ApiError;
use crate::handlers::{admin, buyer, service};
use crate::pages;
use crate::web::{self, Resp};
use http::header::AUTHORIZATION;
use http::Method;
use hyper::body::Incoming;
use hyper::Request;
use std::sync::Arc;

/// Handles one request; never fails (errors become responses).
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
) -> Result<Resp, std::convert::Infallible> {
    let resp = match route(&app, req).await {
        Ok(r) => r,
        Err(e) => web::error(&e),
    };
    Ok(resp)
}

async fn route(app: &Arc<App>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    match segs.as_slice() {
        ["healthz"] if get => Ok(service::healthz()),
        ["readyz"] if get => Ok(service::readyz(app).await),
        ["metrics"] if get => Ok(service::metrics(app).await),
        ["openapi.json"] if get => Ok(service::openapi()),
        ["api", "v1", "time"] if get => Ok(buyer::time()),
        ["api", "v1", "campaigns", id] if get => buyer::campaign(app, id).await,
        ["api", "v1", "campaigns", id, "grab"] if post => buyer::grab(app, id, req).await,
        ["api", "v1", "orders", id] if get => buyer::order(app, id, req.headers()).await,
        ["api", "v1", "orders", id, "pay"] if post => {
            // The body is ignored, but read (bounded) so the connection stays reusable.
            let (headers, _) = body_of(req, app.limits.body_bytes_max).await?;
            buyer::pay(app, id, &headers).await
        }
        ["admin", "v1", ..] => admin_route(app, req, &segs[2..], &method).await,
        ["items", file] if get => pages::item(app, file),
        ["static", file] if get => pages::asset(file),
        // Browsers ask for it on every page; an empty answer keeps consoles clean.
        ["favicon.ico"] if get => Ok(web::with_cache(
            web::bytes(
                http::StatusCode::NO_CONTENT,
                "image/x-icon",
                bytes::Bytes::new(),
            ),
            "public, max-age=86400",
        )),
        ["healthz"]
        | ["readyz"]
        | ["metrics"]
        | ["openapi.json"]
        | ["api", "v1", "time"]
        | ["api", "v1", "campaigns", _]
        | ["api", "v1", "campaigns", _, "grab"]
        | ["api", "v1", "orders", _]
        | ["api", "v1", "orders", _, "pay"]
        | ["items", _]
        | ["static", _] => Err(ApiError::method_not_allowed()),
        _ => Err(ApiError::not_found("not_found", "no such endpoint")),
    }
}

async fn admin_route(
    app: &Arc<App>,
    req: Request<Incoming>,
    segs: &[&str],
    method: &Method,
) -> Result<Resp, ApiError> {
    app.auth
        .admin(req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()))?;
    let get = *method == Method::GET;
    let post = *method == Method::POST;
    let query = req.uri().query().map(str::to_string);
    // Read every admin body (bounded), used or not, so a keep-alive
    // connection stays usable after the answer.
    let limit = app.limits.body_bytes_max.max(ADMIN_BODY_BYTES_MAX);
    let (headers, body) = body_of(req, limit).await?;
    match segs {
        ["campaigns"] if get => admin::list(app).await,
        ["campaigns"] if post => admin::create(app, &headers, &body).await,
        ["campaigns", id, "stats"] if get => admin::stats(app, id).await,
        ["campaigns", id, "orders"] if get => admin::orders(app, id, query.as_deref()).await,
        ["campaigns", id, "preload"] if post => admin::preload(app, id).await,
        ["campaigns", id, action @ ("pause" | "resume" | "stop")] if post => {
            admin::control(app, id, action).await
        }
        ["tokens"] if post => admin::tokens(app, &headers, &body),
        ["campaigns"]
        | ["campaigns", _, "stats" | "orders" | "preload" | "pause" | "resume" | "stop"]
        | ["tokens"] => Err(ApiError::method_not_allowed()),
        _ => Err(ApiError::not_found("not_found", "no such endpoint")),
    }
}

async fn body_of(
    req: Request<Incoming>,
    limit: usize,
) -> Result<(http::HeaderMap, bytes::Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    let body = web::read_body(&parts.headers, body, limit).await?;
    Ok((parts.headers, body))
}

/// Admin bodies may be larger than grab bodies (a token request for
/// thousands of users), still bounded.
const ADMIN_BODY_BYTES_MAX: usize = 1024 * 1024;
