//! Buyer endpoints: clock, campaign status, grab, order status, payment.
//!
//! The grab runs the funnel cheapest check first: body size and shape,
//! token, campaign state from the local cache (including the ledger's
//! sold-out flag), the in-flight cap, then one atomic ledger reservation and
//! a durable log append before the 202.

use crate::api;
use crate::app::{mono_ms, App};
use crate::error::{ApiError, Code};
use crate::usecase::{campaigns, payment};
use crate::web::{self, Resp};
use engine::{OrderId, OrderRecord, OrderStatus};
use http::header::AUTHORIZATION;
use hyper::body::Incoming;
use hyper::StatusCode;
use std::sync::Arc;

pub fn time(app: &App) -> Resp {
    web::with_cache(
        web::json(
            StatusCode::OK,
            &api::ServerTime {
                now_ms: app.clock.now_ms(),
            },
        ),
        "no-store",
    )
}

pub async fn campaign(app: &App, id: &str) -> Result<Resp, ApiError> {
    let live = campaigns::find(app, id)?;
    let view = campaigns::view(app, &live, app.clock.now_ms(), false).await;
    Ok(web::with_cache(
        web::json(StatusCode::OK, &view),
        "public, max-age=1",
    ))
}

/// A grab: the funnel's stages decide, cheapest first (see `crate::funnel`).
pub async fn grab(
    app: &Arc<App>,
    id: &str,
    path_sig: Option<&str>,
    req: hyper::Request<Incoming>,
) -> Result<Resp, ApiError> {
    let order_id = crate::funnel::grab(app, id, path_sig, req).await?;
    Ok(web::json(
        StatusCode::ACCEPTED,
        &api::GrabAccepted {
            order_id,
            status: OrderStatus::Queued,
        },
    ))
}

/// The campaign, once its state lets a buyer prepare a grab: from the start
/// instant, not paused, ended or sold out (the local cache decides, as the
/// funnel's state stage does), then the buyer's token.
fn open_for(
    app: &App,
    id: &str,
    headers: &http::HeaderMap,
) -> Result<(Arc<engine::Campaign>, engine::UserId, u64), ApiError> {
    let live = campaigns::find(app, id)?;
    let c = live.get();
    let now = app.clock.now_ms();
    engine::admit(&c, app.ledger.sold_out_hint(&c.id), now)?;
    let user = app
        .auth
        .buyer(headers.get(AUTHORIZATION).map(|v| v.as_bytes()), now)?;
    // The per-buyer rate limit, where the buyer is first known.
    app.rate.user(&user)?;
    Ok((c, user, now))
}

/// `GET /api/v1/campaigns/{id}/grab-path`: where this buyer grabs, from the
/// start instant on (425 before it).
pub fn grab_path(app: &App, id: &str, headers: &http::HeaderMap) -> Result<Resp, ApiError> {
    let (c, user, _) = open_for(app, id, headers)?;
    if c.waiting_room.is_some() {
        return Err(ApiError::new(
            Code::NotAdmitted,
            "this sale has a waiting room: join with POST .../queue; your admission gives your grab path",
        ));
    }
    Ok(web::with_cache(
        web::json(
            StatusCode::OK,
            &api::GrabPath {
                grab_path: app.gate.grab_path(&c, &user),
            },
        ),
        "private, no-store",
    ))
}

/// `POST /api/v1/campaigns/{id}/queue`: joins the waiting room (once).
pub async fn queue_join(app: &App, id: &str, headers: &http::HeaderMap) -> Result<Resp, ApiError> {
    let status = crate::usecase::queue::join(app, id, headers).await?;
    Ok(web::with_cache(
        web::json(StatusCode::OK, &status),
        "private, no-store",
    ))
}

/// `GET /api/v1/campaigns/{id}/queue` with `X-Queue-Ticket`: where the
/// buyer stands (from this gateway's copy of the room).
pub async fn queue_poll(app: &App, id: &str, headers: &http::HeaderMap) -> Result<Resp, ApiError> {
    let status = crate::usecase::queue::poll(app, id, headers).await?;
    Ok(web::with_cache(
        web::json(StatusCode::OK, &status),
        "private, no-store",
    ))
}

/// `GET /api/v1/campaigns/{id}/quiz`: one question and its signed token.
pub fn quiz(app: &App, id: &str, headers: &http::HeaderMap) -> Result<Resp, ApiError> {
    let live = campaigns::find(app, id)?;
    if !live.get().quiz {
        return Err(ApiError::not_found("this sale asks no question"));
    }
    let (c, user, now) = open_for(app, id, headers)?;
    let (token, image_url) = app.gate.issue(&c, &user, now);
    Ok(web::with_cache(
        web::json(
            StatusCode::OK,
            &api::QuizQuestion {
                quiz_token: token,
                image_url,
                min_answer_ms: app.gate.settings.min_answer_ms,
                expires_in_ms: app.gate.settings.token_ttl_ms,
            },
        ),
        "private, no-store",
    ))
}

