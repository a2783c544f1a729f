//! The grab funnel: the use case behind `POST /api/v1/campaigns/{id}/grab`.
//!
//! A grab passes ordered stages, cheapest first, each passing or refusing
//! with a stable code; the first refusal ends it and is counted once, per
//! stage and code (`/metrics`: `seckill_funnel_refused_total`). The order:
//!
//! 1. `campaign`: the campaign exists (local registry, no I/O); from here
//!    on the grab counts toward the campaign's rate (`crate::hot`);
//! 2. `view`: (production) this gateway's campaign view is fresh enough;
//! 3. `state`: started, not ended, not paused, not sold out (the local cache
//!    and the ledger's local sold-out flag): a sold-out storm stops here,
//!    before the token's signature is checked or the body is read, and
//!    never reaches the ledger backend or the log; nor does it spend any
//!    rate-limit budget, so its answer stays the true one;
//! 4. `ip`, 5. `global`: the client address's and the gateway's rate limits
//!    (`crate::limits`; one hash probe each): before the token's signature,
//!    the first costly step, so a flood from one address costs no more;
//! 6. `token`: the buyer's token, judged by the app's clock;
//! 7. `user`: the buyer's rate limit, as soon as the buyer is known (one
//!    buyer behind many addresses stops here; never before the token, or
//!    anyone could spend a victim's budget);
//! 8. `path`: the grab came on this buyer's grab path (the plain one, or
//!    for a `hidden_path` campaign their own signed one; see `crate::quiz`;
//!    for a `waiting_room` campaign the path of a valid admission, see
//!    `crate::usecase::queue`: nothing else reaches the quiz or the ledger);
//! 9. `body`: size and JSON shape;
//! 10. `quiz`: (quiz campaigns) the signed question token, its age, the
//!     answer, and its single use across gateways;
//! 11. `campaign_rate`: the campaign's limit across gateways: a shared-state
//!     round trip in production, and a budget every buyer of the campaign
//!     shares, so only complete, correct grabs spend it (a wrong answer or a
//!     bad body from a bot does not); a refusal is kept locally until its
//!     retry time; before the in-flight cap, so a refused grab holds no permit;
//! 12. `inflight`: a hot campaign's own admission queue (`crate::hot`), then
//!     the gateway's cap on grabs in flight;
//! 13. `claim`: (waiting-room campaigns) one use of the admission, spent
//!     in the room's store, so an admitted buyer's repeated grabs do not
//!     reach the ledger (given back if the grab then fails through no fault
//!     of the buyer);
//! 14. `reserve`: one atomic ledger reservation (limit and stock);
//! 15. `log`: the durable append, then `202`.
//!
//! Stages 13 to 15 run in a tracked task of their own, so a client hanging
//! up cannot cancel a grab between its reservation and its append.

use crate::app::{mono_ms, App, LEDGER_CALL_MAX_MS};
use crate::error::{ApiError, Code};
use crate::registry::LiveCampaign;
use crate::web;
use engine::ports::{AppendError, LogRecord, Reservation};
use engine::{admit, Campaign, OrderId, OrderRecord, Rejection, UserId};
use http::header::AUTHORIZATION;
use hyper::body::Incoming;
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The stages of a grab, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Campaign,
    View,
    State,
    Ip,
    Global,
    Token,
    User,
    Path,
    Body,
    Quiz,
    CampaignRate,
    InFlight,
    Claim,
    Reserve,
    Log,
}

impl Stage {
    pub const ALL: [Stage; 15] = [
        Stage::Campaign,
        Stage::View,
        Stage::State,
        Stage::Ip,
        Stage::Global,
        Stage::Token,
        Stage::User,
        Stage::Path,
        Stage::Body,
        Stage::Quiz,
        Stage::CampaignRate,
        Stage::InFlight,
        Stage::Claim,
        Stage::Reserve,
        Stage::Log,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Campaign => "campaign",
            Stage::View => "view",
            Stage::State => "state",
            Stage::Ip => "ip",
            Stage::Global => "global",
            Stage::Token => "token",
            Stage::User => "user",
            Stage::Path => "path",
            Stage::Body => "body",
            Stage::Quiz => "quiz",
            Stage::CampaignRate => "campaign_rate",
            Stage::InFlight => "inflight",
            Stage::Claim => "claim",
            Stage::Reserve => "reserve",
            Stage::Log => "log",
        }
    }
}

/// A grab refused at `stage`.
#[derive(Debug)]
pub struct Refused {
    pub stage: Stage,
    pub error: ApiError,
}

impl Refused {
    pub fn at(stage: Stage, error: ApiError) -> Self {
        Self { stage, error }
    }
}

