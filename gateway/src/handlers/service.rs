//! Service endpoints: health, readiness, metrics, OpenAPI.

use crate::app::App;
use crate::metrics::Scrape;
use crate::web::{self, Resp};
use hyper::StatusCode;
use std::sync::atomic::Ordering;

pub fn healthz() -> Resp {
    web::json(
        StatusCode::OK,
        &crate::api::Health {
            status: "ok".into(),
        },
    )
}

/// Ready when the order log takes appends, the ledger and the order store
/// answer, and (embedded) the order writer runs; 503 otherwise.
pub async fn readyz(app: &App) -> Resp {
    if !app.writer_running.load(Ordering::SeqCst) {
        return web::error(&crate::error::ApiError::unavailable(
            "the order writer has stopped; orders stay queued until a restart",
        ));
    }
    if app.registry.overflowed() {
        return web::error(&crate::error::ApiError::unavailable(format!(
            "this gateway holds at most {} campaigns and had to refuse one",
            crate::registry::CAMPAIGNS_MAX
        )));
    }
    if let Some(why) = app.log.unhealthy() {
        return web::error(&crate::error::ApiError::unavailable(why));
    }
    // A look-up of a campaign that does not exist still needs the ledger
    // (Redis in production) to answer.
    let probe = engine::CampaignId::parse("readyz-probe").map_err(|_| ());
    if let Ok(probe) = probe {
        if let Err(e) = app.ledger.snapshot(&probe).await {
            return web::error(&crate::error::ApiError::unavailable(format!(
                "stock ledger: {e}"
            )));
        }
    }
    match app.store.campaigns().await {
        Ok(_) => web::json(
            StatusCode::OK,
            &crate::api::Health {
                status: "ready".into(),
            },
        ),
        Err(e) => web::error(&crate::error::ApiError::unavailable(format!(
            "order store: {e}"
        ))),
    }
}

/// Prometheus text format (`crate::metrics`): per campaign, per funnel
/// stage, queues, ledger calls, rate limits, hot items, sheds, and the
/// latency histograms.
pub async fn metrics(app: &App) -> Resp {
    let scrape = Scrape::new();
    let logged = scrape.counter(
        "seckill_orders_logged_total",
        "Orders durably logged (accepted grabs), per campaign.",
        &["campaign"],
    );
    let persisted = scrape.counter(
        "seckill_orders_persisted_total",
        "Orders written to the order store, per campaign.",
        &["campaign"],
    );
    let lag = scrape.gauge(
        "seckill_writer_lag",
        "Orders logged but not yet in the order store (the writer's lag), per campaign.",
        &["campaign"],
    );
    let rejected = scrape.counter(
        "seckill_grabs_rejected_total",
        "Grabs refused by a business rule, per campaign and code.",
        &["campaign", "code"],
    );
    let remaining = scrape.gauge(
        "seckill_stock_remaining",
        "Units the stock ledger still holds for sale, per campaign.",
        &["campaign"],
    );
    for live in app.registry.all() {
        let c = live.get();
        let id = c.id.as_str();
        let (l, p) = (
            live.counters.logged.load(Ordering::Relaxed),
            live.counters.persisted.load(Ordering::Relaxed),
        );
        logged.with_label_values(&[id]).inc_by(l);
        persisted.with_label_values(&[id]).inc_by(p);
        lag.with_label_values(&[id]).set(l.saturating_sub(p) as f64);
        for (code, n) in live.counters.rejected() {
            rejected.with_label_values(&[id, code]).inc_by(n);
        }
        if let Ok(Some(s)) = app.ledger.snapshot(&c.id).await {
            remaining.with_label_values(&[id]).set(s.remaining as f64);
        }
    }
    scrape.value(
        "seckill_orders_indexed",
        "Orders in this gateway's order index.",
        app.orders.len() as f64,
    );
    scrape.value(
        "seckill_grabs_inflight",
        "Grabs between admission and answer (queue depth of the in-flight cap).",
        (app.limits.grabs_inflight_max - app.grab_permits.available_permits()) as f64,
    );
    scrape.value(
        "seckill_order_log_unsettled",
        "Order log appends whose outcome is not known yet.",
        app.log.unsettled() as f64,
    );
    let calls = scrape.counter(
        "seckill_ledger_calls_total",
        "Calls that reached the stock ledger backend, by operation.",
        &["op"],
    );
    for op in crate::metered::LedgerOp::ALL {
        calls
            .with_label_values(&[op.as_str()])
            .inc_by(app.ledger_calls.get(op));
    }
    let refused = scrape.counter(
        "seckill_funnel_refused_total",
        "Grabs refused, by the funnel stage that refused them and code.",
        &["stage", "code"],
    );
    for (stage, code, n) in app.funnel.seen() {
        refused.with_label_values(&[stage, code]).inc_by(n);
    }
    let expiry = &app.expiry;
    scrape.total(
        "seckill_orders_expired_total",
        "Unpaid orders this process's expiry sweeper moved to expired.",
        expiry.expired.load(Ordering::Relaxed),
    );
    scrape.total(
        "seckill_units_released_total",
        "Units this process's expiry sweeper gave back to the stock ledger.",
        expiry.released.load(Ordering::Relaxed),
    );
    scrape.total(
        "seckill_expiry_sweeps_total",
        "Expiry sweeps run by this process.",
        expiry.sweeps.load(Ordering::Relaxed),
    );
    scrape.total(
        "seckill_expiry_sweep_failures_total",
        "Expiry sweeps that stopped on a store or ledger error (retried next tick).",
        expiry.failures.load(Ordering::Relaxed),
    );
    app.rate.metrics(&scrape);
    app.hot.metrics(&scrape);
    crate::shed::metrics(&scrape);
    web::bytes(
        StatusCode::OK,
        crate::metrics::CONTENT_TYPE,
        scrape.encode(),
    )
}

pub fn openapi() -> Resp {
    web::with_cache(
        web::bytes(
            StatusCode::OK,
            "application/json",
            include_str!("../../openapi.json"),
        ),
        "public, max-age=60",
    )
}
