//! Operator endpoints, all behind the admin bearer token.

use crate::app::App;
use crate::error::{ApiError, Code};
use crate::registry::CAMPAIGNS_MAX;
use crate::web::{self, Resp};
use engine::ports::StoreError;
use engine::{Campaign, CampaignId, CampaignSpec, Control, OrderStatus, UserId};
use hyper::StatusCode;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Most tokens one `POST /admin/v1/tokens` call issues.
pub const TOKENS_PER_CALL_MAX: usize = 10_000;

pub async fn create(app: &App, headers: &http::HeaderMap, body: &[u8]) -> Result<Resp, ApiError> {
    let spec: CampaignSpec = web::parse_json(headers, body, false)?;
    let fallback = CampaignId::parse(&format!(
        "c{:x}{:04x}",
        app.clock.now_ms(),
        rand::random::<u16>()
    ))
    .map_err(|_| ApiError::internal())?;
    let campaign = spec
        .validate(fallback)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let id = campaign.id.clone();
    create_campaign(app, campaign).await?;
    tracing::info!(campaign = %id, "campaign created");
    let live = super::campaign(app, id.as_str())?;
    let view = admin_view(app, &live, app.clock.now_ms()).await;
    Ok(web::json(StatusCode::CREATED, &view))
}

/// Makes a campaign durable, loads its stock, then makes it visible, in
/// that order, so no grab can see a campaign whose stock is not loaded.
pub async fn create_campaign(app: &App, campaign: Campaign) -> Result<(), ApiError> {
    if app.registry.get(&campaign.id).is_some() {
        return Err(exists(&campaign.id));
    }
    // Every gateway must be able to hold every campaign: in production the
    // count that matters is the shared store's, not this gateway's.
    let count = if app.shared_ledger {
        app.store.campaigns().await?.len()
    } else {
        app.registry.len()
    };
    if count >= CAMPAIGNS_MAX {
        return Err(too_many_campaigns());
    }
    app.store
        .insert_campaign(&campaign)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => exists(&campaign.id),
            e => e.into(),
        })?;
    app.ledger
        .load(&campaign.id, campaign.stock_total, campaign.stock_buckets)
        .await?;
    app.registry.insert(campaign).map_err(|e| {
        tracing::error!(error = %e, "created campaign not served by this gateway");
        too_many_campaigns()
    })?;
    Ok(())
}

fn too_many_campaigns() -> ApiError {
    ApiError::new(
        Code::TooManyCampaigns,
        format!("the engine holds at most {CAMPAIGNS_MAX} campaigns"),
    )
}

fn exists(id: &CampaignId) -> ApiError {
    ApiError::new(
        Code::CampaignExists,
        format!("a campaign with id {id} already exists"),
    )
}

/// The operators' view: the buyers' one (read fresh), plus the fields
/// buyers need not see.
async fn admin_view(
    app: &App,
    live: &crate::registry::LiveCampaign,
    now: u64,
) -> serde_json::Value {
    let mut view = super::campaign_view(app, live, now, true).await;
    let c = live.get();
    view["control"] = serde_json::json!(c.control);
    view["load_test"] = serde_json::json!(c.load_test);
    view["quiz_questions"] = serde_json::json!(c.quiz_questions);
    view
}

pub async fn list(app: &App) -> Result<Resp, ApiError> {
    let now = app.clock.now_ms();
    let mut out = Vec::new();
    for live in app.registry.all() {
        out.push(admin_view(app, &live, now).await);
    }
    Ok(web::json(StatusCode::OK, &out))
}

