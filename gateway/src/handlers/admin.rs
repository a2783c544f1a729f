//! Operator endpoints, all behind the admin bearer token.

use crate::api;
use crate::app::App;
use crate::error::{ApiError, Code};
use crate::usecase::campaigns::{self, Action};
use crate::web::{self, Resp};
use engine::{CampaignSpec, UserId};
use hyper::StatusCode;
use serde::Deserialize;

/// Most tokens one `POST /admin/v1/tokens` call issues.
pub const TOKENS_PER_CALL_MAX: usize = 10_000;

pub async fn create(app: &App, headers: &http::HeaderMap, body: &[u8]) -> Result<Resp, ApiError> {
    let spec: CampaignSpec = web::parse_json(headers, body, false)?;
    let view = campaigns::create(app, spec).await?;
    Ok(web::json(StatusCode::CREATED, &view))
}

/// `POST /admin/v1/campaigns/validate[?expected_buyers=N]`: a dry run of a
/// create; 200 `{"ok", "problems", "warnings"}`, also for a body that is a
/// JSON object but not a campaign spec (its problem names the field). A
/// body that is not a JSON object at all is 400, as for a create.
pub async fn validate(
    app: &App,
    headers: &http::HeaderMap,
    body: &[u8],
    query: Option<&str>,
) -> Result<Resp, ApiError> {
    let expected_buyers = query_param(query, "expected_buyers")
        .map(|v| int_param("expected_buyers", v, engine::campaign::INT_FIELD_MAX))
        .transpose()?;
    let value: serde_json::Map<String, serde_json::Value> = web::parse_json(headers, body, false)?;
    let report = match serde_json::from_value::<CampaignSpec>(value.into()) {
        Ok(spec) => campaigns::validate(app, spec, expected_buyers).await?,
        Err(e) => campaigns::unparsable(&e),
    };
    Ok(web::with_cache(
        web::json(StatusCode::OK, &report),
        "no-store",
    ))
}

/// A query parameter that must be an integer in `0..=max`.
fn int_param(name: &str, v: &str, max: u64) -> Result<u64, ApiError> {
    v.parse::<u64>().ok().filter(|n| *n <= max).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{name} must be an integer between 0 and {max}, not {v:?}"
        ))
    })
}

/// The value of `name` in a query string (the first, not percent-decoded:
/// the admin API's parameters are plain words and numbers).
fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

pub async fn list(app: &App) -> Result<Resp, ApiError> {
    Ok(web::json(StatusCode::OK, &campaigns::list(app).await))
}

/// `POST /admin/v1/campaigns/{id}/preload[?wait_ms=N]`: `wait_ms` bounds
/// how long the answer waits for the quiz bank (a CLI drawing a progress
/// bar asks often); at most `PRELOAD_RENDER_WAIT`.
pub async fn preload(app: &App, id: &str, query: Option<&str>) -> Result<Resp, ApiError> {
    let most = u64::try_from(campaigns::PRELOAD_RENDER_WAIT.as_millis()).unwrap_or(u64::MAX);
    let wait = query_param(query, "wait_ms")
        .map(|v| int_param("wait_ms", v, most).map(std::time::Duration::from_millis))
        .transpose()?;
    let report = campaigns::preload(app, id, wait).await?;
    Ok(web::json(StatusCode::OK, &report))
}

/// `GET /admin/v1/campaigns/{id}/quiz-answers`: every question's image URL
/// and answer, for load generators; only for `load_test` campaigns.
pub fn quiz_answers(app: &App, id: &str) -> Result<Resp, ApiError> {
    let live = campaigns::find(app, id)?;
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
            &api::QuizAnswers {
                answers: app.gate.answers(&c),
            },
        ),
        "no-store",
    ))
}

/// `pause`, `resume` and `stop`. Stop is final.
pub async fn control(app: &App, id: &str, action: Action) -> Result<Resp, ApiError> {
    let view = campaigns::control(app, id, action).await?;
    Ok(web::json(StatusCode::OK, &view))
}

/// `POST /admin/v1/campaigns/{id}/waiting-room`: changes the room's
/// settings (`admit_per_s` and the others) during the sale.
pub async fn room_settings(
    app: &App,
    id: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Resp, ApiError> {
    let patch: engine::room::RoomPatch = web::parse_json(headers, body, false)?;
    if patch.is_empty() {
        return Err(ApiError::bad_request(
            "send at least one of admit_per_s, admitted_max, admit_ttl_s, stock_factor_pct, queue_max",
        ));
    }
    let view = crate::usecase::queue::configure(app, id, &patch).await?;
    Ok(web::json(StatusCode::OK, &view))
}

pub async fn stats(app: &App, id: &str) -> Result<Resp, ApiError> {
    let stats = campaigns::stats(app, id).await?;
    Ok(web::with_cache(
        web::json(StatusCode::OK, &stats),
        "no-store",
    ))
}

/// `GET /admin/v1/campaigns/{id}/reconcile`: the read-only check.
pub async fn reconcile(app: &App, id: &str) -> Result<Resp, ApiError> {
    let check = crate::usecase::reconcile::check(app, id).await?;
    Ok(web::with_cache(
        web::json(StatusCode::OK, &check),
        "no-store",
    ))
}

/// `GET /admin/v1/hot`: the campaigns this gateway finds hot (see
/// `crate::hot`), fastest first, as of the last upkeep tick.
pub fn hot(app: &App) -> Resp {
    let items = app
        .hot
        .hot()
        .into_iter()
        .map(|(campaign_id, rate)| api::HotItem {
            campaign_id,
            requests_per_s: campaigns::per_s_rounded(rate),
        })
        .collect();
    web::with_cache(
        web::json(
            StatusCode::OK,
            &api::HotList {
                window_ms: app.hot.window_ms(),
                items,
            },
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
    let mut tokens = std::collections::BTreeMap::new();
    for u in req.user_ids {
        let t = app.auth.issue(&u, now, ttl_s)?;
        tokens.insert(u.as_str().to_string(), t);
    }
    Ok(web::json(
        StatusCode::OK,
        &api::Tokens {
            tokens,
            expires_at_ms: now + ttl_s * 1000,
        },
    ))
}

/// Winners export: JSON by default, CSV with `?format=csv`, streamed page by
/// page (in order-id order) so a campaign of millions of orders never sits
/// in memory at once.
pub async fn orders(app: &App, id: &str, query: Option<&str>) -> Result<Resp, ApiError> {
    let live = campaigns::find_fresh(app, id).await?;
    let format = query_param(query, "format").unwrap_or("json");
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
                    match serde_json::to_string(&api::ExportRow::new(o)) {
                        Ok(row) => out.push_str(&row),
                        Err(e) => tracing::error!(error = %e, "export row not serialisable"),
                    }
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
