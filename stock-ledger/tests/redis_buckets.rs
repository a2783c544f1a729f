//! Hot campaigns split over buckets on different slots of the real 3-node
//! Redis Cluster (`scripts/services.sh up`): the whole ledger contract with
//! 8 buckets, and the sale the design is for: 1,000 units over 8 buckets,
//! 20,000 buyers at once: exactly 1,000 sold, none left, no user twice.

use engine::ports::{Reservation, StockLedger};
use std::collections::HashSet;
use std::sync::Arc;
use stock_ledger::contract::{unique_campaign, user};

mod common;

async fn ledger() -> stock_ledger::RedisLedger<stock_ledger::RedisClusterConn> {
    common::cluster(8).await
}

stock_ledger::ledger_contract_tests!(|| ledger());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_campaign_sells_every_unit_exactly_once() {
    // A ledger that splits nothing by default: the campaign asks for 8.
    let l = Arc::new(common::cluster(1).await);
    let c = unique_campaign("hot");
    assert!(l.load(&c, 1_000, Some(8)).await.expect("load"));
    let mut conn = redis::cluster::ClusterClient::new(vec!["redis://127.0.0.1:7000/"])
        .expect("cluster url")
        .get_async_connection()
        .await
        .expect("cluster");
    let layout: u32 = redis::cmd("GET")
        .arg(format!("seckill-test:{{{c}}}:layout"))
        .query_async(&mut conn)
        .await
        .expect("layout");
    assert_eq!(layout, 8, "the campaign's own bucket count wins");
    let workers = 64;
    let users = 20_000;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (l, c) = (Arc::clone(&l), c.clone());
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for u in (w..users).step_by(workers) {
                match l.reserve(&c, &user(u), 1).await.expect("redis reachable") {
                    Reservation::Reserved { n } => won.push((u, n)),
                    Reservation::SoldOut | Reservation::AlreadyBought => {}
                    Reservation::NotLoaded => panic!("campaign blocked mid-sale"),
                }
            }
            won
        }));
    }
    let mut winners = HashSet::new();
    for t in tasks {
        for (u, n) in t.await.expect("worker") {
            assert_eq!(n, 1);
            assert!(winners.insert(u), "user {u} won twice");
        }
    }
    assert_eq!(winners.len(), 1_000, "exactly the stock, none unsold");
    let s = l.snapshot(&c).await.expect("snapshot").expect("loaded");
    assert_eq!((s.total, s.reserved, s.remaining), (1_000, 1_000, 0));
    assert!(l.sold_out_hint(&c));
    let holds = l.holds(&c).await.expect("holds").expect("loaded");
    assert_eq!(holds.len(), 1_000);
    // Winners racing again get nothing more: the limit is exact across buckets.
    for &u in winners.iter().take(50) {
        let again = l.reserve(&c, &user(u), 1).await.expect("reserve");
        assert!(matches!(
            again,
            Reservation::AlreadyBought | Reservation::SoldOut
        ));
    }
}

/// When every home bucket but one is empty, buyers homed elsewhere still get
/// the last units (the slow path), and a released unit sells again.
#[tokio::test]
async fn units_left_in_one_bucket_still_sell_to_everyone() {
    let l = ledger().await;
    let c = unique_campaign("drain");
    l.load(&c, 8, None).await.expect("load");
    let mut won = Vec::new();
    for u in 0..200 {
        if let Reservation::Reserved { n } = l.reserve(&c, &user(u), 1).await.expect("reserve") {
            won.push((u, n));
        }
    }
    assert_eq!(won.len(), 8);
    let (u, n) = won[3];
    assert!(l.release(&c, &user(u), n).await.expect("release"));
    let s = l.snapshot(&c).await.expect("snapshot").expect("loaded");
    assert_eq!(s.remaining, 1);
    let mut again = 0;
    for u in 1_000..1_200 {
        if matches!(
            l.reserve(&c, &user(u), 1).await.expect("reserve"),
            Reservation::Reserved { .. }
        ) {
            again += 1;
        }
    }
    assert_eq!(
        again, 1,
        "the released unit sells once, whoever's home it is in"
    );
}
