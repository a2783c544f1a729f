//! The Redis ledger's grab on a real Redis (`SECKILL_REDIS_URL`, default
//! 127.0.0.1:6379; `scripts/services.sh up`): one `RedisLedger::reserve`
//! (the RESERVE script by `EVALSHA`, idempotent per request) per new buyer,
//! every one winning, from 1 and 64 concurrent callers sharing the ledger's
//! one multiplexed connection, and the same with the stock split in 4
//! buckets. Keys live under `seckill-bench:` and are deleted afterwards.
//!
//!   cargo bench -p bench --bench redis_lua

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::ports::{Reservation, StockLedger};
use engine::{CampaignId, UserId};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stock_ledger::{RedisConn, RedisLedger, RedisLedgerConfig};

const PREFIX: &str = "seckill-bench";

fn redis_url() -> String {
    std::env::var("SECKILL_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

async fn connect() -> RedisConn {
    let url = redis_url();
    redis::Client::open(url.as_str())
        .expect("redis url")
        .get_connection_manager()
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} is required (scripts/services.sh up): {e}"))
}

fn redis_lua(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let conn = rt.block_on(connect());
    let mut group = c.benchmark_group("redis_reserve");
    group.throughput(Throughput::Elements(1));
    let mut run = 0u64;
    for buckets in [1u32, 4] {
        let ledger = Arc::new(RedisLedger::new(
            conn.clone(),
            RedisLedgerConfig {
                prefix: PREFIX.into(),
                buckets,
            },
        ));
        for callers in [1u64, 64] {
            group.bench_with_input(
                BenchmarkId::new(format!("buckets_{buckets}"), callers),
                &callers,
                |b, &callers| {
                    b.iter_custom(|iters| {
                        run += 1;
                        let id =
                            CampaignId::parse(&format!("redis-bench-{}-{run}", std::process::id()))
                                .expect("id");
                        let per = iters.div_ceil(callers);
                        rt.block_on(async {
                            ledger.load(&id, per * callers, None).await.expect("load");
                            let started = Instant::now();
                            let mut tasks = Vec::new();
                            for t in 0..callers {
                                let (ledger, id) = (Arc::clone(&ledger), id.clone());
                                tasks.push(tokio::spawn(async move {
                                    for i in 0..per {
                                        let user =
                                            UserId::parse(&format!("u{t}-{i}")).expect("user");
                                        let r =
                                            ledger.reserve(&id, &user, 1).await.expect("reserve");
                                        assert!(matches!(r, Reservation::Reserved { .. }), "{r:?}");
                                    }
                                }));
                            }
                            for t in tasks {
                                t.await.expect("caller");
                            }
                            started
                                .elapsed()
                                .mul_f64(iters as f64 / (per * callers) as f64)
                        })
                    })
                },
            );
        }
    }
    group.finish();
    // The request records (`r:<id>`, kept an hour) and anything left behind.
    rt.block_on(async {
        let mut conn = connect().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{PREFIX}:*"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
        }
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    targets = redis_lua
}
criterion_main!(benches);
