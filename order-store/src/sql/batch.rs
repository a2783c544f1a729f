//! The backend-neutral steps of `write_batch`: converting records before the
//! transaction, the checks a batch must pass, the counting of what it did,
//! and how the transaction ends.
//!
//! The order of a batch, the same on both backends, all inside the batch's
//! transaction once its campaigns are locked against other writers:
//! 1. Each campaign must exist ([`Tally::from_row`]) and each record's `n`
//!    must be at least 1 ([`Tally::admit`]).
//! 2. The stored facts the batch touches are loaded ([`Stored`]): which of
//!    its order ids and units `(campaign, user, n)` are already stored, and,
//!    for the users whose unit numbers alone do not prove the limit holds,
//!    how many active orders they hold.
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

use super::rows::{get_u32, get_u64, to_i64, DbRow, OrderRow};
use engine::ports::{BatchReport, Checkpoint, LogRecord, StoreError};
use sqlx::{Database, Transaction};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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

/// Order ids, units and users per look-up of [`Stored`]: far below both
/// databases' placeholder limits, few round trips per batch.
pub(crate) const LOOKUP_CHUNK: usize = 500;

/// A unit as the unique key names it: `(campaign, user, n)`.
type Unit = (String, String, u32);

/// A value bound to a look-up.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

/// What a look-up's rows say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finds {
    /// `order_id` of stored orders.
    Ids,
    /// `user_id, n` of stored units.
    Units,
    /// `user_id` of users with a stored unit numbered past the limit.
    PastLimit,
    /// `user_id, count`: a user's stored active orders.
    ActiveCounts,
}

/// One `SELECT` the backend runs inside the batch's transaction, binding
/// `binds` in order, and hands every row back to [`Stored::absorb`].
#[derive(Debug)]
pub(crate) struct Lookup<'a> {
    finds: Finds,
    campaign: &'a str,
    pub sql: String,
    pub binds: Vec<Bind<'a>>,
}

/// What is already stored about a batch's records, read inside the batch's
/// transaction while its campaigns are locked, so it stays true until commit.
///
/// The look-ups read only what the checks need, through the unique key
/// `(campaign_id, user_id, n)`: which of the batch's ids and units exist,
/// and which of its users have a unit numbered past the campaign's limit.
/// A user whose units, stored and new, are all numbered within the limit
/// cannot pass it (the numbers are distinct), whatever their statuses; only
/// for the other users (someone buying again after a release) are statuses,
/// which are not in that key, read. So a batch costs a few index probes
/// rather than a read of every order its users ever made.
#[derive(Debug, Default)]
pub(crate) struct Stored {
    /// The batch's order ids that are stored (under any campaign or user).
    ids: HashSet<String>,
    /// The batch's units that are stored.
    units: HashSet<Unit>,
    /// Users with a stored unit numbered past their campaign's limit.
    past_limit: HashSet<(String, String)>,
    /// Stored active orders per (campaign, user), read for the users whose
    /// numbers alone do not prove the limit holds.
    active: HashMap<(String, String), u64>,
}

fn chunked_in(prefix: &str, count: usize, suffix: &str) -> String {
    format!(
        "{prefix} IN ({}){suffix}",
        vec!["?"; count.max(1)].join(", ")
    )
}

/// The statuses that release stock, as a SQL list of literals (they are
/// the engine's own constants, never input).
fn releasing_statuses_sql() -> String {
    use engine::OrderStatus::*;
    [Queued, Confirmed, Paid, Cancelled, Expired]
        .iter()
        .filter(|s| s.releases_stock())
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The distinct users of `rows` per campaign, with how many records each has
/// in the batch.
fn batch_users<'r>(rows: &[OrderRow<'r>]) -> BTreeMap<&'r str, BTreeMap<&'r str, u64>> {
    let mut users: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for r in rows {
        *users
            .entry(r.campaign_id)
            .or_default()
            .entry(r.user_id)
            .or_default() += 1;
    }
    users
}

