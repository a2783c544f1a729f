//! Calls whose outcome the client cannot know: the script ran in Redis, the
//! reply was lost with the connection (a `CutProxy` between the ledger and
//! Redis drops it and resets the connection).
//!
//! On the single server (`ConnectionManager`, which never re-sends by
//! itself) the ledger re-sends the same call with the same request id to
//! learn the outcome. On a cluster, redis-rs re-sends by itself after the
//! reset; a private 3-node cluster announces its proxies' ports so that the
//! client talks through them. Either way each script must run at most once
//! per request: no double take, no orphan hold, no stranded unit.
//!
//! Needs the Redis on 127.0.0.1:6379 (`scripts/services.sh up`) and
//! `redis-server`/`redis-cli` on the PATH for the private cluster; fails
//! without them, never skips.

mod common;

use common::private_cluster::PrivateCluster;
use common::proxy::CutProxy;
use common::{assert_conserved, config, redis_addr, sha, single_via, users_homed};
use engine::ports::{Hold, LedgerError, Reservation, StockLedger};
use std::time::{Duration, Instant};
use stock_ledger::contract::{unique_campaign, user};
use stock_ledger::scripts::{RESERVE, TAKE};
use stock_ledger::RedisLedger;

/// A grab whose RESERVE ran but whose reply was lost is answered with the
/// reservation it made: one hold, one unit, and the user's retry sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_reserve_reply_lost_still_reserves_once() {
    let proxy = CutProxy::start(redis_addr()).await;
    let l = single_via(proxy.addr, 1).await;
    let c = unique_campaign("cut-reserve");
    l.load(&c, 3, None).await.expect("load");
    proxy.arm(&sha(RESERVE), 1);
    let got = l.reserve(&c, &user(1), 1).await;
    assert_eq!(proxy.cuts(), 1, "the proxy cut the RESERVE reply");
    let holds = assert_conserved(&l, &c, 3).await;
    assert_eq!(
        got,
        Ok(Reservation::Reserved { n: 1 }),
        "the ledger learns the outcome of the call it sent"
    );
    assert_eq!(
        holds,
        vec![Hold {
            user: user(1),
            n: 1
        }]
    );
    assert_eq!(
        l.reserve(&c, &user(1), 1).await.expect("reserve"),
        Reservation::AlreadyBought
    );
}

/// The slow path's TAKE ran (a unit left another bucket) but its reply was
/// lost: the ledger must not undo the claim as if nothing had been taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_take_reply_lost_strands_no_unit() {
    let proxy = CutProxy::start(redis_addr()).await;
    let l = single_via(proxy.addr, 1).await;
    let c = unique_campaign("cut-take");
    l.load(&c, 2, Some(2)).await.expect("load");
    let homed0 = users_homed(0, 2, 0, 2);
    assert_eq!(
        l.reserve(&c, &homed0[0], 1).await.expect("reserve"),
        Reservation::Reserved { n: 1 },
        "bucket 0's only unit"
    );
    proxy.arm(&sha(TAKE), 1);
    let got = l.reserve(&c, &homed0[1], 1).await;
    assert_eq!(proxy.cuts(), 1, "the proxy cut the TAKE reply");
    assert_conserved(&l, &c, 2).await;
    assert_eq!(got, Ok(Reservation::Reserved { n: 1 }));
}

/// The TAKE's outcome stays unknown (every re-send is cut too): the grab
/// fails (`Unavailable`) within a bounded time, the claim stays pending and
/// is listed by `holds()`, so reconciliation sees it, and nothing is
/// stranded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_take_outcome_unknown_leaves_the_claim_listed() {
    let proxy = CutProxy::start(redis_addr()).await;
    let l = single_via(proxy.addr, 1).await;
    let c = unique_campaign("cut-take-all");
    l.load(&c, 2, Some(2)).await.expect("load");
    let homed0 = users_homed(0, 2, 0, 2);
    l.reserve(&c, &homed0[0], 1).await.expect("reserve");
    proxy.arm(&sha(TAKE), 1_000);
    let started = Instant::now();
    let got = l.reserve(&c, &homed0[1], 1).await;
    let took = started.elapsed();
    proxy.disarm();
    assert!(
        matches!(got, Err(LedgerError::Unavailable(_))),
        "unknown outcome: {got:?}"
    );
    assert!(proxy.cuts() >= 2, "re-sent to learn the outcome");
    assert!(took < Duration::from_secs(3), "bounded: took {took:?}");
    let holds = assert_conserved(&l, &c, 2).await;
    assert!(
        holds.contains(&Hold {
            user: homed0[1].clone(),
            n: 1
        }),
        "the pending claim is listed: {holds:?}"
    );
}

/// The cluster client re-sends a request after a connection reset: the
/// re-sent RESERVE must answer with the first run's reservation, not
/// `AlreadyBought` beside an orphan hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_resent_reserve_runs_once() {
    let cluster = PrivateCluster::start().await;
    let l = RedisLedger::new(cluster.connect().await, config(1));
    let c = unique_campaign("ccut-reserve");
    l.load(&c, 3, None).await.expect("load");
    cluster.arm_all(&sha(RESERVE), 1);
    let got = l.reserve(&c, &user(1), 1).await;
    cluster.disarm_all();
    assert_eq!(cluster.cuts(), 1, "one proxy cut the RESERVE reply");
    let holds = assert_conserved(&l, &c, 3).await;
    assert_eq!(got, Ok(Reservation::Reserved { n: 1 }));
    assert_eq!(
        holds,
        vec![Hold {
            user: user(1),
            n: 1
        }]
    );
    let s = l.snapshot(&c).await.expect("snapshot").expect("loaded");
    assert_eq!(s.remaining, 2);
}

/// A re-sent TAKE must not take a second unit for one claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_resent_take_runs_once() {
    let cluster = PrivateCluster::start().await;
    let l = RedisLedger::new(cluster.connect().await, config(1));
    let c = unique_campaign("ccut-take");
    l.load(&c, 3, Some(2)).await.expect("load");
    // Shares of 3 over 2 buckets: [2, 1]; empty bucket 1, then a second
    // user homed there must take from bucket 0.
    let homed1 = users_homed(1, 2, 0, 2);
    assert_eq!(
        l.reserve(&c, &homed1[0], 1).await.expect("reserve"),
        Reservation::Reserved { n: 1 }
    );
    cluster.arm_all(&sha(TAKE), 1);
    let got = l.reserve(&c, &homed1[1], 1).await;
    cluster.disarm_all();
    assert_eq!(cluster.cuts(), 1, "one proxy cut the TAKE reply");
    assert_conserved(&l, &c, 3).await;
    assert_eq!(got, Ok(Reservation::Reserved { n: 1 }));
    let s = l.snapshot(&c).await.expect("snapshot").expect("loaded");
    assert_eq!(s.remaining, 1, "one unit taken for one claim");
}
