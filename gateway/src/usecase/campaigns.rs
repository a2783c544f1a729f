//! The campaign lifecycle: create, validate (a dry run of create), list,
//! preload, pause / resume / stop, stats. Called by the admin handlers, by
//! start-up (the demo campaign) and, through the admin API, by
//! `seckill admin`.

use crate::api::{
    AdminCampaignView, CampaignView, PreloadReport, Problem, QuizRender, Stats, Validation,
};
use crate::app::App;
use crate::error::{ApiError, Code};
use crate::registry::{LiveCampaign, CAMPAIGNS_MAX};
use engine::ports::StoreError;
use engine::{Campaign, CampaignId, CampaignSpec, Control, OrderStatus};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The live campaign named by `id`, or `campaign_not_found`.
pub fn find(app: &App, id: &str) -> Result<Arc<LiveCampaign>, ApiError> {
    CampaignId::parse(id)
        .ok()
        .and_then(|id| app.registry.get(&id))
        .ok_or_else(ApiError::campaign_not_found)
}

/// Like `find`, for operators' calls: a gateway sharing its campaigns with
/// others (production) that does not know `id` yet reads the store once, so
/// an operator's call balanced to it right after another gateway created the
/// campaign does not answer 404 for up to a re-read period.
pub async fn find_fresh(app: &App, id: &str) -> Result<Arc<LiveCampaign>, ApiError> {
    match find(app, id) {
        Ok(live) => return Ok(live),
        Err(e) if !app.shared_ledger => return Err(e),
        Err(_) => {}
    }
    let wanted = CampaignId::parse(id).map_err(|_| ApiError::campaign_not_found())?;
    let stored = app
        .store
        .campaigns()
        .await?
        .into_iter()
        .find(|c| c.id == wanted)
        .ok_or_else(ApiError::campaign_not_found)?;
    if let Err(e) = app.registry.insert(stored) {
        tracing::error!(error = %e, "a campaign is not served by this gateway");
        return Err(too_many_campaigns());
    }
    find(app, id)
}

/// How old a buyer-facing `remaining_hint` may be: the status endpoint is
/// cacheable for about a second anyway, and a crowd polling it must not turn
/// into a ledger round trip per request.
pub const REMAINING_HINT_MAX_AGE_MS: u64 = 1_000;

/// The public view of a campaign. `fresh` reads the ledger now (operators);
/// otherwise the remaining count may be up to `REMAINING_HINT_MAX_AGE_MS`
/// old (buyers).
pub async fn view(app: &App, live: &LiveCampaign, now_ms: u64, fresh: bool) -> CampaignView {
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
    CampaignView {
        id: c.id.clone(),
        title: c.title.clone(),
        price_cents: c.price_cents,
        stock_total: c.stock_total,
        starts_at_ms: c.starts_at_ms,
        ends_at_ms: c.ends_at_ms,
        state: c.state(now_ms, sold_out),
        remaining_hint: remaining,
        quiz: c.quiz,
        hidden_path: c.hidden_path,
        per_user_limit: c.per_user_limit,
        payment_window_s: c.payment_window_s,
        stock_buckets: c.stock_buckets,
        waiting_room: c.waiting_room.is_some(),
        admit_per_s: c.waiting_room.map(|r| r.admit_per_s),
    }
}

/// The operators' view: the buyers' one (read fresh), plus the fields
/// buyers need not see.
pub async fn admin_view(app: &App, live: &LiveCampaign, now_ms: u64) -> AdminCampaignView {
    let c = live.get();
    AdminCampaignView {
        view: view(app, live, now_ms, true).await,
        control: c.control,
        load_test: c.load_test,
        quiz_questions: c.quiz_questions,
        waiting_room_settings: c.waiting_room,
    }
}

pub async fn list(app: &App) -> Vec<AdminCampaignView> {
    let now = app.clock.now_ms();
    let mut out = Vec::new();
    for live in app.registry.all() {
        out.push(admin_view(app, &live, now).await);
    }
    out
}

/// The id given to a campaign created without one.
fn generated_id(app: &App) -> Result<CampaignId, ApiError> {
    CampaignId::parse(&format!(
        "c{:x}{:04x}",
        app.clock.now_ms(),
        rand::random::<u16>()
    ))
    .map_err(|_| ApiError::internal())
}

