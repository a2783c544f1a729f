//! Order status changes as one compare-and-set `UPDATE`, so two concurrent
//! changes (a payment and, later, an expiry sweep) can never both win.

use super::rows::{self, db_err};
use engine::ports::{StatusChange, StoreError};
use engine::{OrderId, OrderStatus};
use sqlx::SqlitePool;

const ALL: [OrderStatus; 5] = [
    OrderStatus::Queued,
    OrderStatus::Confirmed,
    OrderStatus::Paid,
    OrderStatus::Cancelled,
    OrderStatus::Expired,
];

pub(super) async fn set_status(
    pool: &SqlitePool,
    order: &OrderId,
    to: OrderStatus,
    now_ms: i64,
) -> Result<StatusChange, StoreError> {
    let sources: Vec<&str> = ALL
        .iter()
        .filter(|from| **from != to && from.can_become(to))
        .map(|from| from.as_str())
        .collect();
    if !sources.is_empty() {
        let placeholders = vec!["?"; sources.len()].join(", ");
        let sql = format!(
            "UPDATE orders SET status = ?, updated_at_ms = ? \
             WHERE order_id = ? AND status IN ({placeholders})"
        );
        let mut q = sqlx::query(&sql)
            .bind(to.as_str())
            .bind(now_ms)
            .bind(order.as_str());
        for s in &sources {
            q = q.bind(*s);
        }
        let done = q
            .execute(pool)
            .await
            .map_err(|e| db_err("changing an order status", e))?;
        if done.rows_affected() == 1 {
            return Ok(StatusChange::Changed);
        }
    }
    let row = sqlx::query("SELECT status FROM orders WHERE order_id = ?")
        .bind(order.as_str())
        .fetch_optional(pool)
        .await
        .map_err(|e| db_err("reading an order status", e))?
        .ok_or_else(|| StoreError::NotFound(format!("order {order}")))?;
    let current: String =
        sqlx::Row::try_get(&row, "status").map_err(|e| db_err("reading a row", e))?;
    let current = rows::parse_status(&current)?;
    Ok(if current == to {
        StatusChange::Unchanged
    } else {
        StatusChange::Refused { current }
    })
}
