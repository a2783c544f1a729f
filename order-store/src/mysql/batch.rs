//! One `write_batch` transaction on MySQL, counting inserts and duplicates
//! exactly even when several writers send overlapping batches.
//!
//! The steps, all in one transaction:
//! 1. Lock every campaign of the batch with `SELECT ... FOR UPDATE`, one at a
//!    time in byte order of the id, so two batches sharing campaigns queue
//!    behind each other instead of deadlocking. This also checks that each
//!    campaign exists and each `n` is within its per-user limit.
//! 2. Look up which records are already stored, by order id and by
//!    `(campaign, user, n)`, the two unique keys. While the campaign rows are
//!    locked no other batch can add orders to those campaigns, so this answer
//!    stays true until commit; at `READ COMMITTED` it sees every batch that
//!    committed before the lock was granted.
//! 3. Insert the remaining records (minus repeats inside the batch) with a
//!    plain multi-row `INSERT`: no `IGNORE`, no `ON DUPLICATE KEY`, so any
//!    error, a duplicate included, aborts the batch instead of being
//!    swallowed, and `rows_affected` must equal the rows sent.
//! 4. Raise each campaign's `sold` with the guarded `UPDATE`; no row matched
//!    means the batch would oversell, and the whole transaction rolls back.
//! 5. Upsert the checkpoint.
//!
//! Holding the campaign lock for the batch serialises writers per campaign,
//! which costs nothing in production: the order log is keyed by campaign, so
//! one writer owns a campaign's records at a time anyway.

use crate::sql::batch::{
    unknown_campaign, wall_clock_ms, Prepared, Tally, RAISE_SOLD_SQL, TALLY_COLUMNS,
};
use crate::sql::rows::{db_err, get_u32, to_i64, DbRow, OrderRow, INSERT_ORDER_COLUMNS};
use engine::ports::{BatchReport, StoreError};
use engine::OrderStatus;
use sqlx::{MySql, QueryBuilder, Transaction};
use std::collections::{BTreeMap, HashSet};

/// Rows per multi-row `INSERT` (9 bound values each) and ids per `IN` list:
/// far below MySQL's 65,535 placeholders and a default `max_allowed_packet`,
/// while still amortising the round trip over many rows.
const CHUNK_ROWS: usize = 500;

/// A stored or batched unit: `(campaign, user, n)`.
type Unit = (String, String, u32);

/// The body of `write_batch`; the caller commits on `Ok` and rolls back on `Err`.
pub(super) async fn write_in_tx(
    tx: &mut Transaction<'static, MySql>,
    batch: &Prepared<'_>,
) -> Result<BatchReport, StoreError> {
    let mut tallies = lock_campaigns(tx, &batch.rows).await?;
    let fresh = new_rows(tx, &batch.rows).await?;
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

/// Step 2: the records that are neither stored yet nor repeats of an earlier
/// record of this batch, by either unique key, in batch order.
async fn new_rows<'b, 'r>(
    tx: &mut Transaction<'static, MySql>,
    rows: &'b [OrderRow<'r>],
) -> Result<Vec<&'b OrderRow<'r>>, StoreError> {
    let mut stored_ids: HashSet<String> = HashSet::new();
    let mut stored_units: HashSet<Unit> = HashSet::new();
    for chunk in rows.chunks(CHUNK_ROWS) {
        let mut qb: QueryBuilder<'_, MySql> =
            QueryBuilder::new("SELECT order_id FROM orders WHERE order_id IN (");
        let mut ids = qb.separated(", ");
        for r in chunk {
            ids.push_bind(r.order_id);
        }
        qb.push(")");
        let found = qb
            .build()
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| db_err("looking up stored orders", e))?;
        for row in &found {
            stored_ids.insert(row.text("order_id")?);
        }
        let campaigns: HashSet<&str> = chunk.iter().map(|r| r.campaign_id).collect();
        for campaign in campaigns {
            find_units(tx, campaign, chunk, &mut stored_units).await?;
        }
    }
    let mut seen_ids: HashSet<&str> = HashSet::new();
    let mut seen_units: HashSet<(&str, &str, u32)> = HashSet::new();
    let mut fresh = Vec::with_capacity(rows.len());
    for r in rows {
        let unit = (r.campaign_id, r.user_id, r.n);
        let stored = stored_ids.contains(r.order_id)
            || stored_units.contains(&(r.campaign_id.into(), r.user_id.into(), r.n));
        // Both sets are updated unconditionally: a record repeating either key
        // of an earlier one is a duplicate even if the other key differs.
        let repeated = !seen_ids.insert(r.order_id) | !seen_units.insert(unit);
        if !stored && !repeated {
            fresh.push(r);
        }
    }
    Ok(fresh)
}

/// Adds to `units` the stored `(campaign, user, n)` of `campaign`'s users in
/// `chunk`; the lookup uses the unique key's leading columns.
async fn find_units(
    tx: &mut Transaction<'static, MySql>,
    campaign: &str,
    chunk: &[OrderRow<'_>],
    units: &mut HashSet<Unit>,
) -> Result<(), StoreError> {
    let mut qb: QueryBuilder<'_, MySql> =
        QueryBuilder::new("SELECT user_id, n FROM orders WHERE campaign_id = ");
    qb.push_bind(campaign);
    qb.push(" AND user_id IN (");
    let mut users = qb.separated(", ");
    for r in chunk.iter().filter(|r| r.campaign_id == campaign) {
        users.push_bind(r.user_id);
    }
    qb.push(")");
    let found = qb
        .build()
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| db_err("looking up stored units", e))?;
    for row in &found {
        units.insert((
            campaign.to_owned(),
            row.text("user_id")?,
            get_u32(row, "n")?,
        ));
    }
    Ok(())
}

/// Step 3: inserts the new rows; every one must land.
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