/// Checks a spec and creates the campaign (see `create_validated`).
pub async fn create(app: &App, spec: CampaignSpec) -> Result<AdminCampaignView, ApiError> {
    let campaign = spec
        .validate(generated_id(app)?)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let id = campaign.id.clone();
    create_validated(app, campaign).await?;
    tracing::info!(campaign = %id, "campaign created");
    let live = find(app, id.as_str())?;
    Ok(admin_view(app, &live, app.clock.now_ms()).await)
}

/// Makes a campaign durable, loads its stock, then makes it visible, in
/// that order, so no grab can see a campaign whose stock is not loaded.
pub async fn create_validated(app: &App, campaign: Campaign) -> Result<(), ApiError> {
    if app.registry.get(&campaign.id).is_some() {
        return Err(exists(&campaign.id));
    }
    if campaign_count(app).await? >= CAMPAIGNS_MAX {
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

/// Every gateway must be able to hold every campaign: in production the
/// count that matters is the shared store's, not this gateway's.
async fn campaign_count(app: &App) -> Result<usize, ApiError> {
    Ok(if app.shared_ledger {
        app.store.campaigns().await?.len()
    } else {
        app.registry.len()
    })
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

/// A sale shorter than this is probably a typo in `ends_at_ms`.
pub const SALE_MS_WARN_BELOW: u64 = 60_000;
/// A payment window shorter than this leaves a buyer little time to pay.
pub const PAYMENT_WINDOW_S_WARN_BELOW: u32 = 60;
/// A payment window longer than this keeps unpaid stock off sale long.
pub const PAYMENT_WINDOW_S_WARN_ABOVE: u32 = 24 * 3_600;
/// Buyers per quiz question above which a crowd shares (and trades)
/// answers: each question should be seen by few buyers.
pub const BUYERS_PER_QUESTION_MAX: u64 = 100;
/// A start closer than this leaves little time to preload and warm caches.
pub const LEAD_MS_WARN_BELOW: u64 = 60_000;

/// A dry run of `create`: everything that would make the campaign refused,
/// or sell other than meant, without creating anything. `expected_buyers`
/// (how many buyers the operator expects) sizes the quiz bank check.
pub async fn validate(
    app: &App,
    spec: CampaignSpec,
    expected_buyers: Option<u64>,
) -> Result<Validation, ApiError> {
    let now = app.clock.now_ms();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let problem = |field: &str, message: String| Problem {
        field: field.into(),
        message,
    };
    if spec.starts_at_ms <= now {
        problems.push(problem(
            "starts_at_ms",
            format!(
                "the sale must start in the future: starts_at_ms {} is {} ms before the server's now ({now})",
                spec.starts_at_ms,
                now - spec.starts_at_ms
            ),
        ));
    }
    match spec.clone().validate(generated_id(app)?) {
        Err(e) => problems.push(problem(field_of(&e), e.to_string())),
        Ok(c) => {
            if spec.id.is_some() && app.registry.get(&c.id).is_some() {
                problems.push(problem(
                    "id",
                    format!("a campaign with id {} already exists", c.id),
                ));
            }
            if app.registry.get(&c.id).is_none() && campaign_count(app).await? >= CAMPAIGNS_MAX {
                problems.push(problem(
                    "id",
                    format!("the engine holds at most {CAMPAIGNS_MAX} campaigns already"),
                ));
            }
            let (more, warned) = second_look(&c, now, expected_buyers);
            problems.extend(more);
            warnings.extend(warned);
        }
    }
    Ok(Validation {
        ok: problems.is_empty(),
        problems,
        warnings,
    })
}

/// The answer to a body that is not a campaign spec at all (a wrong type,
/// a missing or unknown field): the parser's complaint as a problem of the
/// field it names.
pub fn unparsable(e: &serde_json::Error) -> Validation {
    let text = e.to_string();
    // serde names the field in backquotes: "missing field `title`".
    let field = text
        .split('`')
        .nth(1)
        .filter(|f| !f.is_empty() && f.len() <= 64)
        .unwrap_or("body");
    Validation {
        ok: false,
        problems: vec![Problem {
            field: field.to_string(),
            message: format!("not a campaign spec: {text}"),
        }],
        warnings: Vec::new(),
    }
}

/// The spec field an engine refusal is about.
fn field_of(e: &engine::SpecError) -> &'static str {
    use engine::SpecError as E;
    match e {
        E::Title => "title",
        E::TooLarge(field) => field,
        E::Stock => "stock",
        E::Window => "ends_at_ms",
        E::PerUserLimit => "per_user_limit",
        E::PaymentWindow => "payment_window_s",
        E::StockBuckets => "stock_buckets",
        E::QuizQuestions => "quiz_questions",
        E::Room(field) => field,
    }
}

/// The checks that need a valid spec: problems (the quiz bank against the
/// expected crowd) and warnings (what would run but deserves a second look).
fn second_look(
    c: &Campaign,
    now: u64,
    expected_buyers: Option<u64>,
) -> (Vec<Problem>, Vec<Problem>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut warn = |field: &str, message: String| {
        out.push(Problem {
            field: field.into(),
            message,
        });
    };
    if c.starts_at_ms > now && c.starts_at_ms - now < LEAD_MS_WARN_BELOW {
        warn(
            "starts_at_ms",
            format!(
                "the sale starts in {} s: preload (quiz bank, pages) and cache warm-up need time",
                (c.starts_at_ms - now) / 1000
            ),
        );
    }
    let length = c.ends_at_ms.saturating_sub(c.starts_at_ms);
    if length < SALE_MS_WARN_BELOW {
        warn("ends_at_ms", format!("the sale lasts only {} ms", length));
    }
    if c.payment_window_s < PAYMENT_WINDOW_S_WARN_BELOW {
        warn(
            "payment_window_s",
            format!(
                "a {} s payment window leaves buyers little time to pay; unpaid units go back on sale after it",
                c.payment_window_s
            ),
        );
    }
    if c.payment_window_s > PAYMENT_WINDOW_S_WARN_ABOVE {
        warn(
            "payment_window_s",
            format!(
                "a {} s payment window keeps unpaid units off sale for over a day",
                c.payment_window_s
            ),
        );
    }
    if let Some(buyers) = expected_buyers {
        if c.quiz {
            let needed = buyers.div_ceil(BUYERS_PER_QUESTION_MAX);
            if u64::from(c.quiz_questions) < needed {
                errors.push(Problem {
                    field: "quiz_questions".into(),
                    message: format!(
                        "{} questions for {buyers} expected buyers is over {BUYERS_PER_QUESTION_MAX} buyers per question \
                         (answers get shared); use at least {}",
                        c.quiz_questions,
                        needed.min(u64::from(engine::campaign::QUIZ_QUESTIONS_MAX))
                    ),
                });
            }
        } else if buyers > c.stock_total.saturating_mul(100) {
            warn(
                "quiz",
                format!(
                    "{buyers} expected buyers for {} units and no quiz: bots meet no barrier",
                    c.stock_total
                ),
            );
        }
    }
    if c.load_test {
        warn(
            "load_test",
            "load_test campaigns export their quiz answers to operators; never use one for a real sale".into(),
        );
    }
    (errors, out)
}

/// How long a preload waits for its quiz bank before it answers with the
/// render's progress (at most; `?wait_ms=` asks for less).
pub const PRELOAD_RENDER_WAIT: Duration = Duration::from_secs(10);

/// Checks the ledger holds the campaign, draws its quiz bank (see
/// `render_bank`; `wait` shortens how long it waits for it) and publishes
/// its item page to the CDN folder.
pub async fn preload(
    app: &App,
    id: &str,
    wait: Option<Duration>,
) -> Result<PreloadReport, ApiError> {
    let live = find_fresh(app, id).await?;
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
    let quiz_images = if c.quiz {
        Some(render_bank(app, &c, wait).await?)
    } else {
        None
    };
    let page = crate::pages::render_item(c.id.as_str(), &c.title, c.price_cents, c.stock_total);
    let dir = app.cdn_dir.clone();
    let file_id = c.id.to_string();
    let written = tokio::task::spawn_blocking(move || crate::pages::publish(&dir, &file_id, &page))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| {
            tracing::error!(error = %e, "writing the static page");
            ApiError::unavailable(format!("could not write the static page: {e}"))
        })?;
    tracing::info!(campaign = %c.id, "campaign preloaded");
    Ok(PreloadReport {
        campaign_id: c.id.clone(),
        ledger_newly_loaded: false,
        stock_total: c.stock_total,
        remaining: snap.map(|s| s.remaining),
        page: format!("/items/{}.html", c.id),
        static_page_file: written.display().to_string(),
        quiz_images,
    })
}

/// Draws the campaign's quiz bank into the CDN folder (in parallel; files
/// already there are kept). A large bank may take longer than a request
/// should: the preload waits at most `PRELOAD_RENDER_WAIT` (and half the
/// request timeout), then reports `complete: false` with the progress while
/// the render goes on; a repeated preload joins the running render. Images
/// not drawn yet are drawn on demand when a buyer asks for them.
async fn render_bank(
    app: &App,
    c: &Campaign,
    wait: Option<Duration>,
) -> Result<QuizRender, ApiError> {
    let wait = PRELOAD_RENDER_WAIT
        .min(Duration::from_millis(app.limits.request_timeout_ms / 2))
        .min(wait.unwrap_or(Duration::MAX));
    let status = app
        .gate
        .render(c)
        .wait(wait)
        .await
        .map_err(|e| ApiError::unavailable(format!("could not write the quiz images: {e}")))?;
    Ok(QuizRender {
        status,
        dir: app.gate.image_dir.display().to_string(),
        threads: app.gate.render_threads(),
    })
}

/// The operators' kill switch and its release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pause,
    Resume,
    /// Final: a stopped campaign cannot be changed.
    Stop,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Stop => "stop",
        }
    }
}

