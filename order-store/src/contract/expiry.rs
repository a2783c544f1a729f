//! Contract checks on payment expiry: the sweeper's scans, the durable
//! "released" mark, and `sold` counting active units only, so a unit that
//! came back can be sold again.

use super::units::unit;
use super::{campaign, ContractError, ContractResult};
use engine::ports::{LogRecord, OrderStore, StatusChange, StoreError};
use engine::{OrderId, OrderStatus};
use std::collections::BTreeSet;
use std::sync::Arc;

fn record(r: &LogRecord) -> &engine::OrderRecord {
    let LogRecord::Order(o) = r;
    o
}

fn ids(orders: &[engine::Order]) -> BTreeSet<OrderId> {
    orders.iter().map(|o| o.record.order_id.clone()).collect()
}

/// Stock 2, both sold: a third buyer is refused by the sold guard until one
/// order expires, which lowers `sold`; then the third lands, and a
/// repeated expiry changes nothing.
pub async fn an_expiry_gives_the_unit_back_to_the_sold_guard(
    store: Arc<dyn OrderStore>,
) -> ContractResult {
    let c = campaign("resell", 2)?;
    store.insert_campaign(&c).await?;
    let a = unit(&c, "a", 1)?;
    let b = unit(&c, "b", 1)?;
    store.write_batch(&[a.clone(), b.clone()], None).await?;
    assert_eq!(store.sold(&c.id).await?, 2);
    let third = unit(&c, "third", 1)?;
    let refused = store.write_batch(std::slice::from_ref(&third), None).await;
    assert!(
        matches!(refused, Err(StoreError::Invariant(_))),
        "{refused:?}"
    );
    let a_id = &record(&a).order_id;
    assert_eq!(
        store.set_status(a_id, OrderStatus::Expired).await?,
        StatusChange::Changed
    );
    assert_eq!(store.sold(&c.id).await?, 1);
    assert_eq!(
        store.set_status(a_id, OrderStatus::Expired).await?,
        StatusChange::Unchanged
    );
    assert_eq!(
        store.sold(&c.id).await?,
        1,
        "a repeated expiry released twice"
    );
    // A paid order does not release: sold stays.
    store
        .set_status(&record(&b).order_id, OrderStatus::Paid)
        .await?;
    assert_eq!(store.sold(&c.id).await?, 1);
    store
        .write_batch(std::slice::from_ref(&third), None)
        .await?;
    assert_eq!(store.sold(&c.id).await?, 2);
    // The expired buyer buys again under a new unit number (a new order id).
    let again = unit(&c, "a", 2)?;
    let refused = store.write_batch(std::slice::from_ref(&again), None).await;
    assert!(
        matches!(refused, Err(StoreError::Invariant(_))),
        "{refused:?}"
    );
    store
        .set_status(&record(&third).order_id, OrderStatus::Cancelled)
        .await?;
    store
        .write_batch(std::slice::from_ref(&again), None)
        .await?;
    assert_eq!(store.sold(&c.id).await?, 2);
    let status = store
        .order(&record(&again).order_id)
        .await?
        .map(|o| o.status);
    assert_eq!(status, Some(OrderStatus::Confirmed));
    Ok(())
}

