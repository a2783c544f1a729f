//! Contract checks on `write_batch`: idempotence, exact counting, the sold
//! guard, refused batches, and checkpoints committed with their rows.

use super::{campaign, order, orders, stored_rows, ContractResult};
use engine::ports::{BatchReport, Checkpoint, LogRecord, OrderStore, StoreError};
use engine::{Campaign, OrderId, OrderRecord, UserId};
use std::sync::Arc;

fn report(inserted: u64, duplicates: u64) -> BatchReport {
    BatchReport {
        inserted,
        duplicates,
    }
}

fn at(position: u64) -> Option<Checkpoint<'static>> {
    Some(Checkpoint {
        source: "log",
        position,
    })
}

pub async fn write_batch_is_idempotent(store: Arc<dyn OrderStore>) -> ContractResult {
    let c = campaign("c1", 100)?;
    store.insert_campaign(&c).await?;
    let batch = orders(&c, 0..10)?;
    assert_eq!(store.write_batch(&batch, None).await?, report(10, 0));
    assert_eq!(store.write_batch(&batch, None).await?, report(0, 10));
    // A duplicate inside one batch is absorbed the same way.
    let mut mixed = orders(&c, 9..12)?;
    mixed.extend(orders(&c, 11..12)?);
    assert_eq!(store.write_batch(&mixed, None).await?, report(2, 2));
    assert_eq!(store.sold(&c.id).await?, 12);
    assert_eq!(stored_rows(&*store, &[&c]).await?, 12);
    // Nothing to write and no checkpoint is a no-op, not an error.
    assert_eq!(store.write_batch(&[], None).await?, report(0, 0));
    Ok(())
}

/// Both unique keys absorb a record: the same order id, or the same
/// `(campaign, user, n)` under another order id (which only a corrupt or
/// forged record can carry). Neither raises `sold`.
pub async fn duplicates_are_recognised_by_either_key(store: Arc<dyn OrderStore>) -> ContractResult {
    let c = campaign("c1", 100)?;
    store.insert_campaign(&c).await?;
    let LogRecord::Order(alice) = order(&c, "alice")?;
    store
        .write_batch(&[LogRecord::Order(alice.clone())], None)
        .await?;
    let same_unit = OrderRecord {
        order_id: OrderId::derive(&c.id, &UserId::parse("elsewhere")?, 9),
        ..alice.clone()
    };
    let same_id = OrderRecord {
        user_id: UserId::parse("mallory")?,
        ..alice.clone()
    };
    let fresh = order(&c, "bob")?;
    let batch = vec![
        LogRecord::Order(same_unit.clone()),
        fresh.clone(),
        LogRecord::Order(same_id),
    ];
    assert_eq!(store.write_batch(&batch, None).await?, report(1, 2));
    // Repeats inside one batch, by either key, count once.
    let LogRecord::Order(carol) = order(&c, "carol")?;
    let carol_again = OrderRecord {
        order_id: OrderId::derive(&c.id, &UserId::parse("elsewhere")?, 8),
        ..carol.clone()
    };
    let batch = vec![
        LogRecord::Order(carol.clone()),
        LogRecord::Order(carol_again),
        LogRecord::Order(carol.clone()),
    ];
    assert_eq!(store.write_batch(&batch, None).await?, report(1, 2));
    assert_eq!(store.sold(&c.id).await?, 3);
    let stored: Vec<OrderRecord> = store
        .orders(&c.id)
        .await?
        .into_iter()
        .map(|o| o.record)
        .collect();
    assert_eq!(stored.len(), 3);
    assert!(stored.contains(&alice) && stored.contains(&carol));
    assert!(!stored.contains(&same_unit));
    Ok(())
}

/// One batch may carry several campaigns; each one's `sold` rises by its own
/// new rows only, and a user may hold up to the campaign's limit.
pub async fn a_batch_spanning_campaigns_counts_each(store: Arc<dyn OrderStore>) -> ContractResult {
    let a = campaign("a", 10)?;
    let b = Campaign {
        per_user_limit: 2,
        ..campaign("b", 10)?
    };
    store.insert_campaign(&a).await?;
    store.insert_campaign(&b).await?;
    store.write_batch(&orders(&a, 0..2)?, None).await?;
    let second_unit = OrderRecord::new(&b, UserId::parse("u0")?, 2, 1_600);
    let mut batch = orders(&b, 0..3)?;
    batch.extend(orders(&a, 1..4)?);
    batch.push(LogRecord::Order(second_unit));
    assert_eq!(
        store
            .write_batch(
                &batch,
                Some(Checkpoint {
                    source: "log",
                    position: 7
                })
            )
            .await?,
        report(6, 1)
    );
    assert_eq!(store.sold(&a.id).await?, 4);
    assert_eq!(store.sold(&b.id).await?, 4);
    assert_eq!(stored_rows(&*store, &[&a]).await?, 4);
    assert_eq!(stored_rows(&*store, &[&b]).await?, 4);
    // A checkpoint can move without rows (a stretch of the log with none).
    assert_eq!(store.write_batch(&[], at(9)).await?, report(0, 0));
    assert_eq!(store.checkpoint("log").await?, Some(9));
    Ok(())
}