pub async fn preload(app: &App, id: &str) -> Result<Resp, ApiError> {
    let live = super::campaign(app, id)?;
    let c = live.get();
    // Every campaign is loaded when it is created; one whose ledger data is
    // gone (Redis lost it, fully or in part) may have orders anywhere: in the
    // store, in the log, in a gateway's producer. Loading full stock over it
    // would sell units twice, so only reconciliation, which rebuilds it from
    // the durable orders once nothing is in flight, may load it again.
    let snap = app.ledger.snapshot(&c.id).await?;
    if snap.is_none() {
        return Err(ApiError::new(
            Code::NeedsReconcile,
            "the stock ledger does not hold this campaign (lost, or never loaded); \
             only `seckill reconcile --repair` may load it, from the durable orders",
        ));
    }
    let newly_loaded = false;
    let quiz_images = if c.quiz {
        Some(render_bank(app, &c).await?)
    } else {
        None
    };
    let page = crate::pages::render_item(c.id.as_str(), &c.title, c.price_cents, c.stock_total);
    let dir = app.cdn_dir.clone();
    let id = c.id.to_string();
    let written = tokio::task::spawn_blocking(move || crate::pages::publish(&dir, &id, &page))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| {
            tracing::error!(error = %e, "writing the static page");
            ApiError::unavailable(format!("could not write the static page: {e}"))
        })?;
    Ok(web::json(
        StatusCode::OK,
        &serde_json::json!({
            "campaign_id": c.id,
            "ledger_newly_loaded": newly_loaded,
            "stock_total": c.stock_total,
            "remaining": snap.map(|s| s.remaining),
            "page": format!("/items/{}.html", c.id),
            "static_page_file": written.display().to_string(),
            "quiz_images": quiz_images,
        }),
    ))
}

/// Draws the campaign's quiz bank into the CDN folder (in parallel; files
/// already there are kept). A large bank may take longer than a request
/// should: the preload waits at most `PRELOAD_RENDER_WAIT` (and half the
/// request timeout), then reports `complete: false` with the progress while
/// the render goes on; a repeated preload joins the running render. Images
/// not drawn yet are drawn on demand when a buyer asks for them.
async fn render_bank(app: &App, c: &engine::Campaign) -> Result<serde_json::Value, ApiError> {
    let wait = PRELOAD_RENDER_WAIT.min(Duration::from_millis(app.limits.request_timeout_ms / 2));
    let status = app
        .gate
        .render(c)
        .wait(wait)
        .await
        .map_err(|e| ApiError::unavailable(format!("could not write the quiz images: {e}")))?;
    let mut v = serde_json::to_value(&status).map_err(|_| ApiError::internal())?;
    v["dir"] = app.gate.image_dir.display().to_string().into();
    v["threads"] = app.gate.render_threads().into();
    Ok(v)
}

/// How long a preload waits for its quiz bank before it answers with the
/// render's progress.
const PRELOAD_RENDER_WAIT: Duration = Duration::from_secs(10);

/// `GET /admin/v1/campaigns/{id}/quiz-answers`: every question's image URL
/// and answer, for load generators; only for `load_test` campaigns.
pub fn quiz_answers(app: &App, id: &str) -> Result<Resp, ApiError> {
    let live = super::campaign(app, id)?;
    let c = live.get();
    if !c.load_test {
        return Err(ApiError::new(
            Code::Forbidden,
            "quiz answers are exported only for load_test campaigns",
        ));
    }
    if !c.quiz {
        return Err(ApiError::not_found("this campaign asks no question"));
    }
    Ok(web::with_cache(
        web::json(
            StatusCode::OK,
            &serde_json::json!({ "answers": app.gate.answers(&c) }),
        ),
        "no-store",
    ))
}

/// `pause`, `resume` and `stop`. Stop is final.
pub async fn control(app: &App, id: &str, action: &str) -> Result<Resp, ApiError> {
    let live = super::campaign(app, id)?;
    let mut c = (*live.get()).clone();
    if c.control == Control::Stopped {
        return Err(ApiError::new(
            Code::CampaignStopped,
            "a stopped campaign cannot be changed",
        ));
    }
    c.control = match action {
        "pause" => Control::Paused,
        "resume" => Control::Active,
        _ => Control::Stopped,
    };
    app.store.set_control(&c.id, c.control).await?;
    tracing::info!(campaign = %c.id, action, "campaign control changed");
    live.set(c);
    let view = admin_view(app, &live, app.clock.now_ms()).await;
    Ok(web::json(StatusCode::OK, &view))
}

