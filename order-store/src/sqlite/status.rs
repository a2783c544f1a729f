//! Order status changes on SQLite: the shared compare-and-set of
//! [`crate::sql::status`], run on the SQLite pool.

use crate::sql::rows::{db_err, status_from_row};
use crate::sql::status::{compare_and_set, unapplied, CURRENT_STATUS_SQL};
use engine::ports::{StatusChange, StoreError};
use engine::{OrderId, OrderStatus};
use sqlx::SqlitePool;

pub(super) async fn set_status(
    pool: &SqlitePool,
    order: &OrderId,
    to: OrderStatus,
    now_ms: i64,
) -> Result<StatusChange, StoreError> {
    if let Some((sql, sources)) = compare_and_set(to) {
        let mut q = sqlx::query(&sql)
            .bind(to.as_str())
            .bind(now_ms)
            .bind(order.as_str());
        for s in sources {
            q = q.bind(s);
        }
        let done = q
            .execute(pool)
            .await
            .map_err(|e| db_err("changing an order status", e))?;
        if done.rows_affected() == 1 {
            return Ok(StatusChange::Changed);
        }
    }
    let row = sqlx::query(CURRENT_STATUS_SQL)
        .bind(order.as_str())
        .fetch_optional(pool)
        .await
        .map_err(|e| db_err("reading an order status", e))?;
    let current = row.as_ref().map(status_from_row).transpose()?;
    unapplied(order, current, to)
}
