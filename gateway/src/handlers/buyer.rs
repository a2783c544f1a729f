//! Buyer endpoints: clock, campaign status, grab, order status, payment.
//!
//! The grab runs the funnel cheapest check first: body size and shape,
//! token, campaign state from the local cache (including the ledger's
//! sold-out flag), the in-flight cap, then one atomic ledger reservation and
//! a durable log append before the 202.

use crate::app::{mono_ms, now_ms, App, LEDGER_CALL_MAX_MS};
use crate::error::{ApiError, Code};
use crate::registry::LiveCampaign;
use crate::web::{self, Resp};
use engine::ports::{AppendError, LogRecord, Reservation, StatusChange, StoreError};
use engine::{admit, Campaign, OrderId, OrderRecord, OrderStatus, Rejection, UserId};
use http::header::AUTHORIZATION;
use hyper::body::Incoming;
use hyper::StatusCode;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub fn time() -> Resp {
    web::with_cache(
        web::json(StatusCode::OK, &serde_json::json!({ "now_ms": now_ms() })),
        "no-store",
    )
}

pub async fn campaign(app: &App, id: &str) -> Result<Resp, ApiError> {
    let live = super::campaign(app, id)?;
    let view = super::campaign_view(app, &live, now_ms(), false).await;
    Ok(web::with_cache(
        web::json(StatusCode::OK, &view),
        "public, max-age=1",
    ))
}

/// The grab body. Quiz fields are accepted now and checked once the answer
/// bank exists; unknown fields are ignored so clients can extend it.
#[derive(Debug, Deserialize)]
struct GrabBody {
    #[serde(default)]
    #[allow(dead_code)]
    quiz_token: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    answer: Option<String>,
}

pub async fn grab(
    app: &Arc<App>,
    id: &str,
    req: hyper::Request<Incoming>,
) -> Result<Resp, ApiError> {
    let (parts, body) = req.into_parts();
    let body = web::read_body(&parts.headers, body, app.limits.body_bytes_max).await?;
    let _body: GrabBody = web::parse_json(&parts.headers, &body, true)?;
    let user = app
        .auth
        .buyer(parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes()))?;
    let live = super::campaign(app, id)?;
    let campaign = live.get();
    let now = now_ms();
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
            return Err(ApiError::unavailable(
                "this gateway cannot read the campaign's current state; try again shortly",
            ));
        }
    }
    if let Err(r) = admit(&campaign, app.ledger.sold_out_hint(&campaign.id), now) {
        live.counters.reject(r);
        return Err(r.into());
    }
    let Ok(permit) = Arc::clone(&app.grab_permits).try_acquire_owned() else {
        live.counters.reject(Rejection::Overloaded);
        return Err(Rejection::Overloaded.into());
    };
    let task_app = Arc::clone(app);
    let outcome = app.tasks.spawn(async move {
        let _permit = permit;
        reserve_and_log(&task_app, &live, &campaign, user, now).await
    });
    let order_id = outcome.await.map_err(|e| {
        tracing::error!(error = %e, "grab task failed");
        ApiError::internal()
    })??;
    Ok(web::json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "order_id": order_id, "status": "queued" }),
    ))
}

