//! The router: one table of every route (method and OpenAPI path template)
//! that both dispatch and the OpenAPI coverage test read, so a route cannot
//! exist without being documented. Every failure becomes the contract's
//! error body. Only this module and `server` know hyper's types beyond the
//! helpers in `web`.

use crate::app::App;
use crate::error::ApiError;
use crate::handlers::{admin, buyer, service};
use crate::pages;
use crate::usecase::campaigns::Action;
use crate::web::{self, Resp};
use http::header::AUTHORIZATION;
use http::Method;
use hyper::body::Incoming;
use hyper::Request;
use std::sync::Arc;

/// What a route does; the dispatch below matches on it exhaustively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    Favicon,
    Time,
    Campaign,
    Grab,
    HiddenGrab,
    GrabPath,
    QueueJoin,
    QueuePoll,
    Quiz,
    QuizImage,
    QuizAnswers,
    Order,
    Pay,
    Item,
    Asset,
    Dashboard,
    DashboardAsset,
    ListCampaigns,
    CreateCampaign,
    ValidateCampaign,
    Reconcile,
    Stats,
    Orders,
    Preload,
    Pause,
    Resume,
    Stop,
    Tokens,
    Login,
    Refresh,
    Hot,
    RoomSettings,
}

/// One route: a method (`HEAD` is answered wherever `GET` is) and a path
/// template in OpenAPI syntax, where `{name}` stands for one path segment
/// (with the rest of the template segment as a fixed suffix, as in
/// `{id}.html`).
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub endpoint: Endpoint,
}

const fn r(method: &'static str, path: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method,
        path,
        endpoint,
    }
}

/// Every route the gateway answers.
pub const ROUTES: &[Route] = &[
    r("GET", "/healthz", Endpoint::Healthz),
    r("GET", "/readyz", Endpoint::Readyz),
    r("GET", "/metrics", Endpoint::Metrics),
    r("GET", "/openapi.json", Endpoint::OpenApi),
    // Browsers ask for it on every page; an empty answer keeps consoles clean.
    r("GET", "/favicon.ico", Endpoint::Favicon),
    r("GET", "/api/v1/time", Endpoint::Time),
    r("POST", "/api/v1/auth/login", Endpoint::Login),
    r("POST", "/api/v1/auth/refresh", Endpoint::Refresh),
    r("GET", "/api/v1/campaigns/{id}", Endpoint::Campaign),
    r("POST", "/api/v1/campaigns/{id}/grab", Endpoint::Grab),
    r(
        "POST",
        "/api/v1/campaigns/{id}/grab/{path_key}",
        Endpoint::HiddenGrab,
    ),
    r(
        "GET",
        "/api/v1/campaigns/{id}/grab-path",
        Endpoint::GrabPath,
    ),
    r("POST", "/api/v1/campaigns/{id}/queue", Endpoint::QueueJoin),
    r("GET", "/api/v1/campaigns/{id}/queue", Endpoint::QueuePoll),
    r("GET", "/api/v1/campaigns/{id}/quiz", Endpoint::Quiz),
    r("GET", "/static/quiz/{image}", Endpoint::QuizImage),
    r("GET", "/api/v1/orders/{order_id}", Endpoint::Order),
    r("POST", "/api/v1/orders/{order_id}/pay", Endpoint::Pay),
    r("GET", "/items/{id}.html", Endpoint::Item),
    r("GET", "/static/{file}", Endpoint::Asset),
    // The operators' live dashboard: a page without data (it asks the admin
    // API with the token the operator types in), so no token to fetch it.
    r("GET", "/admin/dashboard", Endpoint::Dashboard),
    r("GET", "/admin/static/{file}", Endpoint::DashboardAsset),
    r("GET", "/admin/v1/campaigns", Endpoint::ListCampaigns),
    r("POST", "/admin/v1/campaigns", Endpoint::CreateCampaign),
    r(
        "POST",
        "/admin/v1/campaigns/validate",
        Endpoint::ValidateCampaign,
    ),
    r("GET", "/admin/v1/campaigns/{id}/stats", Endpoint::Stats),
    r(
        "POST",
        "/admin/v1/campaigns/{id}/waiting-room",
        Endpoint::RoomSettings,
    ),
    r("GET", "/admin/v1/campaigns/{id}/orders", Endpoint::Orders),
    r(
        "GET",
        "/admin/v1/campaigns/{id}/reconcile",
        Endpoint::Reconcile,
    ),
    r(
        "POST",
        "/admin/v1/campaigns/{id}/preload",
        Endpoint::Preload,
    ),
    r(
        "GET",
        "/admin/v1/campaigns/{id}/quiz-answers",
        Endpoint::QuizAnswers,
    ),
    r("POST", "/admin/v1/campaigns/{id}/pause", Endpoint::Pause),
    r("POST", "/admin/v1/campaigns/{id}/resume", Endpoint::Resume),
    r("POST", "/admin/v1/campaigns/{id}/stop", Endpoint::Stop),
    r("POST", "/admin/v1/tokens", Endpoint::Tokens),
    r("GET", "/admin/v1/hot", Endpoint::Hot),
];