impl Stored {
    /// The first look-ups of a batch: stored ids, stored units, and users
    /// with a stored unit past the limit.
    pub(crate) fn lookups<'r>(
        rows: &[OrderRow<'r>],
        tallies: &BTreeMap<&str, Tally>,
    ) -> Vec<Lookup<'r>> {
        let mut out = Self::key_lookups(rows);
        out.extend(Self::past_limit_lookups(rows, tallies));
        out
    }

    /// Which of the batch's order ids and units are stored.
    fn key_lookups<'r>(rows: &[OrderRow<'r>]) -> Vec<Lookup<'r>> {
        let mut out = Vec::new();
        let ids: BTreeSet<&str> = rows.iter().map(|r| r.order_id).collect();
        let ids: Vec<&str> = ids.into_iter().collect();
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            out.push(Lookup {
                finds: Finds::Ids,
                campaign: "",
                sql: chunked_in(
                    "SELECT order_id FROM orders WHERE order_id",
                    chunk.len(),
                    "",
                ),
                binds: chunk.iter().map(|id| Bind::Text(id)).collect(),
            });
        }
        let mut units: BTreeMap<&str, BTreeSet<(&str, u32)>> = BTreeMap::new();
        for r in rows {
            units
                .entry(r.campaign_id)
                .or_default()
                .insert((r.user_id, r.n));
        }
        for (campaign, units) in &units {
            let units: Vec<&(&str, u32)> = units.iter().collect();
            for chunk in units.chunks(LOOKUP_CHUNK) {
                // Each term names the whole unique key, so both planners
                // answer it with one index probe per unit (a shared
                // `campaign_id = ?` outside the OR lets SQLite scan the
                // campaign instead).
                let terms =
                    vec!["(campaign_id = ? AND user_id = ? AND n = ?)"; chunk.len()].join(" OR ");
                let mut binds = Vec::with_capacity(chunk.len() * 3);
                for (user, n) in chunk {
                    binds.push(Bind::Text(campaign));
                    binds.push(Bind::Text(user));
                    binds.push(Bind::Int(i64::from(*n)));
                }
                out.push(Lookup {
                    finds: Finds::Units,
                    campaign,
                    sql: format!("SELECT user_id, n FROM orders WHERE {terms}"),
                    binds,
                });
            }
        }
        out
    }

    /// Which of the users of `rows` have a stored unit numbered past their
    /// campaign's limit.
    pub(crate) fn past_limit_lookups<'r>(
        rows: &[OrderRow<'r>],
        tallies: &BTreeMap<&str, Tally>,
    ) -> Vec<Lookup<'r>> {
        let mut out = Vec::new();
        for (campaign, users) in batch_users(rows) {
            let users: Vec<&str> = users.into_keys().collect();
            let limit = tallies
                .get(campaign)
                .map_or(0, |t| i64::from(t.per_user_limit));
            for chunk in users.chunks(LOOKUP_CHUNK) {
                let mut binds = vec![Bind::Text(campaign), Bind::Int(limit)];
                binds.extend(chunk.iter().map(|u| Bind::Text(u)));
                out.push(Lookup {
                    finds: Finds::PastLimit,
                    campaign,
                    sql: chunked_in(
                        "SELECT DISTINCT user_id FROM orders WHERE campaign_id = ? AND n > ? \
                         AND user_id",
                        chunk.len(),
                        "",
                    ),
                    binds,
                });
            }
        }
        out
    }

    /// The look-ups of active orders, for the users whose numbers do not
    /// prove the limit holds: a record of the batch or a stored unit is
    /// numbered past the limit.
    pub(crate) fn active_lookups<'r>(
        &mut self,
        rows: &[OrderRow<'r>],
        tallies: &BTreeMap<&str, Tally>,
    ) -> Vec<Lookup<'r>> {
        let mut out = Vec::new();
        let mut past: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for r in rows {
            let limit = tallies.get(r.campaign_id).map_or(0, |t| t.per_user_limit);
            let stored_past = self
                .past_limit
                .contains(&(r.campaign_id.to_owned(), r.user_id.to_owned()));
            if r.n > limit || stored_past {
                past.entry(r.campaign_id).or_default().insert(r.user_id);
            }
        }
        for (campaign, users) in past {
            let near: Vec<&str> = users.into_iter().collect();
            // Users asked about start at 0: a user with no active order
            // has no row in the answer.
            for user in &near {
                self.active
                    .insert((campaign.to_owned(), (*user).to_owned()), 0);
            }
            let active = format!(" AND status NOT IN ({})", releasing_statuses_sql());
            out.extend(Self::count_lookups(
                Finds::ActiveCounts,
                campaign,
                &near,
                &active,
            ));
        }
        out
    }

    fn count_lookups<'r>(
        finds: Finds,
        campaign: &'r str,
        users: &[&'r str],
        filter: &str,
    ) -> Vec<Lookup<'r>> {
        users
            .chunks(LOOKUP_CHUNK)
            .map(|chunk| {
                let mut binds = vec![Bind::Text(campaign)];
                binds.extend(chunk.iter().map(|u| Bind::Text(u)));
                Lookup {
                    finds,
                    campaign,
                    sql: chunked_in(
                        "SELECT user_id, COUNT(*) AS count FROM orders WHERE campaign_id = ? AND user_id",
                        chunk.len(),
                        &format!("{filter} GROUP BY user_id"),
                    ),
                    binds,
                }
            })
            .collect()
    }

    /// Notes one row of `lookup`.
    pub(crate) fn absorb(
        &mut self,
        lookup: &Lookup<'_>,
        row: &impl DbRow,
    ) -> Result<(), StoreError> {
        let campaign = lookup.campaign.to_owned();
        match lookup.finds {
            Finds::Ids => {
                self.ids.insert(row.text("order_id")?);
            }
            Finds::Units => {
                self.units
                    .insert((campaign, row.text("user_id")?, get_u32(row, "n")?));
            }
            Finds::PastLimit => {
                self.past_limit.insert((campaign, row.text("user_id")?));
            }
            Finds::ActiveCounts => {
                self.active
                    .insert((campaign, row.text("user_id")?), get_u64(row, "count")?);
            }
        }
        Ok(())
    }

    fn holds(&self, r: &OrderRow<'_>) -> bool {
        self.ids.contains(r.order_id)
            || self
                .units
                .contains(&(r.campaign_id.to_owned(), r.user_id.to_owned(), r.n))
    }

    /// The user's stored active orders, when they had to be read (see
    /// [`Stored`]); `None` when the numbers alone prove the limit holds.
    fn active(&self, campaign: &str, user: &str) -> Option<u64> {
        self.active
            .get(&(campaign.to_owned(), user.to_owned()))
            .copied()
    }
}

