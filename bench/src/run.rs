//! One run: set the sale up, send grabs open- or closed-loop over keep-alive
//! connections, report, read the sale back.

use crate::client::{authority, Admin, Conn};
use crate::sale::{self, Buyers, Fixture};
use crate::{Args, Mode};
use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Latencies are recorded in microseconds, up to this (an answer slower
/// than a minute is recorded as a minute).
const LATENCY_MAX_US: u64 = 60_000_000;
/// The campaign starts this long after it is created: the connections are
/// open and the buyers ready by then.
const LEAD: Duration = Duration::from_secs(3);

/// What one connection saw.
struct Tally {
    latency: Histogram<u64>,
    outcomes: BTreeMap<String, u64>,
    acknowledged: Vec<String>,
    /// Requests answered per second of the run, and 202s per second.
    per_second: Vec<(u64, u64)>,
}

impl Tally {
    fn new(seconds: usize) -> anyhow::Result<Self> {
        Ok(Self {
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)?,
            outcomes: BTreeMap::new(),
            acknowledged: Vec::new(),
            per_second: vec![(0, 0); seconds],
        })
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.latency.add(&other.latency)?;
        for (k, n) in other.outcomes {
            *self.outcomes.entry(k).or_default() += n;
        }
        self.acknowledged.extend(other.acknowledged);
        for (mine, theirs) in self.per_second.iter_mut().zip(other.per_second) {
            mine.0 += theirs.0;
            mine.1 += theirs.1;
        }
        Ok(())
    }
}

/// Shared between the connections and the progress line.
#[derive(Default)]
struct Live {
    next: AtomicU64,
    answered: AtomicU64,
    accepted: AtomicU64,
    failed: AtomicU64,
    sold_out: AtomicBool,
}

/// One request of a run.
pub struct Req {
    pub method: &'static str,
    pub path: Arc<str>,
    pub token: Option<String>,
    pub body: Bytes,
}

/// How request `i` of a run is made.
enum Plan {
    Grab {
        path: Arc<str>,
        buyers: Arc<Buyers>,
        users: u64,
    },
    Funnel(Arc<Vec<Fixture>>),
    Get(Arc<str>),
    /// Each buyer joins the queue once.
    Join {
        path: Arc<str>,
        buyers: Arc<Buyers>,
        users: u64,
    },
}

impl Plan {
    /// Request `i`, or `None` when the run has no more (the funnel's
    /// prepared buyers are used up).
    fn request(&self, i: u64) -> anyhow::Result<Option<Req>> {
        Ok(Some(match self {
            Self::Grab {
                path,
                buyers,
                users,
            } => Req {
                method: "POST",
                path: Arc::clone(path),
                token: Some(buyers.token(i % users)?),
                body: Bytes::from_static(b"{}"),
            },
            Self::Funnel(fixtures) => {
                let Some(f) = usize::try_from(i).ok().and_then(|i| fixtures.get(i)) else {
                    return Ok(None);
                };
                Req {
                    method: "POST",
                    path: Arc::clone(&f.path),
                    token: Some(f.token.clone()),
                    body: f.body.clone(),
                }
            }
            Self::Join {
                path,
                buyers,
                users,
            } => {
                if i >= *users {
                    return Ok(None);
                }
                Req {
                    method: "POST",
                    path: Arc::clone(path),
                    token: Some(buyers.token(i)?),
                    body: Bytes::from_static(b"{}"),
                }
            }
            Self::Get(path) => Req {
                method: "GET",
                path: Arc::clone(path),
                token: None,
                body: Bytes::new(),
            },
        }))
    }
}

