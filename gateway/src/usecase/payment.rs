//! Paying an order (a mock payment provider): a confirmed order inside its
//! payment window becomes `paid`, by the store's compare-and-set, which a
//! racing expiry cannot also win (see `usecase::expiry`).

use crate::api::OrderView;
use crate::app::App;
use crate::error::{ApiError, Code};
use engine::ports::{StatusChange, StoreError};
use engine::{OrderRecord, OrderStatus};

/// Pays `record` (its buyer's order, whose status the caller read as
/// `status`). Idempotent: paying a paid order answers it again.
pub async fn pay(
    app: &App,
    record: &OrderRecord,
    status: OrderStatus,
) -> Result<OrderView, ApiError> {
    match status {
        OrderStatus::Paid => return Ok(OrderView::new(record, status)),
        OrderStatus::Confirmed => {}
        other => return Err(not_payable(other)),
    }
    if app.clock.now_ms() > record.pay_by_ms {
        return Err(not_payable(OrderStatus::Expired));
    }
    match app
        .store
        .set_status(&record.order_id, OrderStatus::Paid)
        .await
    {
        Ok(StatusChange::Changed | StatusChange::Unchanged) => {
            app.orders.advance(&record.order_id, OrderStatus::Paid);
            tracing::info!(
                campaign = %record.campaign_id,
                order_id = %record.order_id,
                "order paid"
            );
            Ok(OrderView::new(record, OrderStatus::Paid))
        }
        Ok(StatusChange::Refused { current }) => {
            app.orders.advance(&record.order_id, current);
            Err(not_payable(current))
        }
        Err(StoreError::NotFound(_)) => Err(not_payable(OrderStatus::Queued)),
        Err(e) => {
            tracing::warn!(error = %e, order_id = %record.order_id, "paying an order failed");
            Err(ApiError::unavailable("the order store is unavailable"))
        }
    }
}

/// Why an order cannot be paid, as a 409 with a stable code; a queued
/// order may be paid in a moment (`Retry-After`).
pub fn not_payable(status: OrderStatus) -> ApiError {
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
