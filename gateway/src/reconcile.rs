//! `seckill reconcile`: compares the ledger with the durable records of a
//! campaign and, with `--repair`, rebuilds the ledger from the records.
//!
//! The records are the order store's rows: orders that are not cancelled or
//! expired are holds; the others only spend their unit numbers. Besides
//! which holds exist, the ledger is checked against itself: stock left plus
//! holds must equal the campaign's stock (a lost reply can leak a unit
//! without changing the holds).
//!
//! A repair must not run while any gateway may still deliver a record of
//! the campaign: a record still in a gateway's producer would land after the
//! repair returned its unit, and the unit would be sold twice. So the
//! campaign must be paused or over, and a repair first waits a quiet period
//! ([`quiet_period_ms`]) long enough for every grab admitted before the
//! pause to have reached the log or failed for good; then the log must be
//! drained into the store (the writers' lag is zero). `--force` skips these
//! checks and is for operators who know every gateway is stopped.

use crate::app::{now_ms, LEDGER_CALL_MAX_MS};
use crate::config::Production;
use crate::production::{connect_ledger, connect_store, CAMPAIGN_VIEW_MAX_AGE_MS};
use anyhow::{bail, Context};
use engine::ports::{Hold, LedgerImage, OrderStore};
use engine::reconcile::{diff, Diff};
use engine::{Campaign, CampaignId, Control};
use std::time::Duration;

/// What the command found and did.
#[derive(Debug)]
pub struct Report {
    pub diff: Diff,
    /// Records in the log the writers have not stored yet (all campaigns).
    pub log_lag: u64,
    pub ledger_was_loaded: bool,
    pub repaired: bool,
    /// How long the repair waited for in-flight grabs to settle.
    pub waited: Duration,
    /// The generation of the rebuilt ledger data, when repaired.
    pub generation: Option<u64>,
}

/// How long after a pause a gateway may still deliver an order record of
/// the campaign: a gateway sells on a campaign view at most
/// `CAMPAIGN_VIEW_MAX_AGE_MS` old, a grab's reservation takes at most
/// `LEDGER_CALL_MAX_MS`, and its record is delivered or given up by the
/// producer within `message_timeout_ms` (the same for every gateway: they
/// share the config). One second on top covers the trip between processes.
/// It assumes no gateway process is suspended for longer than this.
pub fn quiet_period_ms(p: &Production) -> u64 {
    CAMPAIGN_VIEW_MAX_AGE_MS + LEDGER_CALL_MAX_MS + p.kafka_message_timeout_ms + 1_000
}

fn is_live(c: &Campaign, now: u64) -> bool {
    c.control == Control::Active && now < c.ends_at_ms
}

async fn campaign_of(store: &dyn OrderStore, id: &CampaignId) -> anyhow::Result<Campaign> {
    match store.campaigns().await?.into_iter().find(|c| &c.id == id) {
        Some(c) => Ok(c),
        None => bail!("no campaign {id} in the order store"),
    }
}

/// The ledger image the durable orders describe.
pub(crate) async fn durable_image(
    store: &dyn OrderStore,
    c: &Campaign,
) -> anyhow::Result<LedgerImage> {
    let mut image = LedgerImage {
        total: c.stock_total,
        buckets: c.stock_buckets,
        ..LedgerImage::default()
    };
    for o in store
        .orders(&c.id)
        .await
        .context("reading the campaign's orders")?
    {
        let unit = Hold {
            user: o.record.user_id,
            n: o.record.n,
        };
        if o.status.releases_stock() {
            image.retired.push(unit);
        } else {
            image.holds.push(unit);
        }
    }
    Ok(image)
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
    let live_error = |id: &CampaignId| {
        anyhow::anyhow!(
            "campaign {id} is live: pause or stop it first (or pass --force), \
             so that no grab changes the ledger while it is compared"
        )
    };
    if is_live(&campaign_of(&*store, campaign).await?, now_ms()) && !force {
        return Err(live_error(campaign));
    }
    let mut waited = Duration::ZERO;
    if repair && !force {
        // Grabs admitted before the pause may still be on their way to the
        // log; wait until none can be, then check the pause still holds.
        let quiet = Duration::from_millis(quiet_period_ms(p));
        eprintln!(
            "waiting {} s for grabs admitted before the pause to settle (--force skips this)",
            quiet.as_secs()
        );
        tokio::time::sleep(quiet).await;
        waited = quiet;
        if is_live(&campaign_of(&*store, campaign).await?, now_ms()) {
            bail!("campaign {campaign} was resumed while reconcile waited; nothing repaired");
        }
    }
    let c = campaign_of(&*store, campaign).await?;
    let log_lag = order_log::kafka::group_lag(&p.kafka_brokers, &p.kafka_topic, &p.kafka_group_id)
        .await
        .context("reading the writers' lag on the order log")?;
    let mut image = durable_image(&*store, &c).await?;
    let held = ledger.holds(campaign).await.context("reading the ledger")?;
    let snap = ledger
        .snapshot(campaign)
        .await
        .context("reading the ledger")?;
    let ledger_was_loaded = held.is_some() && snap.is_some();
    let stock_left = snap.map_or(0, |s| s.remaining);
    let d = diff(
        c.stock_total,
        &image.holds,
        &held.unwrap_or_default(),
        stock_left,
    );
    let needs = !d.is_clean() || !ledger_was_loaded;
    if repair && needs && log_lag > 0 && !force {
        bail!(
            "{log_lag} records in the order log are not in the store yet: let the writers drain \
             (or pass --force) before repairing, or they would be counted as unsold"
        );
    }
    let mut generation = None;
    if repair && needs {
        // Gateways follow a new generation and distrust older data.
        image.generation = store
            .next_ledger_generation(campaign)
            .await
            .context("renewing the ledger generation")?;
        ledger
            .restore(campaign, &image)
            .await
            .context("restoring the ledger")?;
        generation = Some(image.generation);
    }
    Ok(Report {
        diff: d,
        log_lag,
        ledger_was_loaded,
        repaired: repair && needs,
        waited,
        generation,
    })
}
