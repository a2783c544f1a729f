//! `SqliteStore`: the embedded order store, one SQLite file in WAL mode.
//!
//! It is the last guard of the order pipeline: orders are unique per order
//! id and per `(campaign, user, n)`, a user never holds more active orders
//! (queued, confirmed, paid) in a campaign than its per-user limit, while
//! the unit number `n` may pass the limit after releases (it never repeats,
//! so an order id is never reused; see [`crate::sql::batch`]), a campaign's
//! `sold` counter can never pass its stock (a guarded `UPDATE` plus a
//! `CHECK` in the schema), and each batch commits together with the log
//! position it came from, so a replay after a crash is absorbed instead of
//! written twice. `BEGIN IMMEDIATE` serialises batches, which keeps these
//! checks exact.

mod status;
#[cfg(test)]
mod tests;

use crate::sql::batch::{self, unknown_campaign, wall_clock_ms, Prepared, Stored, Tally};
use crate::sql::rows::{self, db_err, to_i64, OrderRow};
use engine::ports::{BatchReport, Checkpoint, LogRecord, StatusChange, StoreError};
use engine::{CampaignId, OrderId, OrderStatus};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, Transaction};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

/// Connections in the pool. SQLite has a single writer anyway; a few
/// connections let operator reads proceed while the writer holds the lock.
const POOL_CONNECTIONS_MAX: u32 = 4;
/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT_MS: u64 = 5_000;
/// How long a caller waits for a free pool connection before `Unavailable`.
const ACQUIRE_TIMEOUT_MS: u64 = 5_000;
/// Rows per multi-row `INSERT`: 9 bound values each keeps a statement far
/// below SQLite's variable limit while still amortising the per-statement cost.
const INSERT_CHUNK_ROWS: usize = 200;

/// The order store on one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and migrates it.
    ///
    /// `synchronous=FULL` makes every commit durable before it returns: the
    /// writer's checkpoint lives in the same transaction as the orders, and a
    /// commit that could be lost would let the log skip past them.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_CONNECTIONS_MAX)
            .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("opening {}: {e}", path.display())))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrating {}: {e}", path.display())))?;
        Ok(SqliteStore { pool })
    }

    /// Closes every connection; later calls fail with `Unavailable`.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

crate::sql::store_impl::impl_sql_store!(SqliteStore, campaign_order: "rowid", insert_dead_letter: INSERT_DEAD_LETTER, {
    async fn write_batch(
        &self,
        records: &[LogRecord],
        checkpoint: Option<Checkpoint<'_>>,
    ) -> Result<BatchReport, StoreError> {
        if records.is_empty() && checkpoint.is_none() {
            return Ok(BatchReport::default());
        }
        let batch = Prepared::new(records, checkpoint)?;
        // IMMEDIATE takes the write lock up front: a deferred transaction that
        // reads first and then writes can fail with SQLITE_BUSY without waiting.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db_err("starting a batch", e))?;
        let outcome = write_in_tx(&mut tx, &batch).await;
        batch::finish(tx, outcome).await
    }

    async fn set_status(
        &self,
        order: &OrderId,
        to: OrderStatus,
    ) -> Result<StatusChange, StoreError> {
        status::set_status(&self.pool, order, to, wall_clock_ms()).await
    }

    async fn next_ledger_generation(&self, campaign: &CampaignId) -> Result<u64, StoreError> {
        // One statement: the write lock makes the raise atomic, RETURNING
        // reads the value this call wrote, and FULL sync makes it durable.
        let row = sqlx::query(
            "UPDATE campaigns SET ledger_gen = ledger_gen + 1 WHERE id = ? RETURNING ledger_gen",
        )
        .bind(campaign.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_err("raising the ledger generation", e))?
        .ok_or_else(|| StoreError::NotFound(format!("campaign {campaign}")))?;
        rows::get_u64(&row, "ledger_gen")
    }
});

