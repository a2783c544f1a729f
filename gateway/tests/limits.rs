//! Rate limits over HTTP (acceptance 1 of issue 8): one address at 10x
//! its limit, one buyer behind many addresses, a campaign limit shared by
//! two gateways, and bounded memory under a flood of new keys.
//!
//! Every count is compared with what the bucket allows over the measured
//! run (`burst + rate x elapsed`), within 10%.

mod common;

use bytes::Bytes;
use common::prod::{eventually, metric, ProdEnv};
use common::{users, Server};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn limits_on(extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut envs = vec![("SECKILL_LIMITS", "on".to_string())];
    envs.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    envs
}

/// A config file that believes `X-Forwarded-For` from the loopback (the
/// test plays the load balancer).
fn behind_proxy(dir: &std::path::Path) -> String {
    let path = dir.join("proxy.toml");
    std::fs::write(&path, "[limits]\ntrusted_proxies = [\"127.0.0.1\"]\n").expect("config");
    path.to_str().expect("utf-8").to_string()
}

/// One request with an optional bearer token and `X-Forwarded-For`;
/// (status, code, headers).
async fn send(
    g: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    xff: Option<String>,
) -> (u16, String, http::HeaderMap) {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("{}{}", g.base, path));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(x) = xff {
        req = req.header("x-forwarded-for", x);
    }
    if method == "POST" {
        req = req.header("content-type", "application/json");
    }
    let body = if method == "POST" { "{}" } else { "" };
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(30), g.client.request(req))
        .await
        .expect("answer within 30 s")
        .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let code = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default()["code"]
        .as_str()
        .unwrap_or("")
        .to_string();
    (status, code, headers)
}

/// Sends `n` requests paced at `per_s` (each its own task, so a slow answer
/// does not slow the pace); the answers and the time from the first send
/// to the last.
async fn paced<F, Fut>(per_s: u64, n: usize, make: F) -> (Vec<(u16, String)>, Duration)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = (u16, String, http::HeaderMap)> + Send + 'static,
{
    let start = tokio::time::Instant::now();
    let every = Duration::from_micros(1_000_000 / per_s);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(start + every * i as u32).await;
        let fut = make(i);
        tasks.push(tokio::spawn(async move {
            let (s, c, _) = fut.await;
            (s, c)
        }));
    }
    let elapsed = start.elapsed();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.expect("request task"));
    }
    (out, elapsed)
}

/// What a GCRA bucket of `burst` refilled at `per_s` admits over `elapsed`.
fn allowed(per_s: u64, burst: u64, elapsed: Duration) -> f64 {
    burst as f64 + per_s as f64 * elapsed.as_secs_f64()
}

