//! Request handlers, one module per audience.

pub mod admin;
pub mod buyer;
pub mod service;

use crate::app::App;
use crate::error::ApiError;
use crate::registry::LiveCampaign;
use engine::CampaignId;
use std::sync::Arc;

/// The live campaign named by a path segment, or 404 `campaign_not_found`.
pub fn campaign(app: &App, id: &str) -> Result<Arc<LiveCampaign>, ApiError> {
    CampaignId::parse(id)
        .ok()
        .and_then(|id| app.registry.get(&id))
        .ok_or_else(ApiError::campaign_not_found)
}

/// The public view of a campaign (`GET /api/v1/campaigns/{id}` and admin lists).
pub async fn campaign_view(app: &App, live: &LiveCampaign, now_ms: u64) -> serde_json::Value {
    let c = live.get();
    let sold_out = app.ledger.sold_out_hint(&c.id);
    let remaining = match app.ledger.snapshot(&c.id).await {
        Ok(s) => s.map(|s| s.remaining),
        Err(e) => {
            tracing::warn!(campaign = %c.id, error = %e, "ledger snapshot failed");
            None
        }
    };
    serde_json::json!({
        "id": c.id,
        "title": c.title,
        "price_cents": c.price_cents,
        "stock_total": c.stock_total,
        "starts_at_ms": c.starts_at_ms,
        "ends_at_ms": c.ends_at_ms,
        "state": c.state(now_ms, sold_out),
        "remaining_hint": remaining,
        "quiz": c.quiz,
        "per_user_limit": c.per_user_limit,
        "payment_window_s": c.payment_window_s,
    })
}