/// The body of `write_batch`; the caller commits on `Ok` and rolls back on
/// `Err`. The rules are those of [`crate::sql::batch`]; the steps differ
/// from MySQL's because `BEGIN IMMEDIATE` holds the database's only write
/// lock from the first statement: no other writer can interleave, so the
/// batch inserts first (`ON CONFLICT DO NOTHING` absorbs every duplicate,
/// `RETURNING` names exactly the new rows) and then checks the per-user
/// limit on what is stored now, new rows included, refusing the batch (a
/// rollback) if a user passed it. That costs one insert and a probe per
/// batch instead of a look-up of every key before it.
async fn write_in_tx(
    tx: &mut Transaction<'static, Sqlite>,
    batch: &Prepared<'_>,
) -> Result<BatchReport, StoreError> {
    let mut tallies = load_tallies(tx, &batch.rows).await?;
    let by_id: HashMap<&str, &OrderRow<'_>> = batch.rows.iter().map(|r| (r.order_id, r)).collect();
    let mut inserted: Vec<OrderRow<'_>> = Vec::new();
    let updated_at_ms = wall_clock_ms();
    let status = OrderStatus::Confirmed.as_str();
    for chunk in batch.rows.chunks(INSERT_CHUNK_ROWS) {
        let mut qb: QueryBuilder<'_, Sqlite> = QueryBuilder::new(format!(
            "INSERT INTO orders ({}) ",
            rows::INSERT_ORDER_COLUMNS
        ));
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
        // DO NOTHING skips rows that hit either unique key, including a
        // duplicate earlier in the same statement; RETURNING lists only the
        // rows really inserted.
        qb.push(" ON CONFLICT DO NOTHING RETURNING order_id");
        let rows = qb
            .build()
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| db_err("inserting orders", e))?;
        for row in &rows {
            let id = crate::sql::rows::DbRow::text(row, "order_id")?;
            let r = by_id.get(id.as_str()).ok_or_else(|| {
                StoreError::Invariant(format!("insert returned unexpected order {id}"))
            })?;
            inserted.push(**r);
        }
    }
    let mut stored = Stored::default();
    for lookup in Stored::past_limit_lookups(&inserted, &tallies) {
        run_lookup(tx, &lookup, &mut stored).await?;
    }
    for lookup in stored.active_lookups(&inserted, &tallies) {
        run_lookup(tx, &lookup, &mut stored).await?;
    }
    batch::check_limits_after_insert(&stored, &tallies)?;
    for r in &inserted {
        let tally = tallies
            .get_mut(r.campaign_id)
            .ok_or_else(|| unknown_campaign(r))?;
        tally.inserted += 1;
    }
    let inserted_total = u64::try_from(inserted.len()).unwrap_or(u64::MAX);
    for (campaign, t) in tallies.iter().filter(|(_, t)| t.inserted > 0) {
        let add = to_i64(t.inserted, "inserted orders")?;
        let done = sqlx::query(batch::RAISE_SOLD_SQL)
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
        // Last writer wins rather than max(): moving a checkpoint backwards
        // can only cause a replay, which is absorbed, while refusing to move
        // it could skip records of a log that was recreated.
        sqlx::query(
            "INSERT INTO checkpoints (source, position) VALUES (?, ?) \
             ON CONFLICT (source) DO UPDATE SET position = excluded.position",
        )
        .bind(source)
        .bind(position)
        .execute(&mut **tx)
        .await
        .map_err(|e| db_err("saving the checkpoint", e))?;
    }
    Ok(batch.report(inserted_total))
}

/// Loads every campaign the batch touches and checks each record against it:
/// an unknown campaign or a unit number 0 is refused whole.
async fn load_tallies<'r>(
    tx: &mut Transaction<'static, Sqlite>,
    rows: &[OrderRow<'r>],
) -> Result<BTreeMap<&'r str, Tally>, StoreError> {
    let sql = format!(
        "SELECT {} FROM campaigns WHERE id = ?",
        batch::TALLY_COLUMNS
    );
    let mut tallies: BTreeMap<&'r str, Tally> = BTreeMap::new();
    for r in rows {
        let tally = match tallies.entry(r.campaign_id) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let row = sqlx::query(&sql)
                    .bind(r.campaign_id)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(|e| db_err("reading a campaign", e))?
                    .ok_or_else(|| unknown_campaign(r))?;
                e.insert(Tally::from_row(&row)?)
            }
        };
        tally.admit(r)?;
    }
    Ok(tallies)
}

batch::run_lookup_fn!(Sqlite);

/// Idempotent per source: a writer retrying after a crash records it once.
const INSERT_DEAD_LETTER: &str =
    "INSERT INTO dead_letters (source, campaign_id, reason, at_ms) VALUES (?, ?, ?, ?) ON CONFLICT (source) DO NOTHING";
