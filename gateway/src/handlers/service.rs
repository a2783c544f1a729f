//! Service endpoints: health, readiness, metrics, OpenAPI.

use crate::app::App;
use crate::web::{self, Resp};
use hyper::StatusCode;
use std::fmt::Write;
use std::sync::atomic::Ordering;

pub fn healthz() -> Resp {
    web::json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
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
        Ok(_) => web::json(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        Err(e) => web::error(&crate::error::ApiError::unavailable(format!(
            "order store: {e}"
        ))),
    }
}

/// Prometheus text format, per campaign.
pub async fn metrics(app: &App) -> Resp {
    let mut out = String::new();
    let _ = writeln!(out, "# TYPE seckill_orders_logged_total counter");
    let mut rejected = String::from("# TYPE seckill_grabs_rejected_total counter\n");
    let mut persisted = String::from("# TYPE seckill_orders_persisted_total counter\n");
    let mut remaining = String::from("# TYPE seckill_stock_remaining gauge\n");
    for live in app.registry.all() {
        let c = live.get();
        let id = c.id.as_str();
        let _ = writeln!(
            out,
            "seckill_orders_logged_total{{campaign=\"{id}\"}} {}",
            live.counters.logged.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            persisted,
            "seckill_orders_persisted_total{{campaign=\"{id}\"}} {}",
            live.counters.persisted.load(Ordering::Relaxed)
        );
        for (code, n) in live.counters.rejected() {
            let _ = writeln!(
                rejected,
                "seckill_grabs_rejected_total{{campaign=\"{id}\",code=\"{code}\"}} {n}"
            );
        }
        if let Ok(Some(s)) = app.ledger.snapshot(&c.id).await {
            let _ = writeln!(
                remaining,
                "seckill_stock_remaining{{campaign=\"{id}\"}} {}",
                s.remaining
            );
        }
    }
    let _ = writeln!(
        out,
        "# TYPE seckill_orders_indexed gauge\nseckill_orders_indexed {}",
        app.orders.len()
    );
    let _ = writeln!(
        out,
        "# TYPE seckill_grabs_inflight gauge\nseckill_grabs_inflight {}",
        app.limits.grabs_inflight_max - app.grab_permits.available_permits()
    );
    let _ = writeln!(
        out,
        "# TYPE seckill_order_log_unsettled gauge\nseckill_order_log_unsettled {}",
        app.log.unsettled()
    );
    let _ = writeln!(out, "# TYPE seckill_ledger_calls_total counter");
    for op in crate::metered::LedgerOp::ALL {
        let _ = writeln!(
            out,
            "seckill_ledger_calls_total{{op=\"{}\"}} {}",
            op.as_str(),
            app.ledger_calls.get(op)
        );
    }
    let _ = writeln!(out, "# TYPE seckill_funnel_refused_total counter");
    for (stage, code, n) in app.funnel.seen() {
        let _ = writeln!(
            out,
            "seckill_funnel_refused_total{{stage=\"{stage}\",code=\"{code}\"}} {n}"
        );
    }
    app.rate.metrics(&mut out);
    app.hot.metrics(&mut out);
    out.push_str(&crate::shed::metrics());
    out.push_str(&persisted);
    out.push_str(&rejected);
    out.push_str(&remaining);
    web::bytes(StatusCode::OK, "text/plain; version=0.0.4", out)
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
