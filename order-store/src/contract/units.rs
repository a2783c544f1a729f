//! Contract checks on unit numbers against the per-user limit, the rule
//! shared by ledger, store, replay and reconciliation: the limit bounds a
//! user's *active* orders (those whose status does not release stock), and
//! `n` is a per-(campaign, user) counter that never repeats, so it may pass
//! the limit once earlier units were released.

use super::{campaign, ContractError, ContractResult};
use engine::ports::{BatchReport, LogRecord, OrderStore, StatusChange, StoreError};
use engine::{Campaign, OrderId, OrderRecord, OrderStatus, UserId};
use std::sync::Arc;

/// The record of `user`'s `n`-th unit of `c`.
pub fn unit(c: &Campaign, user: &str, n: u32) -> Result<LogRecord, ContractError> {
    Ok(LogRecord::Order(OrderRecord::new(
        c,
        UserId::parse(user)?,
        n,
        1_500,
    )))
}

fn id(r: &LogRecord) -> OrderId {
    let LogRecord::Order(o) = r;
    o.order_id.clone()
}

fn report(inserted: u64, duplicates: u64) -> BatchReport {
    BatchReport {
        inserted,
        duplicates,
    }
}

fn assert_refused(result: Result<BatchReport, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::Invariant(_))),
        "{what}: {result:?}"
    );
}

/// With a limit of 1, a user's second unit lands when they hold no active
/// order: their first never reached the store (the ledger released it after
/// a failed append), or it was stored and then expired or was cancelled.
pub async fn a_unit_past_the_limit_lands_when_no_unit_is_active(
    store: Arc<dyn OrderStore>,
) -> ContractResult {
    let c = campaign("regrab", 20)?;
    store.insert_campaign(&c).await?;
    let fresh = unit(&c, "fresh", 2)?;
    assert_eq!(
        store
            .write_batch(std::slice::from_ref(&fresh), None)
            .await?,
        report(1, 0)
    );
    let stored = store.order(&id(&fresh)).await?;
    assert_eq!(
        stored.map(|o| (o.record.n, o.status)),
        Some((2, OrderStatus::Confirmed))
    );
    assert_eq!(
        id(&fresh),
        OrderId::derive(&c.id, &UserId::parse("fresh")?, 2)
    );
    for (user, release) in [
        ("expired", OrderStatus::Expired),
        ("cancelled", OrderStatus::Cancelled),
    ] {
        let first = unit(&c, user, 1)?;
        store
            .write_batch(std::slice::from_ref(&first), None)
            .await?;
        assert_eq!(
            store.set_status(&id(&first), release).await?,
            StatusChange::Changed
        );
        let second = unit(&c, user, 2)?;
        assert_eq!(
            store
                .write_batch(std::slice::from_ref(&second), None)
                .await?,
            report(1, 0),
            "{user}"
        );
        // A replay of both is absorbed: duplicates never count again.
        assert_eq!(
            store.write_batch(&[first, second], None).await?,
            report(0, 2),
            "{user}"
        );
    }
    // Numbers may skip (a unit whose append failed never reaches the store).
    let expired_two = unit(&c, "expired", 2)?;
    store
        .set_status(&id(&expired_two), OrderStatus::Expired)
        .await?;
    assert_eq!(
        store.write_batch(&[unit(&c, "expired", 5)?], None).await?,
        report(1, 0)
    );
    let active = |status: &OrderStatus| !status.releases_stock();
    let expired_user = UserId::parse("expired")?;
    let held: Vec<u32> = store
        .orders(&c.id)
        .await?
        .into_iter()
        .filter(|o| o.record.user_id == expired_user && active(&o.status))
        .map(|o| o.record.n)
        .collect();
    assert_eq!(held, vec![5]);
    // `sold` counts the units of active orders: a released one is not sold.
    let live = store
        .orders(&c.id)
        .await?
        .iter()
        .filter(|o| active(&o.status))
        .count() as u64;
    assert_eq!(store.sold(&c.id).await?, live);
    assert_eq!(live, 3);
    Ok(())
}

