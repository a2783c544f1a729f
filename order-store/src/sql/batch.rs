//! The backend-neutral steps of `write_batch`: converting records before the
//! transaction, the checks a batch must pass, the counting of what it did,
//! and how the transaction ends.
//!
//! The order of a batch, the same on both backends, all inside the batch's
//! transaction once its campaigns are locked against other writers:
//! 1. Each campaign must exist ([`Tally::from_row`]) and each record's `n`
//!    must be at least 1 ([`Tally::admit`]).
//! 2. The stored facts the batch touches are loaded ([`Stored`]): which of
//!    its order ids and units `(campaign, user, n)` are already stored, and
//!    how many active orders each of its users holds in each campaign.
//! 3. [`fresh_rows`] drops duplicates (of stored rows, by either unique key,
//!    and repeats inside the batch); they are absorbed, never counted twice.
//! 4. [`check_active_limits`] applies the unit rule shared by ledger, store,
//!    replay and reconciliation: the per-user limit bounds a user's *active*
//!    orders (those whose status does not release stock: queued, confirmed,
//!    paid), while `n` is a per-(campaign, user) counter that never repeats
//!    and may pass the limit after releases (an expired or cancelled order,
//!    a failed append or delivery given back by the ledger). A batch whose
//!    new records would give a user more active orders than the limit
//!    (stored active ones plus the batch's new ones) is refused whole.
//! 5. The new rows are inserted and `sold` is raised by their number under
//!    the guard `sold + k <= stock_total`.
//!
//! Note, left for a later change: `sold` counts every order ever written,
//! and a release (expiry, cancel) does not lower it. A user's re-grab after
//! an expiry therefore raises `sold` again, and once `sold` has reached the
//! stock the guard refuses it even though the ledger had a unit to give.