/// Matches `path` against a template; the segments that stand for
/// parameters, in order (whole segments, suffix included).
fn matches<'p>(template: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let mut t = template.trim_start_matches('/').split('/');
    let mut p = path.trim_start_matches('/').split('/');
    let mut params = Vec::new();
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(params),
            (Some(ts), Some(ps)) => match ts.strip_prefix('{').and_then(|r| r.split_once('}')) {
                Some((_, suffix)) => {
                    let value = ps.strip_suffix(suffix)?;
                    if value.is_empty() {
                        return None;
                    }
                    params.push(ps);
                }
                None if ts == ps => {}
                None => return None,
            },
            _ => return None,
        }
    }
}

/// The route for `method` and `path` with its parameters; 404 when no
/// route has the path, 405 when none of those takes the method.
pub fn find<'p>(method: &Method, path: &'p str) -> Result<(Endpoint, Vec<&'p str>), ApiError> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let mut allowed: Vec<&str> = Vec::new();
    for route in ROUTES {
        if let Some(params) = matches(route.path, path) {
            if route.method == method {
                return Ok((route.endpoint, params));
            }
            allowed.push(route.method);
            if route.method == "GET" {
                allowed.push("HEAD");
            }
        }
    }
    Err(if !allowed.is_empty() {
        allowed.sort_unstable();
        allowed.dedup();
        ApiError::method_not_allowed().allow(allowed.join(", "))
    } else {
        ApiError::not_found("no such endpoint")
    })
}

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
    let found = find(req.method(), &path);
    // Operators' paths answer nothing, not even 404 or 405, without the
    // admin credential; except the dashboard's page and assets, which hold
    // no data (the page asks the admin API with the token typed into it):
    // their paths answer like any page's, 405 to another method included.
    // (Only operators' paths need the second look-up: routing is a visible
    // share of the cheapest answers, a sold-out grab's among them.)
    let public_page = || {
        matches!(
            find(&Method::GET, &path),
            Ok((Endpoint::Dashboard | Endpoint::DashboardAsset, _))
        )
    };
    if path.starts_with("/admin/") && !public_page() {
        app.auth
            .admin(req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()))?;
    }
    if path.starts_with("/api/") {
        // Unknown buyer paths too: probing costs budget like any request.
        limit_buyer(app, &req, found.as_ref().ok().map(|(e, _)| *e))?;
    }
    let (endpoint, params) = found?;
    let param = params.first().copied().unwrap_or_default();
    if matches!(
        endpoint,
        Endpoint::Campaign
            | Endpoint::GrabPath
            | Endpoint::Quiz
            | Endpoint::QueueJoin
            | Endpoint::QueuePoll
    ) {
        // Grabs are counted by the funnel once their campaign is found.
        if let Ok(live) = crate::usecase::campaigns::find(app, param) {
            app.hot.record(&live.get().id, app.clock.now_ms());
        }
    }
    match endpoint {
        Endpoint::Healthz => Ok(service::healthz()),
        Endpoint::Readyz => Ok(service::readyz(app).await),
        Endpoint::Metrics => Ok(service::metrics(app).await),
        Endpoint::OpenApi => Ok(service::openapi()),
        Endpoint::Favicon => Ok(web::with_cache(
            web::bytes(
                http::StatusCode::NO_CONTENT,
                "image/x-icon",
                bytes::Bytes::new(),
            ),
            "public, max-age=86400",
        )),
        Endpoint::Time => Ok(buyer::time(app)),
        Endpoint::Campaign => buyer::campaign(app, param).await,
        Endpoint::Grab => buyer::grab(app, param, None, req).await,
        Endpoint::HiddenGrab => {
            let sig = params.get(1).copied();
            buyer::grab(app, param, sig, req).await
        }
        Endpoint::GrabPath => buyer::grab_path(app, param, req.headers()),
        Endpoint::QueueJoin => {
            // The body is ignored, but read (bounded) so the connection stays reusable.
            let (headers, _) = body_of(app, req, app.limits.body_bytes_max).await?;
            buyer::queue_join(app, param, &headers).await
        }
        Endpoint::QueuePoll => buyer::queue_poll(app, param, req.headers()).await,
        Endpoint::Quiz => buyer::quiz(app, param, req.headers()),
        Endpoint::QuizImage => buyer::quiz_image(app, param).await,
        Endpoint::Order => buyer::order(app, param, req.headers()).await,
        Endpoint::Pay => {
            // The body is ignored, but read (bounded) so the connection stays reusable.
            let (headers, _) = body_of(app, req, app.limits.body_bytes_max).await?;
            buyer::pay(app, param, &headers).await
        }
        Endpoint::Login | Endpoint::Refresh => {
            let (headers, body) = body_of(app, req, app.limits.body_bytes_max).await?;
            if endpoint == Endpoint::Login {
                crate::identity::login(app, &headers, &body).await
            } else {
                crate::identity::refresh(app, &headers, &body).await
            }
        }
        Endpoint::Item => pages::item(app, param),
        Endpoint::Asset => pages::asset(param),
        Endpoint::Dashboard => Ok(pages::dashboard()),
        Endpoint::DashboardAsset => pages::dashboard_asset(param),
        Endpoint::ListCampaigns
        | Endpoint::CreateCampaign
        | Endpoint::ValidateCampaign
        | Endpoint::Reconcile
        | Endpoint::Stats
        | Endpoint::Orders
        | Endpoint::Preload
        | Endpoint::QuizAnswers
        | Endpoint::Pause
        | Endpoint::Resume
        | Endpoint::Stop
        | Endpoint::Tokens
        | Endpoint::Hot
        | Endpoint::RoomSettings => admin_route(app, req, endpoint, param).await,
    }
}

