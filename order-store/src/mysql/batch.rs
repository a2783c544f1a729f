//! One `write_batch` transaction on MySQL, counting inserts and duplicates
//! exactly and keeping the per-user limit exact even when several writers
//! send overlapping batches. The rules are those of [`crate::sql::batch`].
//!
//! The steps, all in one transaction:
//! 1. Lock every campaign of the batch with `SELECT ... FOR UPDATE`, one at a
//!    time in byte order of the id, so two batches sharing campaigns queue
//!    behind each other instead of deadlocking. This also checks that each
//!    campaign exists and that no record has unit number 0.
//! 2. Look up which records are already stored, by order id and by
//!    `(campaign, user, n)`, the two unique keys, and how many active orders
//!    (queued, confirmed, paid) each user of the batch holds per campaign
//!    (read only for users with a unit numbered past the limit; for the
//!    others the distinct numbers settle it, see `sql::batch::Stored`).
//!    While the campaign rows are locked no other batch can add orders to
//!    those campaigns, so these answers stay true until commit; at
//!    `READ COMMITTED` they see every batch that committed before the lock
//!    was granted. (A status change does not take the campaign lock: one
//!    racing a batch can only release a unit, which makes the count an
//!    over-estimate for that batch, never an under-estimate, because no
//!    status change makes an order active again.)
//! 3. Refuse the batch when its new records would give a user more active
//!    orders in a campaign than the per-user limit; `n` itself may pass the
//!    limit once earlier units were released.
//! 4. Insert the new records (minus repeats inside the batch) with a
//!    plain multi-row `INSERT`: no `IGNORE`, no `ON DUPLICATE KEY`, so any
//!    error, a duplicate included, aborts the batch instead of being
//!    swallowed, and `rows_affected` must equal the rows sent.
//! 5. Raise each campaign's `sold` with the guarded `UPDATE`; no row matched
//!    means the batch would oversell, and the whole transaction rolls back.
//! 6. Upsert the checkpoint.
//!
//! Holding the campaign lock for the batch serialises writers per campaign,
//! which costs nothing in production: the order log is keyed by campaign, so
//! one writer owns a campaign's records at a time anyway.

use crate::sql::batch::{
    check_active_limits, fresh_rows, unknown_campaign, wall_clock_ms, Prepared, Stored, Tally,
    RAISE_SOLD_SQL, TALLY_COLUMNS,
};
use crate::sql::rows::{db_err, to_i64, OrderRow, INSERT_ORDER_COLUMNS};
use engine::ports::{BatchReport, StoreError};
use engine::OrderStatus;
use sqlx::{MySql, QueryBuilder, Transaction};
use std::collections::BTreeMap;

/// Rows per multi-row `INSERT` (9 bound values each): far below MySQL's
/// 65,535 placeholders and a default `max_allowed_packet`, while still
/// amortising the round trip over many rows.
const CHUNK_ROWS: usize = 500;

/// The body of `write_batch`; the caller commits on `Ok` and rolls back on `Err`.
pub(super) async fn write_in_tx(
    tx: &mut Transaction<'static, MySql>,
    batch: &Prepared<'_>,
) -> Result<BatchReport, StoreError> {
    let mut tallies = lock_campaigns(tx, &batch.rows).await?;
    let stored = load_stored(tx, &batch.rows, &tallies).await?;
    let fresh = fresh_rows(&batch.rows, &stored);
    check_active_limits(&fresh, &stored, &tallies)?;
    insert(tx, &fresh).await?;
    for r in &fresh {
        let tally = tallies
            .get_mut(r.campaign_id)
            .ok_or_else(|| unknown_campaign(r))?;
        tally.inserted += 1;
    }
    for (campaign, t) in tallies.iter().filter(|(_, t)| t.inserted > 0) {
        let add = to_i64(t.inserted, "inserted orders")?;
        let done = sqlx::query(RAISE_SOLD_SQL)
            .bind(add)
            .bind(*campaign)
            .bind(add)
            .execute(&mut **tx)
            .await
            .map_err(|e| db_err("raising sold", e))?;
        if done.rows_affected() == 0 {
            return Err(t.over_stock(campaign));
        }
    }
    if let Some((source, position)) = batch.checkpoint {
        // Last writer wins, as in the SQLite store. The new position is bound
        // twice because `VALUES(position)` is deprecated on MySQL 8 and the
        // row alias that replaces it does not exist on MariaDB.
        sqlx::query(
            "INSERT INTO checkpoints (source, position) VALUES (?, ?) \
             ON DUPLICATE KEY UPDATE position = ?",
        )
        .bind(source)
        .bind(position)
        .bind(position)
        .execute(&mut **tx)
        .await
        .map_err(|e| db_err("saving the checkpoint", e))?;
    }
    let inserted = u64::try_from(fresh.len()).unwrap_or(u64::MAX);
    Ok(batch.report(inserted))
}