/// `due_for_expiry` lists confirmed orders past their deadline only (not
/// paid, not at the deadline itself), earliest first and at most `limit`;
/// `unreleased` lists released-status orders until `mark_released`, which
/// is idempotent and refuses orders that still hold their unit.
pub async fn the_sweeper_scans_and_release_marks(store: Arc<dyn OrderStore>) -> ContractResult {
    let c = campaign("sweep", 10)?;
    store.insert_campaign(&c).await?;
    let other = campaign("sweep2", 10)?;
    store.insert_campaign(&other).await?;
    let mut records = Vec::new();
    for (i, u) in ["a", "b", "c", "d"].iter().enumerate() {
        let LogRecord::Order(mut o) = unit(&c, u, 1)?;
        // Deadlines 10_000, 10_001, ... so the order is known.
        o.pay_by_ms = 10_000 + i as u64;
        records.push(LogRecord::Order(o));
    }
    records.push(unit(&other, "e", 1)?);
    store.write_batch(&records, None).await?;
    let order_id = |i: usize| record(&records[i]).order_id.clone();
    store.set_status(&order_id(1), OrderStatus::Paid).await?;

    assert!(
        store.due_for_expiry(10_000, 100).await?.is_empty(),
        "at the deadline"
    );
    let due = store.due_for_expiry(10_003, 100).await?;
    assert_eq!(
        due.iter()
            .map(|o| o.record.order_id.clone())
            .collect::<Vec<_>>(),
        vec![order_id(0), order_id(2)],
        "past the deadline, earliest first, paid left out"
    );
    assert_eq!(due[0].status, OrderStatus::Confirmed);
    assert_eq!(
        store.due_for_expiry(u64::MAX / 2, 2).await?.len(),
        2,
        "limit"
    );
    let all_due = store.due_for_expiry(u64::MAX / 2, 100).await?;
    assert_eq!(all_due.len(), 4, "three of c and the one of sweep2");

    assert!(store.unreleased(100).await?.is_empty());
    store.set_status(&order_id(0), OrderStatus::Expired).await?;
    store.set_status(&order_id(3), OrderStatus::Expired).await?;
    assert!(!ids(&store.due_for_expiry(u64::MAX / 2, 100).await?).contains(&order_id(0)));
    assert_eq!(
        ids(&store.unreleased(100).await?),
        BTreeSet::from([order_id(0), order_id(3)])
    );
    assert_eq!(store.unreleased(1).await?.len(), 1, "limit");
    assert_eq!(store.released(&c.id).await?, 0);
    store.mark_released(&order_id(0)).await?;
    store.mark_released(&order_id(0)).await?;
    assert_eq!(
        ids(&store.unreleased(100).await?),
        BTreeSet::from([order_id(3)])
    );
    assert_eq!(store.released(&c.id).await?, 1);
    assert_eq!(store.released(&other.id).await?, 0);
    // Still holding their unit: refused, nothing marked.
    for held in [order_id(1), order_id(2)] {
        let r = store.mark_released(&held).await;
        assert!(matches!(r, Err(StoreError::Invariant(_))), "{r:?}");
    }
    let missing = OrderId::derive(&c.id, &engine::UserId::parse("nobody")?, 1);
    let r = store.mark_released(&missing).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    assert_eq!(store.released(&c.id).await?, 1);
    Ok(())
}

/// Payments and expiries racing for the same orders: each order ends
/// exactly paid or expired, and `sold` equals the orders still active.
pub async fn payments_racing_expiries_end_one_way_each(
    store: Arc<dyn OrderStore>,
) -> ContractResult {
    const ORDERS: u32 = 60;
    let c = campaign("payrace", u64::from(ORDERS))?;
    store.insert_campaign(&c).await?;
    let records = (0..ORDERS)
        .map(|u| unit(&c, &format!("u{u}"), 1))
        .collect::<Result<Vec<_>, ContractError>>()?;
    store.write_batch(&records, None).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, r) in records.iter().enumerate() {
        for to in [OrderStatus::Paid, OrderStatus::Expired] {
            let (store, id) = (Arc::clone(&store), record(r).order_id.clone());
            tasks.spawn(async move {
                if i % 2 == 0 {
                    tokio::task::yield_now().await;
                }
                store.set_status(&id, to).await.map(|ch| (id, to, ch))
            });
        }
    }
    let mut winners: std::collections::BTreeMap<OrderId, OrderStatus> = Default::default();
    while let Some(done) = tasks.join_next().await {
        let (id, to, change) = done??;
        if change == StatusChange::Changed {
            let prior = winners.insert(id.clone(), to);
            assert!(prior.is_none(), "{id} changed twice: {prior:?} then {to:?}");
        }
    }
    assert_eq!(winners.len(), ORDERS as usize, "every order changed once");
    let mut active = 0u64;
    for o in store.orders(&c.id).await? {
        assert_eq!(Some(&o.status), winners.get(&o.record.order_id));
        if !o.status.releases_stock() {
            active += 1;
        }
    }
    assert_eq!(store.sold(&c.id).await?, active);
    Ok(())
}