pub async fn stats(app: &App, id: &str) -> Result<Resp, ApiError> {
    let live = super::campaign(app, id)?;
    let c = live.get();
    let snap = app.ledger.snapshot(&c.id).await?;
    let by_status = app.store.count_by_status(&c.id).await?;
    let count = |s: OrderStatus| {
        by_status
            .iter()
            .filter(|(st, _)| *st == s)
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    let persisted: u64 = by_status.iter().map(|(_, n)| n).sum();
    let logged = live.counters.logged.load(Ordering::Relaxed);
    // Shared ledger: units held campaign-wide; embedded: durable orders.
    let sold = if app.shared_ledger {
        snap.map_or(logged, |s| s.reserved)
    } else {
        logged
    };
    let rejected: serde_json::Map<String, serde_json::Value> = live
        .counters
        .rejected()
        .into_iter()
        .map(|(code, n)| (code.to_string(), n.into()))
        .collect();
    Ok(web::json(
        StatusCode::OK,
        &serde_json::json!({
            "campaign_id": c.id,
            "stock_total": c.stock_total,
            "reserved": snap.map(|s| s.reserved),
            "sold": sold,
            "remaining": snap.map(|s| s.remaining),
            "orders_queued": sold.saturating_sub(persisted),
            "orders_persisted": persisted,
            "orders_paid": count(OrderStatus::Paid),
            "orders_expired": count(OrderStatus::Expired),
            "store_sold": app.store.sold(&c.id).await?,
            "orders_dead_lettered": app.store.dead_letters(Some(&c.id)).await?,
            // Including records that did not decode, which name no campaign.
            "dead_letters_total": app.store.dead_letters(None).await?,
            "rejected": rejected,
            // This gateway's requests naming the campaign, over the hot window.
            "requests_per_s": per_s_rounded(app.hot.rate_per_s(&c.id, app.clock.now_ms())),
        }),
    ))
}

fn per_s_rounded(rate: f64) -> f64 {
    (rate * 10.0).round() / 10.0
}

/// `GET /admin/v1/hot`: the campaigns this gateway finds hot (see
/// `crate::hot`), fastest first, as of the last upkeep tick.
pub fn hot(app: &App) -> Resp {
    let items: Vec<serde_json::Value> = app
        .hot
        .hot()
        .into_iter()
        .map(|(id, rate)| {
            serde_json::json!({ "campaign_id": id, "requests_per_s": per_s_rounded(rate) })
        })
        .collect();
    web::with_cache(
        web::json(
            StatusCode::OK,
            &serde_json::json!({ "window_ms": app.hot.window_ms(), "items": items }),
        ),
        "no-store",
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    user_ids: Vec<UserId>,
    /// Absent takes the default; `null` is refused like any wrong type.
    #[serde(default, deserialize_with = "engine::campaign::present")]
    ttl_s: Option<u64>,
}

pub fn tokens(app: &App, headers: &http::HeaderMap, body: &[u8]) -> Result<Resp, ApiError> {
    let req: TokenRequest = web::parse_json(headers, body, false)?;
    if req.user_ids.len() > TOKENS_PER_CALL_MAX {
        return Err(ApiError::bad_request(format!(
            "at most {TOKENS_PER_CALL_MAX} user_ids per call"
        )));
    }
    // A token living longer than the gateway accepts would be refused on
    // first use: refuse to mint it instead.
    let ttl_max = crate::auth::TOKEN_TTL_S_MAX.min(app.auth.max_lifetime_s());
    let ttl_s = req.ttl_s.unwrap_or(3_600.min(ttl_max));
    if ttl_s == 0 || ttl_s > ttl_max {
        return Err(ApiError::bad_request(format!(
            "ttl_s must be between 1 and {ttl_max} (auth.max_lifetime_s)"
        )));
    }
    let now = app.clock.now_ms();
    let mut tokens = serde_json::Map::new();
    for u in req.user_ids {
        let t = app.auth.issue(&u, now, ttl_s)?;
        tokens.insert(u.as_str().to_string(), t.into());
    }
    Ok(web::json(
        StatusCode::OK,
        &serde_json::json!({ "tokens": tokens, "expires_at_ms": now + ttl_s * 1000 }),
    ))
}

/// Winners export: JSON by default, CSV with `?format=csv`, streamed page by
/// page (in order-id order) so a campaign of millions of orders never sits
/// in memory at once.
pub async fn orders(app: &App, id: &str, query: Option<&str>) -> Result<Resp, ApiError> {
    let live = super::campaign(app, id)?;
    let format = query
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("format=")))
        .unwrap_or("json");
    let csv = match format {
        "csv" => true,
        "json" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "format must be csv or json, not {other:?}"
            )))
        }
    };
    let campaign = live.get().id.clone();
    // The first page is read before answering, so a store that is down is
    // a clean 503 rather than a broken download.
    let first = app
        .store
        .orders_page(&campaign, None, EXPORT_PAGE_ROWS)
        .await?;
    let store = std::sync::Arc::clone(&app.store);
    let content_type = if csv {
        "text/csv; charset=utf-8"
    } else {
        "application/json"
    };
    Ok(web::stream(content_type, move |tx| async move {
        let mut out = String::from(if csv { CSV_HEADER } else { "[" });
        let mut page = first;
        let mut rows = 0u64;
        loop {
            for o in &page {
                if csv {
                    out.push_str(&csv_row(o));
                } else {
                    if rows > 0 {
                        out.push(',');
                    }
                    out.push_str(&json_row(o).to_string());
                }
                rows += 1;
            }
            let Some(last) = page.last().map(|o| o.record.order_id.clone()) else {
                break;
            };
            if page.len() < EXPORT_PAGE_ROWS as usize {
                break;
            }
            if tx.send(Ok(std::mem::take(&mut out).into())).await.is_err() {
                return; // the client went away
            }
            page = match store
                .orders_page(&campaign, Some(&last), EXPORT_PAGE_ROWS)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, %campaign, rows, "winners export cut short");
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
        }
        if !csv {
            out.push(']');
        }
        let _ = tx.send(Ok(out.into())).await;
    }))
}