/// The rate limits of a buyer request, at the router: the address and the
/// gateway-wide limit before the token is looked at (grabs run them as
/// funnel stages instead, after the campaign's state, so they are counted
/// per stage).
fn limit_buyer(
    app: &App,
    req: &Request<Incoming>,
    endpoint: Option<Endpoint>,
) -> Result<(), ApiError> {
    if !app.rate.enabled() || matches!(endpoint, Some(Endpoint::Grab | Endpoint::HiddenGrab)) {
        return Ok(());
    }
    let peer = req
        .extensions()
        .get::<crate::server::Peer>()
        .map_or(std::net::Ipv4Addr::LOCALHOST.into(), |p| p.0);
    let ip = crate::funnel::client_ip(peer, req.headers(), &app.limits.trusted_proxies);
    app.rate.ip(ip)?;
    app.rate.global()?;
    // The per-buyer limit is applied where the token is verified (the
    // grab funnel's `user` stage, `handlers::buyer` for the others), so no
    // token is verified twice.
    Ok(())
}

async fn admin_route(
    app: &Arc<App>,
    req: Request<Incoming>,
    endpoint: Endpoint,
    id: &str,
) -> Result<Resp, ApiError> {
    let query = req.uri().query().map(str::to_string);
    // Read every admin body (bounded), used or not, so a keep-alive
    // connection stays usable after the answer.
    let limit = app.limits.body_bytes_max.max(ADMIN_BODY_BYTES_MAX);
    let (headers, body) = body_of(app, req, limit).await?;
    match endpoint {
        Endpoint::ListCampaigns => admin::list(app).await,
        Endpoint::CreateCampaign => admin::create(app, &headers, &body).await,
        Endpoint::ValidateCampaign => admin::validate(app, &headers, &body, query.as_deref()).await,
        Endpoint::Stats => admin::stats(app, id).await,
        Endpoint::Reconcile => admin::reconcile(app, id).await,
        Endpoint::Orders => admin::orders(app, id, query.as_deref()).await,
        Endpoint::Preload => admin::preload(app, id, query.as_deref()).await,
        Endpoint::QuizAnswers => admin::quiz_answers(app, id),
        Endpoint::Pause => admin::control(app, id, Action::Pause).await,
        Endpoint::Resume => admin::control(app, id, Action::Resume).await,
        Endpoint::Stop => admin::control(app, id, Action::Stop).await,
        Endpoint::Tokens => admin::tokens(app, &headers, &body),
        Endpoint::Hot => Ok(admin::hot(app)),
        Endpoint::RoomSettings => admin::room_settings(app, id, &headers, &body).await,
        _ => Err(ApiError::internal()),
    }
}

