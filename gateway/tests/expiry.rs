//! Payment expiry on the embedded default (acceptance 3 and 4 of issue 9):
//! unpaid orders expire when their window ends, their units are sold again
//! exactly once, a crash in the middle of a sweep and restarts change
//! nothing, and payments racing the deadline end exactly one way.

mod common;

use common::expiry::{assert_final, buy, order, pay, pay_all, settle_race, stats_until, Bought};
use common::{now_ms, sqlite, users, Server};
use serde_json::json;
use std::time::{Duration, Instant};

/// Waits (bounded) for the process to exit on its own; returns whether it
/// was killed by a signal (the sweeper's on-purpose abort).
fn wait_crash(s: &mut Server, secs: u64) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = s.child.try_wait().expect("wait") {
            return status.signal().is_some();
        }
        assert!(
            Instant::now() < deadline,
            "the server did not crash within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stock 10, 10 winners, 5 pay and 5 do not. The first expiry crashes the
/// process between its two steps (the order is expired in the store, its
/// unit not yet released); after the restart the 5 units are returned once
/// and sold again to 5 other buyers, who pay. A second restart changes
/// nothing: 10 paid, 5 expired, stock conserved, and a buyer past the stock
/// is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpaid_units_are_sold_again_exactly_once_across_a_crash_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut s = Server::start_with(
        &data,
        &[],
        &[("SECKILL_SWEEPER_CRASH", "after_expire".into())],
    );
    s.create_campaign(json!({ "id": "exp", "stock": 10, "payment_window_s": 2 }))
        .await;
    let first = users("first", 10);
    let first_tokens = s.tokens(&first).await;
    let winners = buy(&[&s], "exp", &first, &first_tokens).await;
    s.wait_persisted("exp", 10).await;
    pay_all(&s, &winners[..5]).await;
    let late = users("late", 6);
    let late_tokens = s.tokens(&late).await;
    assert_eq!(s.grab("exp", &late_tokens[5]).await.code(), "sold_out");

    // The window ends; the first expiry stops the process dead.
    assert!(
        wait_crash(&mut s, 30),
        "the sweeper did not crash where asked"
    );
    drop(s);
    let pool = sqlite(&data).await;
    let (expired, marked): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(released_at_ms) FROM orders WHERE status = 'expired'",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    pool.close().await;
    assert_eq!(
        (expired, marked),
        (1, 0),
        "crashed between expire and release"
    );

    let s = Server::start(&data, &[]);
    let st = stats_until(&s, "exp", 30, |st| st["units_returned"] == 5).await;
    assert_eq!(st["orders_expired"], 5, "{st}");
    assert_eq!(st["remaining"], 5, "{st}");
    for b in &winners[5..] {
        assert_eq!(order(&s, b).await["status"], "expired");
        let r = pay(&s, b, 5).await;
        assert_eq!((r.status, r.code()), (409, "order_expired".to_string()));
    }
    for b in &winners[..5] {
        assert_eq!(order(&s, b).await["status"], "paid");
    }
    let again = buy(&[&s], "exp", &late[..5], &late_tokens[..5]).await;
    assert_eq!(s.grab("exp", &late_tokens[5]).await.code(), "sold_out");
    s.wait_persisted("exp", 15).await;
    pay_all(&s, &again).await;
    let before = s.stats("exp").await;
    assert_final(&before, 10, 10, 5);
    drop(s);

    let s = Server::start(&data, &[]);
    let after = s.stats("exp").await;
    assert_final(&after, 10, 10, 5);
    assert_eq!(s.grab("exp", &late_tokens[5]).await.code(), "sold_out");
    // The store holds exactly the 15 orders, each once.
    let pool = sqlite(&data).await;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT user_id, status FROM orders WHERE campaign_id = 'exp' ORDER BY user_id",
    )
    .fetch_all(&pool)
    .await
    .expect("rows");
    pool.close().await;
    assert_eq!(rows.len(), 15);
    let expired_users: Vec<&str> = rows
        .iter()
        .filter(|(_, st)| st == "expired")
        .map(|(u, _)| u.as_str())
        .collect();
    let want: Vec<String> = winners[5..].iter().map(|b| b.user.clone()).collect();
    assert_eq!(expired_users, want);
}

/// A buyer whose order expired buys again: a new order id, stored, payable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_whose_order_expired_can_buy_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(&dir.path().join("data"), &[]);
    // Stock 2: a repeated grab meets the per-buyer limit, not a sold-out sale.
    s.create_campaign(json!({ "id": "again", "stock": 2, "payment_window_s": 1 }))
        .await;
    let user = users("buyer", 1);
    let token = s.tokens(&user).await.remove(0);
    let first = buy(&[&s], "again", &user, std::slice::from_ref(&token))
        .await
        .remove(0);
    assert_eq!(s.grab("again", &token).await.code(), "already_bought");
    stats_until(&s, "again", 30, |st| st["units_returned"] == 1).await;
    let second = buy(&[&s], "again", &user, std::slice::from_ref(&token))
        .await
        .remove(0);
    assert_ne!(second.order_id, first.order_id);
    s.wait_persisted("again", 2).await;
    let r = pay(&s, &second, 20).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(order(&s, &first).await["status"], "expired");
    assert_eq!(order(&s, &second).await["status"], "paid");
    let st = s.stats("again").await;
    assert_eq!(
        (st["orders_paid"].as_u64(), st["orders_expired"].as_u64()),
        (Some(1), Some(1)),
        "{st}"
    );
    assert_eq!(st["remaining"], 1, "{st}");
}

/// 200 orders, each paid at a moment spread over ±50 ms around its own
/// deadline while the sweeper runs: every order ends exactly paid or
/// expired, each answer matches the final status, and exactly the expired
/// units went back to the stock, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_racing_the_deadline_end_exactly_one_way() {
    const N: usize = 200;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = std::sync::Arc::new(Server::start(&dir.path().join("data"), &[]));
    s.create_campaign(json!({ "id": "race", "stock": N, "payment_window_s": 3 }))
        .await;
    let names = users("r", N);
    let tokens = s.tokens(&names).await;
    let bought = buy(&[&s], "race", &names, &tokens).await;
    s.wait_persisted("race", N as u64).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, b) in bought.iter().enumerate() {
        let pay_by = order(&s, b).await["pay_by_ms"].as_u64().expect("pay_by_ms");
        let at = (pay_by + (i % 101) as u64).saturating_sub(50);
        let (s, b) = (std::sync::Arc::clone(&s), b.clone());
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await;
            let r = pay(&s, &b, 5).await;
            (b, r.status, r.code())
        });
    }
    let mut answers: Vec<(Bought, u16, String)> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        answers.push(done.expect("payment task"));
    }
    let st = stats_until(&s, "race", 30, |st| {
        st["orders_paid"].as_u64().unwrap_or(0) + st["units_returned"].as_u64().unwrap_or(0)
            == N as u64
    })
    .await;
    let (paid, expired) = settle_race(&s, &answers).await;
    assert_eq!(paid + expired, N as u64);
    assert!(
        paid > 0 && expired > 0,
        "the spread must straddle the deadline: {paid} paid"
    );
    assert_final(&st, N as u64, paid, expired);
    assert_eq!(st["remaining"].as_u64(), Some(expired), "{st}");
}