/// Step 1: locks the batch's campaigns in byte order of their ids and checks
/// every record against its campaign; returns the campaigns' tallies.
async fn lock_campaigns<'r>(
    tx: &mut Transaction<'static, MySql>,
    rows: &[OrderRow<'r>],
) -> Result<BTreeMap<&'r str, Tally>, StoreError> {
    let mut first_of: BTreeMap<&'r str, &OrderRow<'r>> = BTreeMap::new();
    for r in rows {
        first_of.entry(r.campaign_id).or_insert(r);
    }
    let sql = format!("SELECT {TALLY_COLUMNS} FROM campaigns WHERE id = ? FOR UPDATE");
    let mut tallies = BTreeMap::new();
    // BTreeMap iterates in byte order: every writer takes the locks in the
    // same order, which is what rules out deadlocks between them.
    for (campaign, first) in first_of {
        let row = sqlx::query(&sql)
            .bind(campaign)
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| db_err("locking a campaign", e))?
            .ok_or_else(|| unknown_campaign(first))?;
        tallies.insert(campaign, Tally::from_row(&row)?);
    }
    for r in rows {
        tallies
            .get(r.campaign_id)
            .ok_or_else(|| unknown_campaign(r))?
            .admit(r)?;
    }
    Ok(tallies)
}

/// Step 2: what is stored of the batch's order ids, and every stored order
/// of the batch's users in its campaigns (units, and active counts where the numbers do not settle the limit).
async fn load_stored(
    tx: &mut Transaction<'static, MySql>,
    rows: &[OrderRow<'_>],
    tallies: &BTreeMap<&str, Tally>,
) -> Result<Stored, StoreError> {
    let mut stored = Stored::default();
    for lookup in Stored::lookups(rows, tallies) {
        run_lookup(tx, &lookup, &mut stored).await?;
    }
    for lookup in stored.active_lookups(rows, tallies) {
        run_lookup(tx, &lookup, &mut stored).await?;
    }
    Ok(stored)
}

crate::sql::batch::run_lookup_fn!(MySql);

/// Step 4: inserts the new rows; every one must land.
async fn insert(
    tx: &mut Transaction<'static, MySql>,
    fresh: &[&OrderRow<'_>],
) -> Result<(), StoreError> {
    let updated_at_ms = wall_clock_ms();
    let status = OrderStatus::Confirmed.as_str();
    for chunk in fresh.chunks(CHUNK_ROWS) {
        let mut qb: QueryBuilder<'_, MySql> =
            QueryBuilder::new(format!("INSERT INTO orders ({INSERT_ORDER_COLUMNS}) "));
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(r.order_id)
                .push_bind(r.campaign_id)
                .push_bind(r.user_id)
                .push_bind(i64::from(r.n))
                .push_bind(r.price_cents)
                .push_bind(r.created_at_ms)
                .push_bind(r.pay_by_ms)
                .push_bind(status)
                .push_bind(updated_at_ms);
        });
        let done = qb
            .build()
            .execute(&mut **tx)
            .await
            .map_err(|e| db_err("inserting orders", e))?;
        let sent = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        if done.rows_affected() != sent {
            return Err(StoreError::Invariant(format!(
                "inserting {sent} new orders stored {}",
                done.rows_affected()
            )));
        }
    }
    Ok(())
}
