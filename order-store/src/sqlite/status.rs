//! Order status changes on SQLite: the shared compare-and-set of
//! [`crate::sql::status`], run in one `BEGIN IMMEDIATE` transaction with the
//! lowering of `sold` when the move releases stock.

use crate::sql::rows::{db_err, status_from_row};
use crate::sql::status::{
    compare_and_set, unapplied, CAMPAIGN_OF_ORDER_SQL, CURRENT_STATUS_SQL, LOWER_SOLD_SQL,
};
use engine::ports::{StatusChange, StoreError};
use engine::{OrderId, OrderStatus};
use sqlx::{Row, SqlitePool};

pub(super) async fn set_status(
    pool: &SqlitePool,
    order: &OrderId,
    to: OrderStatus,
    now_ms: i64,
) -> Result<StatusChange, StoreError> {
    if let Some((sql, sources)) = compare_and_set(to) {
        // IMMEDIATE: the write lock up front, as batches take it, so the
        // change and the counter move together with no writer in between.
        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db_err("starting a status change", e))?;
        let mut q = sqlx::query(&sql)
            .bind(to.as_str())
            .bind(now_ms)
            .bind(order.as_str());
        for s in sources {
            q = q.bind(s);
        }
        let done = q
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err("changing an order status", e))?;
        if done.rows_affected() == 1 {
            if to.releases_stock() {
                let campaign: String = sqlx::query(CAMPAIGN_OF_ORDER_SQL)
                    .bind(order.as_str())
                    .fetch_one(&mut *tx)
                    .await
                    .and_then(|r| r.try_get("campaign_id"))
                    .map_err(|e| db_err("reading an order's campaign", e))?;
                sqlx::query(LOWER_SOLD_SQL)
                    .bind(campaign)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_err("lowering sold", e))?;
            }
            tx.commit()
                .await
                .map_err(|e| db_err("committing a status change", e))?;
            return Ok(StatusChange::Changed);
        }
        tx.rollback()
            .await
            .map_err(|e| db_err("ending a status change", e))?;
    }
    let row = sqlx::query(CURRENT_STATUS_SQL)
        .bind(order.as_str())
        .fetch_optional(pool)
        .await
        .map_err(|e| db_err("reading an order status", e))?;
    let current = row.as_ref().map(status_from_row).transpose()?;
    unapplied(order, current, to)
}
