//! `MysqlStore`: the production order store on MySQL 8 or MariaDB 10.11+
//! (InnoDB), shared by any number of order writers.
//!
//! It keeps the same final guard as the embedded store: orders are unique per
//! order id and per `(campaign, user, n)`, a user never holds more active
//! orders (queued, confirmed, paid) in a campaign than its per-user limit,
//! while `n` may pass the limit after releases (the rule is in
//! [`crate::sql::batch`]), a campaign's `sold` can never pass its stock (a
//! guarded `UPDATE` plus a `CHECK` in the schema), and each batch commits
//! with the log position it came from. How a batch counts its duplicates
//! and active orders exactly under concurrency is explained in [`batch`].
//!
//! Every session runs in strict SQL mode (a value the schema cannot hold is
//! refused, never truncated) and at `READ COMMITTED` (each read in a batch
//! sees the latest commits, and InnoDB takes no gap locks that could make
//! writers of unrelated campaigns deadlock). `READ COMMITTED` needs the
//! server's `binlog_format` to be `ROW` or `MIXED` (the defaults of MySQL 8
//! and MariaDB); with `STATEMENT` the server refuses every write.

mod batch;
#[cfg(test)]
mod tests;

use crate::sql::batch::{wall_clock_ms, Prepared};
use crate::sql::rows::{self, db_err};
use crate::sql::status::{
    compare_and_set, unapplied, CAMPAIGN_OF_ORDER_SQL, CURRENT_STATUS_SQL, LOWER_SOLD_SQL,
};
use engine::ports::{BatchReport, Checkpoint, LogRecord, StatusChange, StoreError};
use engine::{CampaignId, OrderId, OrderStatus};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{Executor, Row};
use std::str::FromStr;
use std::time::Duration;

/// How long a caller waits for a pool connection (including connecting to
/// the server) before `Unavailable`.
const ACQUIRE_TIMEOUT_MS: u64 = 5_000;
/// How long a statement waits for a row lock before `Unavailable`. Batches
/// hold their campaigns' locks for milliseconds; a longer wait means a stuck
/// session, and the writer's retry is the better answer than waiting 50 s.
const LOCK_WAIT_TIMEOUT_S: u32 = 10;

/// The order store on a MySQL or MariaDB server.
#[derive(Debug, Clone)]
pub struct MysqlStore {
    pool: MySqlPool,
}

impl MysqlStore {
    /// Connects with up to `pool_max` connections to the database named in
    /// `url` (`mysql://user:password@host:3306/database`, which must exist)
    /// and migrates it.
    ///
    /// A malformed `url` or a `pool_max` of 0 is `Invariant` (a retry cannot
    /// help); a server that cannot be reached is `Unavailable`.
    pub async fn connect(url: &str, pool_max: u32) -> Result<MysqlStore, StoreError> {
        // sqlx ignores the scheme, so a URL meant for another database would
        // quietly connect to (and migrate) a MySQL default instead.
        if !(url.starts_with("mysql://") || url.starts_with("mariadb://")) {
            return Err(StoreError::Invariant(
                "the order store url must start with mysql:// or mariadb://".into(),
            ));
        }
        // The sqlx error quotes only the part that failed to parse, never the
        // whole URL, which may carry a password.
        let options = MySqlConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invariant(format!("bad MySQL url: {e}")))?;
        Self::connect_with(options, pool_max).await
    }

    /// Like [`connect`](Self::connect), with options built by the caller.
    pub async fn connect_with(
        options: MySqlConnectOptions,
        pool_max: u32,
    ) -> Result<MysqlStore, StoreError> {
        if pool_max == 0 {
            return Err(StoreError::Invariant(
                "the MySQL pool needs at least one connection".into(),
            ));
        }
        let server = format!(
            "MySQL at {}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        );
        let pool = MySqlPoolOptions::new()
            .max_connections(pool_max)
            .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    // Appended to the server's mode (plus what sqlx adds), so
                    // an operator's other settings stay in force.
                    conn.execute(
                        "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',STRICT_ALL_TABLES')",
                    )
                    .await?;
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await?;
                    conn.execute(
                        format!("SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_TIMEOUT_S}")
                            .as_str(),
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("connecting to {server}: {e}")))?;
        sqlx::migrate!("./migrations/mysql")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrating {server}: {e}")))?;
        Ok(MysqlStore { pool })
    }

    /// Closes every connection; later calls fail with `Unavailable`.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