/// A unit is refused when its user already holds the limit in active orders
/// (stored ones plus new ones of the same batch), or when its `n` is 0; the
/// refused batch writes nothing at all.
pub async fn an_active_unit_keeps_the_next_one_out(store: Arc<dyn OrderStore>) -> ContractResult {
    let c = campaign("held", 20)?;
    store.insert_campaign(&c).await?;
    let alice_one = unit(&c, "alice", 1)?;
    store
        .write_batch(std::slice::from_ref(&alice_one), None)
        .await?;
    let alice_two = unit(&c, "alice", 2)?;
    assert_refused(
        store
            .write_batch(std::slice::from_ref(&alice_two), None)
            .await,
        "a second unit while the first is confirmed",
    );
    store.set_status(&id(&alice_one), OrderStatus::Paid).await?;
    assert_refused(
        store
            .write_batch(std::slice::from_ref(&alice_two), None)
            .await,
        "a second unit while the first is paid",
    );
    assert_refused(
        store.write_batch(&[unit(&c, "bob", 0)?], None).await,
        "unit 0",
    );
    assert_refused(
        store
            .write_batch(&[unit(&c, "bob", 1)?, unit(&c, "bob", 2)?], None)
            .await,
        "two new units of one user in one batch",
    );
    assert_refused(
        store
            .write_batch(&[unit(&c, "carol", 2)?, unit(&c, "carol", 3)?], None)
            .await,
        "two new units past the limit in one batch",
    );
    // One refused record refuses its whole batch.
    assert_refused(
        store
            .write_batch(&[unit(&c, "dave", 1)?, alice_two.clone()], None)
            .await,
        "a batch holding one unit over the limit",
    );
    assert_eq!(store.sold(&c.id).await?, 1);
    assert_eq!(store.orders(&c.id).await?.len(), 1);
    // A duplicate of a stored unit is absorbed and does not count twice, and
    // a unit repeated inside one batch counts once.
    assert_eq!(
        store
            .write_batch(&[alice_one.clone(), unit(&c, "erin", 1)?], None)
            .await?,
        report(1, 1)
    );
    assert_eq!(
        store
            .write_batch(&[unit(&c, "frank", 2)?, unit(&c, "frank", 2)?], None)
            .await?,
        report(1, 1)
    );

    // With a limit of 2, two active units fit and a third does not.
    let wide = Campaign {
        per_user_limit: 2,
        ..campaign("wide", 20)?
    };
    store.insert_campaign(&wide).await?;
    let first = unit(&wide, "alice", 1)?;
    store
        .write_batch(std::slice::from_ref(&first), None)
        .await?;
    assert_eq!(
        store
            .write_batch(&[first.clone(), unit(&wide, "alice", 2)?], None)
            .await?,
        report(1, 1)
    );
    assert_refused(
        store.write_batch(&[unit(&wide, "alice", 3)?], None).await,
        "a third active unit for a limit of 2",
    );
    store
        .set_status(&id(&first), OrderStatus::Cancelled)
        .await?;
    assert_eq!(
        store.write_batch(&[unit(&wide, "alice", 3)?], None).await?,
        report(1, 0)
    );
    assert_refused(
        store.write_batch(&[unit(&wide, "alice", 4)?], None).await,
        "a third active unit after a release",
    );
    assert_eq!(store.sold(&c.id).await?, 3);
    // alice's first unit was cancelled: it is not sold any more.
    assert_eq!(store.sold(&wide.id).await?, 2);
    // Numbers within the limit prove nothing once a stored unit is numbered
    // past it: a late or bad record below the limit is still counted.
    store.write_batch(&[unit(&c, "gina", 5)?], None).await?;
    assert_refused(
        store.write_batch(&[unit(&c, "gina", 1)?], None).await,
        "a low-numbered unit beside an active one numbered past the limit",
    );
    let mut wider = store.write_batch(&[unit(&wide, "hugo", 4)?], None).await?;
    wider.inserted += store
        .write_batch(&[unit(&wide, "hugo", 1)?], None)
        .await?
        .inserted;
    assert_eq!(wider.inserted, 2, "two active units fit a limit of 2");
    assert_refused(
        store.write_batch(&[unit(&wide, "hugo", 2)?], None).await,
        "a third, low-numbered, beside one past the limit",
    );
    Ok(())
}
