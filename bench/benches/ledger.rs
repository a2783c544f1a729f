//! Stock ledger variants, one reservation per new buyer, on 1 and 2 threads:
//! one shared atomic, sharded atomics (what `MemLedger` does), a `DashMap`
//! of buyers beside one atomic, a `Mutex<HashMap>`, and `MemLedger` itself
//! (per-user limit and stock in one atomic step). Each sample gets a fresh
//! ledger holding exactly the units it will take, so every reservation wins.
//!
//!   cargo bench -p bench --bench ledger

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dashmap::DashMap;
use engine::ports::{Reservation, StockLedger};
use engine::{CampaignId, UserId};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stock_ledger::{MemLedger, MemLedgerConfig};

/// One way to hold stock: take one unit for buyer `i`; false when none is left.
trait Variant: Send + Sync {
    fn take(&self, i: u64) -> bool;
}

struct OneAtomic(AtomicU64);
impl Variant for OneAtomic {
    fn take(&self, _: u64) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| s.checked_sub(1))
            .is_ok()
    }
}

#[repr(align(128))]
struct Padded(AtomicU64);
struct Sharded(Vec<Padded>);
impl Variant for Sharded {
    fn take(&self, i: u64) -> bool {
        let n = self.0.len() as u64;
        (0..n).any(|k| {
            self.0[((i + k) % n) as usize]
                .0
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| s.checked_sub(1))
                .is_ok()
        })
    }
}

struct DashBuyers {
    stock: AtomicU64,
    buyers: DashMap<u64, u32>,
}
impl Variant for DashBuyers {
    fn take(&self, i: u64) -> bool {
        let mut held = self.buyers.entry(i).or_insert(0);
        if *held >= 1 {
            return false;
        }
        let ok = self
            .stock
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| s.checked_sub(1))
            .is_ok();
        if ok {
            *held += 1;
        }
        ok
    }
}

struct Locked(Mutex<(u64, HashMap<u64, u32>)>);
impl Variant for Locked {
    fn take(&self, i: u64) -> bool {
        let mut g = self.0.lock();
        if g.0 == 0 || g.1.get(&i).copied().unwrap_or(0) >= 1 {
            return false;
        }
        g.0 -= 1;
        *g.1.entry(i).or_insert(0) += 1;
        true
    }
}

fn build(name: &str, units: u64) -> Arc<dyn Variant> {
    match name {
        "one_atomic" => Arc::new(OneAtomic(AtomicU64::new(units))),
        "sharded_atomics" => {
            let shards = 16u64;
            Arc::new(Sharded(
                (0..shards)
                    .map(|k| {
                        Padded(AtomicU64::new(
                            units / shards + u64::from(k < units % shards),
                        ))
                    })
                    .collect(),
            ))
        }
        "dashmap_buyers" => Arc::new(DashBuyers {
            stock: AtomicU64::new(units),
            buyers: DashMap::new(),
        }),
        _ => Arc::new(Locked(Mutex::new((units, HashMap::new())))),
    }
}

/// Runs `iters` takes split over `threads`, timed from the first to the last.
fn timed(threads: u64, iters: u64, take: Arc<dyn Fn(u64) -> bool + Send + Sync>) -> Duration {
    let per = iters.div_ceil(threads);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let take = Arc::clone(&take);
            std::thread::spawn(move || {
                let mut won = 0u64;
                for i in t * per..((t + 1) * per).min(iters) {
                    won += u64::from(take(i));
                }
                won
            })
        })
        .collect();
    let won: u64 = handles
        .into_iter()
        .map(|h| h.join().expect("bench thread"))
        .sum();
    let elapsed = start.elapsed();
    assert_eq!(won, iters, "every reservation must win");
    elapsed
}

fn variants(c: &mut Criterion) {
    let mut group = c.benchmark_group("ledger_reserve");
    group.throughput(Throughput::Elements(1));
    for threads in [1u64, 2] {
        for name in [
            "one_atomic",
            "sharded_atomics",
            "dashmap_buyers",
            "mutex_hashmap",
        ] {
            group.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &threads| {
                b.iter_custom(|iters| {
                    let v = build(name, iters);
                    timed(threads, iters, Arc::new(move |i| v.take(i)))
                });
            });
        }
        group.bench_with_input(
            BenchmarkId::new("MemLedger", threads),
            &threads,
            |b, &threads| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                b.iter_custom(|iters| {
                    let ledger = Arc::new(MemLedger::new(MemLedgerConfig::default()));
                    let campaign = CampaignId::parse("bench").expect("id");
                    rt.block_on(ledger.load(&campaign, iters, None))
                        .expect("load");
                    let users: Arc<Vec<UserId>> = Arc::new(
                        (0..iters)
                            .map(|i| UserId::parse(&format!("u{i}")).expect("user id"))
                            .collect(),
                    );
                    timed(
                        threads,
                        iters,
                        Arc::new(move |i| {
                            matches!(
                                ledger.reserve_sync(&campaign, &users[i as usize], 1),
                                Reservation::Reserved { .. }
                            )
                        }),
                    )
                });
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = variants
}
criterion_main!(benches);
