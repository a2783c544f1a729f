//! `seckill reconcile`: compares the ledger with the durable records of a
//! campaign and, with `--repair`, rebuilds the ledger from the records.
//!
//! The records are the order store's rows (orders that are not cancelled or
//! expired). The log is checked too: records the writers have not stored
//! yet (the group's lag) would look like holds without an order, so a repair
//! is refused until the lag is zero. The campaign must be paused or over
//! (unless `--force`) so no grab moves the ledger meanwhile.

use crate::app::now_ms;
use crate::config::Production;
use crate::production::{connect_ledger, connect_store};
use anyhow::{bail, Context};
use engine::ports::Hold;
use engine::reconcile::{diff, Diff};
use engine::{CampaignId, Control};

/// What the command found and did.
#[derive(Debug)]
pub struct Report {
    pub diff: Diff,
    /// Records in the log the writers have not stored yet (all campaigns).
    pub log_lag: u64,
    pub ledger_was_loaded: bool,
    pub repaired: bool,
}

pub async fn reconcile(
    p: &Production,
    campaign: &CampaignId,
    repair: bool,
    force: bool,
) -> anyhow::Result<Report> {
    let store = connect_store(p).await?;
    let (ledger, refresher) = connect_ledger(p, p.redis_buckets).await?;
    refresher.abort();
    let Some(c) = store
        .campaigns()
        .await?
        .into_iter()
        .find(|c| &c.id == campaign)
    else {
        bail!("no campaign {campaign} in the order store");
    };
    let live = c.control == Control::Active && now_ms() < c.ends_at_ms;
    if live && !force {
        bail!(
            "campaign {campaign} is live: pause or stop it first (or pass --force), \
             so that no grab changes the ledger while it is compared"
        );
    }
    let durable: Vec<Hold> = store
        .orders(campaign)
        .await
        .context("reading the campaign's orders")?
        .into_iter()
        .filter(|o| !o.status.releases_stock())
        .map(|o| Hold {
            user: o.record.user_id,
            n: o.record.n,
        })
        .collect();
    let log_lag = order_log::kafka::group_lag(&p.kafka_brokers, &p.kafka_topic, &p.kafka_group_id)
        .await
        .context("reading the writers' lag on the order log")?;
    let held = ledger.holds(campaign).await.context("reading the ledger")?;
    let ledger_was_loaded = held.is_some();
    let d = diff(c.stock_total, &durable, &held.unwrap_or_default());
    let needs = !d.is_clean() || !ledger_was_loaded;
    if repair && needs && log_lag > 0 && !force {
        bail!(
            "{log_lag} records in the order log are not in the store yet: let the writers drain \
             (or pass --force) before repairing, or they would be counted as unsold"
        );
    }
    if repair && needs {
        ledger
            .restore(campaign, c.stock_total, &durable, c.stock_buckets)
            .await
            .context("restoring the ledger")?;
    }
    Ok(Report {
        diff: d,
        log_lag,
        ledger_was_loaded,
        repaired: repair && needs,
    })
}
