//! The shared-state and waiting-room contracts on a real Redis server and
//! on the 3-node Redis Cluster (`scripts/services.sh up`). No skipping: an
//! unreachable server fails with a message that says how to start it.

use shared_state::{RedisRoomStore, RedisSharedState};

async fn single_conn() -> redis::aio::ConnectionManager {
    let url =
        std::env::var("SECKILL_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    redis::Client::open(url.as_str())
        .expect("redis url")
        .get_connection_manager()
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} is required (scripts/services.sh up): {e}"))
}

async fn cluster_conn() -> redis::cluster_async::ClusterConnection {
    let nodes: Vec<String> = std::env::var("SECKILL_REDIS_CLUSTER")
        .unwrap_or_else(|_| {
            "redis://127.0.0.1:7000/,redis://127.0.0.1:7001/,redis://127.0.0.1:7002/".into()
        })
        .split(',')
        .map(str::to_string)
        .collect();
    redis::cluster::ClusterClient::new(nodes.clone())
        .expect("cluster urls")
        .get_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!("the Redis Cluster at {nodes:?} is required (scripts/services.sh up): {e}")
        })
}

mod single {
    use super::*;

    shared_state::shared_state_contract_tests!(|| async {
        RedisSharedState::new(single_conn().await, "seckill-test")
    });

    shared_state::room_contract_tests!(|| async {
        RedisRoomStore::new(single_conn().await, "seckill-test")
    });
}

mod cluster {
    use super::*;

    shared_state::shared_state_contract_tests!(|| async {
        RedisSharedState::new(cluster_conn().await, "seckill-test")
    });

    shared_state::room_contract_tests!(|| async {
        RedisRoomStore::new(cluster_conn().await, "seckill-test")
    });
}
