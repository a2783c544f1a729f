//! Buyer endpoints: clock, campaign status, grab, order status, payment.
//!
//! The grab runs the funnel cheapest check first: body size and shape,
//! token, campaign state from the local cache (including the ledger's
//! sold-out flag), the in-flight cap, then one atomic ledger reservation and
//! a durable log append before the 202.

use crate::app::{mono_ms, App};
use crate::error::{ApiError, Code};
use crate::web::{self, Resp};
use engine::ports::{StatusChange, StoreError};
use engine::{OrderId, OrderRecord, OrderStatus};
use http::header::AUTHORIZATION;
use hyper::body::Incoming;
use hyper::StatusCode;
use std::sync::Arc;

pub fn time(app: &App) -> Resp {
    web::with_cache(
        web::json(
            StatusCode::OK,
            &serde_json::json!({ "now_ms": app.clock.now_ms() }),
        ),
        "no-store",
    )
}

pub async fn campaign(app: &App, id: &str) -> Result<Resp, ApiError> {
    let live = super::campaign(app, id)?;
    let view = super::campaign_view(app, &live, app.clock.now_ms(), false).await;
    Ok(web::with_cache(
        web::json(StatusCode::OK, &view),
        "public, max-age=1",
    ))
}

/// A grab: the funnel's stages decide, cheapest first (see `crate::funnel`).
pub async fn grab(
    app: &Arc<App>,
    id: &str,
    req: hyper::Request<Incoming>,
) -> Result<Resp, ApiError> {
    let order_id = crate::funnel::grab(app, id, req).await?;
    Ok(web::json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "order_id": order_id, "status": "queued" }),
    ))
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
    if app.clock.now_ms() > record.pay_by_ms {
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