fn assert_within_10pct(what: &str, admitted: usize, expected: f64) {
    let ratio = admitted as f64 / expected;
    println!("{what}: admitted {admitted}, bucket allows {expected:.1} (ratio {ratio:.3})");
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{what}: admitted {admitted}, expected {expected:.1}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_at_ten_times_its_limit_is_held_to_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let envs = limits_on(&[
        ("SECKILL_RATE_IP_PER_S", "20"),
        ("SECKILL_RATE_IP_BURST", "20"),
    ]);
    let g = Arc::new(Server::start_with(&dir.path().join("g"), &[], &envs));
    g.create_campaign(json!({ "id": "ip-c", "stock": 10 }))
        .await;
    // 200 requests a second for 5 s: 10x the limit.
    let (answers, elapsed) = paced(200, 1_000, |_| {
        let g = Arc::clone(&g);
        async move { send(&g, "GET", "/api/v1/campaigns/ip-c", None, None).await }
    })
    .await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let limited = answers
        .iter()
        .filter(|(s, c)| *s == 429 && c == "rate_limited")
        .count();
    assert_eq!(ok + limited, answers.len(), "only 200 or 429: {answers:?}");
    assert_within_10pct("one address", ok, allowed(20, 20, elapsed));

    // Empty the bucket again (it refilled while the last answers came
    // back); the 429 says so in its headers.
    let mut refused = None;
    for _ in 0..200 {
        let (status, code, h) = send(&g, "GET", "/api/v1/time", None, None).await;
        if status == 429 {
            refused = Some((code, h));
            break;
        }
    }
    let (code, h) = refused.expect("no 429 within 200 requests");
    assert_eq!(code, "rate_limited");
    let header = |name: &str| -> u64 {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing: {h:?}"))
    };
    assert!(header("retry-after") >= 1);
    assert_eq!(header("x-ratelimit-limit"), 20);
    assert_eq!(header("x-ratelimit-remaining"), 0);
    // Grabs from the same address are refused at the funnel's `ip` stage,
    // after the campaign's state (still cheap) and before the token (the
    // ones that pass it are 401 there: their token is bogus).
    let mut grab_429 = 0;
    for _ in 0..50 {
        let (status, _, _) = send(&g, "POST", "/api/v1/campaigns/ip-c/grab", Some("x"), None).await;
        assert!(status == 429 || status == 401, "{status}");
        grab_429 += usize::from(status == 429);
    }
    assert!(grab_429 > 25, "{grab_429} of 50 grabs refused");
    let at_ip = metric(
        &g,
        "seckill_funnel_refused_total{code=\"rate_limited\",stage=\"ip\"}",
    )
    .await;
    assert_eq!(at_ip, Some(grab_429 as f64));
    // Service endpoints are not buyer requests.
    assert_eq!(g.get("/healthz", None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_buyer_behind_many_addresses_is_held_to_the_buyer_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = behind_proxy(dir.path());
    let envs = limits_on(&[
        ("SECKILL_RATE_USER_PER_S", "10"),
        ("SECKILL_RATE_USER_BURST", "10"),
    ]);
    let g = Arc::new(Server::start_with(
        &dir.path().join("g"),
        &["--config", &config],
        &envs,
    ));
    g.create_campaign(json!({ "id": "user-c", "stock": 1000, "per_user_limit": 100 }))
        .await;
    let token = Arc::new(g.tokens(&users("nat-", 1)).await.remove(0));
    // 100 grabs a second for 5 s, each from another address.
    let (answers, elapsed) = paced(100, 500, |i| {
        let (g, token) = (Arc::clone(&g), Arc::clone(&token));
        let xff = format!("198.51.{}.{}", i / 250, i % 250 + 1);
        async move {
            send(
                &g,
                "POST",
                "/api/v1/campaigns/user-c/grab",
                Some(&token),
                Some(xff),
            )
            .await
        }
    })
    .await;
    let ok = answers.iter().filter(|(s, _)| *s == 202).count();
    let limited = answers.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!(ok + limited, answers.len(), "only 202 or 429: {answers:?}");
    assert_within_10pct("one buyer, many addresses", ok, allowed(10, 10, elapsed));
    let at_user = metric(
        &g,
        "seckill_funnel_refused_total{code=\"rate_limited\",stage=\"user\"}",
    )
    .await;
    assert_eq!(at_user, Some(limited as f64), "every refusal at `user`");
    // The same buyer polling an order is held by the same bucket (which
    // refilled a little while the last answers came back).
    let mut passed = 0;
    loop {
        let (status, _, _) = send(&g, "GET", "/api/v1/orders/nope", Some(&token), None).await;
        if status == 429 {
            break;
        }
        assert_eq!(status, 404);
        passed += 1;
        assert!(
            passed < 10,
            "order polling is not held by the buyer's bucket"
        );
    }
    // Another buyer from the same addresses is not.
    let other = g.tokens(&users("other-", 1)).await.remove(0);
    let xff = Some("198.51.0.1".to_string());
    let (status, _, _) = send(
        &g,
        "POST",
        "/api/v1/campaigns/user-c/grab",
        Some(&other),
        xff,
    )
    .await;
    assert_eq!(status, 202);
}

/// Production: both gateways spend one shared bucket per campaign (Redis),
/// so the total they admit is the campaign's limit, not twice it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_limit_holds_across_two_gateways() {
    let env = ProdEnv::new("ratelimit");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut envs = env.envs.clone();
    envs.extend(limits_on(&[
        ("SECKILL_RATE_CAMPAIGN_PER_S", "40"),
        ("SECKILL_RATE_CAMPAIGN_BURST", "10"),
        ("SECKILL_RATE_USER_PER_S", "1000"),
        ("SECKILL_RATE_IP_PER_S", "100000"),
        ("SECKILL_RATE_IP_BURST", "100000"),
    ]));
    let start = |name: &str| {
        Server::start_with(
            &dir.path().join(name),
            &["--config", common::prod::CONFIG],
            &envs,
        )
    };
    let g1 = Arc::new(start("g1"));
    let g2 = Arc::new(start("g2"));
    let campaign = format!("rl-{}", std::process::id());
    g1.create_campaign(json!({ "id": campaign, "stock": 5_000 }))
        .await;
    let path = format!("/api/v1/campaigns/{campaign}");
    assert!(
        eventually(10, async || g2.get(&path, None).await.status == 200).await,
        "the second gateway never learned the campaign"
    );
    let tokens = Arc::new(g1.tokens(&users("rl-", 2_000)).await);
    // 400 grabs a second over both gateways for 5 s: 10x the limit; each
    // buyer grabs once, so every admitted grab is a 202.
    let grab = format!("{path}/grab");
    let (answers, elapsed) = paced(400, 2_000, |i| {
        let g = Arc::clone(if i % 2 == 0 { &g1 } else { &g2 });
        let (tokens, grab) = (Arc::clone(&tokens), grab.clone());
        async move { send(&g, "POST", &grab, Some(&tokens[i]), None).await }
    })
    .await;
    let ok = answers.iter().filter(|(s, _)| *s == 202).count();
    let limited = answers.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!(ok + limited, answers.len(), "only 202 or 429: {answers:?}");
    let per_gateway = [0, 1].map(|k| {
        answers
            .iter()
            .enumerate()
            .filter(|(i, (s, _))| i % 2 == k && *s == 202)
            .count()
    });
    println!("admitted per gateway: {per_gateway:?}");
    assert!(
        per_gateway.iter().all(|&n| n > 0),
        "both gateways sell: {per_gateway:?}"
    );
    assert_within_10pct("campaign over two gateways", ok, allowed(40, 10, elapsed));
    // A refusal is kept locally until its retry time, so the shared state
    // is asked far less often than grabs arrive.
    let mut calls = 0.0;
    for g in [&g1, &g2] {
        calls += metric(g, "seckill_rate_limit_shared_calls_total")
            .await
            .expect("shared calls counter");
    }
    println!("shared-state calls {calls} for {} grabs", answers.len());
    assert!(
        calls < 0.6 * answers.len() as f64,
        "{calls} shared-state calls for {} grabs",
        answers.len()
    );
}

/// The gateway process under a flood of new addresses: the address table
/// never holds more than `keys_max`, newcomers past it are let through
/// (counted), and the process does not grow with the number of addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_stays_bounded_under_a_flood_of_new_addresses() {
    const CAP: usize = 5_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = behind_proxy(dir.path());
    let envs = limits_on(&[
        ("SECKILL_RATE_KEYS_MAX", "5000"),
        ("SECKILL_RATE_IP_PER_S", "1"),
        ("SECKILL_RATE_IP_BURST", "1"),
    ]);
    let g = Arc::new(Server::start_with(
        &dir.path().join("g"),
        &["--config", &config],
        &envs,
    ));
    let pid = g.child.id();
    let flood = |from: usize, to: usize| {
        let g = Arc::clone(&g);
        async move {
            let workers: Vec<_> = (0..32)
                .map(|w| {
                    let g = Arc::clone(&g);
                    tokio::spawn(async move {
                        let mut limited = 0;
                        for i in (from + w..to).step_by(32) {
                            let xff = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
                            let (s, _, _) = send(&g, "GET", "/api/v1/time", None, Some(xff)).await;
                            limited += usize::from(s == 429);
                        }
                        limited
                    })
                })
                .collect();
            let mut limited = 0;
            for w in workers {
                limited += w.await.expect("worker");
            }
            limited
        }
    };
    // Fill the table past its cap, then measure while as many again arrive.
    let started = Instant::now();
    assert_eq!(flood(0, 2 * CAP).await, 0, "each new address passes once");
    let keys = metric(&g, "seckill_rate_limit_keys{limit=\"ip\"}").await;
    assert!(keys.is_some_and(|k| k <= CAP as f64), "{keys:?}");
    let before = common::rss_kib(pid);
    let limited = flood(2 * CAP, 12 * CAP).await;
    let after = common::rss_kib(pid);
    let keys = metric(&g, "seckill_rate_limit_keys{limit=\"ip\"}")
        .await
        .expect("keys gauge");
    let overflow = metric(&g, "seckill_rate_limit_keys_overflow_total{limit=\"ip\"}")
        .await
        .expect("overflow counter");
    println!(
        "{} new addresses in {:?}: RSS {before} -> {after} KiB, keys {keys}, overflow {overflow}, limited {limited}",
        12 * CAP,
        started.elapsed()
    );
    assert!(keys <= CAP as f64, "the table passed its cap: {keys}");
    assert!(overflow > 0.0, "the cap was never reached");
    assert_eq!(limited, 0, "newcomers past the cap are not locked out");
    assert!(
        after.saturating_sub(before) < 8 * 1024,
        "RSS grew by {} KiB for {} new addresses",
        after.saturating_sub(before),
        10 * CAP
    );
    // Once idle, the table empties (sweep every second).
    assert!(
        eventually(10, async || {
            metric(&g, "seckill_rate_limit_keys{limit=\"ip\"}").await == Some(0.0)
        })
        .await,
        "idle keys were not swept"
    );
}

