//! Property test: random interleavings of reserve and release across threads
//! on the engine's order ids and the memory ledger never oversell, never let
//! a user hold more than the limit, never reuse an order id, and conserve
//! stock (reserved + remaining = total) at every observed instant.

use engine::ports::Reservation;
use engine::{CampaignId, OrderId, UserId};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use stock_ledger::{MemLedger, MemLedgerConfig};

#[derive(Debug, Clone)]
enum Op {
    Reserve(u8),
    /// Release the oldest hold this thread got for that user, if any.
    Release(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..12).prop_map(Op::Reserve),
        1 => (0u8..12).prop_map(Op::Release),
    ]
}

#[derive(Default)]
struct Outcome {
    reserved: Vec<(u8, u32)>,
    released: Vec<(u8, u32)>,
}

fn run_thread(ledger: &MemLedger, c: &CampaignId, limit: u32, ops: &[Op]) -> Outcome {
    let mut out = Outcome::default();
    let mut mine: HashMap<u8, Vec<u32>> = HashMap::new();
    for op in ops {
        match *op {
            Op::Reserve(u) => {
                let user = UserId::parse(&format!("u{u}")).expect("valid");
                if let Reservation::Reserved { n } = ledger.reserve_sync(c, &user, limit) {
                    out.reserved.push((u, n));
                    mine.entry(u).or_default().push(n);
                }
            }
            Op::Release(u) => {
                let Some(n) = mine
                    .get_mut(&u)
                    .and_then(|v| (!v.is_empty()).then(|| v.remove(0)))
                else {
                    continue;
                };
                let user = UserId::parse(&format!("u{u}")).expect("valid");
                assert!(
                    ledger.release_sync(c, &user, n),
                    "own active hold must release"
                );
                out.released.push((u, n));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn interleavings_conserve_stock(
        total in 1u64..20,
        limit in 1u32..4,
        shards in 1usize..9,
        threads in prop::collection::vec(prop::collection::vec(op(), 0..60), 2..5),
    ) {
        let ledger = MemLedger::new(MemLedgerConfig { shards });
        let c = CampaignId::parse("prop").expect("valid");
        futures_lite_block_on(engine_load(&ledger, &c, total));
        let done = AtomicBool::new(false);
        let outcomes: Vec<Outcome> = std::thread::scope(|s| {
            // A monitor samples the snapshot while the workers run.
            let monitor = s.spawn(|| {
                let mut samples = 0u32;
                while !done.load(Ordering::SeqCst) && samples < 100_000 {
                    let snap = ledger_snapshot(&ledger, &c);
                    assert_eq!(snap.reserved + snap.remaining, total, "conservation");
                    assert!(snap.reserved <= total, "oversold");
                    samples += 1;
                }
            });
            let workers: Vec<_> = threads
                .iter()
                .map(|ops| s.spawn(|| run_thread(&ledger, &c, limit, ops)))
                .collect();
            let outs = workers.into_iter().map(|w| w.join().expect("worker")).collect();
            done.store(true, Ordering::SeqCst);
            monitor.join().expect("monitor");
            outs
        });

        let mut ids = HashSet::new();
        let mut held: HashMap<u8, i64> = HashMap::new();
        let (mut got, mut gave) = (0u64, 0u64);
        for o in &outcomes {
            for &(u, n) in &o.reserved {
                let user = UserId::parse(&format!("u{u}")).expect("valid");
                prop_assert!(ids.insert(OrderId::derive(&c, &user, n)), "order id reused");
                *held.entry(u).or_default() += 1;
                got += 1;
            }
            for &(u, _) in &o.released {
                *held.entry(u).or_default() -= 1;
                gave += 1;
            }
        }
        for (u, h) in &held {
            prop_assert!(*h >= 0 && *h <= i64::from(limit), "user {} holds {}", u, h);
        }
        let snap = ledger_snapshot(&ledger, &c);
        prop_assert_eq!(snap.reserved, got - gave);
        prop_assert_eq!(snap.reserved + snap.remaining, total);
        prop_assert_eq!(ledger_sold_out(&ledger, &c), snap.remaining == 0);
        ledger.assert_conserved(&c);
    }
}

// The memory ledger's async methods complete immediately; these helpers
// drive them without pulling an executor into a std-thread test.
fn ledger_snapshot(l: &MemLedger, c: &CampaignId) -> engine::ports::LedgerSnapshot {
    futures_lite_block_on(async {
        use engine::ports::StockLedger;
        l.snapshot(c).await.expect("ok").expect("loaded")
    })
}

fn ledger_sold_out(l: &MemLedger, c: &CampaignId) -> bool {
    use engine::ports::StockLedger;
    l.sold_out_hint(c)
}

async fn engine_load(l: &MemLedger, c: &CampaignId, total: u64) {
    use engine::ports::StockLedger;
    l.load(c, total, None).await.expect("load");
}

fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}
