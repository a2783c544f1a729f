//! Generations of a campaign's ledger data, seen by several gateways (one
//! `RedisLedger` each) on the real Redis at 127.0.0.1:6379
//! (`scripts/services.sh up`; no skipping).
//!
//! - Data rebuilt by a restore (a new generation) replaces everything a
//!   gateway knew, also its "sold out" flags, although the rebuilt data's
//!   change counter starts low again.
//! - Data that comes back older (a failover to a lagging replica, a restart
//!   from a snapshot) is detected by every gateway that saw newer data: it
//!   stops selling the campaign (`NotLoaded`) until a restore.

mod common;

use common::{assert_conserved, campaign_keys, manager, redis_url, single, users_homed};
use engine::ports::{Hold, Reservation, StockLedger};
use engine::{CampaignId, UserId};
use stock_ledger::contract::{image, unique_campaign, user};
use stock_ledger::{RedisConn, RedisLedger};

/// What a gateway does with a grab: the local hint first (no round trip),
/// then the ledger.
async fn grab(l: &RedisLedger<RedisConn>, c: &CampaignId, u: &UserId) -> Reservation {
    if l.sold_out_hint(c) {
        return Reservation::SoldOut;
    }
    l.reserve(c, u, 1).await.expect("ledger reachable")
}

fn hold(u: &UserId, n: u32) -> Hold {
    Hold { user: u.clone(), n }
}

/// Redis lost the campaign after it sold out; a restore through gateway A
/// brings back a unit. Gateway B, which learnt "sold out" before, must sell
/// it after its next refresh, without being recreated.
#[tokio::test]
async fn a_restore_reaches_gateways_that_saw_sold_out() {
    let (a, b) = (single(1).await, single(1).await);
    let c = unique_campaign("gen-soldout");
    a.load(&c, 2, None).await.expect("load");
    assert!(b.snapshot(&c).await.expect("snapshot").is_some());
    assert_eq!(grab(&a, &c, &user(1)).await, Reservation::Reserved { n: 1 });
    assert_eq!(grab(&a, &c, &user(2)).await, Reservation::Reserved { n: 1 });
    b.refresh().await.expect("refresh");
    assert!(b.sold_out_hint(&c), "B learnt sold out");
    assert_eq!(grab(&b, &c, &user(3)).await, Reservation::SoldOut);

    // Redis loses the campaign; only user 1's order was durable.
    let _: () = redis::cmd("DEL")
        .arg(campaign_keys(&c, 1))
        .query_async(&mut manager(&redis_url()).await)
        .await
        .expect("del");
    a.restore(&c, &image(2, &[hold(&user(1), 1)], &[], 2))
        .await
        .expect("restore");

    b.refresh().await.expect("refresh");
    assert!(!b.sold_out_hint(&c), "B follows the new generation");
    assert_eq!(grab(&b, &c, &user(3)).await, Reservation::Reserved { n: 1 });
    assert_eq!(grab(&b, &c, &user(4)).await, Reservation::SoldOut);
    assert_conserved(&b, &c, 2).await;
}

/// Every data key of the campaign, as `DUMP` gives it (`None`: absent).
async fn dump(conn: &mut RedisConn, keys: &[String]) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for k in keys {
        let d: Option<Vec<u8>> = redis::cmd("DUMP")
            .arg(k)
            .query_async(conn)
            .await
            .expect("dump");
        out.push((k.clone(), d));
    }
    out
}

/// Puts the dumped copy back, as a restart from that snapshot would.
async fn put_back(conn: &mut RedisConn, copy: &[(String, Option<Vec<u8>>)]) {
    for (k, d) in copy {
        let _: () = match d {
            Some(d) => redis::cmd("RESTORE")
                .arg(k)
                .arg(0)
                .arg(d)
                .arg("REPLACE")
                .query_async(conn)
                .await
                .expect("restore key"),
            None => redis::cmd("DEL")
                .arg(k)
                .query_async(conn)
                .await
                .expect("del"),
        };
    }
}

/// Mid-sale, the campaign's data goes back to an older copy (every
/// bucket). The gateway that sold since, and another after a refresh,
/// refuse to sell on it; a restore with a new generation lets both sell
/// again.
#[tokio::test]
async fn data_from_the_past_blocks_every_gateway_until_a_restore() {
    let (a, b) = (single(1).await, single(1).await);
    let mut raw = manager(&redis_url()).await;
    let c = unique_campaign("gen-past");
    a.load(&c, 10, Some(2)).await.expect("load");
    let (h0, h1) = (users_homed(0, 2, 0, 3), users_homed(1, 2, 0, 3));
    for u in [&h0[0], &h1[0]] {
        assert_eq!(
            a.reserve(&c, u, 1).await,
            Ok(Reservation::Reserved { n: 1 })
        );
    }
    let mut data_keys = campaign_keys(&c, 2);
    data_keys.pop(); // the layout key is not data of a bucket
    let old = dump(&mut raw, &data_keys).await;
    for u in [&h0[1], &h1[1]] {
        assert_eq!(
            a.reserve(&c, u, 1).await,
            Ok(Reservation::Reserved { n: 1 })
        );
    }
    b.refresh().await.expect("refresh");
    assert!(b.snapshot(&c).await.expect("snapshot").is_some());

    put_back(&mut raw, &old).await;
    assert_eq!(
        a.reserve(&c, &h0[2], 1).await,
        Ok(Reservation::NotLoaded),
        "A sold past this copy: it must not sell on it"
    );
    assert_eq!(
        a.reserve(&c, &h1[2], 1).await,
        Ok(Reservation::NotLoaded),
        "the whole campaign is blocked on A"
    );
    b.refresh().await.expect("refresh");
    assert_eq!(
        b.reserve(&c, &h1[2], 1).await,
        Ok(Reservation::NotLoaded),
        "B saw newer data before: blocked after its refresh"
    );

    let durable: Vec<Hold> = [&h0[0], &h1[0], &h0[1], &h1[1]]
        .into_iter()
        .map(|u| hold(u, 1))
        .collect();
    let mut img = image(10, &durable, &[], 2);
    img.buckets = Some(2);
    a.restore(&c, &img).await.expect("restore");
    assert_eq!(
        a.reserve(&c, &h0[2], 1).await,
        Ok(Reservation::Reserved { n: 1 })
    );
    b.refresh().await.expect("refresh");
    assert_eq!(
        b.reserve(&c, &h1[2], 1).await,
        Ok(Reservation::Reserved { n: 1 })
    );
    let holds = assert_conserved(&b, &c, 10).await;
    assert_eq!(holds.len(), 6);
}

/// A restore must carry a newer generation than the data it replaces:
/// an older one would look like data from the past to every gateway.
#[tokio::test]
async fn a_restore_with_an_older_generation_is_refused() {
    let l = single(1).await;
    let c = unique_campaign("gen-older");
    l.load(&c, 3, None).await.expect("load");
    l.restore(&c, &image(3, &[], &[], 5)).await.expect("newer");
    l.restore(&c, &image(3, &[], &[], 5))
        .await
        .expect("the same generation again (a retry)");
    assert!(
        l.restore(&c, &image(3, &[], &[], 4)).await.is_err(),
        "older generation"
    );
    assert_eq!(
        l.reserve(&c, &user(1), 1).await,
        Ok(Reservation::Reserved { n: 1 })
    );
}
