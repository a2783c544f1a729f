//! The reconciliation check behind `GET /admin/v1/campaigns/{id}/reconcile`
//! (and `seckill admin reconcile`): the campaign's ledger against its
//! durable orders, read-only. A repair needs the whole deployment quiet
//! (see `crate::reconcile`), so it stays with `seckill reconcile --repair`,
//! which the answer names when one is needed.

use crate::api::{ReconcileCheck, UnitRef};
use crate::app::App;
use crate::error::ApiError;
use engine::ports::Hold;
use engine::reconcile::diff;

/// Most mismatched units a check lists (the counts are always whole).
pub const UNITS_LISTED_MAX: usize = 20;

pub async fn check(app: &App, id: &str) -> Result<ReconcileCheck, ApiError> {
    let live = super::campaigns::find_fresh(app, id).await?;
    let c = live.get();
    let now = app.clock.now_ms();
    let image = crate::reconcile::durable_image(&*app.store, &c)
        .await
        .map_err(|e| ApiError::unavailable(format!("reading the durable orders: {e:#}")))?;
    let held = app.ledger.holds(&c.id).await?;
    let snap = app.ledger.snapshot(&c.id).await?;
    let ledger_loaded = held.is_some() && snap.is_some();
    let d = diff(
        c.stock_total,
        &image.holds,
        &held.unwrap_or_default(),
        snap.map_or(0, |s| s.remaining),
    );
    let stats = super::campaigns::stats(app, id).await?;
    let clean = ledger_loaded && d.is_clean();
    let selling = c.control == engine::Control::Active && now < c.ends_at_ms;
    let advice = if clean {
        "the ledger matches the durable orders".to_string()
    } else if selling || stats.orders_queued > 0 {
        format!(
            "differences while the campaign is {} and {} orders are queued may be grabs in flight: \
             pause it, let the writers drain, and check again",
            if selling { "selling" } else { "not selling" },
            stats.orders_queued
        )
    } else {
        format!(
            "the ledger differs from the durable orders: run `seckill reconcile --campaign {} --repair` \
             (with the production config), which rebuilds it from them",
            c.id
        )
    };
    Ok(ReconcileCheck {
        campaign_id: c.id.clone(),
        selling,
        orders_queued: stats.orders_queued,
        ledger_loaded,
        stock_total: d.stock_total,
        durable: d.durable,
        held: d.held,
        stock_left: d.stock_left,
        conserved: d.conserved(),
        holds_without_record: d.holds_without_record.len() as u64,
        records_without_hold: d.records_without_hold.len() as u64,
        holds_without_record_sample: sample(&d.holds_without_record),
        records_without_hold_sample: sample(&d.records_without_hold),
        clean,
        advice,
    })
}

fn sample(units: &[Hold]) -> Vec<UnitRef> {
    units
        .iter()
        .take(UNITS_LISTED_MAX)
        .map(|h| UnitRef {
            user_id: h.user.clone(),
            n: h.n,
        })
        .collect()
}