pub async fn main(args: Args) -> anyhow::Result<bool> {
    let authority = authority(&args.url)?;
    // The sale, for every mode but `get`.
    let sale = if args.mode == Mode::Get {
        None
    } else {
        let token = args
            .admin_token
            .as_deref()
            .context("--admin-token (or SECKILL_ADMIN_TOKEN) is needed to set the sale up")?;
        let admin = Admin::new(&args.url, token);
        let (shape, lead) = match args.mode {
            Mode::Funnel => (sale::Shape::Funnel, LEAD),
            // The sale starts after the run: every join is pre-queued.
            Mode::Join => (
                sale::Shape::Room,
                LEAD + Duration::from_secs(args.duration_s.saturating_add(60)),
            ),
            _ => (sale::Shape::Plain, LEAD),
        };
        let c = sale::setup(&admin, args.campaign.as_deref(), args.stock, lead, shape).await?;
        Some((admin, c))
    };
    let users = args.users.max(1);
    eprintln!(
        "seckill-bench: {:?} {}, {} connections, {} for {} s",
        args.mode,
        sale.as_ref().map_or(args.path.clone(), |(_, c)| format!(
            "on campaign {} ({} units), {users} buyers ({})",
            c.id,
            c.stock,
            if args.jwt_secret.is_some() {
                "tokens signed here"
            } else {
                "tokens minted by the admin API"
            },
        )),
        args.connections,
        args.rate.map_or("closed loop".to_string(), |r| format!(
            "open loop at {r} req/s"
        )),
        args.duration_s
    );
    let plan = match &sale {
        None => Plan::Get(args.path.as_str().into()),
        Some((_, c)) if args.mode == Mode::Campaign => {
            Plan::Get(format!("/api/v1/campaigns/{}", c.id).into())
        }
        Some((admin, c)) => {
            let run_tag = c.id.trim_start_matches("bench-").to_string();
            let count = if args.mode == Mode::Funnel {
                users.min(args.funnel_buyers)
            } else {
                users
            };
            let buyers =
                Arc::new(Buyers::new(admin, args.jwt_secret.as_deref(), &run_tag, count).await?);
            if args.mode == Mode::Join {
                Plan::Join {
                    path: format!("/api/v1/campaigns/{}/queue", c.id).into(),
                    buyers,
                    users,
                }
            } else if args.mode == Mode::Funnel {
                wait_for_start(admin, c).await?;
                let fixtures =
                    sale::funnel_fixtures(admin, &authority, c, &buyers, count, args.connections)
                        .await?;
                Plan::Funnel(Arc::new(fixtures))
            } else {
                Plan::Grab {
                    path: format!("/api/v1/campaigns/{}/grab", c.id).into(),
                    buyers,
                    users,
                }
            }
        }
    };
    let mut conns = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        conns.push(Conn::open(&authority).await?);
    }
    if let Some((admin, c)) = sale.as_ref().filter(|_| args.mode != Mode::Join) {
        wait_for_start(admin, c).await?;
    }

    let seconds = usize::try_from(args.duration_s)
        .unwrap_or(usize::MAX)
        .max(1)
        + 1;
    let live = Arc::new(Live::default());
    let plan = Arc::new(plan);
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration_s);
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (live, plan) = (Arc::clone(&live), Arc::clone(&plan));
        let rate = args.rate;
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::new(seconds)?;
            loop {
                let i = live.next.fetch_add(1, Ordering::Relaxed);
                let intended = match rate {
                    Some(r) => {
                        let at = start
                            + Duration::from_nanos(i.saturating_mul(1_000_000_000) / r.max(1));
                        if at >= end {
                            break;
                        }
                        tokio::time::sleep_until(at.into()).await;
                        at
                    }
                    None => {
                        let now = Instant::now();
                        if now >= end {
                            break;
                        }
                        now
                    }
                };
                let Some(req) = plan.request(i)? else { break };
                let result = conn.send(req).await;
                let done = Instant::now();
                let us =
                    u64::try_from(done.duration_since(intended).as_micros()).unwrap_or(u64::MAX);
                t.latency.record(us.clamp(1, LATENCY_MAX_US))?;
                let second = usize::try_from(done.duration_since(start).as_secs())
                    .unwrap_or(usize::MAX)
                    .min(seconds - 1);
                t.per_second[second].0 += 1;
                live.answered.fetch_add(1, Ordering::Relaxed);
                let outcome = match result {
                    Ok((202, body)) => {
                        let v: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        match v["order_id"].as_str() {
                            Some(id) => {
                                t.acknowledged.push(id.to_string());
                                t.per_second[second].1 += 1;
                                live.accepted.fetch_add(1, Ordering::Relaxed);
                                "202 accepted".to_string()
                            }
                            None => "202 without order_id".to_string(),
                        }
                    }
                    Ok((status @ 200..=299, _)) => format!("{status}"),
                    Ok((status, body)) => {
                        let v: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        let code = v["code"].as_str().unwrap_or("?");
                        if code == "sold_out" {
                            live.sold_out.store(true, Ordering::Relaxed);
                        }
                        format!("{status} {code}")
                    }
                    Err(e) => {
                        live.failed.fetch_add(1, Ordering::Relaxed);
                        // One line per failure kind, not per failure.
                        let kind = e.to_string();
                        let kind: String = kind.chars().take(60).collect();
                        format!("error {kind}")
                    }
                };
                *t.outcomes.entry(outcome).or_default() += 1;
            }
            Ok::<_, anyhow::Error>(t)
        }));
    }
    let progress = {
        let live = Arc::clone(&live);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut last = 0;
            loop {
                tick.tick().await;
                let answered = live.answered.load(Ordering::Relaxed);
                eprintln!(
                    "  {:>4.0} s  {:>8} req/s  answered {:>9}  accepted {:>8}  errors {}",
                    start.elapsed().as_secs_f64(),
                    answered - last,
                    answered,
                    live.accepted.load(Ordering::Relaxed),
                    live.failed.load(Ordering::Relaxed)
                );
                last = answered;
            }
        })
    };
    let mut total = Tally::new(seconds)?;
    for t in tasks {
        total.merge(t.await??)?;
    }
    progress.abort();
    let elapsed = start.elapsed().as_secs_f64();
    let acknowledged: HashSet<String> = total.acknowledged.iter().cloned().collect();
    // Only grabs make a sale to check.
    let verdict = match &sale {
        Some((admin, c)) if matches!(args.mode, Mode::Grab | Mode::Funnel) && !args.no_verify => {
            Some(
                sale::verify(
                    admin,
                    c,
                    &acknowledged,
                    live.sold_out.load(Ordering::Relaxed),
                    Duration::from_secs(args.drain_wait_s),
                )
                .await?,
            )
        }
        _ => None,
    };

    let answered: u64 = total.outcomes.values().sum();
    let errors = live.failed.load(Ordering::Relaxed);
    let h = &total.latency;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "seckill-bench report{}",
        args.label
            .as_deref()
            .map_or(String::new(), |l| format!(" ({l})"))
    );
    println!(
        "  mode        {:?}, {}",
        args.mode,
        args.rate.map_or("closed loop".to_string(), |r| format!(
            "open loop, {r} req/s intended (latency from the intended send time)"
        ))
    );
    println!(
        "  requests    {answered} in {elapsed:.1} s: {:.0} req/s",
        answered as f64 / elapsed
    );
    println!(
        "  latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0
    );
    println!("  outcomes");
    for (k, n) in &total.outcomes {
        println!("    {k:<40} {n:>10}");
    }
    let mut ok = errors == 0 || verdict.is_some();
    if let (Some(v), Some((_, c))) = (&verdict, &sale) {
        println!(
            "  sale        stock {}, winners {}, acknowledged {}, persisted {}, paid {}, remaining {}",
            c.stock,
            v.winners,
            acknowledged.len(),
            v.persisted,
            v.paid,
            v.remaining.map_or("?".to_string(), |r| r.to_string())
        );
        ok = v.problems.is_empty() && total.acknowledged.len() == acknowledged.len();
        if ok {
            println!("  invariants  hold (every 202 stored, nothing stored unacknowledged, no buyer twice, stock conserved)");
        } else {
            for p in &v.problems {
                println!("  VIOLATED    {p}");
            }
            if total.acknowledged.len() != acknowledged.len() {
                println!("  VIOLATED    one order id acknowledged twice");
            }
        }
    } else if errors > 0 {
        println!("  FAILED      {errors} requests got no answer");
    }
    if let (Mode::Join, Some((admin, c)), false) = (args.mode, &sale, args.no_verify) {
        let joined = total.outcomes.get("200").copied().unwrap_or(0);
        // The room's numbers are refreshed every 100 ms: read until they
        // agree, for at most two seconds.
        let mut queued = None;
        for _ in 0..20 {
            let stats = admin
                .call("GET", &format!("/admin/v1/campaigns/{}/stats", c.id), None)
                .await?;
            queued = stats["waiting_room"]["pre_queued"].as_u64();
            if queued == Some(joined) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "  queue       {joined} joins answered 200; the room holds {}",
            queued.map_or("?".to_string(), |q| q.to_string())
        );
        if queued != Some(joined) {
            println!("  VIOLATED    the room does not hold exactly the buyers who joined");
            ok = false;
        }
    }
    if let Some(dir) = &args.svg_dir {
        let files = crate::charts::write(dir, &total.latency, &total.per_second, args.rate)?;
        for f in files {
            println!("  chart       {}", f.display());
        }
    }
    if args.json {
        let report = serde_json::json!({
            "label": args.label,
            "mode": format!("{:?}", args.mode).to_lowercase(),
            "rate": args.rate,
            "connections": args.connections,
            "campaign_id": sale.as_ref().map(|(_, c)| c.id.clone()),
            "requests": answered,
            "errors": errors,
            "seconds": elapsed,
            "requests_per_s": answered as f64 / elapsed,
            "latency_ms": { "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p99_9": ms(0.999), "max": h.max() as f64 / 1000.0 },
            "outcomes": total.outcomes,
            "stock": sale.as_ref().map(|(_, c)| c.stock),
            "accepted": acknowledged.len(),
            "winners": verdict.as_ref().map(|v| v.winners),
            "acknowledged": acknowledged.len(),
            "invariants_hold": verdict.as_ref().map(|_| ok),
            "problems": verdict.as_ref().map(|v| v.problems.clone()).unwrap_or_default(),
        });
        println!("{report}");
    }
    Ok(ok)
}