/// Reserve one unit, then make the order durable. Runs as its own task so
/// that it always finishes once started.
async fn reserve_and_log(
    app: &App,
    live: &LiveCampaign,
    c: &Campaign,
    user: UserId,
    now: u64,
) -> Result<OrderId, ApiError> {
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
            return Err(ApiError::unavailable("the stock ledger is unavailable"));
        }
        Err(_) => {
            tracing::warn!(campaign = %c.id, ?wait, "ledger reserve timed out");
            live.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::unavailable("the stock ledger is not answering"));
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
            return Err(r.into());
        }
        Reservation::NotLoaded => {
            live.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::unavailable(
                "this campaign's stock is not loaded; an operator must preload it",
            ));
        }
    };
    let record = OrderRecord::new(c, user, n, now);
    match app.log.append(&LogRecord::Order(record.clone())).await {
        Ok(()) => {
            let id = record.order_id.clone();
            app.orders.insert_queued(record);
            live.counters.logged.fetch_add(1, Ordering::Relaxed);
            Ok(id)
        }
        Err(e @ (AppendError::Overloaded | AppendError::Failed(_))) => {
            // Definitely not written: the unit goes back on sale.
            compensate(app, &record).await;
            if e == AppendError::Overloaded {
                live.counters.reject(Rejection::Overloaded);
                Err(Rejection::Overloaded.into())
            } else {
                tracing::error!(error = %e, "order log append failed");
                live.counters.unavailable.fetch_add(1, Ordering::Relaxed);
                Err(ApiError::unavailable("the order log is unavailable"))
            }
        }
        Err(AppendError::Unknown(why)) => {
            // Maybe written: keep the unit held (never oversell) and let the
            // buyer poll; replay or reconciliation settles it.
            tracing::error!(order = %record.order_id, %why, "order log outcome unknown");
            live.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            Err(
                ApiError::unavailable("the order's outcome is not known yet; poll the order id")
                    .with_extra(serde_json::json!({ "order_id": record.order_id })),
            )
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
    let user = app
        .auth
        .buyer(headers.get(AUTHORIZATION).map(|v| v.as_bytes()))?;
    let not_found = || ApiError::new(Code::OrderNotFound, "no order of yours has this id");
    let id = OrderId::parse(id).map_err(|_| not_found())?;
    let now = mono_ms();
    let (record, status) = match app.orders.get(&id) {
        Some(o) if o.status.is_terminal() || !app.orders.due_for_recheck(&id, now) => {
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

fn order_json(record: &OrderRecord, status: OrderStatus) -> Resp {
    web::with_cache(
        web::json(
            StatusCode::OK,
            &serde_json::json!({
                "order_id": record.order_id,
                "campaign_id": record.campaign_id,
                "user_id": record.user_id,
                "status": status,
                "created_at_ms": record.created_at_ms,
                "pay_by_ms": record.pay_by_ms,
                "price_cents": record.price_cents,
            }),
        ),
        "no-store",
    )
}

pub async fn order(app: &App, id: &str, headers: &http::HeaderMap) -> Result<Resp, ApiError> {
    let (record, status) = owned_order(app, id, headers).await?;
    Ok(order_json(&record, status))
}

/// Why an order cannot be paid, as a 409 with a stable code.
fn not_payable(status: OrderStatus) -> ApiError {
    let (code, message) = match status {
        OrderStatus::Queued => (
            Code::OrderNotConfirmed,
            "the order is still being written; try again in a moment",
        ),
        OrderStatus::Expired => (Code::OrderExpired, "the payment window has closed"),
        _ => (Code::OrderCancelled, "the order was cancelled"),
    };
    let e = ApiError::new(code, message);
    if status == OrderStatus::Queued {
        e.retry_after(1)
    } else {
        e
    }
}

/// The mock payment provider: pays a confirmed order; idempotent.
pub async fn pay(app: &App, id: &str, headers: &http::HeaderMap) -> Result<Resp, ApiError> {
    let (record, status) = owned_order(app, id, headers).await?;
    match status {
        OrderStatus::Paid => return Ok(order_json(&record, status)),
        OrderStatus::Confirmed => {}
        other => return Err(not_payable(other)),
    }
    if now_ms() > record.pay_by_ms {
        return Err(ApiError::new(
            Code::OrderExpired,
            "the payment window has closed",
        ));
    }
    match app
        .store
        .set_status(&record.order_id, OrderStatus::Paid)
        .await
    {
        Ok(StatusChange::Changed | StatusChange::Unchanged) => {
            app.orders.advance(&record.order_id, OrderStatus::Paid);
            Ok(order_json(&record, OrderStatus::Paid))
        }
        Ok(StatusChange::Refused { current }) => {
            app.orders.advance(&record.order_id, current);
            Err(not_payable(current))
        }
        Err(StoreError::NotFound(_)) => Err(not_payable(OrderStatus::Queued)),
        Err(e) => {
            tracing::warn!(error = %e, "paying an order failed");
            Err(ApiError::unavailable("the order store is unavailable"))
        }
    }
}