/// Defines `run_lookup` for one backend's transaction type: runs a
/// [`Lookup`] and hands its rows to [`Stored::absorb`]. A macro because
/// sqlx's executor bounds make a generic function harder to read than the
/// body it would share.
macro_rules! run_lookup_fn {
    ($db:ty) => {
        async fn run_lookup(
            tx: &mut sqlx::Transaction<'static, $db>,
            lookup: &$crate::sql::batch::Lookup<'_>,
            stored: &mut $crate::sql::batch::Stored,
        ) -> Result<(), engine::ports::StoreError> {
            let mut q = sqlx::query(&lookup.sql);
            for b in &lookup.binds {
                q = match *b {
                    $crate::sql::batch::Bind::Text(t) => q.bind(t),
                    $crate::sql::batch::Bind::Int(i) => q.bind(i),
                };
            }
            let found = q
                .fetch_all(&mut **tx)
                .await
                .map_err(|e| $crate::sql::rows::db_err("looking up stored orders", e))?;
            for row in &found {
                stored.absorb(lookup, row)?;
            }
            Ok(())
        }
    };
}
pub(crate) use run_lookup_fn;

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
        // Not read: every unit of the user, stored or new, is numbered
        // within the limit, and the numbers are distinct, so the stored
        // active ones fit beside the new ones; `new <= limit` still holds
        // below.
        let held = stored.active(campaign, user).unwrap_or(0);
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

/// For a backend that inserted first (SQLite, under its single write lock):
/// `stored` was read after the insert, so its active counts include the new
/// rows; any user past the limit refuses the batch (the caller rolls back).
pub(crate) fn check_limits_after_insert(
    stored: &Stored,
    tallies: &BTreeMap<&str, Tally>,
) -> Result<(), StoreError> {
    for ((campaign, user), active) in &stored.active {
        let limit = tallies
            .get(campaign.as_str())
            .map_or(0, |t| u64::from(t.per_user_limit));
        if *active > limit {
            return Err(StoreError::Invariant(format!(
                "the batch would give user {user} {active} active orders in campaign \
                 {campaign}, whose per-user limit is {limit}"
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
