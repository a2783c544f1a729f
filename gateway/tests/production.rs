//! The production profile end to end against the real services started by
//! `scripts/services.sh up` (Redis, the Kafka-API broker, MariaDB): two
//! gateway processes share the stock, a writer process drains Kafka into
//! MySQL. Each test gets its own database, topic and consumer group.

mod common;

use common::prod::{eventually, operator, ProdEnv};
use common::users;
use rand::seq::SliceRandom;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_the_stock_and_the_writer_lands_every_order() {
    let env = ProdEnv::new("sale");
    let dir = tempfile::tempdir().expect("tempdir");
    let g1 = Arc::new(env.gateway(dir.path(), "g1"));
    let g2 = Arc::new(env.gateway(dir.path(), "g2"));
    let _writer = env.writer(dir.path(), "w1");
    let campaign = format!("prod-{}", std::process::id());
    g1.create_campaign(json!({ "id": campaign, "stock": 100 }))
        .await;
    let path = format!("/api/v1/campaigns/{campaign}");
    assert!(
        eventually(10, async || g2.get(&path, None).await.status == 200).await,
        "the second gateway never learned the campaign"
    );
    let names = users("p-", 2_000);
    let tokens = Arc::new(g1.tokens(&names).await);
    let mut plan: Vec<usize> = (0..20_000).map(|i| i % 2_000).collect();
    plan.shuffle(&mut rand::rng());
    let plan = Arc::new(plan);
    let concurrency = 128;
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let gateway = Arc::clone(if w % 2 == 0 { &g1 } else { &g2 });
        let (plan, tokens, campaign) = (Arc::clone(&plan), Arc::clone(&tokens), campaign.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for &u in plan.iter().skip(w).step_by(concurrency) {
                let r = gateway.grab(&campaign, &tokens[u]).await;
                seen.push((
                    u,
                    r.status,
                    r.code(),
                    r.json()["order_id"].as_str().map(str::to_string),
                ));
            }
            seen
        }));
    }
    let mut outcomes: HashMap<(u16, String), usize> = HashMap::new();
    let mut acked = HashMap::new();
    for w in workers {
        for (u, status, code, order) in w.await.expect("worker") {
            *outcomes.entry((status, code)).or_default() += 1;
            if status == 202 {
                assert!(acked.insert(order.expect("order id"), u).is_none());
            }
        }
    }
    assert_eq!(outcomes.values().sum::<usize>(), 20_000);
    assert_eq!(acked.len(), 100, "outcomes: {outcomes:?}");
    for (status, code) in outcomes.keys() {
        assert!(
            matches!(
                (*status, code.as_str()),
                (202, "") | (409, "already_bought") | (410, "sold_out")
            ),
            "unexpected {status} {code}: {outcomes:?}"
        );
    }
    let winners: HashSet<usize> = acked.values().copied().collect();
    assert_eq!(winners.len(), 100, "no user twice");

    assert!(
        eventually(30, async || env.rows(&campaign).await.len() >= 100).await,
        "the writer did not land 100 rows"
    );
    let rows = env.rows(&campaign).await;
    assert_eq!(rows.len(), 100);
    let row_ids: HashSet<String> = rows.iter().map(|(o, _)| o.clone()).collect();
    let acked_ids: HashSet<String> = acked.keys().cloned().collect();
    assert_eq!(
        row_ids, acked_ids,
        "MySQL holds exactly the acknowledged orders"
    );
    let row_users: HashSet<&String> = rows.iter().map(|(_, u)| u).collect();
    assert_eq!(row_users.len(), 100);
    let stats = g2.stats(&campaign).await;
    assert_eq!(
        (stats["sold"].as_u64(), stats["remaining"].as_u64()),
        (Some(100), Some(0)),
        "{stats}"
    );
    assert_eq!(stats["store_sold"], 100, "{stats}");
}

