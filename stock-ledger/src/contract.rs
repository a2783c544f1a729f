//! The ledger contract: behaviour every `StockLedger` backend must show.
//!
//! Each check is an async function over a fresh ledger; the
//! [`ledger_contract_tests!`](crate::ledger_contract_tests) macro turns the
//! whole list into `#[tokio::test]`s for one backend. Campaign ids are unique
//! per call so backends that share a server (Redis) need no cleanup between
//! tests.

use engine::ports::{Hold, LedgerImage, Reservation, StockLedger};
use engine::{CampaignId, UserId};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A campaign id no other test in this process (or recent process) uses.
pub fn unique_campaign(tag: &str) -> CampaignId {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let id = format!(
        "t-{tag}-{}-{nanos}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    CampaignId::parse(&id).expect("generated campaign id is valid")
}

pub fn user(i: usize) -> UserId {
    UserId::parse(&format!("u{i}")).expect("generated user id is valid")
}

/// An image of durable records with the given generation.
pub fn image(total: u64, holds: &[Hold], retired: &[Hold], generation: u64) -> LedgerImage {
    LedgerImage {
        total,
        holds: holds.to_vec(),
        retired: retired.to_vec(),
        buckets: None,
        generation,
    }
}

async fn reserve(l: &dyn StockLedger, c: &CampaignId, u: &UserId, limit: u32) -> Reservation {
    l.reserve(c, u, limit).await.expect("ledger reachable")
}

/// `(total, held, remaining)`, with conservation checked against the holds
/// the ledger actually lists, never against `snapshot().reserved` (which
/// backends derive as `total - remaining`, so it could not disagree).
async fn numbers(l: &dyn StockLedger, c: &CampaignId) -> (u64, u64, u64) {
    let s = l
        .snapshot(c)
        .await
        .expect("ledger reachable")
        .expect("loaded");
    let held = l
        .holds(c)
        .await
        .expect("ledger reachable")
        .expect("loaded")
        .len() as u64;
    assert_eq!(
        s.remaining + held,
        s.total,
        "stock not conserved: remaining {} + listed holds {held} != total {}",
        s.remaining,
        s.total
    );
    (s.total, held, s.remaining)
}

pub async fn sells_exactly_the_stock(l: Arc<dyn StockLedger>) {
    let c = unique_campaign("exact");
    assert!(l.load(&c, 5, None).await.expect("load"));
    for i in 0..5 {
        assert_eq!(
            reserve(&*l, &c, &user(i), 1).await,
            Reservation::Reserved { n: 1 }
        );
    }
    assert!(l.sold_out_hint(&c));
    for i in 5..10 {
        assert_eq!(reserve(&*l, &c, &user(i), 1).await, Reservation::SoldOut);
    }
    assert_eq!(numbers(&*l, &c).await, (5, 5, 0));
}

pub async fn per_user_limit_is_exact(l: Arc<dyn StockLedger>) {
    let c = unique_campaign("limit");
    l.load(&c, 10, None).await.expect("load");
    let u = user(1);
    assert_eq!(
        reserve(&*l, &c, &u, 2).await,
        Reservation::Reserved { n: 1 }
    );
    assert_eq!(
        reserve(&*l, &c, &u, 2).await,
        Reservation::Reserved { n: 2 }
    );
    assert_eq!(reserve(&*l, &c, &u, 2).await, Reservation::AlreadyBought);
    assert_eq!(numbers(&*l, &c).await, (10, 2, 8));
}

pub async fn release_returns_a_unit_once(l: Arc<dyn StockLedger>) {
    let c = unique_campaign("release");
    l.load(&c, 1, None).await.expect("load");
    assert_eq!(
        reserve(&*l, &c, &user(1), 1).await,
        Reservation::Reserved { n: 1 }
    );
    assert!(l.sold_out_hint(&c));
    assert!(l.release(&c, &user(1), 1).await.expect("release"));
    assert!(
        !l.release(&c, &user(1), 1).await.expect("release"),
        "double release"
    );
    assert!(
        !l.release(&c, &user(2), 1).await.expect("release"),
        "never held"
    );
    assert!(
        !l.sold_out_hint(&c),
        "released stock must clear the sold-out flag"
    );
    assert_eq!(numbers(&*l, &c).await, (1, 0, 1));
    // The returned unit sells again; the same user gets a fresh n (new order id).
    assert_eq!(
        reserve(&*l, &c, &user(1), 1).await,
        Reservation::Reserved { n: 2 }
    );
    assert_eq!(reserve(&*l, &c, &user(2), 1).await, Reservation::SoldOut);
    assert_eq!(numbers(&*l, &c).await, (1, 1, 0));
}

pub async fn unknown_campaign_is_not_loaded(l: Arc<dyn StockLedger>) {
    let c = unique_campaign("unknown");
    assert_eq!(reserve(&*l, &c, &user(1), 1).await, Reservation::NotLoaded);
    assert!(!l.release(&c, &user(1), 1).await.expect("release"));
    assert_eq!(l.snapshot(&c).await.expect("snapshot"), None);
    assert!(!l.sold_out_hint(&c));
}

pub async fn load_is_idempotent(l: Arc<dyn StockLedger>) {
    let c = unique_campaign("load");
    assert!(l.load(&c, 3, None).await.expect("load"));
    assert_eq!(
        reserve(&*l, &c, &user(1), 1).await,
        Reservation::Reserved { n: 1 }
    );
    assert!(
        !l.load(&c, 3, None).await.expect("load"),
        "second load must not reset"
    );
    assert_eq!(numbers(&*l, &c).await, (3, 1, 2));
}

pub async fn restore_rebuilds_from_holds(l: Arc<dyn StockLedger>) {
    let c = unique_campaign("restore");
    l.load(&c, 10, None).await.expect("load");
    for i in 0..10 {
        reserve(&*l, &c, &user(100 + i), 1).await;
    }
    let holds = [
        Hold {
            user: user(1),
            n: 1,
        },
        Hold {
            user: user(2),
            n: 1,
        },
        Hold {
            user: user(2),
            n: 3,
        },
    ];
    l.restore(&c, &image(10, &holds, &[], 2))
        .await
        .expect("restore");
    assert_eq!(numbers(&*l, &c).await, (10, 3, 7));
    assert!(!l.sold_out_hint(&c));
    assert_eq!(
        reserve(&*l, &c, &user(2), 2).await,
        Reservation::AlreadyBought
    );
    // n continues after the highest durable n, so order ids are never reused.
    assert_eq!(
        reserve(&*l, &c, &user(1), 2).await,
        Reservation::Reserved { n: 2 }
    );
    assert!(l.release(&c, &user(2), 3).await.expect("release"));
    assert_eq!(
        reserve(&*l, &c, &user(2), 2).await,
        Reservation::Reserved { n: 4 }
    );
    let too_many: Vec<Hold> = (0..3)
        .map(|i| Hold {
            user: user(i),
            n: 1,
        })
        .collect();
    assert!(l.restore(&c, &image(2, &too_many, &[], 3)).await.is_err());
    let full: Vec<Hold> = (0..2)
        .map(|i| Hold {
            user: user(i),
            n: 1,
        })
        .collect();
    l.restore(&c, &image(2, &full, &[], 4))
        .await
        .expect("restore");
    assert!(
        l.sold_out_hint(&c),
        "restoring every unit as held means sold out"
    );
}

/// A durable record read twice (a duplicated hold) counts once: the
/// ledger must neither refuse nor trip its conservation check.
pub async fn restore_counts_a_duplicated_hold_once(l: Arc<dyn StockLedger>) {
    let c = unique_campaign("dup");
    l.load(&c, 2, None).await.expect("load");
    let hold = |u: usize, n: u32| Hold { user: user(u), n };
    let dup = [hold(1, 1), hold(1, 1), hold(2, 1)];
    l.restore(&c, &image(2, &dup, &[], 2))
        .await
        .expect("a duplicated record is one hold");
    assert_eq!(numbers(&*l, &c).await, (2, 2, 0));
    assert!(l.sold_out_hint(&c));
    l.restore(&c, &image(3, &dup, &[], 3))
        .await
        .expect("restore");
    assert_eq!(numbers(&*l, &c).await, (3, 2, 1));
    assert_eq!(
        reserve(&*l, &c, &user(1), 1).await,
        Reservation::AlreadyBought
    );
    assert_eq!(
        reserve(&*l, &c, &user(3), 1).await,
        Reservation::Reserved { n: 1 }
    );
    assert_eq!(numbers(&*l, &c).await, (3, 3, 0));
}

/// Retired units (expired, cancelled orders) take no stock and do not
/// count against the limit, but their numbers are spent: the user's next
/// `n` is past them, so no order id is ever reused.
pub async fn restore_continues_numbers_after_retired(l: Arc<dyn StockLedger>) {
    let c = unique_campaign("retired");
    l.load(&c, 5, None).await.expect("load");
    let hold = |u: usize, n: u32| Hold { user: user(u), n };
    l.restore(
        &c,
        &image(5, &[hold(1, 1)], &[hold(1, 2), hold(2, 5), hold(2, 3)], 2),
    )
    .await
    .expect("restore");
    assert_eq!(numbers(&*l, &c).await, (5, 1, 4));
    assert_eq!(
        reserve(&*l, &c, &user(2), 1).await,
        Reservation::Reserved { n: 6 },
        "n continues after the highest retired number"
    );
    assert_eq!(
        reserve(&*l, &c, &user(1), 2).await,
        Reservation::Reserved { n: 3 },
        "past both the held and the retired numbers"
    );
    assert_eq!(
        reserve(&*l, &c, &user(1), 2).await,
        Reservation::AlreadyBought,
        "the limit counts active units only"
    );
    assert!(l.release(&c, &user(2), 6).await.expect("release"));
    assert_eq!(
        reserve(&*l, &c, &user(2), 1).await,
        Reservation::Reserved { n: 7 }
    );
    assert_eq!(numbers(&*l, &c).await, (5, 3, 2));
}

/// The ledger lists exactly its active holds, for reconciliation.
pub async fn lists_active_holds(l: Arc<dyn StockLedger>) {
    let c = unique_campaign("holds");
    assert_eq!(l.holds(&c).await.expect("holds"), None, "not loaded");
    l.load(&c, 5, None).await.expect("load");
    for i in 0..3 {
        reserve(&*l, &c, &user(i), 2).await;
    }
    reserve(&*l, &c, &user(0), 2).await;
    assert!(l.release(&c, &user(1), 1).await.expect("release"));
    let mut got: Vec<(String, u32)> = l
        .holds(&c)
        .await
        .expect("holds")
        .expect("loaded")
        .into_iter()
        .map(|h| (h.user.to_string(), h.n))
        .collect();
    got.sort();
    let want = vec![
        ("u0".to_string(), 1),
        ("u0".to_string(), 2),
        ("u2".to_string(), 1),
    ];
    assert_eq!(got, want);
}

/// 1,000 users, 3 attempts each, concurrently, for 100 units.
pub async fn concurrent_buyers_never_oversell(l: Arc<dyn StockLedger>) {
    let c = unique_campaign("crowd");
    l.load(&c, 100, None).await.expect("load");
    let mut tasks = Vec::new();
    for t in 0..3 {
        for chunk in 0..10 {
            let (l, c) = (Arc::clone(&l), c.clone());
            tasks.push(tokio::spawn(async move {
                let mut won = Vec::new();
                for i in (chunk * 100..chunk * 100 + 100).map(|i| (i + t * 37) % 1000) {
                    if let Reservation::Reserved { n } = reserve(&*l, &c, &user(i), 1).await {
                        won.push((i, n));
                    }
                }
                won
            }));
        }
    }
    let mut winners = HashSet::new();
    for t in tasks {
        for (u, n) in t.await.expect("task") {
            assert_eq!(n, 1);
            assert!(winners.insert(u), "user {u} won twice");
        }
    }
    assert_eq!(winners.len(), 100, "all stock sold, none oversold");
    assert_eq!(numbers(&*l, &c).await, (100, 100, 0));
}

/// One user, 200 concurrent attempts: exactly one unit.
pub async fn one_user_racing_themselves_gets_one(l: Arc<dyn StockLedger>) {
    let c = unique_campaign("self");
    l.load(&c, 50, None).await.expect("load");
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (l, c) = (Arc::clone(&l), c.clone());
            tokio::spawn(async move { reserve(&*l, &c, &user(7), 1).await })
        })
        .collect();
    let mut reserved = 0;
    for t in tasks {
        match t.await.expect("task") {
            Reservation::Reserved { .. } => reserved += 1,
            Reservation::AlreadyBought => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(reserved, 1);
    assert_eq!(numbers(&*l, &c).await, (50, 1, 49));
}

/// Releases racing new buyers: at the end the flag agrees with the stock,
/// so no released unit is stranded behind a stale "sold out".
pub async fn releases_racing_buyers_leave_no_stranded_stock(l: Arc<dyn StockLedger>) {
    let c = unique_campaign("churn");
    l.load(&c, 10, None).await.expect("load");
    for i in 0..10 {
        reserve(&*l, &c, &user(i), 1).await;
    }
    let releasers: Vec<_> = (0..10)
        .map(|i| {
            let (l, c) = (Arc::clone(&l), c.clone());
            tokio::spawn(async move { l.release(&c, &user(i), 1).await.expect("release") })
        })
        .collect();
    let buyers: Vec<_> = (0..40)
        .map(|i| {
            let (l, c) = (Arc::clone(&l), c.clone());
            tokio::spawn(async move { reserve(&*l, &c, &user(1000 + i), 1).await })
        })
        .collect();
    let released = futures_count(releasers).await;
    assert_eq!(released, 10);
    let mut bought = 0u64;
    for b in buyers {
        if matches!(b.await.expect("task"), Reservation::Reserved { .. }) {
            bought += 1;
        }
    }
    let (_, reserved, remaining) = numbers(&*l, &c).await;
    assert_eq!(reserved, bought);
    assert_eq!(
        l.sold_out_hint(&c),
        remaining == 0,
        "flag disagrees with stock"
    );
    // Whatever is left sells to newcomers.
    for i in 0..remaining as usize {
        assert!(matches!(
            reserve(&*l, &c, &user(5000 + i), 1).await,
            Reservation::Reserved { .. }
        ));
    }
    assert_eq!(numbers(&*l, &c).await, (10, 10, 0));
}

async fn futures_count(tasks: Vec<tokio::task::JoinHandle<bool>>) -> usize {
    let mut n = 0;
    for t in tasks {
        n += usize::from(t.await.expect("task"));
    }
    n
}

/// Expands to one `#[tokio::test]` per contract check for the ledger that
/// `$make` (an expression returning the ledger) builds. The calling crate
/// needs `tokio` as a (dev-)dependency.
#[macro_export]
macro_rules! ledger_contract_tests {
    ($make:expr) => {
        $crate::ledger_contract_tests!(@each $make;
            sells_exactly_the_stock,
            per_user_limit_is_exact,
            release_returns_a_unit_once,
            unknown_campaign_is_not_loaded,
            load_is_idempotent,
            restore_rebuilds_from_holds,
            restore_counts_a_duplicated_hold_once,
            restore_continues_numbers_after_retired,
            lists_active_holds,
            concurrent_buyers_never_oversell,
            one_user_racing_themselves_gets_one,
            releases_racing_buyers_leave_no_stranded_stock
        );
    };
    (@each $make:expr; $($name:ident),*) => {
        mod ledger_contract {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let make = $make;
                    let ledger: ::std::sync::Arc<dyn ::engine::ports::StockLedger> =
                        ::std::sync::Arc::new(make().await);
                    $crate::contract::$name(ledger).await;
                }
            )*
        }
    };
}
