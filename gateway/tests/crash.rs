//! Crash and shutdown tests: `kill -9` mid-sale and SIGTERM mid-sale, then
//! check that every acknowledged order survived exactly once and that the
//! stock is rebuilt from durable records.

mod common;

use common::{sqlite, users, Server};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

const TOTAL: u64 = 300;

/// Fires grabs from `concurrency` tasks over `tokens` until the campaign is
/// sold out or the server goes away; returns every 202's (user, order id)
/// and signals `after` once `threshold` 202s were seen.
async fn sell(
    server: Arc<Server>,
    campaign: &'static str,
    tokens: Arc<Vec<String>>,
    concurrency: usize,
    threshold: usize,
    reached: Arc<Notify>,
) -> Vec<(usize, String)> {
    let won = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (server, tokens, won, reached) = (
            Arc::clone(&server),
            Arc::clone(&tokens),
            Arc::clone(&won),
            Arc::clone(&reached),
        );
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for u in (w..tokens.len()).step_by(concurrency) {
                let Some(r) = server.try_grab(campaign, &tokens[u]).await else {
                    break; // the server is gone
                };
                match r.status {
                    202 => {
                        let id = r.json()["order_id"].as_str().expect("order id").to_string();
                        mine.push((u, id));
                        if won.fetch_add(1, Ordering::SeqCst) + 1 == threshold {
                            reached.notify_one();
                        }
                    }
                    409 | 410 => {}
                    s => panic!(
                        "unexpected status {s}: {}",
                        String::from_utf8_lossy(&r.body)
                    ),
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("seller"));
    }
    all
}

async fn order_rows(server: &Server, campaign: &str) -> HashMap<String, String> {
    let db = sqlite(&server.data_dir).await;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT order_id, user_id FROM orders WHERE campaign_id = ?")
            .bind(campaign)
            .fetch_all(&db)
            .await
            .expect("query");
    db.close().await;
    rows.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_sale_loses_no_acknowledged_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // A slow writer keeps orders queued in the log at the moment of the kill.
    let slow = ["--writer-rows-per-s", "20", "--writer-batch-rows", "10"];
    let server = Server::start(&data, &slow);
    server
        .create_campaign(json!({ "id": "crash", "stock": TOTAL }))
        .await;
    let names = users("c-", 1_000);
    let tokens = Arc::new(server.tokens(&names).await);

    let server = Arc::new(server);
    let reached = Arc::new(Notify::new());
    let first = tokio::spawn(sell(
        Arc::clone(&server),
        "crash",
        Arc::clone(&tokens),
        64,
        120,
        Arc::clone(&reached),
    ));
    reached.notified().await;
    // The sellers hold clones of the server handle, so kill by pid.
    common::send_signal(i32::try_from(server.child.id()).expect("pid"), "KILL");
    let acked = first.await.expect("sellers");
    let mut server = Arc::try_unwrap(server).unwrap_or_else(|_| panic!("server still shared"));
    let killed = server.terminate_wait();
    assert!(
        !killed.success(),
        "the server was killed, not stopped: {killed:?}"
    );
    assert!(
        acked.len() >= 120,
        "saw {} acks before the kill",
        acked.len()
    );
    assert!((acked.len() as u64) < TOTAL, "the kill must land mid-sale");
    // The slow writer had not caught up: the log replay has real work to do.
    let rows_at_kill = order_rows(&server, "crash").await;
    assert!(
        rows_at_kill.len() < acked.len(),
        "{} rows already stored of {} acks; the test needs a lagging writer",
        rows_at_kill.len(),
        acked.len()
    );
    drop(server);

    // Restart on the same data directory.
    let server = Arc::new(Server::start(&data, &[]));
    let stats = server.stats("crash").await;
    let durable = stats["sold"].as_u64().expect("sold");
    assert!(
        durable >= acked.len() as u64,
        "an acknowledged order was lost: {stats}"
    );
    assert_eq!(
        stats["remaining"].as_u64(),
        Some(TOTAL - durable),
        "{stats}"
    );
    for (u, order) in &acked {
        let r = server
            .get(&format!("/api/v1/orders/{order}"), Some(&tokens[*u]))
            .await;
        assert_eq!(r.status, 200, "acknowledged order {order} is missing");
    }
    let stats = server.wait_persisted("crash", durable).await;
    assert_eq!(stats["orders_persisted"].as_u64(), Some(durable), "{stats}");
    let rows = order_rows(&server, "crash").await;
    assert_eq!(rows.len() as u64, durable);
    for (u, order) in &acked {
        assert_eq!(
            rows.get(order),
            Some(&names[*u]),
            "order {order} not in SQLite"
        );
    }

    // Selling continues to exactly the total, with fresh buyers.
    let names2 = users("d-", 1_000);
    let tokens2 = Arc::new(server.tokens(&names2).await);
    let second = sell(
        Arc::clone(&server),
        "crash",
        tokens2,
        64,
        usize::MAX,
        Arc::new(Notify::new()),
    )
    .await;
    assert_eq!(
        durable + second.len() as u64,
        TOTAL,
        "sold exactly the total"
    );
    let stats = server.wait_persisted("crash", TOTAL).await;
    assert_eq!(stats["remaining"], 0, "{stats}");
    assert_eq!(stats["sold"].as_u64(), Some(TOTAL), "{stats}");
    let rows = order_rows(&server, "crash").await;
    assert_eq!(rows.len() as u64, TOTAL);
    let distinct: HashSet<_> = rows.values().collect();
    assert_eq!(distinct.len() as u64, TOTAL, "no user twice");
}

/// SIGTERM mid-sale: the server drains in-flight grabs, flushes the log and
/// lets the writer land every acknowledged order before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_every_acknowledged_order_into_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let slow = ["--writer-rows-per-s", "200", "--writer-batch-rows", "20"];
    let server = Server::start(&data, &slow);
    server
        .create_campaign(json!({ "id": "term", "stock": TOTAL }))
        .await;
    let names = users("t-", 1_000);
    let tokens = Arc::new(server.tokens(&names).await);
    let server = Arc::new(server);
    let reached = Arc::new(Notify::new());
    let sellers = tokio::spawn(sell(
        Arc::clone(&server),
        "term",
        tokens,
        64,
        100,
        Arc::clone(&reached),
    ));
    reached.notified().await;
    let pid = i32::try_from(server.child.id()).expect("pid");
    common::send_signal(pid, "TERM");
    let acked = sellers.await.expect("sellers");
    let mut server = Arc::try_unwrap(server).unwrap_or_else(|_| panic!("server still shared"));
    let status = server.terminate_wait();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    // Read the store directly, with the server gone.
    let rows = order_rows(&server, "term").await;
    for (u, order) in &acked {
        assert_eq!(
            rows.get(order),
            Some(&names[*u]),
            "order {order} not drained"
        );
    }
    assert!(rows.len() >= acked.len());
}

/// Two processes must never append to one order log: the second is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_process_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let first = Server::start(&data, &[]);
    let mut second = common::serve_command(&data)
        .env("SECKILL_JWT_SECRET", common::JWT_SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = second.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("the second process kept running on a locked data directory");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert!(
        err.contains("in use by another seckill process"),
        "stderr: {err}"
    );
    assert_eq!(first.get("/healthz", None).await.status, 200);
}