/// Largest quiz image served (a bank image is a few KB).
const QUIZ_IMAGE_BYTES_MAX: u64 = 256 * 1024;

/// `GET /static/quiz/{image}`: a bank image, from the CDN folder; one this
/// gateway has not rendered (another gateway ran the preload) is drawn now
/// and kept, so any gateway can serve any question.
pub async fn quiz_image(app: &App, file: &str) -> Result<Resp, ApiError> {
    let missing = || ApiError::not_found("no such image");
    if !crate::quiz::is_image_name(file) {
        return Err(missing());
    }
    let path = app.gate.image_dir.join(file);
    let bytes = match read_small(&path).await {
        Some(b) => b,
        None => {
            let campaigns: Vec<_> = app
                .registry
                .all()
                .iter()
                .map(|l| l.get())
                .filter(|c| {
                    c.quiz && c.state(app.clock.now_ms(), false) != engine::CampaignState::Ended
                })
                .collect();
            let Some((c, index)) = app.gate.find_image(&campaigns, file) else {
                return Err(missing());
            };
            let bank = app.gate.bank(&c);
            let dir = app.gate.image_dir.clone();
            tokio::task::spawn_blocking(move || bank.image_in(&dir, index))
                .await
                .map_err(|_| ApiError::internal())?
                .map_err(|e| {
                    tracing::error!(error = %e, "rendering a quiz image");
                    ApiError::unavailable("the image cannot be drawn right now")
                })?
        }
    };
    Ok(web::with_cache(
        web::bytes(StatusCode::OK, "image/png", bytes::Bytes::from(bytes)),
        "public, max-age=31536000, immutable",
    ))
}

async fn read_small(path: &std::path::Path) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await.ok()?;
    let mut buf = Vec::new();
    file.take(QUIZ_IMAGE_BYTES_MAX)
        .read_to_end(&mut buf)
        .await
        .ok()?;
    Some(buf)
}

/// The caller's own order; someone else's order looks exactly like a
/// missing one.
///
/// The index answers at once for an order in a final status. Otherwise the
/// durable store decides (at most once per `ORDER_RECHECK_MS` per order):
/// in production the gateway that took an order never hears that a writer
/// stored it, another gateway may have taken the payment, and an order of
/// another gateway is not in this index at all. What the store says is kept
/// in the index, which is bounded by the orders of the campaigns.
async fn owned_order(
    app: &App,
    id: &str,
    headers: &http::HeaderMap,
) -> Result<(Arc<OrderRecord>, OrderStatus), ApiError> {
    let user = app.auth.buyer(
        headers.get(AUTHORIZATION).map(|v| v.as_bytes()),
        app.clock.now_ms(),
    )?;
    app.rate.user(&user)?;
    let not_found = || ApiError::new(Code::OrderNotFound, "no order of yours has this id");
    let id = OrderId::parse(id).map_err(|_| not_found())?;
    let now = mono_ms();
    // Past its deadline a confirmed order is about to expire (a sweeper
    // decides, within its period): ask the store until it says so.
    let overdue = |o: &crate::orders::IndexedOrder| {
        o.status == OrderStatus::Confirmed && app.clock.now_ms() > o.record.pay_by_ms
    };
    let (record, status) = match app.orders.get(&id) {
        Some(o)
            if o.status.is_terminal() || !(overdue(&o) || app.orders.due_for_recheck(&id, now)) =>
        {
            (o.record, o.status)
        }
        indexed => match app.store.order(&id).await {
            Ok(Some(o)) => {
                let status = o.status;
                let record = app.orders.insert_stored(o, now);
                (record, status)
            }
            Ok(None) => match indexed {
                // Durable in the log, not in the store yet.
                Some(o) => (o.record, o.status),
                None => return Err(not_found()),
            },
            Err(e) => match indexed {
                Some(o) => {
                    tracing::warn!(error = %e, "order look-up failed; answering from the index");
                    (o.record, o.status)
                }
                None => {
                    tracing::warn!(error = %e, "order look-up failed");
                    return Err(ApiError::unavailable("the order store is unavailable"));
                }
            },
        },
    };
    if record.user_id != user {
        return Err(not_found());
    }
    Ok((record, status))
}

fn order_json(view: &api::OrderView) -> Resp {
    web::with_cache(web::json(StatusCode::OK, view), "no-store")
}

pub async fn order(app: &App, id: &str, headers: &http::HeaderMap) -> Result<Resp, ApiError> {
    let (record, status) = owned_order(app, id, headers).await?;
    Ok(order_json(&api::OrderView::new(&record, status)))
}

/// The mock payment provider: pays the buyer's confirmed order
/// (`usecase::payment`); idempotent.
pub async fn pay(app: &App, id: &str, headers: &http::HeaderMap) -> Result<Resp, ApiError> {
    let (record, status) = owned_order(app, id, headers).await?;
    Ok(order_json(&payment::pay(app, &record, status).await?))
}
