//! The backend-neutral steps of `write_batch`: converting records before the
//! transaction, the per-campaign checks a batch must pass, the counting of
//! what it did, and how the transaction ends.

use super::rows::{get_u64, to_i64, DbRow, OrderRow};
use engine::ports::{BatchReport, Checkpoint, LogRecord, StoreError};
use sqlx::{Database, Transaction};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, for `updated_at_ms`. The adapters may
/// read the clock (the engine may not); a clock before 1970 reads as 0.
pub(crate) fn wall_clock_ms() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A batch converted for storage: done before the transaction starts, so an
/// unstorable value fails cleanly without touching the database.
#[derive(Debug)]
pub(crate) struct Prepared<'a> {
    pub rows: Vec<OrderRow<'a>>,
    pub checkpoint: Option<(&'a str, i64)>,
}

impl<'a> Prepared<'a> {
    pub(crate) fn new(
        records: &'a [LogRecord],
        checkpoint: Option<Checkpoint<'a>>,
    ) -> Result<Self, StoreError> {
        let rows = records
            .iter()
            .map(|r| match r {
                LogRecord::Order(o) => OrderRow::new(o),
            })
            .collect::<Result<_, _>>()?;
        let checkpoint = match checkpoint {
            Some(cp) => Some((cp.source, to_i64(cp.position, "checkpoint position")?)),
            None => None,
        };
        Ok(Self { rows, checkpoint })
    }

    /// The report once `inserted` of the rows were new; the rest were already
    /// stored (or repeated inside the batch) and were absorbed.
    pub(crate) fn report(&self, inserted: u64) -> BatchReport {
        let total = u64::try_from(self.rows.len()).unwrap_or(u64::MAX);
        BatchReport {
            inserted,
            duplicates: total.saturating_sub(inserted),
        }
    }
}

/// Per-campaign facts a batch is checked against, and what it inserted.
#[derive(Debug)]
pub(crate) struct Tally {
    pub stock_total: u64,
    pub sold: u64,
    pub per_user_limit: u32,
    pub inserted: u64,
}

/// The campaign columns [`Tally::from_row`] reads.
pub(crate) const TALLY_COLUMNS: &str = "stock_total, sold, per_user_limit";

impl Tally {
    pub(crate) fn from_row(row: &impl DbRow) -> Result<Self, StoreError> {
        let limit = get_u64(row, "per_user_limit")?;
        Ok(Self {
            stock_total: get_u64(row, "stock_total")?,
            sold: get_u64(row, "sold")?,
            per_user_limit: u32::try_from(limit).unwrap_or(u32::MAX),
            inserted: 0,
        })
    }

    /// Refuses a record whose `n` is past the campaign's per-user limit: the
    /// ledger never hands out such a unit, so it can only be a bad record.
    pub(crate) fn admit(&self, r: &OrderRow<'_>) -> Result<(), StoreError> {
        if r.n == 0 || r.n > self.per_user_limit {
            return Err(StoreError::Invariant(format!(
                "order {} is unit {} of a user in campaign {}, whose limit is {}",
                r.order_id, r.n, r.campaign_id, self.per_user_limit
            )));
        }
        Ok(())
    }

    /// The error when the guarded `UPDATE` of `sold` matched no row.
    pub(crate) fn over_stock(&self, campaign: &str) -> StoreError {
        StoreError::Invariant(format!(
            "campaign {campaign}: {} new orders on top of {} sold would pass the stock of {}",
            self.inserted, self.sold, self.stock_total
        ))
    }
}

/// The error for a record of a campaign the store does not know.
pub(crate) fn unknown_campaign(r: &OrderRow<'_>) -> StoreError {
    StoreError::Invariant(format!(
        "order {} names unknown campaign {}",
        r.order_id, r.campaign_id
    ))
}

/// Raises a campaign's `sold` by `add` only if it stays within the stock;
/// bound as (add, id, add). No row matched means the batch would oversell.
pub(crate) const RAISE_SOLD_SQL: &str =
    "UPDATE campaigns SET sold = sold + ? WHERE id = ? AND sold + ? <= stock_total";

/// Commits the transaction when the batch succeeded, else rolls it back and
/// returns the batch's own error.
pub(crate) async fn finish<DB: Database>(
    tx: Transaction<'static, DB>,
    outcome: Result<BatchReport, StoreError>,
) -> Result<BatchReport, StoreError> {
    match outcome {
        Ok(report) => {
            // A commit that fails may or may not have landed; the retry that
            // `Unavailable` triggers is absorbed as duplicates either way.
            tx.commit()
                .await
                .map_err(|e| super::rows::db_err("committing a batch", e))?;
            Ok(report)
        }
        Err(e) => {
            if let Err(rb) = tx.rollback().await {
                // The connection is discarded or rolled back on drop anyway;
                // the error that matters to the caller is the first one.
                tracing::warn!(error = %rb, "rolling back a failed batch");
            }
            Err(e)
        }
    }
}
