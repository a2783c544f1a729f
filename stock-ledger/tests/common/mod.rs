//! Connections to the real services of the Redis ledger tests (started by
//! `scripts/services.sh up`). No skipping: an unreachable server fails the
//! test with a message that says how to start it.
#![allow(dead_code)] // each test binary uses a different subset

pub mod private_cluster;
pub mod proxy;

use engine::ports::{Hold, StockLedger};
use engine::{CampaignId, UserId};
use std::net::SocketAddr;
use stock_ledger::{RedisClusterConn, RedisConn, RedisLedger, RedisLedgerConfig};

pub const PREFIX: &str = "seckill-test";

pub fn redis_url() -> String {
    std::env::var("SECKILL_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// The single server's address, for a proxy in front of it.
pub fn redis_addr() -> SocketAddr {
    let url = redis_url();
    let info = redis::Client::open(url.as_str())
        .expect("redis url")
        .get_connection_info()
        .addr
        .clone();
    match info {
        redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}")
            .parse()
            .unwrap_or_else(|e| panic!("{url}: the proxy needs an IP address: {e}")),
        other => panic!("{url}: the proxy needs a TCP address, not {other:?}"),
    }
}

pub async fn manager(url: &str) -> RedisConn {
    redis::Client::open(url)
        .expect("redis url")
        .get_connection_manager()
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} is required (scripts/services.sh up): {e}"))
}

pub async fn single(buckets: u32) -> RedisLedger<RedisConn> {
    RedisLedger::new(manager(&redis_url()).await, config(buckets))
}

/// A ledger on the single server whose every call goes through `proxy`.
pub async fn single_via(proxy: SocketAddr, buckets: u32) -> RedisLedger<RedisConn> {
    RedisLedger::new(manager(&format!("redis://{proxy}/")).await, config(buckets))
}

pub async fn cluster(buckets: u32) -> RedisLedger<RedisClusterConn> {
    let nodes: Vec<String> = std::env::var("SECKILL_REDIS_CLUSTER")
        .unwrap_or_else(|_| {
            "redis://127.0.0.1:7000/,redis://127.0.0.1:7001/,redis://127.0.0.1:7002/".into()
        })
        .split(',')
        .map(str::to_string)
        .collect();
    let client = redis::cluster::ClusterClient::new(nodes.clone()).expect("cluster urls");
    let conn = client.get_async_connection().await.unwrap_or_else(|e| {
        panic!("the Redis Cluster at {nodes:?} is required (scripts/services.sh up): {e}")
    });
    RedisLedger::new(conn, config(buckets))
}

pub fn config(buckets: u32) -> RedisLedgerConfig {
    RedisLedgerConfig {
        prefix: PREFIX.into(),
        buckets,
    }
}

/// The SHA1 an `EVALSHA` of this script carries.
pub fn sha(script: &str) -> Vec<u8> {
    redis::Script::new(script).get_hash().as_bytes().to_vec()
}

/// The ledger's home bucket of a user (FNV-1a of the user id modulo the
/// bucket count), repeated here so tests can pick users by bucket. Tests
/// that rely on it also check where the holds landed.
pub fn home(user: &UserId, buckets: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user.as_str().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(buckets.max(1))) as u32
}

/// The first `count` users (from `from` on) homed in `bucket`.
pub fn users_homed(bucket: u32, buckets: u32, from: usize, count: usize) -> Vec<UserId> {
    (from..from + 100_000)
        .map(stock_ledger::contract::user)
        .filter(|u| home(u, buckets) == bucket)
        .take(count)
        .collect()
}

/// Every data key of a campaign's buckets, and its layout key.
pub fn campaign_keys(c: &CampaignId, buckets: u32) -> Vec<String> {
    let mut keys = Vec::new();
    for b in 0..buckets {
        let tag = if buckets <= 1 {
            c.to_string()
        } else {
            format!("{c}#{b}")
        };
        for name in ["meta", "stock", "seq", "last", "active", "holds", "pending"] {
            keys.push(format!("{PREFIX}:{{{tag}}}:{name}"));
        }
    }
    keys.push(format!("{PREFIX}:{{{c}}}:layout"));
    keys
}

/// `remaining + listed holds == total`, from the ledger's own answers;
/// returns the holds.
pub async fn assert_conserved(l: &dyn StockLedger, c: &CampaignId, total: u64) -> Vec<Hold> {
    let s = l
        .snapshot(c)
        .await
        .expect("snapshot")
        .expect("campaign loaded");
    let holds = l.holds(c).await.expect("holds").expect("campaign loaded");
    assert_eq!(
        s.remaining + holds.len() as u64,
        total,
        "stock not conserved: remaining {} + holds {} ({holds:?}) != total {total}",
        s.remaining,
        holds.len()
    );
    holds
}
