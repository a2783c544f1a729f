//! The durable order log (`FileLog`): appends answered only after their
//! fsync, with group commit (the log thread writes and fsyncs whatever
//! waits as one batch). One appender pays a whole fsync per record; many
//! concurrent appenders share each fsync, which is what lets a crowd of
//! winning grabs through. Reported per record.
//!
//!   cargo bench -p bench --bench log_append

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::ports::OrderLog;
use order_log::{FileLog, FileLogConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn log_append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("log_append");
    group.throughput(Throughput::Elements(1));
    for appenders in [1u64, 16, 256] {
        let mut run = 0;
        group.bench_with_input(
            BenchmarkId::new("concurrent_appenders", appenders),
            &appenders,
            |b, &appenders| {
                b.iter_custom(|iters| {
                    run += 1;
                    let path = dir.path().join(format!("log-{appenders}-{run}"));
                    let (log, replayed) = FileLog::open(FileLogConfig::new(&path)).expect("open");
                    assert!(replayed.is_empty());
                    let log = Arc::new(log);
                    let per = iters.div_ceil(appenders);
                    let started = Instant::now();
                    rt.block_on(async {
                        let mut tasks = Vec::new();
                        for a in 0..appenders {
                            let log = Arc::clone(&log);
                            tasks.push(tokio::spawn(async move {
                                for i in 0..per {
                                    let record = order_log::test_support::record(a * per + i);
                                    log.append(&record).await.expect("durable append");
                                }
                            }));
                        }
                        for t in tasks {
                            t.await.expect("appender");
                        }
                    });
                    let elapsed = started.elapsed();
                    let syncs = log.batches_synced();
                    assert!(syncs >= 1 && syncs <= per * appenders);
                    log.close();
                    let _ = std::fs::remove_file(&path);
                    // Per record: the time over the records actually sent.
                    elapsed.mul_f64(iters as f64 / (per * appenders) as f64)
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    targets = log_append
}
criterion_main!(benches);