use super::rows::{get_u32, get_u64, status_from_row, to_i64, DbRow, OrderRow};
use engine::ports::{BatchReport, Checkpoint, LogRecord, StoreError};
use sqlx::{Database, Transaction};
use std::collections::{BTreeMap, HashMap, HashSet};
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

    /// Refuses a record with unit number 0: units are numbered from 1, so
    /// it can only be a bad record. Any other `n` may be fine: whether the
    /// unit fits the per-user limit depends on the user's active orders
    /// ([`check_active_limits`]), not on `n`.
    pub(crate) fn admit(&self, r: &OrderRow<'_>) -> Result<(), StoreError> {
        if r.n == 0 {
            return Err(StoreError::Invariant(format!(
                "order {} of user {} in campaign {} has unit number 0; units start at 1",
                r.order_id, r.user_id, r.campaign_id
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

/// Order ids and users per `IN` list of the look-ups of [`Stored`]: far
/// below both databases' placeholder limits, few round trips per batch.
pub(crate) const LOOKUP_CHUNK: usize = 500;

/// A unit as the unique key names it: `(campaign, user, n)`.
type Unit = (String, String, u32);

/// What is already stored about a batch's records, read inside the batch's
/// transaction while its campaigns are locked, so it stays true until commit.
#[derive(Debug, Default)]
pub(crate) struct Stored {
    /// The batch's order ids that are stored (under any campaign or user).
    ids: HashSet<String>,
    /// Every stored unit of the batch's users in the batch's campaigns.
    units: HashSet<Unit>,
    /// Stored active orders (status not releasing stock) per (campaign, user).
    active: HashMap<(String, String), u64>,
}

impl Stored {
    /// The distinct order ids of `rows`, for [`stored_ids_sql`] in chunks.
    pub(crate) fn ids_to_look_up<'r>(rows: &[OrderRow<'r>]) -> Vec<&'r str> {
        let ids: HashSet<&str> = rows.iter().map(|r| r.order_id).collect();
        ids.into_iter().collect()
    }

    /// The distinct users of `rows` per campaign, for [`stored_units_sql`]
    /// in chunks.
    pub(crate) fn users_to_look_up<'r>(rows: &[OrderRow<'r>]) -> BTreeMap<&'r str, Vec<&'r str>> {
        let mut users: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
        for r in rows {
            users.entry(r.campaign_id).or_default().insert(r.user_id);
        }
        users
            .into_iter()
            .map(|(c, u)| (c, u.into_iter().collect()))
            .collect()
    }

    /// Notes one row of [`stored_ids_sql`].
    pub(crate) fn add_id(&mut self, row: &impl DbRow) -> Result<(), StoreError> {
        self.ids.insert(row.text("order_id")?);
        Ok(())
    }

    /// Notes one row of [`stored_units_sql`] for `campaign`.
    pub(crate) fn add_unit(&mut self, campaign: &str, row: &impl DbRow) -> Result<(), StoreError> {
        let user = row.text("user_id")?;
        let n = get_u32(row, "n")?;
        if !status_from_row(row)?.releases_stock() {
            *self
                .active
                .entry((campaign.to_owned(), user.clone()))
                .or_default() += 1;
        }
        self.units.insert((campaign.to_owned(), user, n));
        Ok(())
    }

    fn holds(&self, r: &OrderRow<'_>) -> bool {
        self.ids.contains(r.order_id)
            || self
                .units
                .contains(&(r.campaign_id.to_owned(), r.user_id.to_owned(), r.n))
    }

    fn active(&self, campaign: &str, user: &str) -> u64 {
        self.active
            .get(&(campaign.to_owned(), user.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

/// `SELECT` of which of `count` order ids (bound in order) are stored.
pub(crate) fn stored_ids_sql(count: usize) -> String {
    format!(
        "SELECT order_id FROM orders WHERE order_id IN ({})",
        placeholders(count)
    )
}

/// `SELECT` of every stored order of `count` users (bound after the
/// campaign) in one campaign, served by the unique key's leading columns.
pub(crate) fn stored_units_sql(count: usize) -> String {
    format!(
        "SELECT user_id, n, status FROM orders WHERE campaign_id = ? AND user_id IN ({})",
        placeholders(count)
    )
}

fn placeholders(count: usize) -> String {
    vec!["?"; count.max(1)].join(", ")
}

/// The records that are neither stored yet (by either unique key) nor
/// repeats of an earlier record of this batch, in batch order.
pub(crate) fn fresh_rows<'b, 'r>(
    rows: &'b [OrderRow<'r>],
    stored: &Stored,
) -> Vec<&'b OrderRow<'r>> {
    let mut seen_ids: HashSet<&str> = HashSet::new();
    let mut seen_units: HashSet<(&str, &str, u32)> = HashSet::new();
    let mut fresh = Vec::with_capacity(rows.len());
    for r in rows {
        // Both sets are updated unconditionally: a record repeating either key
        // of an earlier one is a duplicate even if the other key differs.
        let repeated =
            !seen_ids.insert(r.order_id) | !seen_units.insert((r.campaign_id, r.user_id, r.n));
        if !stored.holds(r) && !repeated {
            fresh.push(r);
        }
    }
    fresh
}

/// Refuses the batch when its new records (all active: they are stored as
/// confirmed) would give a user more active orders in a campaign than its
/// per-user limit, counting the user's stored active orders.
pub(crate) fn check_active_limits(
    fresh: &[&OrderRow<'_>],
    stored: &Stored,
    tallies: &BTreeMap<&str, Tally>,
) -> Result<(), StoreError> {
    let mut new_units: BTreeMap<(&str, &str), (u64, &OrderRow<'_>)> = BTreeMap::new();
    for r in fresh {
        let entry = new_units
            .entry((r.campaign_id, r.user_id))
            .or_insert((0, r));
        *entry = (entry.0 + 1, r);
    }
    for ((campaign, user), (new, last)) in new_units {
        let tally = tallies
            .get(campaign)
            .ok_or_else(|| unknown_campaign(last))?;
        let held = stored.active(campaign, user);
        let limit = u64::from(tally.per_user_limit);
        let total = held.saturating_add(new);
        if total > limit {
            return Err(StoreError::Invariant(format!(
                "order {} (unit {}) would give user {user} {} active orders in campaign \
                 {campaign} ({held} stored, {new} in this batch), whose per-user limit is {limit}",
                last.order_id, last.n, total
            )));
        }
    }
    Ok(())
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