crate::sql::store_impl::impl_sql_store!(MysqlStore, campaign_order: "seq", insert_dead_letter: INSERT_DEAD_LETTER, {
    async fn write_batch(
        &self,
        records: &[LogRecord],
        checkpoint: Option<Checkpoint<'_>>,
    ) -> Result<BatchReport, StoreError> {
        if records.is_empty() && checkpoint.is_none() {
            return Ok(BatchReport::default());
        }
        let prepared = Prepared::new(records, checkpoint)?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| db_err("starting a batch", e))?;
        let outcome = batch::write_in_tx(&mut tx, &prepared).await;
        crate::sql::batch::finish(tx, outcome).await
    }

    async fn set_status(
        &self,
        order: &OrderId,
        to: OrderStatus,
    ) -> Result<StatusChange, StoreError> {
        if let Some((sql, sources)) = compare_and_set(to) {
            let mut tx = self
                .pool
                .begin()
                .await
                .map_err(|e| db_err("starting a status change", e))?;
            // A release lowers its campaign's `sold`: the campaign row is
            // locked first, as batches lock it, so the two never deadlock.
            let campaign = if to.releases_stock() {
                let row = sqlx::query(CAMPAIGN_OF_ORDER_SQL)
                    .bind(order.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| db_err("reading an order's campaign", e))?;
                match row {
                    Some(r) => {
                        let id: Vec<u8> = r
                            .try_get("campaign_id")
                            .map_err(|e| db_err("reading an order's campaign", e))?;
                        sqlx::query("SELECT id FROM campaigns WHERE id = ? FOR UPDATE")
                            .bind(&id)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(|e| db_err("locking a campaign", e))?;
                        Some(id)
                    }
                    None => None,
                }
            } else {
                None
            };
            let mut q = sqlx::query(&sql)
                .bind(to.as_str())
                .bind(wall_clock_ms())
                .bind(order.as_str());
            for s in sources {
                q = q.bind(s);
            }
            let done = q
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("changing an order status", e))?;
            // The status list excludes `to`, so a matched row is a changed row.
            if done.rows_affected() == 1 {
                if let Some(id) = campaign {
                    sqlx::query(LOWER_SOLD_SQL)
                        .bind(id)
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
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| db_err("reading an order status", e))?;
        let current = row.as_ref().map(rows::status_from_row).transpose()?;
        unapplied(order, current, to)
    }

    async fn next_ledger_generation(&self, campaign: &CampaignId) -> Result<u64, StoreError> {
        // MySQL has no `UPDATE ... RETURNING`: the raise and the read share a
        // transaction. The UPDATE holds the campaign row's exclusive lock
        // until commit, so no other call can raise it in between, and the
        // SELECT sees this transaction's own write.
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| db_err("starting a ledger generation", e))?;
        let outcome = raise_ledger_generation(&mut tx, campaign).await;
        match outcome {
            Ok(generation) => {
                tx.commit()
                    .await
                    .map_err(|e| db_err("committing a ledger generation", e))?;
                Ok(generation)
            }
            Err(e) => {
                if let Err(rb) = tx.rollback().await {
                    tracing::warn!(error = %rb, "rolling back a ledger generation");
                }
                Err(e)
            }
        }
    }
});

/// The body of `next_ledger_generation`; the caller commits on `Ok`.
async fn raise_ledger_generation(
    tx: &mut sqlx::Transaction<'static, sqlx::MySql>,
    campaign: &CampaignId,
) -> Result<u64, StoreError> {
    // The raise always changes a matched row, so 0 means no such campaign.
    let done = sqlx::query("UPDATE campaigns SET ledger_gen = ledger_gen + 1 WHERE id = ?")
        .bind(campaign.as_str())
        .execute(&mut **tx)
        .await
        .map_err(|e| db_err("raising the ledger generation", e))?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("campaign {campaign}")));
    }
    let row = sqlx::query("SELECT ledger_gen FROM campaigns WHERE id = ?")
        .bind(campaign.as_str())
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| db_err("reading the ledger generation", e))?;
    rows::get_u64(&row, "ledger_gen")
}

/// Idempotent per source: a writer retrying after a crash records it once.
const INSERT_DEAD_LETTER: &str =
    "INSERT INTO dead_letters (source, campaign_id, reason, at_ms) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE source = source";
