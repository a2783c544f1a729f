//! The production profile end to end against the real services started by
//! `scripts/services.sh up` (Redis, the Kafka-API broker, MariaDB): two
//! gateway processes share the stock, a writer process drains Kafka into
//! MySQL. Each test gets its own database, topic and consumer group.

mod common;

use common::prod::{eventually, ProdEnv};
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