/// Orders read from the store per page of an export.
const EXPORT_PAGE_ROWS: u32 = 1_000;

const CSV_HEADER: &str =
    "order_id,campaign_id,user_id,n,price_cents,status,created_at_ms,pay_by_ms\n";

fn csv_row(o: &engine::Order) -> String {
    let r = &o.record;
    format!(
        "{},{},{},{},{},{},{},{}\n",
        r.order_id,
        r.campaign_id,
        csv_field(r.user_id.as_str()),
        r.n,
        r.price_cents,
        o.status.as_str(),
        r.created_at_ms,
        r.pay_by_ms
    )
}

fn json_row(o: &engine::Order) -> serde_json::Value {
    serde_json::json!({
        "order_id": o.record.order_id,
        "campaign_id": o.record.campaign_id,
        "user_id": o.record.user_id,
        "n": o.record.n,
        "price_cents": o.record.price_cents,
        "status": o.status,
        "created_at_ms": o.record.created_at_ms,
        "pay_by_ms": o.record.pay_by_ms,
    })
}

/// Quotes a CSV field when it holds a separator or quote (user ids may).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers() -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        h
    }

    /// `null` is not an integer: an optional integer field sent as `null`
    /// is refused (400) like any other wrong type, not taken as absent.
    #[test]
    fn null_is_refused_where_an_integer_is_documented() {
        let base = r#""title":"t","price_cents":1,"stock":1,"starts_at_ms":1,"ends_at_ms":2"#;
        let ok: Result<CampaignSpec, _> =
            web::parse_json(&json_headers(), format!("{{{base}}}").as_bytes(), false);
        assert!(ok.is_ok());
        for field in [
            "per_user_limit",
            "payment_window_s",
            "quiz_questions",
            "stock_buckets",
            "id",
            "quiz",
            "hidden_path",
            "load_test",
        ] {
            let body = format!("{{{base},\"{field}\":null}}");
            let e = web::parse_json::<CampaignSpec>(&json_headers(), body.as_bytes(), false)
                .expect_err(field);
            assert_eq!(e.code, Code::BadRequest, "{field}");
        }
        let e = web::parse_json::<TokenRequest>(
            &json_headers(),
            br#"{"user_ids":["a"],"ttl_s":null}"#,
            false,
        )
        .expect_err("ttl_s null");
        assert_eq!(e.code, Code::BadRequest);
        let absent: TokenRequest =
            web::parse_json(&json_headers(), br#"{"user_ids":["a"]}"#, false).expect("absent");
        assert_eq!(absent.ttl_s, None);
    }
}