pub async fn sold_guard_refuses_the_unit_past_the_stock(
    store: Arc<dyn OrderStore>,
) -> ContractResult {
    let c = campaign("c1", 3)?;
    store.insert_campaign(&c).await?;
    store.write_batch(&orders(&c, 0..2)?, at(10)).await?;
    store.write_batch(&orders(&c, 2..3)?, at(20)).await?;
    // One more distinct order, next to a duplicate that alone would be fine.
    let mut over = orders(&c, 2..4)?;
    over.extend(orders(&c, 0..1)?);
    let err = store.write_batch(&over, at(30)).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    assert_eq!(store.sold(&c.id).await?, 3);
    assert_eq!(stored_rows(&*store, &[&c]).await?, 3);
    // The refused batch moved nothing, not even its checkpoint.
    assert_eq!(store.checkpoint("log").await?, Some(20));
    // The duplicates alone are still absorbed.
    assert_eq!(
        store.write_batch(&orders(&c, 0..3)?, at(30)).await?,
        report(0, 3)
    );
    // A campaign with no stock sells nothing.
    let empty = campaign("empty", 0)?;
    store.insert_campaign(&empty).await?;
    let err = store.write_batch(&orders(&empty, 0..1)?, None).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    Ok(())
}

pub async fn unknown_campaign_and_limit_breach_are_invariant_errors(
    store: Arc<dyn OrderStore>,
) -> ContractResult {
    let c = campaign("c1", 10)?;
    store.insert_campaign(&c).await?;
    let ghost = campaign("ghost", 10)?;
    let mut batch = orders(&c, 0..2)?;
    batch.extend(orders(&ghost, 0..1)?);
    let err = store.write_batch(&batch, None).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    // A unit 0, which the ledger never hands out, is refused.
    let zero = OrderRecord::new(&c, UserId::parse("u0")?, 0, 1_600);
    let err = store.write_batch(&[LogRecord::Order(zero)], None).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    assert_eq!(stored_rows(&*store, &[&c, &ghost]).await?, 0);
    assert_eq!(store.sold(&c.id).await?, 0);
    // The per-user limit is 1, so a second active unit for one user is
    // refused (see `units` for the whole rule).
    store.write_batch(&orders(&c, 0..1)?, None).await?;
    let second = OrderRecord::new(&c, UserId::parse("u0")?, 2, 1_600);
    let err = store.write_batch(&[LogRecord::Order(second)], None).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    assert_eq!(stored_rows(&*store, &[&c]).await?, 1);
    assert_eq!(store.sold(&c.id).await?, 1);
    Ok(())
}

pub async fn values_past_i64_are_refused_not_wrapped(store: Arc<dyn OrderStore>) -> ContractResult {
    let c = campaign("c1", 10)?;
    store.insert_campaign(&c).await?;
    let huge = Campaign {
        price_cents: u64::MAX,
        ..campaign("c2", 10)?
    };
    let err = store.insert_campaign(&huge).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    let mut rec = OrderRecord::new(&c, UserId::parse("u0")?, 1, 1_500);
    rec.pay_by_ms = u64::MAX;
    let err = store.write_batch(&[LogRecord::Order(rec)], None).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    let err = store.write_batch(&[], at(u64::MAX)).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    // The largest storable values round-trip.
    let max = i64::MAX.unsigned_abs();
    let big = Campaign {
        price_cents: max,
        stock_total: max,
        ends_at_ms: max,
        ..campaign("c3", 0)?
    };
    store.insert_campaign(&big).await?;
    assert_eq!(store.campaigns().await?.last(), Some(&big));
    store.write_batch(&[], at(max)).await?;
    assert_eq!(store.checkpoint("log").await?, Some(max));
    Ok(())
}

pub async fn checkpoint_commits_with_its_batch(store: Arc<dyn OrderStore>) -> ContractResult {
    let c = campaign("c1", 1_000)?;
    store.insert_campaign(&c).await?;
    assert_eq!(store.checkpoint("log").await?, None);
    store.write_batch(&orders(&c, 0..5)?, at(4_096)).await?;
    assert_eq!(store.checkpoint("log").await?, Some(4_096));
    assert_eq!(store.checkpoint("other").await?, None);
    // A failing batch (unknown campaign) must not move the checkpoint.
    let mut bad = orders(&c, 5..10)?;
    bad.extend(orders(&campaign("ghost", 1)?, 0..1)?);
    assert!(store.write_batch(&bad, at(8_192)).await.is_err());
    assert_eq!(store.checkpoint("log").await?, Some(4_096));
    assert_eq!(stored_rows(&*store, &[&c]).await?, 5);
    // Last writer wins: a recreated log may restart from a lower position.
    store.write_batch(&orders(&c, 5..6)?, at(100)).await?;
    assert_eq!(store.checkpoint("log").await?, Some(100));
    // Sources are independent.
    let other = Some(Checkpoint {
        source: "other",
        position: 1,
    });
    store.write_batch(&[], other).await?;
    assert_eq!(store.checkpoint("log").await?, Some(100));
    assert_eq!(store.checkpoint("other").await?, Some(1));
    Ok(())
}
