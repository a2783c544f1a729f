//! Hot items over HTTP (acceptance 2 of issue 8): a campaign with 10x the
//! traffic of the others is reported hot within 3 s, and while it is
//! hammered the other campaigns' grabs keep their latency and are never
//! shed for lack of in-flight permits.

mod common;

use common::prod::metric;
use common::{users, Server, ADMIN_TOKEN};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Campaign ids `GET /admin/v1/hot` lists now, and its window.
async fn hot_now(g: &Server) -> (Vec<String>, u64) {
    let r = g.get("/admin/v1/hot", Some(ADMIN_TOKEN)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let ids = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            assert!(i["requests_per_s"].as_f64().is_some(), "{i}");
            i["campaign_id"].as_str().expect("id").to_string()
        })
        .collect();
    (ids, v["window_ms"].as_u64().expect("window_ms"))
}

/// Status reads of `id` at `per_s` until `stop`.
fn poll_status(
    g: &Arc<Server>,
    id: &str,
    per_s: u64,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let (g, path, stop) = (
        Arc::clone(g),
        format!("/api/v1/campaigns/{id}"),
        Arc::clone(stop),
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_s));
        // Bounded: 60 s at most, whatever happens to `stop`.
        for _ in 0..per_s * 60 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            tick.tick().await;
            let g = Arc::clone(&g);
            let path = path.clone();
            tokio::spawn(async move {
                let _ = g.try_call("GET", &path, None, None, "").await;
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_with_ten_times_the_traffic_is_reported_hot_within_3_s() {
    let dir = tempfile::tempdir().expect("tempdir");
    let envs = [("SECKILL_HOT_THRESHOLD_PER_S", "100".to_string())];
    let g = Arc::new(Server::start_with(&dir.path().join("g"), &[], &envs));
    for id in ["busy", "calm1", "calm2"] {
        g.create_campaign(json!({ "id": id })).await;
    }
    let (hot, window_ms) = hot_now(&g).await;
    assert!(hot.is_empty(), "{hot:?}");
    assert!(window_ms <= 3_000);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let load = [
        poll_status(&g, "busy", 300, &stop),
        poll_status(&g, "calm1", 30, &stop),
        poll_status(&g, "calm2", 30, &stop),
    ];
    let mut found = None;
    while started.elapsed() < Duration::from_secs(6) {
        let (hot, _) = hot_now(&g).await;
        assert!(
            !hot.iter().any(|id| id.starts_with("calm")),
            "a calm campaign reported hot: {hot:?}"
        );
        if hot == ["busy"] {
            found = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let found = found.expect("the busy campaign was not reported hot within 6 s");
    println!("reported hot after {found:?}");
    assert!(found < Duration::from_secs(3), "reported after {found:?}");
    // Stats and metrics say the same.
    let stats = g.stats("busy").await;
    let rate = stats["requests_per_s"].as_f64().expect("requests_per_s");
    let calm = g.stats("calm1").await["requests_per_s"]
        .as_f64()
        .expect("requests_per_s");
    println!("busy {rate}/s, calm {calm}/s");
    assert!(rate > 5.0 * calm, "busy {rate}, calm {calm}");
    assert_eq!(
        metric(&g, "seckill_campaign_hot{campaign=\"busy\"}").await,
        Some(1.0)
    );
    assert_eq!(
        metric(&g, "seckill_campaign_hot{campaign=\"calm1\"}").await,
        Some(0.0)
    );
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.expect("load task");
    }
}

/// Grab latencies of `tokens` on `id`, one at a time; (p99, statuses that
/// were not 202).
async fn timed_grabs(g: &Server, id: &str, tokens: &[String]) -> (Duration, Vec<(u16, String)>) {
    let mut times = Vec::with_capacity(tokens.len());
    let mut other = Vec::new();
    for t in tokens {
        let start = Instant::now();
        let r = g.grab(id, t).await;
        times.push(start.elapsed());
        if r.status != 202 {
            other.push((r.status, r.code()));
        }
        // A steady buyer, not a hammer: about 50 grabs a second.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    times.sort();
    (times[times.len() * 99 / 100], other)
}

/// The ratio the other campaign's p99 may grow by while the hot one is
/// hammered on the same 2-core machine: the hammer's CPU is shared, its
/// in-flight permits are not. Measured 1.8x to 6.1x (other builds running
/// on the machine); with the hot queue switched off, 9.3x and most grabs
/// refused 503.
const P99_RATIO_MAX: f64 = 8.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_campaigns_keep_their_latency_while_a_hot_one_is_hammered() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 32 grabs in flight at most: the hot campaign's share is 8.
    let envs = [("SECKILL_HOT_THRESHOLD_PER_S", "100".to_string())];
    let g = Arc::new(Server::start_with(
        &dir.path().join("g"),
        &["--grabs-inflight-max", "32"],
        &envs,
    ));
    g.create_campaign(json!({ "id": "hot", "stock": 100_000, "per_user_limit": 100 }))
        .await;
    g.create_campaign(json!({ "id": "other", "stock": 1_000 }))
        .await;
    let hammer_tokens = Arc::new(g.tokens(&users("hammer-", 1_000)).await);
    let calm = g.tokens(&users("calm-", 620)).await;
    // Warm up, then the other campaign's p99 without the hammering.
    let _ = timed_grabs(&g, "other", &calm[..20]).await;
    let (p99_quiet, other) = timed_grabs(&g, "other", &calm[20..320]).await;
    assert!(other.is_empty(), "quiet grabs refused: {other:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let hammer: Vec<_> = (0..64)
        .map(|w| {
            let (g, tokens, stop) = (
                Arc::clone(&g),
                Arc::clone(&hammer_tokens),
                Arc::clone(&stop),
            );
            tokio::spawn(async move {
                let mut seen = std::collections::HashMap::<(u16, String), usize>::new();
                // Bounded in count, and by `stop`.
                for i in 0..100_000usize {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let t = &tokens[(w + 64 * i) % tokens.len()];
                    if let Some(r) = g.try_grab("hot", t).await {
                        *seen.entry((r.status, r.code())).or_default() += 1;
                    }
                }
                seen
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if hot_now(&g).await.0 == ["hot"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hammered campaign never became hot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (p99_hammered, other) = timed_grabs(&g, "other", &calm[320..620]).await;
    stop.store(true, Ordering::Relaxed);
    let mut hot_outcomes = std::collections::HashMap::<(u16, String), usize>::new();
    for h in hammer {
        for (k, n) in h.await.expect("hammer task") {
            *hot_outcomes.entry(k).or_default() += n;
        }
    }
    let ratio = p99_hammered.as_secs_f64() / p99_quiet.as_secs_f64();
    println!(
        "other campaign p99: quiet {p99_quiet:?}, while hot is hammered {p99_hammered:?} \
         (ratio {ratio:.2}); hot campaign outcomes {hot_outcomes:?}"
    );
    assert!(
        other.is_empty(),
        "{} of the other campaign's grabs were refused, e.g. {:?}",
        other.len(),
        other.first()
    );
    assert!(
        hot_outcomes
            .get(&(202, String::new()))
            .copied()
            .unwrap_or(0)
            > 0,
        "the hammer sold nothing: {hot_outcomes:?}"
    );
    assert!(
        ratio <= P99_RATIO_MAX,
        "p99 grew {ratio:.2}x: {p99_quiet:?} -> {p99_hammered:?}"
    );
}