/// Pauses, resumes or stops a campaign: durable first (every gateway reads
/// it from the store within its re-read period), then on this gateway.
pub async fn control(app: &App, id: &str, action: Action) -> Result<AdminCampaignView, ApiError> {
    let live = find_fresh(app, id).await?;
    let mut c = (*live.get()).clone();
    if c.control == Control::Stopped {
        return Err(ApiError::new(
            Code::CampaignStopped,
            "a stopped campaign cannot be changed",
        ));
    }
    c.control = match action {
        Action::Pause => Control::Paused,
        Action::Resume => Control::Active,
        Action::Stop => Control::Stopped,
    };
    app.store.set_control(&c.id, c.control).await?;
    tracing::info!(campaign = %c.id, action = action.as_str(), "campaign control changed");
    live.set(c);
    Ok(admin_view(app, &live, app.clock.now_ms()).await)
}

/// Live numbers of a campaign, from the ledger, the store and this
/// gateway's counters.
pub async fn stats(app: &App, id: &str) -> Result<Stats, ApiError> {
    let live = find_fresh(app, id).await?;
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
    // Stored orders whose unit went back (expired, cancelled).
    let gone = count(OrderStatus::Expired) + count(OrderStatus::Cancelled);
    let logged = live.counters.logged.load(Ordering::Relaxed);
    // Units held by live orders. Shared ledger: held campaign-wide;
    // embedded: durable orders minus those that gave their unit back.
    let sold = if app.shared_ledger {
        snap.map_or(logged.saturating_sub(gone), |s| s.reserved)
    } else {
        logged.saturating_sub(gone)
    };
    let rejected = live
        .counters
        .rejected()
        .into_iter()
        .map(|(code, n)| (code.to_string(), n))
        .collect();
    Ok(Stats {
        campaign_id: c.id.clone(),
        stock_total: c.stock_total,
        reserved: snap.map(|s| s.reserved),
        sold,
        remaining: snap.map(|s| s.remaining),
        orders_queued: sold.saturating_sub(persisted.saturating_sub(gone)),
        orders_persisted: persisted,
        orders_paid: count(OrderStatus::Paid),
        orders_expired: count(OrderStatus::Expired),
        orders_cancelled: count(OrderStatus::Cancelled),
        units_returned: app.store.released(&c.id).await?,
        store_sold: app.store.sold(&c.id).await?,
        orders_dead_lettered: app.store.dead_letters(Some(&c.id)).await?,
        dead_letters_total: app.store.dead_letters(None).await?,
        rejected,
        requests_per_s: per_s_rounded(app.hot.rate_per_s(&c.id, app.clock.now_ms())),
        waiting_room: crate::usecase::queue::stats(app, &c),
    })
}

pub fn per_s_rounded(rate: f64) -> f64 {
    (rate * 10.0).round() / 10.0
}
