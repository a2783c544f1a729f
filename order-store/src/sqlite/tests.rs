//! Tests of `SqliteStore` against a real database file in a temporary
//! directory: the store contract, plus what only SQLite has (WAL mode,
//! pragmas, reopening a file).

use super::SqliteStore;
use crate::contract::{campaign, orders, ContractError};
use crate::sql::testing::{migrations_before, PRE_0004_CAMPAIGN_SQL};
use engine::ports::{OrderStore, StoreError, FIRST_LEDGER_GENERATION};
use engine::CampaignId;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use tempfile::TempDir;

type TestResult = Result<(), ContractError>;

/// A fresh store in its own temporary directory, which must outlive it.
async fn fresh() -> Result<(SqliteStore, TempDir), ContractError> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("orders.db")).await?;
    Ok((store, dir))
}

crate::store_contract_tests!(|| fresh());

#[tokio::test]
async fn open_migrates_in_wal_mode_and_reopens() -> TestResult {
    let (store, dir) = fresh().await?;
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
    assert_eq!(
        tables,
        ["campaigns", "checkpoints", "dead_letters", "orders"]
    );
    store.insert_campaign(&campaign("c1", 3)?).await?;
    store.close().await;
    // Reopening runs the migrations again as a no-op and keeps the data.
    let store = SqliteStore::open(&dir.path().join("orders.db")).await?;
    assert_eq!(store.campaigns().await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn bad_rows_are_errors_not_panics() -> TestResult {
    let (store, _dir) = fresh().await?;
    let c = campaign("c1", 10)?;
    store.insert_campaign(&c).await?;
    store.write_batch(&orders(&c, 0..1)?, None).await?;
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
    let (store, _dir) = fresh().await?;
    let c = campaign("c1", 10)?;
    store.insert_campaign(&c).await?;
    store.close().await;
    let err = store.write_batch(&orders(&c, 0..1)?, None).await;
    assert!(matches!(err, Err(StoreError::Unavailable(_))), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn ledger_generations_survive_reopening_the_file() -> TestResult {
    let (store, dir) = fresh().await?;
    let c = campaign("c1", 3)?;
    store.insert_campaign(&c).await?;
    assert_eq!(
        store.next_ledger_generation(&c.id).await?,
        FIRST_LEDGER_GENERATION + 1
    );
    assert_eq!(
        store.next_ledger_generation(&c.id).await?,
        FIRST_LEDGER_GENERATION + 2
    );
    store.close().await;
    let store = SqliteStore::open(&dir.path().join("orders.db")).await?;
    assert_eq!(
        store.next_ledger_generation(&c.id).await?,
        FIRST_LEDGER_GENERATION + 3
    );
    Ok(())
}

/// A file migrated by a release before 0004 keeps its campaigns, which
/// start at the first ledger generation, and gains the page index.
#[tokio::test]
async fn migration_0004_upgrades_an_existing_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let old = dir.path().join("migrations-before-0004");
    migrations_before("sqlite", "0004", &old)?;
    let path = dir.path().join("orders.db");
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await?;
    Migrator::new(old.as_path()).await?.run(&pool).await?;
    sqlx::query(PRE_0004_CAMPAIGN_SQL).execute(&pool).await?;
    pool.close().await;

    let store = SqliteStore::open(&path).await?;
    let id = CampaignId::parse("old")?;
    assert_eq!(store.campaigns().await?.len(), 1);
    assert_eq!(
        store.next_ledger_generation(&id).await?,
        FIRST_LEDGER_GENERATION + 1
    );
    Ok(())
}

/// Pages are read through the index, in its order: no table scan and no
/// sort, however many orders the campaign has.
#[tokio::test]
async fn orders_page_uses_the_campaign_order_id_index() -> TestResult {
    let (store, _dir) = fresh().await?;
    let plan: Vec<String> = sqlx::query(&format!(
        "EXPLAIN QUERY PLAN {}",
        crate::sql::rows::orders_page_sql()
    ))
    .bind("c1")
    .bind("")
    .bind(10_i64)
    .fetch_all(&store.pool)
    .await?
    .iter()
    .map(|row| sqlx::Row::try_get::<String, _>(row, "detail"))
    .collect::<Result<_, _>>()?;
    let plan = plan.join("; ");
    assert!(plan.contains("orders_by_campaign_id"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    Ok(())
}
