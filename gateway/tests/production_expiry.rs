//! Payment expiry in the production profile (acceptance 3 and 4 of issue
//! 9): two gateways on Redis, Kafka and MySQL, a writer, and `seckill
//! sweeper` processes, one of them stopped dead between its two steps
//! (expire in MySQL, release in Redis) each way.

mod common;

use common::expiry::{assert_final, buy, order, pay, pay_all, settle_race, stats_until, Bought};
use common::prod::{ProdEnv, CONFIG};
use common::{now_ms, spawn_ready, users, Proc};
use serde_json::json;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A `seckill sweeper`, optionally told to stop dead at `crash`.
fn sweeper(env: &ProdEnv, dir: &Path, name: &str, crash: Option<&str>) -> Proc {
    let mut envs = env.envs.clone();
    if let Some(point) = crash {
        envs.push(("SECKILL_SWEEPER_CRASH", point.to_string()));
    }
    let envs: Vec<(&str, String)> = envs.iter().map(|(k, v)| (*k, v.clone())).collect();
    let (child, _) = spawn_ready(
        &["sweeper", "--config", CONFIG],
        &envs,
        "seckill sweeper expiring",
        &dir.join(name),
    );
    Proc(child)
}

/// Waits (bounded) for a sweeper told to crash to die by a signal.
fn wait_crash(p: &mut Proc, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = p.0.try_wait().expect("wait") {
            assert!(
                status.signal().is_some(),
                "the sweeper exited instead of crashing: {status}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the sweeper did not crash within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (expired orders, of which marked released) in MySQL.
async fn expired_and_marked(env: &ProdEnv, campaign: &str) -> (i64, i64) {
    let pool = sqlx::MySqlPool::connect(&env.envs[0].1)
        .await
        .expect("mysql");
    let row = sqlx::query_as(
        "SELECT COUNT(*), COUNT(released_at_ms) FROM orders WHERE campaign_id = ? AND status = 'expired'",
    )
    .bind(campaign)
    .fetch_one(&pool)
    .await
    .expect("count");
    pool.close().await;
    row
}

/// Stock 10 over two gateways, 10 winners, 5 pay. A sweeper dies after its
/// first expiry (before any release), a second dies after its first
/// release (before its mark); two more sweepers finish the job together.
/// The 5 units are then sold again to 4 new buyers and to one buyer whose
/// order expired (a new order id), who all pay: 10 paid, 5 expired, every
/// unit returned once, Redis and MySQL agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpaid_units_are_sold_again_exactly_once_despite_sweeper_kills() {
    let env = ProdEnv::new("expiry");
    let dir = tempfile::tempdir().expect("tempdir");
    let g1 = env.gateway(dir.path(), "g1");
    let g2 = env.gateway(dir.path(), "g2");
    let _writer = env.writer(dir.path(), "w");
    let id = format!("exp-{}", std::process::id());
    g1.create_campaign(json!({ "id": id, "stock": 10, "payment_window_s": 2 }))
        .await;
    let first = users("pf", 10);
    let first_tokens = g1.tokens(&first).await;
    // Both gateways learn the campaign within their sync period.
    assert!(
        common::prod::eventually(5, async || g2
            .get(&format!("/api/v1/campaigns/{id}"), None)
            .await
            .status
            == 200)
        .await
    );
    let winners = buy(&[&g1, &g2], &id, &first, &first_tokens).await;
    g1.wait_persisted(&id, 10).await;
    pay_all(&g1, &winners[..3]).await;
    pay_all(&g2, &winners[3..5]).await;
    let fresh = users("pn", 5);
    let fresh_tokens = g1.tokens(&fresh).await;
    assert_eq!(g2.grab(&id, &fresh_tokens[4]).await.code(), "sold_out");
    // Every unpaid order is due before the first sweeper runs: the second
    // one must find all five (a fast run otherwise reaches it while the
    // last order's window is still open).
    let mut due = 0;
    for b in &winners[5..] {
        due = due.max(
            order(&g1, b).await["pay_by_ms"]
                .as_u64()
                .expect("pay_by_ms"),
        );
    }
    tokio::time::sleep(Duration::from_millis(due.saturating_sub(now_ms()) + 100)).await;

    let mut s1 = sweeper(&env, dir.path(), "s1", Some("after_expire"));
    wait_crash(&mut s1, 30);
    assert_eq!(expired_and_marked(&env, &id).await, (1, 0));
    let mut s2 = sweeper(&env, dir.path(), "s2", Some("after_release"));
    wait_crash(&mut s2, 30);
    assert_eq!(expired_and_marked(&env, &id).await, (5, 0));
    let st = g1.stats(&id).await;
    assert_eq!(st["remaining"], 1, "one unit released, not marked: {st}");

    let _s3 = sweeper(&env, dir.path(), "s3", None);
    let _s4 = sweeper(&env, dir.path(), "s4", None);
    let st = stats_until(&g1, &id, 30, |st| st["units_returned"] == 5).await;
    assert_eq!(st["remaining"], 5, "each unit back once: {st}");
    assert_eq!(expired_and_marked(&env, &id).await, (5, 5));
    for b in &winners[5..] {
        assert_eq!(order(&g2, b).await["status"], "expired");
    }

    // 4 new buyers and one whose order expired buy the 5 units again.
    let mut users_again: Vec<String> = fresh[..4].to_vec();
    let mut tokens_again: Vec<String> = fresh_tokens[..4].to_vec();
    users_again.push(winners[5].user.clone());
    tokens_again.push(winners[5].token.clone());
    // The gateways see the returned stock within their refresh period.
    let mut again: Vec<Bought> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    for (i, (u, t)) in users_again.iter().zip(&tokens_again).enumerate() {
        let g = if i % 2 == 0 { &g1 } else { &g2 };
        loop {
            let r = g.grab(&id, t).await;
            if r.status == 202 {
                again.push(Bought {
                    user: u.clone(),
                    token: t.clone(),
                    order_id: r.json()["order_id"].as_str().expect("order id").to_string(),
                });
                break;
            }
            assert_eq!(
                r.code(),
                "sold_out",
                "{u}: {}",
                String::from_utf8_lossy(&r.body)
            );
            assert!(
                Instant::now() < deadline,
                "the returned units were not sold again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_ne!(again[4].order_id, winners[5].order_id, "a new order id");
    assert_eq!(g1.grab(&id, &fresh_tokens[4]).await.code(), "sold_out");
    g1.wait_persisted(&id, 15).await;
    pay_all(&g2, &again).await;
    let st = stats_until(&g1, &id, 10, |st| st["orders_paid"] == 10).await;
    assert_final(&st, 10, 10, 5);
    let (rows, distinct, sold) = env.counts(&id).await;
    assert_eq!((rows, distinct, sold), (15, 15, 10));
}

/// 200 orders paid through two gateways at moments spread over ±50 ms
/// around their deadlines while two sweepers run: every order ends exactly
/// paid or expired, as its payment's answer said, and exactly the expired
/// units are back in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_racing_two_sweepers_end_exactly_one_way() {
    const N: usize = 200;
    let env = ProdEnv::new("payrace");
    let dir = tempfile::tempdir().expect("tempdir");
    let g1 = std::sync::Arc::new(env.gateway(dir.path(), "g1"));
    let g2 = std::sync::Arc::new(env.gateway(dir.path(), "g2"));
    let _writer = env.writer(dir.path(), "w");
    let _s1 = sweeper(&env, dir.path(), "s1", None);
    let _s2 = sweeper(&env, dir.path(), "s2", None);
    let id = format!("race-{}", std::process::id());
    g1.create_campaign(json!({ "id": id, "stock": N, "payment_window_s": 4 }))
        .await;
    let names = users("pr", N);
    let tokens = g1.tokens(&names).await;
    assert!(
        common::prod::eventually(5, async || g2
            .get(&format!("/api/v1/campaigns/{id}"), None)
            .await
            .status
            == 200)
        .await
    );
    let bought = buy(&[&g1, &g2], &id, &names, &tokens).await;
    g1.wait_persisted(&id, N as u64).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, b) in bought.iter().enumerate() {
        let g = std::sync::Arc::clone(if i % 2 == 0 { &g1 } else { &g2 });
        let pay_by = order(&g, b).await["pay_by_ms"].as_u64().expect("pay_by_ms");
        let at = (pay_by + (i % 101) as u64).saturating_sub(50);
        let b = b.clone();
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await;
            let r = pay(&g, &b, 5).await;
            (b, r.status, r.code())
        });
    }
    let mut answers = Vec::new();
    while let Some(done) = tasks.join_next().await {
        answers.push(done.expect("payment task"));
    }
    let st = stats_until(&g1, &id, 30, |st| {
        st["orders_paid"].as_u64().unwrap_or(0) + st["units_returned"].as_u64().unwrap_or(0)
            == N as u64
    })
    .await;
    let (paid, expired) = settle_race(&g2, &answers).await;
    assert!(
        paid > 0 && expired > 0,
        "the spread must straddle the deadline: {paid} paid"
    );
    assert_final(&st, N as u64, paid, expired);
    assert_eq!(st["remaining"].as_u64(), Some(expired), "{st}");
    let (rows, _, sold) = env.counts(&id).await;
    assert_eq!((rows as u64, sold as u64), (N as u64, paid));
}