/// VmRSS of this test process, in KiB.
fn own_rss_kib() -> u64 {
    common::rss_kib(std::process::id())
}

/// The limiter structure in this process under 1,000,000 distinct keys:
/// it holds at most its cap, so memory stays flat past it, while the same
/// million keys uncapped cost tens of MB. (RSS of this process: the other
/// tests of this binary run meanwhile, so the bound is loose.)
#[test]
fn a_million_distinct_addresses_stay_within_the_cap() {
    use gateway::config::RateLimitSettings;
    use gateway::limits::RateLimits;
    const CAP: usize = 100_000;
    let clock = Arc::new(gateway::clock::ManualClock::new(1_700_000_000_000));
    let settings = RateLimitSettings {
        keys_max: CAP,
        ..RateLimitSettings::default()
    };
    let limits = RateLimits::new(&settings, clock);
    let before = own_rss_kib();
    let started = Instant::now();
    for i in 0..1_000_000u32 {
        let ip = std::net::IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
        assert!(limits.ip(ip).is_ok(), "a new address passes");
    }
    let after = own_rss_kib();
    let scrape = gateway::metrics::Scrape::new();
    limits.metrics(&scrape);
    let m = String::from_utf8(scrape.encode()).expect("utf-8");
    println!(
        "1,000,000 addresses in {:?}: RSS {before} -> {after} KiB\n{m}",
        started.elapsed()
    );
    assert!(
        m.contains(&format!("seckill_rate_limit_keys{{limit=\"ip\"}} {CAP}")),
        "{m}"
    );
    assert!(m.contains("seckill_rate_limit_keys_overflow_total{limit=\"ip\"} 900000"));
    assert!(
        after.saturating_sub(before) < 16 * 1024,
        "RSS grew by {} KiB",
        after.saturating_sub(before)
    );
}
