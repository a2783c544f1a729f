//! Tests of `SqliteStore` against a real database file in a temporary directory.

use super::SqliteStore;
use engine::ports::{BatchReport, Checkpoint, LogRecord, OrderStore, StoreError};
use engine::{Campaign, CampaignId, Control, OrderRecord, OrderStatus, UserId};
use tempfile::TempDir;

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn open() -> Result<(TempDir, SqliteStore), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("orders.db")).await?;
    Ok((dir, store))
}

fn campaign(id: &str, stock_total: u64) -> Result<Campaign, Box<dyn std::error::Error>> {
    Ok(Campaign {
        id: CampaignId::parse(id)?,
        title: format!("Item {id}"),
        price_cents: 1_999,
        stock_total,
        starts_at_ms: 1_000,
        ends_at_ms: 9_000,
        per_user_limit: 1,
        quiz: false,
        payment_window_s: 900,
        load_test: false,
        control: Control::Active,
    })
}

fn order(c: &Campaign, user: &str) -> Result<LogRecord, Box<dyn std::error::Error>> {
    Ok(LogRecord::Order(OrderRecord::new(
        c,
        UserId::parse(user)?,
        1,
        1_500,
    )))
}

fn orders(c: &Campaign, users: std::ops::Range<u32>) -> Vec<LogRecord> {
    users
        .filter_map(|u| order(c, &format!("u{u}")).ok())
        .collect()
}

async fn row_count(store: &SqliteStore) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&store.pool)
        .await
}

