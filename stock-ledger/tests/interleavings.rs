//! Property test: random interleavings of reserve and release across threads
//! on the engine's order ids and the memory ledger never oversell, never let
//! a user hold more than the limit, never reuse an order id, and conserve
//! stock at every quiescent point a monitor observes while the workers run.
//!
//! Conservation is checked against numbers the ledger does not derive from
//! each other: the holds it lists (`holds()`) plus the stock it has left
//! (`snapshot().remaining`) must be the total, and the holds it lists must
//! be the test's own count of successful reserves minus releases.
//! (`snapshot().reserved` is `total - remaining` by construction, so a check
//! on it could never fail.)

use engine::ports::{Hold, LedgerSnapshot, Reservation, StockLedger};
use engine::{CampaignId, OrderId, UserId};
use parking_lot::RwLock;
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// What the workers share with the monitor: a gate each operation passes
/// (read side) and the monitor closes to see a quiescent ledger (write
/// side), and the workers' own count of successful operations, updated
/// inside the gate.
#[derive(Default)]
struct Shared {
    gate: RwLock<()>,
    reserves: AtomicU64,
    releases: AtomicU64,
}

fn run_thread(
    ledger: &MemLedger,
    shared: &Shared,
    c: &CampaignId,
    limit: u32,
    ops: &[Op],
) -> Outcome {
    let mut out = Outcome::default();
    let mut mine: HashMap<u8, Vec<u32>> = HashMap::new();
    for op in ops {
        let _op = shared.gate.read();
        match *op {
            Op::Reserve(u) => {
                let user = UserId::parse(&format!("u{u}")).expect("valid");
                if let Reservation::Reserved { n } = ledger.reserve_sync(c, &user, limit) {
                    shared.reserves.fetch_add(1, Ordering::SeqCst);
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
                shared.releases.fetch_add(1, Ordering::SeqCst);
                out.released.push((u, n));
            }
        }
    }
    out
}

/// Conservation at a quiescent point, from independent counts.
fn check_conserved(ledger: &MemLedger, c: &CampaignId, total: u64, net: u64) {
    let snap = ledger_snapshot(ledger, c);
    let held = ledger_holds(ledger, c).len() as u64;
    assert_eq!(
        snap.remaining + held,
        total,
        "conservation: remaining {} + listed holds {held} != total {total}",
        snap.remaining
    );
    assert_eq!(
        held, net,
        "listed holds disagree with the successful reserves minus releases"
    );
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
        ready(ledger.load(&c, total, None)).expect("load");
        let done = AtomicBool::new(false);
        let shared = Shared::default();
        let outcomes: Vec<Outcome> = std::thread::scope(|s| {
            // A monitor stops the workers between operations (closes the
            // gate) and checks conservation while nothing is in flight.
            let monitor = s.spawn(|| {
                let mut samples = 0u32;
                while !done.load(Ordering::SeqCst) && samples < 20_000 {
                    let _quiet = shared.gate.write();
                    let net = shared.reserves.load(Ordering::SeqCst)
                        - shared.releases.load(Ordering::SeqCst);
                    check_conserved(&ledger, &c, total, net);
                    samples += 1;
                }
            });
            let workers: Vec<_> = threads
                .iter()
                .map(|ops| s.spawn(|| run_thread(&ledger, &shared, &c, limit, ops)))
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
        check_conserved(&ledger, &c, total, got - gave);
        let snap = ledger_snapshot(&ledger, &c);
        prop_assert_eq!(ledger.sold_out_hint(&c), snap.remaining == 0);
        ledger.assert_conserved(&c);
    }
}

fn ledger_snapshot(l: &MemLedger, c: &CampaignId) -> LedgerSnapshot {
    ready(l.snapshot(c)).expect("ok").expect("loaded")
}

fn ledger_holds(l: &MemLedger, c: &CampaignId) -> Vec<Hold> {
    ready(l.holds(c)).expect("ok").expect("loaded")
}

/// The memory ledger's async methods complete on their first poll; this
/// drives one without an executor (and says so if it ever does not).
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the memory ledger never waits"),
    }
}
