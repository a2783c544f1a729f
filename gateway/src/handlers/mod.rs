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

/// How old a buyer-facing `remaining_hint` may be: the status endpoint is
/// cacheable for about a second anyway, and a crowd polling it must not turn
/// into a ledger round trip per request.
pub const REMAINING_HINT_MAX_AGE_MS: u64 = 1_000;

/// The public view of a campaign (`GET /api/v1/campaigns/{id}` and admin
/// lists). `fresh` reads the ledger now (operators); otherwise the remaining
/// count may be up to `REMAINING_HINT_MAX_AGE_MS` old (buyers).
pub async fn campaign_view(
    app: &App,
    live: &LiveCampaign,
    now_ms: u64,
    fresh: bool,
) -> serde_json::Value {
    let c = live.get();
    let sold_out = app.ledger.sold_out_hint(&c.id);
    let cached = (!fresh)
        .then(|| live.remaining_hint(now_ms, REMAINING_HINT_MAX_AGE_MS))
        .flatten();
    let remaining = match cached {
        Some(hint) => hint,
        None => {
            let read = match app.ledger.snapshot(&c.id).await {
                Ok(s) => s.map(|s| s.remaining),
                Err(e) => {
                    tracing::warn!(campaign = %c.id, error = %e, "ledger snapshot failed");
                    None
                }
            };
            live.set_remaining_hint(now_ms, read);
            read
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
        "hidden_path": c.hidden_path,
        "per_user_limit": c.per_user_limit,
        "payment_window_s": c.payment_window_s,
        "stock_buckets": c.stock_buckets,
    })
}