#[tokio::test]
async fn open_migrates_in_wal_mode_and_reopens() -> TestResult {
    let (dir, store) = open().await?;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&store.pool)
        .await?;
    assert_eq!(mode, "wal");
    // 2 is FULL: a commit is on disk before it returns.
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&store.pool)
        .await?;
    assert_eq!(sync, 2);
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' \
         ORDER BY name",
    )
    .fetch_all(&store.pool)
    .await?;
    assert_eq!(tables, ["campaigns", "checkpoints", "orders"]);
    store.insert_campaign(&campaign("c1", 3)?).await?;
    store.close().await;
    // Reopening runs the migrations again as a no-op and keeps the data.
    let store = SqliteStore::open(&dir.path().join("orders.db")).await?;
    assert_eq!(store.campaigns().await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn campaigns_round_trip_and_conflict_on_duplicate_id() -> TestResult {
    let (_dir, store) = open().await?;
    let a = campaign("a", 10)?;
    let b = Campaign {
        quiz: true,
        load_test: true,
        per_user_limit: 3,
        ..campaign("b", 5)?
    };
    store.insert_campaign(&a).await?;
    store.insert_campaign(&b).await?;
    assert_eq!(store.campaigns().await?, vec![a.clone(), b.clone()]);
    let again = Campaign {
        title: "other".into(),
        ..a.clone()
    };
    assert!(matches!(
        store.insert_campaign(&again).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.campaigns().await?[0].title, a.title);
    assert_eq!(store.sold(&a.id).await?, 0);
    Ok(())
}

#[tokio::test]
async fn set_control_updates_or_reports_not_found() -> TestResult {
    let (_dir, store) = open().await?;
    let c = campaign("c1", 3)?;
    store.insert_campaign(&c).await?;
    store.set_control(&c.id, Control::Paused).await?;
    assert_eq!(store.campaigns().await?[0].control, Control::Paused);
    let missing = CampaignId::parse("nope")?;
    assert!(matches!(
        store.set_control(&missing, Control::Stopped).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.sold(&missing).await,
        Err(StoreError::NotFound(_))
    ));
    Ok(())
}

#[tokio::test]
async fn write_batch_is_idempotent() -> TestResult {
    let (_dir, store) = open().await?;
    let c = campaign("c1", 100)?;
    store.insert_campaign(&c).await?;
    let batch = orders(&c, 0..10);
    let first = store.write_batch(&batch, None).await?;
    assert_eq!(
        first,
        BatchReport {
            inserted: 10,
            duplicates: 0
        }
    );
    let second = store.write_batch(&batch, None).await?;
    assert_eq!(
        second,
        BatchReport {
            inserted: 0,
            duplicates: 10
        }
    );
    // A duplicate inside one batch is absorbed the same way.
    let mut mixed = orders(&c, 9..12);
    mixed.extend(orders(&c, 11..12));
    let third = store.write_batch(&mixed, None).await?;
    assert_eq!(
        third,
        BatchReport {
            inserted: 2,
            duplicates: 2
        }
    );
    assert_eq!(store.sold(&c.id).await?, 12);
    assert_eq!(row_count(&store).await?, 12);
    Ok(())
}

#[tokio::test]
async fn written_orders_read_back_confirmed() -> TestResult {
    let (_dir, store) = open().await?;
    let c = campaign("c1", 100)?;
    store.insert_campaign(&c).await?;
    let batch = orders(&c, 0..3);
    store.write_batch(&batch, None).await?;
    let listed = store.orders(&c.id).await?;
    let records: Vec<LogRecord> = listed
        .iter()
        .map(|o| LogRecord::Order(o.record.clone()))
        .collect();
    let mut want = batch.clone();
    want.sort_by(|x, y| {
        let (LogRecord::Order(x), LogRecord::Order(y)) = (x, y);
        x.order_id.cmp(&y.order_id)
    });
    assert_eq!(records, want);
    assert!(listed.iter().all(|o| o.status == OrderStatus::Confirmed));
    let LogRecord::Order(first) = &batch[0];
    let one = store.order(&first.order_id).await?;
    assert_eq!(one.map(|o| o.record), Some(first.clone()));
    assert_eq!(
        store.count_by_status(&c.id).await?,
        vec![(OrderStatus::Confirmed, 3)]
    );
    Ok(())
}

#[tokio::test]
async fn sold_guard_refuses_the_unit_past_the_stock() -> TestResult {
    let (_dir, store) = open().await?;
    let c = campaign("c1", 3)?;
    store.insert_campaign(&c).await?;
    let cp = |position| {
        Some(Checkpoint {
            source: "log",
            position,
        })
    };
    store.write_batch(&orders(&c, 0..2), cp(10)).await?;
    store.write_batch(&orders(&c, 2..3), cp(20)).await?;
    // One more distinct order, next to a duplicate that alone would be fine.
    let mut over = orders(&c, 2..4);
    over.extend(orders(&c, 0..1));
    let err = store.write_batch(&over, cp(30)).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    assert_eq!(store.sold(&c.id).await?, 3);
    assert_eq!(row_count(&store).await?, 3);
    // The refused batch moved nothing, not even its checkpoint.
    assert_eq!(store.checkpoint("log").await?, Some(20));
    // The duplicates alone are still absorbed.
    let dup = store.write_batch(&orders(&c, 0..3), None).await?;
    assert_eq!(dup.duplicates, 3);
    Ok(())
}

#[tokio::test]
async fn unknown_campaign_and_limit_breach_are_invariant_errors() -> TestResult {
    let (_dir, store) = open().await?;
    let c = campaign("c1", 10)?;
    store.insert_campaign(&c).await?;
    let ghost = campaign("ghost", 10)?;
    let mut batch = orders(&c, 0..2);
    batch.extend(orders(&ghost, 0..1));
    let err = store.write_batch(&batch, None).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    // The per-user limit is 1, so a second unit for one user is refused.
    let second = OrderRecord::new(&c, UserId::parse("u0")?, 2, 1_600);
    let err = store.write_batch(&[LogRecord::Order(second)], None).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    assert_eq!(row_count(&store).await?, 0);
    assert_eq!(store.sold(&c.id).await?, 0);
    Ok(())
}

#[tokio::test]
async fn values_past_i64_are_refused_not_wrapped() -> TestResult {
    let (_dir, store) = open().await?;
    let c = campaign("c1", 10)?;
    store.insert_campaign(&c).await?;
    let huge = Campaign {
        price_cents: u64::MAX,
        ..campaign("c2", 10)?
    };
    assert!(matches!(
        store.insert_campaign(&huge).await,
        Err(StoreError::Invariant(_))
    ));
    let mut rec = OrderRecord::new(&c, UserId::parse("u0")?, 1, 1_500);
    rec.pay_by_ms = u64::MAX;
    let err = store.write_batch(&[LogRecord::Order(rec)], None).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    let cp = Some(Checkpoint {
        source: "log",
        position: u64::MAX,
    });
    assert!(store.write_batch(&[], cp).await.is_err());
    Ok(())
}

#[tokio::test]
async fn checkpoint_commits_with_its_batch() -> TestResult {
    let (_dir, store) = open().await?;
    let c = campaign("c1", 1_000)?;
    store.insert_campaign(&c).await?;
    assert_eq!(store.checkpoint("log").await?, None);
    let cp = Some(Checkpoint {
        source: "log",
        position: 4_096,
    });
    store.write_batch(&orders(&c, 0..5), cp).await?;
    assert_eq!(store.checkpoint("log").await?, Some(4_096));
    assert_eq!(store.checkpoint("other").await?, None);
    // A failing batch (unknown campaign) must not move the checkpoint.
    let mut bad = orders(&c, 5..10);
    bad.extend(orders(&campaign("ghost", 1)?, 0..1));
    let cp = Some(Checkpoint {
        source: "log",
        position: 8_192,
    });
    assert!(store.write_batch(&bad, cp).await.is_err());
    assert_eq!(store.checkpoint("log").await?, Some(4_096));
    assert_eq!(row_count(&store).await?, 5);
    Ok(())
}

#[tokio::test]
async fn bad_rows_are_errors_not_panics() -> TestResult {
    let (_dir, store) = open().await?;
    let c = campaign("c1", 10)?;
    store.insert_campaign(&c).await?;
    store.write_batch(&orders(&c, 0..1), None).await?;
    // Someone edits the file by hand: the schema allows the text, the domain does not.
    sqlx::query("UPDATE orders SET user_id = 'has space'")
        .execute(&store.pool)
        .await?;
    assert!(matches!(
        store.orders(&c.id).await,
        Err(StoreError::Invariant(_))
    ));
    Ok(())
}

#[tokio::test]
async fn closed_store_is_unavailable() -> TestResult {
    let (_dir, store) = open().await?;
    let c = campaign("c1", 10)?;
    store.insert_campaign(&c).await?;
    store.close().await;
    let err = store.write_batch(&orders(&c, 0..1), None).await;
    assert!(matches!(err, Err(StoreError::Unavailable(_))), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn status_changes_follow_the_state_machine() -> TestResult {
    use engine::ports::StatusChange;
    let (_dir, store) = open().await?;
    let c = campaign("pay", 5)?;
    store.insert_campaign(&c).await?;
    let rec = order(&c, "alice")?;
    let LogRecord::Order(o) = &rec;
    let id = o.order_id.clone();
    assert!(matches!(
        store.set_status(&id, OrderStatus::Paid).await,
        Err(StoreError::NotFound(_))
    ));
    store.write_batch(std::slice::from_ref(&rec), None).await?;
    assert_eq!(
        store.set_status(&id, OrderStatus::Paid).await?,
        StatusChange::Changed
    );
    assert_eq!(
        store.set_status(&id, OrderStatus::Paid).await?,
        StatusChange::Unchanged
    );
    assert_eq!(
        store.set_status(&id, OrderStatus::Expired).await?,
        StatusChange::Refused {
            current: OrderStatus::Paid
        }
    );
    assert_eq!(
        store.order(&id).await?.map(|o| o.status),
        Some(OrderStatus::Paid)
    );
    Ok(())
}
