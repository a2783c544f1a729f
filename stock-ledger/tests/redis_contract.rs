//! The ledger contract against the real Redis on 127.0.0.1:6379 (started by
//! the machine, or by `scripts/services.sh up`). `SECKILL_REDIS_URL`
//! overrides the address. No skipping: without Redis this test fails.

mod common;

async fn ledger() -> stock_ledger::RedisLedger<stock_ledger::RedisConn> {
    common::single(1).await
}

stock_ledger::ledger_contract_tests!(|| ledger());

use engine::ports::{Reservation, StockLedger};
use stock_ledger::contract::{unique_campaign, user};

/// A gateway learns another gateway's sales and releases by polling, never
/// per request.
#[tokio::test]
async fn flags_follow_other_gateways_after_a_refresh() {
    let (a, b) = (ledger().await, ledger().await);
    let c = unique_campaign("flags");
    a.load(&c, 1, None).await.expect("load");
    b.refresh().await.expect("refresh");
    assert!(b.snapshot(&c).await.expect("snapshot").is_some());
    assert_eq!(
        a.reserve(&c, &user(1), 1).await.expect("reserve"),
        Reservation::Reserved { n: 1 }
    );
    assert!(a.sold_out_hint(&c));
    assert!(!b.sold_out_hint(&c), "b has not looked yet");
    b.refresh().await.expect("refresh");
    assert!(b.sold_out_hint(&c), "b learns sold out from the poll");
    assert!(a.release(&c, &user(1), 1).await.expect("release"));
    b.refresh().await.expect("refresh");
    assert!(!b.sold_out_hint(&c), "b learns the released unit");
}

/// Redis restarted empty: the campaign is blocked (NotLoaded) until a
/// restore from durable records, which brings back the exact state.
#[tokio::test]
async fn lost_keys_block_the_campaign_until_restored() {
    let l = ledger().await;
    let c = unique_campaign("lost");
    l.load(&c, 3, None).await.expect("load");
    assert!(matches!(
        l.reserve(&c, &user(1), 1).await.expect("reserve"),
        Reservation::Reserved { .. }
    ));
    // Simulate the data loss for this campaign only (the server is shared).
    let url = common::redis_url();
    let mut conn = redis::Client::open(url.as_str())
        .expect("url")
        .get_connection_manager()
        .await
        .expect("connect");
    let keys: Vec<String> = ["meta", "stock", "seq", "last", "active", "holds"]
        .iter()
        .map(|k| format!("seckill-test:{{{c}}}:{k}"))
        .collect();
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .expect("del");
    assert_eq!(
        l.reserve(&c, &user(2), 1).await.expect("reserve"),
        Reservation::NotLoaded
    );
    assert_eq!(l.snapshot(&c).await.expect("snapshot"), None);
    let holds = [engine::ports::Hold {
        user: user(1),
        n: 1,
    }];
    l.restore(&c, &stock_ledger::contract::image(3, &holds, &[], 2))
        .await
        .expect("restore");
    assert_eq!(
        l.reserve(&c, &user(1), 1).await.expect("reserve"),
        Reservation::AlreadyBought
    );
    let s = l.snapshot(&c).await.expect("snapshot").expect("loaded");
    assert_eq!((s.reserved, s.remaining), (1, 2));
}
