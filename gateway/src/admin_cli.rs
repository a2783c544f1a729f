//! `seckill admin ...`: the operators' command line. It talks to the admin
//! API (`../shared/API.md`) of any gateway, or of the load balancer in
//! front of them, with the admin token, so it runs from an operator's
//! machine as well as on a gateway host. Answers are read into the same
//! typed bodies (`crate::api`) the handlers write.
//!
//! Plain HTTP only: the admin API is meant to be reached inside the
//! deployment's network (or through a TLS-terminating proxy).

use crate::api::{AdminCampaignView, PreloadReport, ReconcileCheck, Stats, Validation};
use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Base URL of a gateway (or of the load balancer in front of them).
    #[arg(
        long,
        env = "SECKILL_ADMIN_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// The admin token (as the gateway was started with).
    #[arg(long, env = "SECKILL_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a campaign from a TOML file (see config/campaign.example.toml).
    Create {
        #[arg(long)]
        file: PathBuf,
    },
    /// Dry-run a campaign file: what would be refused or look wrong.
    /// Exits 1 when the campaign would be refused.
    Validate {
        #[arg(long)]
        file: PathBuf,
        /// How many buyers you expect (sizes the quiz bank check);
        /// overrides `expected_buyers` in the file.
        #[arg(long)]
        expected_buyers: Option<u64>,
    },
    /// List the campaigns.
    List,
    /// Check the ledger, draw the quiz bank and publish the item page,
    /// with a progress bar while the quiz bank is drawn.
    Preload {
        #[command(flatten)]
        campaign: CampaignRef,
        /// Give up waiting for the quiz bank after this many seconds
        /// (the render goes on in the gateway).
        #[arg(long, default_value_t = 600)]
        wait_s: u64,
    },
    /// Kill switch: stop selling at once (every gateway within a second).
    Pause(CampaignRef),
    /// Sell again after a pause.
    Resume(CampaignRef),
    /// Stop for good.
    Stop(CampaignRef),
    /// Live numbers; `--watch` refreshes them.
    Status {
        #[command(flatten)]
        campaign: CampaignRef,
        #[arg(long)]
        watch: bool,
        #[arg(long, default_value_t = 1_000)]
        interval_ms: u64,
        /// With --watch: stop after this many refreshes.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Change a waiting room's settings during the sale (every gateway's
    /// next refresh uses them); prints the room's settings.
    Room {
        #[command(flatten)]
        campaign: CampaignRef,
        /// Buyers admitted per second.
        #[arg(long)]
        admit_per_s: Option<u32>,
        /// Most buyers admitted and not yet finished at once.
        #[arg(long)]
        admitted_max: Option<u32>,
        /// How long an admission stays valid, in seconds.
        #[arg(long)]
        admit_ttl_s: Option<u32>,
        /// Admitted buyers per unit left, in percent.
        #[arg(long)]
        stock_factor_pct: Option<u32>,
        /// Most buyers queued.
        #[arg(long)]
        queue_max: Option<u64>,
    },
    /// Compare the ledger with the durable orders (read-only); exits 1
    /// when they differ, with what to do next.
    Reconcile(CampaignRef),
    /// Export the winners (every stored order).
    Export {
        #[command(flatten)]
        campaign: CampaignRef,
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The campaign a command is about: `ID` or `--campaign ID`.
#[derive(Debug, Args)]
pub struct CampaignRef {
    /// The campaign id.
    #[arg(value_name = "ID", required_unless_present = "campaign")]
    id: Option<String>,
    /// The campaign id (instead of the positional ID).
    #[arg(long = "campaign", value_name = "ID", conflicts_with = "id")]
    campaign: Option<String>,
}

impl CampaignRef {
    fn id(&self) -> &str {
        self.id
            .as_deref()
            .or(self.campaign.as_deref())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

/// Longest one admin call may take (a preload waits for its quiz bank at
/// most 10 s on the gateway's side).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a preload call waits for the quiz bank before reporting
/// progress, while the CLI draws its bar.
const PRELOAD_POLL_WAIT_MS: u64 = 500;

struct AdminClient {
    base: String,
    token: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

/// An error answer of the API, with its stable code.
#[derive(Debug, thiserror::Error)]
#[error("{method} {path}: HTTP {status} {code}: {message}")]
pub struct CallError {
    pub method: &'static str,
    pub path: String,
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl AdminClient {
    fn new(url: &str, token: &str) -> anyhow::Result<Self> {
        let base = url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            bail!("--url must be an http:// URL (the admin API is plain HTTP inside the deployment), not {url:?}");
        }
        Ok(Self {
            base,
            token: token.to_string(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    async fn raw(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header("authorization", format!("Bearer {}", self.token));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .context("building the request")?;
        let resp = tokio::time::timeout(CALL_TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| anyhow::anyhow!("{method} {path}: no answer within {CALL_TIMEOUT:?}"))?
            .with_context(|| format!("{method} {}{path}", self.base))?;
        let status = resp.status().as_u16();
        let bytes = tokio::time::timeout(CALL_TIMEOUT, resp.into_body().collect())
            .await
            .map_err(|_| anyhow::anyhow!("{method} {path}: body not read within {CALL_TIMEOUT:?}"))?
            .with_context(|| format!("{method} {path}: reading the answer"))?
            .to_bytes();
        if !(200..300).contains(&status) {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(CallError {
                method,
                path: path.to_string(),
                status,
                code: v["code"].as_str().unwrap_or("?").to_string(),
                message: v["message"].as_str().map_or_else(
                    || String::from_utf8_lossy(&bytes).into_owned(),
                    str::to_string,
                ),
            }
            .into());
        }
        Ok((status, bytes))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<T> {
        let (_, bytes) = self.raw(method, path, body).await?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{method} {path}: unexpected answer {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    }
}

/// Runs one admin command; `Ok(false)` when it ran but found the campaign
/// invalid or unreconciled (the process then exits 1).
pub async fn run(args: AdminArgs) -> anyhow::Result<bool> {
    let client = AdminClient::new(&args.url, &args.token)?;
    let out = &mut std::io::stdout().lock();
    match args.command {
        AdminCommand::Create { file } => {
            let (spec, _) = spec_from_file(&client, &file).await?;
            let view: AdminCampaignView = client
                .call("POST", "/admin/v1/campaigns", Some(spec))
                .await?;
            writeln!(out, "created campaign {}", view.view.id)?;
            print_campaign(out, &view)?;
        }
        AdminCommand::Validate {
            file,
            expected_buyers,
        } => {
            let (spec, from_file) = spec_from_file(&client, &file).await?;
            let path = match expected_buyers.or(from_file) {
                Some(n) => format!("/admin/v1/campaigns/validate?expected_buyers={n}"),
                None => "/admin/v1/campaigns/validate".to_string(),
            };
            let v: Validation = client.call("POST", &path, Some(spec)).await?;
            for p in &v.problems {
                writeln!(out, "problem: {}: {}", p.field, p.message)?;
            }
            for w in &v.warnings {
                writeln!(out, "warning: {}: {}", w.field, w.message)?;
            }
            writeln!(
                out,
                "{}: {}",
                file.display(),
                if v.ok {
                    "ok"
                } else {
                    "INVALID: would be refused or would not sell as meant"
                }
            )?;
            return Ok(v.ok);
        }
        AdminCommand::List => {
            let list: Vec<AdminCampaignView> =
                client.call("GET", "/admin/v1/campaigns", None).await?;
            for v in &list {
                print_campaign(out, v)?;
            }
            if list.is_empty() {
                writeln!(out, "no campaigns")?;
            }
        }
        AdminCommand::Preload { campaign, wait_s } => {
            preload(&client, out, campaign.id(), wait_s).await?
        }
        AdminCommand::Pause(c) => control(&client, out, c.id(), "pause").await?,
        AdminCommand::Resume(c) => control(&client, out, c.id(), "resume").await?,
        AdminCommand::Stop(c) => control(&client, out, c.id(), "stop").await?,
        AdminCommand::Status {
            campaign,
            watch,
            interval_ms,
            count,
        } => status(&client, out, campaign.id(), watch, interval_ms, count).await?,
        AdminCommand::Room {
            campaign,
            admit_per_s,
            admitted_max,
            admit_ttl_s,
            stock_factor_pct,
            queue_max,
        } => {
            let path = format!("/admin/v1/campaigns/{}/waiting-room", seg(campaign.id())?);
            let body = serde_json::json!({
                "admit_per_s": admit_per_s, "admitted_max": admitted_max, "admit_ttl_s": admit_ttl_s,
                "stock_factor_pct": stock_factor_pct, "queue_max": queue_max,
            });
            // Only the settings given: absent ones are kept.
            let body: serde_json::Map<String, serde_json::Value> = body
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if body.is_empty() {
                bail!("give at least one setting (--admit-per-s N, ...)");
            }
            let v: AdminCampaignView = client
                .call("POST", &path, Some(serde_json::to_vec(&body)?))
                .await?;
            match v.waiting_room_settings {
                Some(r) => writeln!(
                    out,
                    "campaign {}: waiting room admits {}/s, at most {} at once, admissions valid {} s,                      {} % of the units left, at most {} queued",
                    v.view.id, r.admit_per_s, r.admitted_max, r.admit_ttl_s, r.stock_factor_pct, r.queue_max
                )?,
                None => writeln!(out, "campaign {}: no waiting room", v.view.id)?,
            }
        }
        AdminCommand::Reconcile(c) => {
            let path = format!("/admin/v1/campaigns/{}/reconcile", seg(c.id())?);
            let c: ReconcileCheck = client.call("GET", &path, None).await?;
            writeln!(
                out,
                "campaign {}: stock {}, durable orders hold {}, ledger holds {}, ledger has {} left ({}), \
                 {} holds without a record, {} records without a hold, {} queued",
                c.campaign_id,
                c.stock_total,
                c.durable,
                c.held,
                c.stock_left,
                if c.conserved { "conserved" } else { "NOT conserved" },
                c.holds_without_record,
                c.records_without_hold,
                c.orders_queued
            )?;
            if !c.ledger_loaded {
                writeln!(out, "the ledger does not hold this campaign (lost?)")?;
            }
            writeln!(out, "{}", c.advice)?;
            return Ok(c.clean);
        }
        AdminCommand::Export {
            campaign,
            format,
            out: file,
        } => {
            let fmt = match format {
                ExportFormat::Csv => "csv",
                ExportFormat::Json => "json",
            };
            let path = format!(
                "/admin/v1/campaigns/{}/orders?format={fmt}",
                seg(campaign.id())?
            );
            let (_, body) = client.raw("GET", &path, None).await?;
            let rows = match format {
                ExportFormat::Csv => body
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    .saturating_sub(1),
                ExportFormat::Json => serde_json::from_slice::<Vec<serde_json::Value>>(&body)
                    .context("the export is not a JSON array")?
                    .len(),
            };
            match file {
                Some(f) => {
                    std::fs::write(&f, &body)
                        .with_context(|| format!("writing {}", f.display()))?;
                    eprintln!("{rows} orders written to {}", f.display());
                }
                None => {
                    out.write_all(&body)?;
                    eprintln!("{rows} orders");
                }
            }
        }
    }
    Ok(true)
}

/// A campaign id as a path segment: one the engine would not accept is
/// refused here rather than sent mangled.
fn seg(id: &str) -> anyhow::Result<&str> {
    engine::CampaignId::parse(id)
        .map_err(|e| anyhow::anyhow!("{id:?} is not a campaign id: {e}"))?;
    Ok(id)
}

/// The campaign file as the API's JSON spec. Besides the spec's fields
/// (`title`, `price_cents`, `stock`, `starts_at_ms`, `ends_at_ms`, ...) it
/// may say `starts_in_s` and `duration_s` (resolved against the
/// gateway's clock) and `expected_buyers` (for validate only).
async fn spec_from_file(
    client: &AdminClient,
    file: &Path,
) -> anyhow::Result<(Vec<u8>, Option<u64>)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", file.display()))?;
    let int = |table: &mut toml::Table, key: &str| -> anyhow::Result<Option<u64>> {
        match table.remove(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) if i >= 0 => Ok(Some(i as u64)),
            Some(v) => bail!(
                "{}: {key} must be a non-negative integer, not {v}",
                file.display()
            ),
        }
    };
    let expected_buyers = int(&mut table, "expected_buyers")?;
    let starts_in_s = int(&mut table, "starts_in_s")?;
    let duration_s = int(&mut table, "duration_s")?;
    if starts_in_s.is_some() || duration_s.is_some() {
        let now: crate::api::ServerTime = client.call("GET", "/api/v1/time", None).await?;
        let starts = match (starts_in_s, table.get("starts_at_ms")) {
            (Some(_), Some(_)) => bail!(
                "{}: give starts_in_s or starts_at_ms, not both",
                file.display()
            ),
            (Some(s), None) => now.now_ms.saturating_add(s.saturating_mul(1000)),
            (None, Some(toml::Value::Integer(ms))) => (*ms).max(0) as u64,
            (None, _) => bail!(
                "{}: duration_s needs starts_in_s or an integer starts_at_ms",
                file.display()
            ),
        };
        table.insert("starts_at_ms".into(), toml::Value::Integer(starts as i64));
        if let Some(d) = duration_s {
            if table.contains_key("ends_at_ms") {
                bail!(
                    "{}: give duration_s or ends_at_ms, not both",
                    file.display()
                );
            }
            let ends = starts.saturating_add(d.saturating_mul(1000));
            table.insert("ends_at_ms".into(), toml::Value::Integer(ends as i64));
        }
    }
    let json = serde_json::to_vec(&table).context("converting the campaign to JSON")?;
    Ok((json, expected_buyers))
}

fn print_campaign(out: &mut impl Write, v: &AdminCampaignView) -> std::io::Result<()> {
    let c = &v.view;
    writeln!(
        out,
        "{}  {:?}  state {:?}, control {:?}  stock {} (remaining {})  price {}.{:02}  \
         starts {}  ends {}  quiz {} ({} questions)  pay within {} s{}",
        c.id,
        c.title,
        c.state,
        v.control,
        c.stock_total,
        c.remaining_hint.map_or("?".into(), |r| r.to_string()),
        c.price_cents / 100,
        c.price_cents % 100,
        c.starts_at_ms,
        c.ends_at_ms,
        c.quiz,
        v.quiz_questions,
        c.payment_window_s,
        if v.load_test { "  LOAD TEST" } else { "" }
    )
}

async fn control(
    client: &AdminClient,
    out: &mut impl Write,
    id: &str,
    action: &str,
) -> anyhow::Result<()> {
    let path = format!("/admin/v1/campaigns/{}/{action}", seg(id)?);
    let v: AdminCampaignView = client.call("POST", &path, Some(b"{}".to_vec())).await?;
    writeln!(
        out,
        "{action}: campaign {} is now {:?}",
        v.view.id, v.control
    )?;
    print_campaign(out, &v)?;
    Ok(())
}

async fn preload(
    client: &AdminClient,
    out: &mut impl Write,
    id: &str,
    wait_s: u64,
) -> anyhow::Result<()> {
    let path = format!(
        "/admin/v1/campaigns/{}/preload?wait_ms={PRELOAD_POLL_WAIT_MS}",
        seg(id)?
    );
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "quiz bank {bar:40} {pos}/{len} images ({per_sec}, eta {eta})",
        )
        .context("progress style")?,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(wait_s);
    let mut last_line = None;
    let report: PreloadReport = loop {
        let report: PreloadReport = client.call("POST", &path, Some(b"{}".to_vec())).await?;
        let Some(q) = &report.quiz_images else {
            break report;
        };
        bar.set_length(u64::from(q.status.total));
        bar.set_position(u64::from(q.status.done));
        if bar.is_hidden() && last_line != Some(q.status.done) {
            // Not a terminal: the progress as lines.
            eprintln!("quiz bank: {}/{} images", q.status.done, q.status.total);
            last_line = Some(q.status.done);
        }
        if q.status.complete {
            break report;
        }
        if std::time::Instant::now() >= deadline {
            bar.abandon();
            bail!(
                "the quiz bank is not drawn after {wait_s} s ({}/{}); it goes on in the gateway: run preload again to follow it",
                q.status.done,
                q.status.total
            );
        }
    };
    bar.finish();
    writeln!(
        out,
        "preloaded {}: stock {} (remaining {}), page {} written to {}",
        report.campaign_id,
        report.stock_total,
        report.remaining.map_or("?".into(), |r| r.to_string()),
        report.page,
        report.static_page_file
    )?;
    if let Some(q) = &report.quiz_images {
        writeln!(
            out,
            "quiz bank: {} images in {} ({} threads, {} ms)",
            q.status.total, q.dir, q.threads, q.status.ms
        )?;
    }
    Ok(())
}

async fn status(
    client: &AdminClient,
    out: &mut impl Write,
    id: &str,
    watch: bool,
    interval_ms: u64,
    count: Option<u64>,
) -> anyhow::Result<()> {
    let path = format!("/admin/v1/campaigns/{}/stats", seg(id)?);
    let tty = std::io::stdout().is_terminal();
    let rounds = if watch { count.unwrap_or(u64::MAX) } else { 1 };
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms.max(100)));
    for round in 0..rounds {
        tick.tick().await;
        let s: Stats = client.call("GET", &path, None).await?;
        if watch && tty {
            write!(out, "\x1b[2J\x1b[H")?;
        }
        print_stats(out, &s, watch.then_some(round + 1))?;
        out.flush()?;
    }
    Ok(())
}

fn print_stats(out: &mut impl Write, s: &Stats, round: Option<u64>) -> std::io::Result<()> {
    let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    if let Some(r) = round {
        writeln!(out, "-- {} (refresh {r})", s.campaign_id)?;
    }
    writeln!(
        out,
        "campaign {}: stock {}  sold {}  remaining {}  reserved {}",
        s.campaign_id,
        s.stock_total,
        s.sold,
        opt(s.remaining),
        opt(s.reserved)
    )?;
    writeln!(
        out,
        "orders: queued {}  persisted {}  paid {}  expired {}  cancelled {}  units returned {}  dead-lettered {}",
        s.orders_queued,
        s.orders_persisted,
        s.orders_paid,
        s.orders_expired,
        s.orders_cancelled,
        s.units_returned,
        s.orders_dead_lettered
    )?;
    if let Some(r) = &s.waiting_room {
        writeln!(
            out,
            "waiting room: queued {}  waiting {}  admitted {} ({}/s of {}/s)  active {} of {}  abandoned {}{}  \
             estimates within 30%: {} of {}",
            r.queued,
            r.waiting,
            r.admitted,
            r.admitted_per_s,
            r.settings.admit_per_s,
            r.active,
            r.capacity,
            r.abandoned,
            if r.queue_sold_out { "  QUEUE SOLD OUT" } else { "" },
            r.eta_accuracy.within_30pct,
            r.eta_accuracy.samples
        )?;
    }
    let rejected: Vec<String> = s.rejected.iter().map(|(k, v)| format!("{k} {v}")).collect();
    writeln!(
        out,
        "requests/s {}  rejected: {}",
        s.requests_per_s,
        if rejected.is_empty() {
            "none".into()
        } else {
            rejected.join(", ")
        }
    )
}
