//! Connections to the real services of the Redis ledger tests (started by
//! `scripts/services.sh up`). No skipping: an unreachable server fails the
//! test with a message that says how to start it.
#![allow(dead_code)] // each test binary uses a different subset

use stock_ledger::{RedisClusterConn, RedisConn, RedisLedger, RedisLedgerConfig};

pub fn redis_url() -> String {
    std::env::var("SECKILL_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

pub async fn single(buckets: u32) -> RedisLedger<RedisConn> {
    let url = redis_url();
    let conn = redis::Client::open(url.as_str())
        .expect("redis url")
        .get_connection_manager()
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} is required (scripts/services.sh up): {e}"));
    RedisLedger::new(conn, config(buckets))
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

fn config(buckets: u32) -> RedisLedgerConfig {
    RedisLedgerConfig {
        prefix: "seckill-test".into(),
        buckets,
    }
}
