//! The backend-neutral parts of a status change: one compare-and-set
//! `UPDATE` whose `WHERE` lists every status the engine's state machine
//! allows the move from, so two concurrent changes (a payment and, later, an
//! expiry sweep) can never both win; and how to read the outcome when it
//! matched nothing.

use engine::ports::{StatusChange, StoreError};
use engine::{OrderId, OrderStatus};

const ALL: [OrderStatus; 5] = [
    OrderStatus::Queued,
    OrderStatus::Confirmed,
    OrderStatus::Paid,
    OrderStatus::Cancelled,
    OrderStatus::Expired,
];

/// The compare-and-set for a move to `to`, as SQL and the statuses to bind
/// after `(to, updated_at_ms, order_id)`; `None` when no status may become
/// `to`, so only the read that explains the refusal is needed.
pub(crate) fn compare_and_set(to: OrderStatus) -> Option<(String, Vec<&'static str>)> {
    let sources: Vec<&'static str> = ALL
        .iter()
        .filter(|from| **from != to && from.can_become(to))
        .map(|from| from.as_str())
        .collect();
    if sources.is_empty() {
        return None;
    }
    let placeholders = vec!["?"; sources.len()].join(", ");
    let sql = format!(
        "UPDATE orders SET status = ?, updated_at_ms = ? \
         WHERE order_id = ? AND status IN ({placeholders})"
    );
    Some((sql, sources))
}

/// The campaign of a stored order (read before a releasing change, which
/// locks the campaign's row first, in the same order as batches do).
pub(crate) const CAMPAIGN_OF_ORDER_SQL: &str = "SELECT campaign_id FROM orders WHERE order_id = ?";

/// Lowers a campaign's `sold` by the unit an order released, in the
/// transaction of the compare-and-set that released it (`sold` counts the
/// units of active orders; the schema's `CHECK (sold >= 0)` refuses a
/// counter that would go below zero).
pub(crate) const LOWER_SOLD_SQL: &str = "UPDATE campaigns SET sold = sold - 1 WHERE id = ?";

/// Reads the current status after a compare-and-set that matched no row.
pub(crate) const CURRENT_STATUS_SQL: &str = "SELECT status FROM orders WHERE order_id = ?";

/// What a change that did not apply means: `current` is `None` when the order
/// is not stored.
pub(crate) fn unapplied(
    order: &OrderId,
    current: Option<OrderStatus>,
    to: OrderStatus,
) -> Result<StatusChange, StoreError> {
    match current {
        None => Err(StoreError::NotFound(format!("order {order}"))),
        Some(current) if current == to => Ok(StatusChange::Unchanged),
        Some(current) => Ok(StatusChange::Refused { current }),
    }
}