/// Refusals per (stage, code): a fixed table, so its memory is bounded.
#[derive(Debug)]
pub struct FunnelCounters {
    counts: Box<[AtomicU64]>,
}

impl Default for FunnelCounters {
    fn default() -> Self {
        Self {
            counts: (0..Stage::ALL.len() * Code::ALL.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl FunnelCounters {
    fn slot(stage: Stage, code: Code) -> usize {
        stage as usize * Code::ALL.len() + code as usize
    }

    pub fn count(&self, stage: Stage, code: Code) {
        self.counts[Self::slot(stage, code)].fetch_add(1, Ordering::Relaxed);
    }

    /// `(stage, code, count)` of every pair seen at least once.
    pub fn seen(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::new();
        for stage in Stage::ALL {
            for &code in Code::ALL {
                let n = self.counts[Self::slot(stage, code)].load(Ordering::Relaxed);
                if n > 0 {
                    out.push((stage.as_str(), code.as_str(), n));
                }
            }
        }
        out
    }
}

/// The grab body: the quiz fields of quiz campaigns; unknown fields are
/// ignored so clients can extend it. A field sent as `null` is a wrong type
/// (400), not an absent one: no field of the contract is nullable.
#[derive(Debug, Deserialize)]
pub struct GrabBody {
    #[serde(default, deserialize_with = "engine::campaign::present")]
    pub quiz_token: Option<String>,
    #[serde(default, deserialize_with = "engine::campaign::present")]
    pub answer: Option<String>,
}

/// The client's address: the peer from accept, or, when that peer is a
/// trusted proxy, the nearest address in `X-Forwarded-For` that is not one
/// (proxies append, so the right end is the most trustworthy). A missing
/// or malformed header leaves the peer.
pub fn client_ip(
    peer: std::net::IpAddr,
    headers: &http::HeaderMap,
    trusted: &[std::net::IpAddr],
) -> std::net::IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut client = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = value.to_str() else {
            return client;
        };
        for hop in text.rsplit(',') {
            match hop.trim().parse::<std::net::IpAddr>() {
                Ok(ip) if trusted.contains(&ip) => client = ip,
                Ok(ip) => return ip,
                Err(_) => return client,
            }
        }
    }
    client
}

/// How long a refused grab's body may take to arrive before the
/// connection is given up rather than kept for reuse.
const DRAIN_MS: u64 = 250;

/// Runs the funnel; the order id of a grab answered `202`, or the refusal,
/// counted once.
/// `path_sig` is the last segment of `.../grab/{sig}`, `None` on the plain path.
pub async fn grab(
    app: &Arc<App>,
    id: &str,
    path_sig: Option<&str>,
    req: hyper::Request<Incoming>,
) -> Result<OrderId, ApiError> {
    let started = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    let peer = parts.extensions.get::<crate::server::Peer>().map(|p| p.0);
    let outcome = stages(app, id, path_sig, peer, &parts.headers, body).await;
    // Latency by outcome (accepted, or the refusing stage), measured before
    // any drain of an unread body.
    let refused_at = outcome.as_ref().err().map(|boxed| boxed.0.stage);
    crate::metrics::LATENCY.grab(refused_at, started.elapsed());
    let (refused, unread) = match outcome {
        Ok(order) => return Ok(order),
        Err(boxed) => *boxed,
    };
    if let Some(body) = unread {
        // Refused before the body was needed: read it (bounded, briefly)
        // only so the connection stays usable for the next request.
        let drain = web::read_body(
            &parts.headers,
            body,
            app.limits.body_bytes_max,
            std::time::Duration::from_millis(app.limits.body_read_timeout_ms),
        );
        let _ = tokio::time::timeout(std::time::Duration::from_millis(DRAIN_MS), drain).await;
    }
    app.funnel.count(refused.stage, refused.error.code);
    Err(refused.error)
}

/// A refusal, with the unread body when the body was not needed.
type Outcome = Result<OrderId, Box<(Refused, Option<Incoming>)>>;

async fn stages(
    app: &Arc<App>,
    id: &str,
    path_sig: Option<&str>,
    peer: Option<std::net::IpAddr>,
    headers: &http::HeaderMap,
    body: Incoming,
) -> Outcome {
    // The address later stages (rate limits) count under; grabs without a
    // connection (in-process calls) count as the loopback.
    let client = client_ip(
        peer.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        headers,
        &app.limits.trusted_proxies,
    );
    let early = |stage: Stage, error: ApiError, body: Incoming| {
        Err(Box::new((Refused::at(stage, error), Some(body))))
    };
    let Ok(live) = crate::usecase::campaigns::find(app, id) else {
        return early(Stage::Campaign, ApiError::campaign_not_found(), body);
    };
    let campaign = live.get();
    app.hot.record(&campaign.id, app.clock.now_ms());
    if let Some(max_age) = app.view_max_age_ms {
        // A gateway that cannot re-read campaigns may have missed a pause:
        // it stops selling, so a pause reaches every sale within a bound
        // that `seckill reconcile` waits out before a repair.
        if app
            .registry
            .view_age_ms(mono_ms())
            .is_none_or(|age| age > max_age)
        {
            live.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            let e = ApiError::unavailable(
                "this gateway cannot read the campaign's current state; try again shortly",
            );
            return early(Stage::View, e, body);
        }
    }
    let now = app.clock.now_ms();
    if let Err(r) = admit(&campaign, app.ledger.sold_out_hint(&campaign.id), now) {
        live.counters.reject(r);
        return early(Stage::State, r.into(), body);
    }
    if let Err(e) = app.rate.ip(client) {
        return early(Stage::Ip, e, body);
    }
    if let Err(e) = app.rate.global() {
        return early(Stage::Global, e, body);
    }
    let user = match app
        .auth
        .buyer(headers.get(AUTHORIZATION).map(|v| v.as_bytes()), now)
    {
        Ok(u) => u,
        Err(e) => return early(Stage::Token, e, body),
    };
    if let Err(e) = app.rate.user(&user) {
        return early(Stage::User, e, body);
    }
    let admission = if campaign.waiting_room.is_some() {
        match crate::usecase::queue::check_admission(app, &campaign, &user, path_sig) {
            Ok(rank) => Some(rank),
            Err(e) => return early(Stage::Path, e, body),
        }
    } else {
        if let Err(e) = app.gate.check_path(&campaign, &user, path_sig) {
            return early(Stage::Path, e, body);
        }
        None
    };
    let body_timeout = std::time::Duration::from_millis(app.limits.body_read_timeout_ms);
    let bytes = match web::read_body(headers, body, app.limits.body_bytes_max, body_timeout).await {
        Ok(b) => b,
        Err(e) => return Err(Box::new((Refused::at(Stage::Body, e), None))),
    };
    let grab_body = match web::parse_json::<GrabBody>(headers, &bytes, true) {
        Ok(b) => b,
        Err(e) => return Err(Box::new((Refused::at(Stage::Body, e), None))),
    };
    if campaign.quiz {
        let checked = app
            .gate
            .check_answer(
                app.shared.as_ref(),
                &campaign,
                &user,
                grab_body.quiz_token.as_deref(),
                grab_body.answer.as_deref(),
                app.clock.now_ms(),
            )
            .await;
        if let Err(e) = checked {
            return Err(Box::new((Refused::at(Stage::Quiz, e), None)));
        }
    }
    let rated = app
        .rate
        .campaign(app.shared.as_ref(), &campaign.id, app.clock.now_ms())
        .await;
    if let Err(e) = rated {
        return Err(Box::new((Refused::at(Stage::CampaignRate, e), None)));
    }
    // A hot campaign waits for its own share first, so it cannot take
    // every permit of the cap below from the other campaigns.
    let queued = match app.hot.admit(&campaign.id).await {
        Ok(p) => p,
        Err(e) => {
            live.counters.reject(Rejection::Overloaded);
            return Err(Box::new((Refused::at(Stage::InFlight, e), None)));
        }
    };
    let Ok(permit) = Arc::clone(&app.grab_permits).try_acquire_owned() else {
        live.counters.reject(Rejection::Overloaded);
        return Err(Box::new((
            Refused::at(Stage::InFlight, Rejection::Overloaded.into()),
            None,
        )));
    };
    let task_app = Arc::clone(app);
    let outcome = app.tasks.spawn(async move {
        let _permits = (permit, queued);
        if let Some(rank) = admission {
            if let Err(e) = crate::usecase::queue::claim(&task_app, &campaign, rank).await {
                return Err(Refused::at(Stage::Claim, e));
            }
        }
        let done = reserve_and_log(&task_app, &live, &campaign, user, now, client).await;
        if let (Some(rank), Err(refused)) = (admission, &done) {
            // Sold out and already bought end the admission's use; a failure
            // of ours gives the use back for a retry.
            if !matches!(refused.error.code, Code::SoldOut | Code::AlreadyBought) {
                crate::usecase::queue::unclaim(&task_app, &campaign, rank).await;
            }
        }
        done
    });
    match outcome.await {
        Ok(Ok(order)) => Ok(order),
        Ok(Err(refused)) => Err(Box::new((refused, None))),
        Err(e) => {
            tracing::error!(error = %e, "grab task failed");
            Err(Box::new((
                Refused::at(Stage::Log, ApiError::internal()),
                None,
            )))
        }
    }
}

/// Reserve one unit, then make the order durable. Runs as its own task so
/// that it always finishes once started.
async fn reserve_and_log(
    app: &App,
    live: &LiveCampaign,
    c: &Campaign,
    user: UserId,
    now: u64,
    client: std::net::IpAddr,
) -> Result<OrderId, Refused> {
    let ledger = |e: ApiError| Refused::at(Stage::Reserve, e);
    let log = |e: ApiError| Refused::at(Stage::Log, e);
    // Bounded: no order may be appended long after its grab was admitted
    // (reconcile's quiet period counts on it). A reservation cut short may
    // still land in the ledger; it is a hold without an order, which
    // reconciliation finds and releases.
    let wait = std::time::Duration::from_millis(LEDGER_CALL_MAX_MS);
    let reservation = match tokio::time::timeout(
        wait,
        app.ledger.reserve(&c.id, &user, c.per_user_limit),
    )
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(campaign = %c.id, error = %e, "ledger reserve failed");
            live.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            return Err(ledger(ApiError::unavailable(
                "the stock ledger is unavailable",
            )));
        }
        Err(_) => {
            tracing::warn!(campaign = %c.id, ?wait, "ledger reserve timed out");
            live.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            return Err(ledger(ApiError::unavailable(
                "the stock ledger is not answering",
            )));
        }
    };
    let n = match reservation {
        Reservation::Reserved { n } => n,
        Reservation::AlreadyBought | Reservation::SoldOut => {
            let r = if reservation == Reservation::SoldOut {
                Rejection::SoldOut
            } else {
                Rejection::AlreadyBought
            };
            live.counters.reject(r);
            return Err(ledger(r.into()));
        }
        Reservation::NotLoaded => {
            live.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            return Err(ledger(ApiError::unavailable(
                "this campaign's stock is not loaded; an operator must preload it",
            )));
        }
    };
    let record = OrderRecord::new(c, user, n, now);
    let appending = std::time::Instant::now();
    let appended = app.log.append(&LogRecord::Order(record.clone())).await;
    crate::metrics::observe(&crate::metrics::LATENCY.log_append, appending.elapsed());
    match appended {
        Ok(()) => {
            let id = record.order_id.clone();
            tracing::debug!(campaign = %record.campaign_id, order_id = %id, user = %record.user_id,
                n = record.n, "order logged");
            app.orders.insert_queued(record);
            live.counters.logged.fetch_add(1, Ordering::Relaxed);
            Ok(id)
        }
        Err(e @ (AppendError::Overloaded | AppendError::Failed(_))) => {
            // Definitely not written: the unit goes back on sale.
            compensate(app, &record).await;
            if e == AppendError::Overloaded {
                live.counters.reject(Rejection::Overloaded);
                Err(log(Rejection::Overloaded.into()))
            } else {
                tracing::error!(error = %e, "order log append failed");
                live.counters.unavailable.fetch_add(1, Ordering::Relaxed);
                Err(log(ApiError::unavailable("the order log is unavailable")))
            }
        }
        Err(AppendError::Unknown(why)) => {
            // Maybe written: keep the unit held (never oversell) and let the
            // buyer poll; replay or reconciliation settles it.
            tracing::error!(order = %record.order_id, %client, %why, "order log outcome unknown");
            live.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            Err(log(ApiError::unavailable(
                "the order's outcome is not known yet; poll the order id",
            )
            .with_extra(serde_json::json!({ "order_id": record.order_id }))))
        }
    }
}

async fn compensate(app: &App, o: &OrderRecord) {
    match app.ledger.release(&o.campaign_id, &o.user_id, o.n).await {
        Ok(true) => {}
        Ok(false) => tracing::error!(order = %o.order_id, "compensation found no hold to release"),
        Err(e) => {
            tracing::error!(order = %o.order_id, error = %e, "compensation failed; reconcile")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let lb = ip("10.0.0.1");
        let trusted = [lb, ip("10.0.0.2")];
        // An untrusted peer cannot choose its address.
        assert_eq!(
            client_ip(ip("203.0.113.9"), &xff(&["1.2.3.4"]), &trusted),
            ip("203.0.113.9")
        );
        // Behind the balancer: the nearest untrusted hop, not a spoofed left end.
        assert_eq!(
            client_ip(lb, &xff(&["6.6.6.6, 198.51.100.7"]), &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(lb, &xff(&["6.6.6.6", "198.51.100.7, 10.0.0.2"]), &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(client_ip(lb, &xff(&[]), &trusted), lb);
        assert_eq!(client_ip(lb, &xff(&["garbage"]), &trusted), lb);
        assert_eq!(client_ip(lb, &xff(&["10.0.0.2"]), &trusted), ip("10.0.0.2"));
    }
}