/// Sleeps until the campaign's start (the gateway's clock, as read now).
async fn wait_for_start(admin: &Admin, c: &sale::Campaign) -> anyhow::Result<()> {
    let now_ms = admin.call("GET", "/api/v1/time", None).await?["now_ms"]
        .as_u64()
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(
        c.starts_at_ms.saturating_sub(now_ms) + 20,
    ))
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Tally;

    /// Merging the connections' tallies adds every count and keeps every
    /// recorded latency.
    #[test]
    fn tallies_merge_exactly() -> anyhow::Result<()> {
        let mut a = Tally::new(3)?;
        let mut b = Tally::new(3)?;
        a.latency.record(1_000)?;
        b.latency.record(9_000)?;
        b.latency.record(5_000)?;
        *a.outcomes.entry("202 accepted".into()).or_default() += 2;
        *b.outcomes.entry("202 accepted".into()).or_default() += 1;
        *b.outcomes.entry("410 sold_out".into()).or_default() += 4;
        a.acknowledged.push("x".into());
        b.acknowledged.push("y".into());
        a.per_second[0] = (3, 2);
        b.per_second[0] = (1, 1);
        b.per_second[2] = (4, 0);
        a.merge(b)?;
        assert_eq!(a.latency.len(), 3);
        assert_eq!(a.latency.max(), a.latency.highest_equivalent(9_000));
        assert_eq!(a.outcomes["202 accepted"], 3);
        assert_eq!(a.outcomes["410 sold_out"], 4);
        assert_eq!(a.acknowledged, vec!["x".to_string(), "y".to_string()]);
        assert_eq!(a.per_second, vec![(4, 3), (0, 0), (4, 0)]);
        Ok(())
    }
}
