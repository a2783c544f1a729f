//! Contract checks with several writers at once: overlapping batches land
//! each order exactly once, racing batches never sell past the stock nor
//! give a user more active units than the limit, and ledger generations
//! are never handed out twice.

use super::{campaign, orders, stored_rows, units::unit, ContractError, ContractResult};
use engine::ports::{LogRecord, OrderStore, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::task::JoinSet;

/// Runs `writers` concurrent writers that each write all of `records` in
/// batches of `batch_rows`, every writer starting at a different offset so
/// the batches overlap. Returns the summed (inserted, duplicates) of every
/// report; every batch must succeed.
pub async fn overlapping_writers(
    store: Arc<dyn OrderStore>,
    records: Arc<Vec<LogRecord>>,
    writers: usize,
    batch_rows: usize,
) -> Result<(u64, u64), ContractError> {
    let mut tasks = JoinSet::new();
    for w in 0..writers {
        let (store, records) = (Arc::clone(&store), Arc::clone(&records));
        tasks.spawn(async move {
            let mut mine: Vec<LogRecord> = records.iter().cloned().collect();
            // Rotating by a share of the writers spreads the starting points,
            // and batches of one writer straddle those of its neighbours.
            let shift = mine.len() * w / writers.max(1);
            mine.rotate_left(shift);
            let (mut inserted, mut duplicates) = (0u64, 0u64);
            for batch in mine.chunks(batch_rows.max(1)) {
                let report = store.write_batch(batch, None).await?;
                inserted += report.inserted;
                duplicates += report.duplicates;
            }
            Ok::<_, StoreError>((inserted, duplicates))
        });
    }
    let (mut inserted, mut duplicates) = (0u64, 0u64);
    while let Some(done) = tasks.join_next().await {
        let (i, d) = done??;
        inserted += i;
        duplicates += d;
    }
    Ok((inserted, duplicates))
}

pub async fn concurrent_overlapping_batches_land_once(
    store: Arc<dyn OrderStore>,
) -> ContractResult {
    const ORDERS: u32 = 120;
    const WRITERS: usize = 4;
    let c = campaign("crowd", u64::from(ORDERS))?;
    store.insert_campaign(&c).await?;
    let records = Arc::new(orders(&c, 0..ORDERS)?);
    let (inserted, duplicates) =
        overlapping_writers(Arc::clone(&store), records, WRITERS, 25).await?;
    let all = u64::from(ORDERS);
    assert_eq!(
        inserted, all,
        "each order is counted as inserted exactly once"
    );
    assert_eq!(duplicates, all * (WRITERS as u64 - 1));
    assert_eq!(store.sold(&c.id).await?, all);
    assert_eq!(stored_rows(&*store, &[&c]).await?, all);
    Ok(())
}

/// Writers with distinct orders race for less stock than they bring: the
/// batches that fit commit whole, the rest are refused whole, and the stored
/// rows, `sold` and the reports all agree on exactly the stock.
pub async fn concurrent_batches_never_oversell(store: Arc<dyn OrderStore>) -> ContractResult {
    const STOCK: u64 = 40;
    const BATCH_ROWS: u32 = 5;
    let c = campaign("scarce", STOCK)?;
    store.insert_campaign(&c).await?;
    let mut tasks = JoinSet::new();
    for w in 0..4u32 {
        let store = Arc::clone(&store);
        // 25 distinct users per writer, 100 in all, for 40 units.
        let mine = orders(&c, w * 25..(w + 1) * 25)?;
        tasks.spawn(async move {
            let mut inserted = 0u64;
            for batch in mine.chunks(BATCH_ROWS as usize) {
                match store.write_batch(batch, None).await {
                    Ok(report) => inserted += report.inserted,
                    Err(StoreError::Invariant(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(inserted)
        });
    }
    let mut inserted = 0u64;
    while let Some(done) = tasks.join_next().await {
        inserted += done??;
    }
    // Batches of 5 fill a stock of 40 exactly, so none is left unsold.
    assert_eq!(inserted, STOCK);
    assert_eq!(store.sold(&c.id).await?, STOCK);
    assert_eq!(stored_rows(&*store, &[&c]).await?, STOCK);
    Ok(())
}

/// Writers race to store different re-grabs of the same users (unit
/// numbers 2 to 5 of a limit-1 campaign, none of them active yet): for each
/// user exactly one unit lands, the others are refused.
pub async fn concurrent_regrabs_land_one_active_unit_per_user(
    store: Arc<dyn OrderStore>,
) -> ContractResult {
    const USERS: u32 = 12;
    const WRITERS: u32 = 4;
    let c = campaign("regrabs", 1_000)?;
    store.insert_campaign(&c).await?;
    let mut tasks = JoinSet::new();
    for w in 0..WRITERS {
        let store = Arc::clone(&store);
        // Writer w offers every user their unit w + 2, one record a batch,
        // starting at a different user than its neighbours.
        let mut mine = (0..USERS)
            .map(|u| unit(&c, &format!("u{u}"), w + 2))
            .collect::<Result<Vec<_>, _>>()?;
        mine.rotate_left((USERS * w / WRITERS) as usize);
        tasks.spawn(async move {
            let mut inserted = 0u64;
            for record in mine {
                match store.write_batch(std::slice::from_ref(&record), None).await {
                    Ok(report) => inserted += report.inserted,
                    Err(StoreError::Invariant(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(inserted)
        });
    }
    let mut inserted = 0u64;
    while let Some(done) = tasks.join_next().await {
        inserted += done??;
    }
    let mut per_user: BTreeMap<String, u32> = BTreeMap::new();
    for o in store.orders(&c.id).await? {
        *per_user.entry(o.record.user_id.to_string()).or_default() += 1;
    }
    assert_eq!(per_user.len(), USERS as usize, "{per_user:?}");
    assert!(per_user.values().all(|&k| k == 1), "{per_user:?}");
    assert_eq!(inserted, u64::from(USERS));
    assert_eq!(store.sold(&c.id).await?, u64::from(USERS));
    Ok(())
}

/// Concurrent calls of `next_ledger_generation` never return the same
/// value, and a later call returns more than all of them.
pub async fn concurrent_ledger_generations_are_distinct(
    store: Arc<dyn OrderStore>,
) -> ContractResult {
    const TASKS: u64 = 4;
    const CALLS: u64 = 10;
    let c = campaign("gens", 10)?;
    store.insert_campaign(&c).await?;
    let before = store.next_ledger_generation(&c.id).await?;
    let mut tasks = JoinSet::new();
    for _ in 0..TASKS {
        let (store, id) = (Arc::clone(&store), c.id.clone());
        tasks.spawn(async move {
            let mut got = Vec::new();
            for _ in 0..CALLS {
                got.push(store.next_ledger_generation(&id).await?);
            }
            Ok::<_, StoreError>(got)
        });
    }
    let mut seen = BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        for g in done?? {
            assert!(seen.insert(g), "generation {g} handed out twice");
            assert!(g > before, "{g} <= {before}");
        }
    }
    assert_eq!(seen.len() as u64, TASKS * CALLS);
    let after = store.next_ledger_generation(&c.id).await?;
    assert!(seen.iter().all(|&g| g < after), "{after} vs {seen:?}");
    Ok(())
}
