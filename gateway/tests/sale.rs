//! End-to-end sales through real HTTP against the real binary.

mod common;

use common::{sqlite, users, Server};
use rand::seq::SliceRandom;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Stock 100, 2,000 users, 20,000 grabs at high concurrency: exactly 100
/// winners, everyone else already_bought or sold_out; after the writer
/// drains, exactly 100 rows in SQLite with no user twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crowd_buys_exactly_the_stock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Arc::new(Server::start(&dir.path().join("data"), &[]));
    server
        .create_campaign(json!({ "id": "crowd", "stock": 100 }))
        .await;
    let names = users("buyer-", 2_000);
    let tokens = server.tokens(&names).await;
    let mut plan: Vec<usize> = (0..20_000).map(|i| i % 2_000).collect();
    plan.shuffle(&mut rand::rng());

    let concurrency = 256;
    let plan = Arc::new(plan);
    let tokens = Arc::new(tokens);
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (server, plan, tokens) = (Arc::clone(&server), Arc::clone(&plan), Arc::clone(&tokens));
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for &u in plan.iter().skip(w).step_by(concurrency) {
                let r = server.grab("crowd", &tokens[u]).await;
                let order = r.json()["order_id"].as_str().map(str::to_string);
                seen.push((u, r.status, r.code(), order));
            }
            seen
        }));
    }
    let mut by_outcome: HashMap<(u16, String), usize> = HashMap::new();
    let mut winners = HashSet::new();
    let mut order_ids = HashSet::new();
    let mut order_of = HashMap::new();
    for w in workers {
        for (u, status, code, order) in w.await.expect("worker") {
            *by_outcome.entry((status, code)).or_default() += 1;
            if status == 202 {
                assert!(winners.insert(u), "user {u} won twice");
                let order = order.expect("202 carries order_id");
                assert!(order_ids.insert(order.clone()));
                order_of.insert(u, order);
            }
        }
    }
    assert_eq!(
        by_outcome.values().sum::<usize>(),
        20_000,
        "every grab answered"
    );
    let accepted = by_outcome.get(&(202, String::new())).copied().unwrap_or(0);
    assert_eq!(accepted, 100, "outcomes: {by_outcome:?}");
    for ((status, code), n) in &by_outcome {
        let ok = matches!(
            (*status, code.as_str()),
            (202, "") | (409, "already_bought") | (410, "sold_out")
        );
        assert!(
            ok,
            "unexpected outcome {status} {code} x{n}: {by_outcome:?}"
        );
    }

    let stats = server.wait_persisted("crowd", 100).await;
    assert_eq!(stats["orders_persisted"], 100, "{stats}");
    assert_eq!(stats["sold"], 100, "{stats}");
    assert_eq!(stats["remaining"], 0, "{stats}");
    assert_eq!(stats["reserved"], 100, "{stats}");
    assert_eq!(stats["orders_queued"], 0, "{stats}");
    assert_eq!(stats["store_sold"], 100, "{stats}");

    let db = sqlite(&server.data_dir).await;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT order_id, user_id FROM orders WHERE campaign_id = 'crowd'")
            .fetch_all(&db)
            .await
            .expect("query");
    assert_eq!(rows.len(), 100);
    let row_users: HashSet<_> = rows.iter().map(|(_, u)| u.clone()).collect();
    assert_eq!(row_users.len(), 100, "no user twice");
    let row_ids: HashSet<_> = rows.into_iter().map(|(o, _)| o).collect();
    assert_eq!(
        row_ids, order_ids,
        "the rows are exactly the acknowledged orders"
    );
    let expected_users: HashSet<_> = winners.iter().map(|&u| names[u].clone()).collect();
    assert_eq!(row_users, expected_users);

    // Each winner sees their own order, confirmed; nobody else can.
    let stranger = (0..2_000).find(|u| !winners.contains(u)).expect("a loser");
    for (&u, order) in &order_of {
        let own = server
            .get(&format!("/api/v1/orders/{order}"), Some(&tokens[u]))
            .await;
        assert_eq!(own.status, 200);
        assert_eq!(own.json()["status"], "confirmed");
        assert_eq!(own.json()["user_id"], names[u].as_str());
        let theirs = server
            .get(&format!("/api/v1/orders/{order}"), Some(&tokens[stranger]))
            .await;
        assert_eq!(theirs.status, 404, "orders are owner-only");
    }
}

/// One user firing 200 concurrent grabs gets exactly one 202, and the stock
/// drops by exactly one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_racing_themselves_wins_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Arc::new(Server::start(&dir.path().join("data"), &[]));
    server
        .create_campaign(json!({ "id": "self", "stock": 50 }))
        .await;
    let token = server.tokens(&["racer".to_string()]).await.remove(0);
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (server, token) = (Arc::clone(&server), token.clone());
            tokio::spawn(async move {
                let r = server.grab("self", &token).await;
                (r.status, r.code())
            })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        match t.await.expect("task") {
            (202, _) => accepted += 1,
            (409, code) => assert_eq!(code, "already_bought"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted, 1);
    let stats = server.wait_persisted("self", 1).await;
    assert_eq!(stats["remaining"], 49, "{stats}");
    assert_eq!(stats["reserved"], 1, "{stats}");
    assert_eq!(stats["orders_persisted"], 1, "{stats}");
    assert_eq!(stats["rejected"]["already_bought"], 199, "{stats}");
}