/// The kill switch during a sale (issue 9, acceptance 5): buyers grab on
/// two gateways; an operator pauses on the first; within 1 s both answer
/// `423 paused`; after resume selling goes on, and the final count is
/// exact (every unit sold once, the store holds exactly the acked orders).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_reaches_every_gateway_within_a_second_and_resume_is_exact() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let env = ProdEnv::new("pause");
    let dir = tempfile::tempdir().expect("tempdir");
    let g1 = Arc::new(env.gateway(dir.path(), "g1"));
    let g2 = Arc::new(env.gateway(dir.path(), "g2"));
    let _writer = env.writer(dir.path(), "w1");
    let campaign = format!("pause-{}", std::process::id());
    let stock = 300;
    g1.create_campaign(json!({ "id": campaign, "stock": stock }))
        .await;
    let path = format!("/api/v1/campaigns/{campaign}");
    assert!(
        eventually(10, async || g2.get(&path, None).await.status == 200).await,
        "the second gateway never learned the campaign"
    );
    let names = users("pz-", 2_000);
    let tokens = Arc::new(g1.tokens(&names).await);
    // Buyers: 8 loops, each over its own users (one grab per user), on
    // alternating gateways, until their users run out. Paused answers are
    // retried later by the same user (a human presses again).
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    let paused_seen = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for w in 0..8 {
        let gateway = Arc::clone(if w % 2 == 0 { &g1 } else { &g2 });
        let (tokens, campaign, next, acked) = (
            Arc::clone(&tokens),
            campaign.clone(),
            Arc::clone(&next),
            Arc::clone(&acked),
        );
        let paused_seen = Arc::clone(&paused_seen);
        loops.push(tokio::spawn(async move {
            let mut orders = Vec::new();
            let mut retry: Option<usize> = None;
            let started = std::time::Instant::now();
            while started.elapsed() < std::time::Duration::from_secs(60) {
                let u = match retry.take() {
                    Some(u) => u,
                    None => next.fetch_add(1, Ordering::Relaxed),
                };
                if u >= tokens.len() - 10 {
                    break; // the last ten are the probes' own
                }
                let r = gateway.grab(&campaign, &tokens[u]).await;
                match (r.status, r.code().as_str()) {
                    (202, _) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        orders.push(r.json()["order_id"].as_str().expect("id").to_string());
                    }
                    (423, "paused") => {
                        paused_seen.store(true, Ordering::Relaxed);
                        retry = Some(u);
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    (410, "sold_out") => break,
                    (status, code) => panic!("unexpected {status} {code}"),
                }
            }
            orders
        }));
    }
    // Pause once the sale is well under way.
    assert!(
        eventually(20, async || acked.load(Ordering::Relaxed) >= 50).await,
        "the sale did not start"
    );
    let paused_at = std::time::Instant::now();
    operator(&g1, &campaign, "pause").await;
    // Every gateway refuses within 1 s: probe both with fresh buyers.
    // (A gateway that has not heard of the pause yet may still sell to a
    // probe: those orders count like any other.)
    let mut reached = Vec::new();
    let mut probe_orders = Vec::new();
    for (i, g) in [&g1, &g2].into_iter().enumerate() {
        let probe = &tokens[tokens.len() - 1 - i];
        loop {
            let r = g.grab(&campaign, probe).await;
            if (r.status, r.code().as_str()) == (423, "paused") {
                reached.push(paused_at.elapsed());
                break;
            }
            if r.status == 202 {
                probe_orders.push(r.json()["order_id"].as_str().expect("id").to_string());
            }
            assert!(
                paused_at.elapsed() < std::time::Duration::from_secs(5),
                "gateway {i} still sells 5 s after the pause"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    eprintln!("pause reached the gateways after {reached:?}");
    for (i, t) in reached.iter().enumerate() {
        assert!(
            *t <= std::time::Duration::from_secs(1),
            "gateway {i} answered paused only after {t:?}"
        );
    }
    let during = acked.load(Ordering::Relaxed);
    operator(&g1, &campaign, "resume").await;
    let mut orders: HashSet<String> = probe_orders.into_iter().collect();
    for l in loops {
        for o in l.await.expect("buyer loop") {
            assert!(orders.insert(o), "an order id twice");
        }
    }
    assert!(paused_seen.load(Ordering::Relaxed) || during >= stock as usize);
    assert_eq!(orders.len(), stock as usize, "every unit sold exactly once");
    assert!(
        eventually(30, async || env.rows(&campaign).await.len()
            >= stock as usize)
        .await,
        "the writer did not land every order"
    );
    let rows: HashSet<String> = env
        .rows(&campaign)
        .await
        .into_iter()
        .map(|(order_id, _)| order_id)
        .collect();
    assert_eq!(rows, orders, "the store holds exactly the acked orders");
}

/// Behind a load balancer, an operator's next call may reach another
/// gateway than the create did, before that one re-read the campaigns:
/// every admin call on a campaign answers at once, from any gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_calls_find_a_new_campaign_on_every_gateway_at_once() {
    let env = ProdEnv::new("fresh");
    let dir = tempfile::tempdir().expect("tempdir");
    let g1 = env.gateway(dir.path(), "g1");
    let g2 = env.gateway(dir.path(), "g2");
    for round in 0..5 {
        let id = format!("fresh-{}-{round}", std::process::id());
        g1.create_campaign(json!({ "id": id, "stock": 3 })).await;
        let stats = g2
            .get(
                &format!("/admin/v1/campaigns/{id}/stats"),
                Some(common::ADMIN_TOKEN),
            )
            .await;
        assert_eq!(
            stats.status,
            200,
            "round {round}: {}",
            String::from_utf8_lossy(&stats.body)
        );
        assert_eq!(stats.json()["stock_total"], 3);
        let pause = g2
            .admin_post(&format!("/admin/v1/campaigns/{id}/pause"), &json!({}))
            .await;
        assert_eq!(
            pause.status,
            200,
            "{}",
            String::from_utf8_lossy(&pause.body)
        );
    }
}
