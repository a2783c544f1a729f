//! One run: set the sale up, send grabs open- or closed-loop over keep-alive
//! connections, report, read the sale back.

use crate::client::{authority, Admin, Conn};
use crate::sale::{self, Buyers};
use crate::Args;
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

pub async fn main(args: Args) -> anyhow::Result<bool> {
    let admin = Admin::new(&args.url, &args.admin_token);
    let authority = authority(&args.url)?;
    let c = sale::setup(&admin, args.campaign.as_deref(), args.stock, LEAD).await?;
    let run_tag = c.id.trim_start_matches("bench-").to_string();
    eprintln!(
        "seckill-bench: campaign {} ({} units), {} buyers ({}), {} connections, {} for {} s",
        c.id,
        c.stock,
        args.users,
        if args.jwt_secret.is_some() {
            "tokens signed here"
        } else {
            "tokens minted by the admin API"
        },
        args.connections,
        args.rate.map_or("closed loop".to_string(), |r| format!(
            "open loop at {r} req/s"
        )),
        args.duration_s
    );
    let buyers =
        Arc::new(Buyers::new(&admin, args.jwt_secret.as_deref(), &run_tag, args.users).await?);
    let mut conns = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        conns.push(Conn::open(&authority).await?);
    }
    // Start on the campaign's start (the gateway's clock, as read just now).
    let now_ms = admin.call("GET", "/api/v1/time", None).await?["now_ms"]
        .as_u64()
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(
        c.starts_at_ms.saturating_sub(now_ms) + 20,
    ))
    .await;

    let seconds = usize::try_from(args.duration_s)
        .unwrap_or(usize::MAX)
        .max(1)
        + 1;
    let live = Arc::new(Live::default());
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration_s);
    let grab_path: Arc<str> = format!("/api/v1/campaigns/{}/grab", c.id).into();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (live, buyers, path) = (
            Arc::clone(&live),
            Arc::clone(&buyers),
            Arc::clone(&grab_path),
        );
        let (rate, users) = (args.rate, args.users.max(1));
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
                let token = buyers.token(i % users)?;
                let result = conn.send("POST", &path, &token, b"{}").await;
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
    let verdict = sale::verify(
        &admin,
        &c,
        &acknowledged,
        live.sold_out.load(Ordering::Relaxed),
    )
    .await?;

    let answered: u64 = total.outcomes.values().sum();
    let h = &total.latency;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!("seckill-bench report");
    println!(
        "  mode        {}",
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
    println!(
        "  sale        stock {}, winners {}, acknowledged {}, persisted {}, paid {}, remaining {}",
        c.stock,
        verdict.winners,
        acknowledged.len(),
        verdict.persisted,
        verdict.paid,
        verdict.remaining.map_or("?".to_string(), |r| r.to_string())
    );
    let ok = verdict.problems.is_empty() && total.acknowledged.len() == acknowledged.len();
    if ok {
        println!("  invariants  hold (every 202 stored, nothing stored unacknowledged, no buyer twice, stock conserved)");
    } else {
        for p in &verdict.problems {
            println!("  VIOLATED    {p}");
        }
        if total.acknowledged.len() != acknowledged.len() {
            println!("  VIOLATED    one order id acknowledged twice");
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
            "campaign_id": c.id,
            "requests": answered,
            "seconds": elapsed,
            "requests_per_s": answered as f64 / elapsed,
            "latency_ms": { "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p99_9": ms(0.999), "max": h.max() as f64 / 1000.0 },
            "outcomes": total.outcomes,
            "stock": c.stock,
            "winners": verdict.winners,
            "acknowledged": acknowledged.len(),
            "invariants_hold": ok,
            "problems": verdict.problems,
        });
        println!("{report}");
    }
    Ok(ok)
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