async fn body_of(
    app: &App,
    req: Request<Incoming>,
    limit: usize,
) -> Result<(http::HeaderMap, bytes::Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    let timeout = std::time::Duration::from_millis(app.limits.body_read_timeout_ms);
    let body = web::read_body(&parts.headers, body, limit, timeout).await?;
    Ok((parts.headers, body))
}

/// Admin bodies may be larger than grab bodies (a token request for
/// thousands of users), still bounded.
const ADMIN_BODY_BYTES_MAX: usize = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_segments() {
        assert_eq!(
            find(&Method::POST, "/api/v1/campaigns/tv/grab").unwrap(),
            (Endpoint::Grab, vec!["tv"])
        );
        assert_eq!(
            find(&Method::HEAD, "/items/tv.html").unwrap(),
            (Endpoint::Item, vec!["tv.html"])
        );
        assert_eq!(
            find(&Method::GET, "/items/.html").unwrap_err().status(),
            404
        );
        assert_eq!(
            find(&Method::GET, "/items/tv.htm").unwrap_err().status(),
            404
        );
        assert_eq!(
            find(&Method::GET, "/api/v1/campaigns/tv/grab")
                .unwrap_err()
                .status(),
            405
        );
        assert_eq!(
            find(&Method::GET, "/api/v1/campaigns")
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            find(&Method::GET, "/api/v1/campaigns/tv/grab/x/y")
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            find(&Method::POST, "/api/v1/campaigns/tv/grab/k3y").unwrap(),
            (Endpoint::HiddenGrab, vec!["tv", "k3y"])
        );
        assert_eq!(
            find(&Method::DELETE, "/admin/v1/campaigns")
                .unwrap_err()
                .status(),
            405
        );
    }

    #[test]
    fn every_route_is_reachable_by_its_own_template() {
        for route in ROUTES {
            let path = route
                .path
                .split('/')
                .map(
                    |seg| match seg.strip_prefix('{').and_then(|r| r.split_once('}')) {
                        Some((_, suffix)) => format!("x{suffix}"),
                        None => seg.to_string(),
                    },
                )
                .collect::<Vec<_>>()
                .join("/");
            let method = Method::from_bytes(route.method.as_bytes()).unwrap();
            assert_eq!(find(&method, &path).unwrap().0, route.endpoint, "{path}");
        }
    }
}
