//! Tests of `MysqlStore` against the real server (MariaDB 10.11 here, MySQL 8
//! in production), each in a scratch database of its own: the store
//! contract, plus what only this backend has (server-side schema rules,
//! strict sessions, a pool that can lose its server, many writers at once).

mod scratch;

use super::MysqlStore;
use crate::contract::{self, campaign, orders, ContractError};
use engine::ports::{Checkpoint, LogRecord, OrderStore, StoreError};
use engine::Campaign;
use scratch::ScratchDb;
use std::sync::Arc;

type TestResult = Result<(), ContractError>;

/// Connections per test store: enough for the contract's four writers.
const POOL_MAX: u32 = 4;

async fn fresh_with(pool_max: u32) -> Result<(MysqlStore, ScratchDb), ContractError> {
    let db = ScratchDb::create().await?;
    let store = MysqlStore::connect_with(db.options(), pool_max).await?;
    Ok((store, db))
}

async fn fresh() -> Result<(MysqlStore, ScratchDb), ContractError> {
    fresh_with(POOL_MAX).await
}

crate::store_contract_tests!(|| fresh());

async fn scalar_i64(store: &MysqlStore, sql: &str) -> Result<i64, ContractError> {
    Ok(sqlx::query_scalar(sql).fetch_one(&store.pool).await?)
}

#[tokio::test]
async fn connect_migrates_innodb_utf8mb4_tables_and_reconnects() -> TestResult {
    let (store, db) = fresh().await?;
    let tables = sqlx::query(
        "SELECT table_name AS name, engine AS engine, table_collation AS collation \
         FROM information_schema.tables \
         WHERE table_schema = DATABASE() AND table_name NOT LIKE '\\_%' ORDER BY table_name",
    )
    .fetch_all(&store.pool)
    .await?;
    let described: Vec<(String, String, String)> = tables
        .iter()
        .map(|r| {
            // information_schema labels are upper case on MySQL 8, hence
            // the aliases; DbRow reads its text whatever the collation.
            use crate::sql::rows::DbRow;
            Ok((r.text("name")?, r.text("engine")?, r.text("collation")?))
        })
        .collect::<Result<_, StoreError>>()?;
    let want = |name: &str| {
        (
            name.to_owned(),
            "InnoDB".to_owned(),
            "utf8mb4_bin".to_owned(),
        )
    };
    assert_eq!(
        described,
        [
            want("campaigns"),
            want("checkpoints"),
            want("dead_letters"),
            want("orders")
        ]
    );
    store.insert_campaign(&campaign("c1", 3)?).await?;
    store.close().await;
    // Connecting again runs the migrations as a no-op and keeps the data.
    let store = MysqlStore::connect_with(db.options(), 1).await?;
    assert_eq!(store.campaigns().await?.len(), 1);
    // Every session is strict, so an oversize value is refused, not cut.
    let mode: String = sqlx::query_scalar("SELECT @@SESSION.sql_mode")
        .fetch_one(&store.pool)
        .await?;
    assert!(mode.contains("STRICT_ALL_TABLES"), "{mode}");
    Ok(())
}

/// The schema's own rules hold for any client, not only for this store:
/// the server refuses sold past the stock and a bad unit number, and the
/// store reports such refusals as invariant errors.
#[tokio::test]
async fn the_schema_refuses_what_the_store_would() -> TestResult {
    let (store, _db) = fresh().await?;
    let c = campaign("c1", 3)?;
    store.insert_campaign(&c).await?;
    store.write_batch(&orders(&c, 0..1)?, None).await?;
    let over = sqlx::query("UPDATE campaigns SET sold = stock_total + 1")
        .execute(&store.pool)
        .await;
    let over = over.map_err(|e| crate::sql::rows::db_err("test", e));
    assert!(matches!(over, Err(StoreError::Invariant(_))), "{over:?}");
    let zero = sqlx::query("UPDATE orders SET n = 0")
        .execute(&store.pool)
        .await;
    assert!(zero.is_err(), "{zero:?}");
    let unknown = sqlx::query("UPDATE orders SET campaign_id = 'ghost'")
        .execute(&store.pool)
        .await;
    assert!(unknown.is_err(), "the foreign key must refuse {unknown:?}");
    assert_eq!(store.sold(&c.id).await?, 1);
    Ok(())
}

/// Strict mode turns values past a column's size into `Invariant` (the
/// writer stops for an operator) instead of truncating them or retrying.
#[tokio::test]
async fn values_past_the_column_sizes_are_invariant_errors() -> TestResult {
    let (store, _db) = fresh().await?;
    let long_title = Campaign {
        title: "t".repeat(201),
        ..campaign("c1", 3)?
    };
    let err = store.insert_campaign(&long_title).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    let source = "s".repeat(256);
    let cp = Some(Checkpoint {
        source: &source,
        position: 1,
    });
    let err = store.write_batch(&[], cp).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    assert!(store.campaigns().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn bad_rows_are_errors_not_panics() -> TestResult {
    let (store, _db) = fresh().await?;
    let c = campaign("c1", 10)?;
    store.insert_campaign(&c).await?;
    store.write_batch(&orders(&c, 0..1)?, None).await?;
    // Someone edits the table by hand: the schema allows these, the domain does not.
    sqlx::query("UPDATE orders SET user_id = 'has space'")
        .execute(&store.pool)
        .await?;
    let err = store.orders(&c.id).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    // A schema changed behind the store's back lets an unknown control in.
    sqlx::query("ALTER TABLE campaigns DROP CONSTRAINT campaigns_control")
        .execute(&store.pool)
        .await?;
    sqlx::query("UPDATE campaigns SET control = 'frozen'")
        .execute(&store.pool)
        .await?;
    let err = store.campaigns().await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn closed_store_is_unavailable() -> TestResult {
    let (store, _db) = fresh().await?;
    let c = campaign("c1", 10)?;
    store.insert_campaign(&c).await?;
    store.close().await;
    let err = store.write_batch(&orders(&c, 0..1)?, None).await;
    assert!(matches!(err, Err(StoreError::Unavailable(_))), "{err:?}");
    let err = store.sold(&c.id).await;
    assert!(matches!(err, Err(StoreError::Unavailable(_))), "{err:?}");
    Ok(())
}

/// No server is `Unavailable` (the caller may retry); a configuration no
/// retry can fix is `Invariant`.
#[tokio::test]
async fn unreachable_server_and_bad_config() -> TestResult {
    // Port 1 on loopback: nothing listens. sqlx retries refused connections
    // until the pool's acquire timeout, so this takes about 5 s.
    let err = MysqlStore::connect("mysql://root@127.0.0.1:1/test", 1).await;
    assert!(matches!(err, Err(StoreError::Unavailable(_))), "{err:?}");
    let err = MysqlStore::connect("postgres://root@127.0.0.1/test", 1).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    let err = MysqlStore::connect("mysql://root@127.0.0.1:nope/test", 1).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    let err = MysqlStore::connect("mysql://root@127.0.0.1:1/test", 0).await;
    assert!(matches!(err, Err(StoreError::Invariant(_))), "{err:?}");
    Ok(())
}

/// Eight writers each write all of the same 500 orders, in overlapping
/// batches, at the same time: exactly 500 rows, `sold` exactly 500, and the
/// reports together count each order as inserted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_with_overlapping_batches_land_each_order_once() -> TestResult {
    const ORDERS: u32 = 500;
    const WRITERS: usize = 8;
    let (store, _db) = fresh_with(8).await?;
    let c = campaign("crowd", u64::from(ORDERS))?;
    store.insert_campaign(&c).await?;
    let records: Arc<Vec<LogRecord>> = Arc::new(orders(&c, 0..ORDERS)?);
    let shared: Arc<dyn OrderStore> = Arc::new(store.clone());
    let (inserted, duplicates) =
        contract::overlapping_writers(shared, records, WRITERS, 60).await?;
    let all = u64::from(ORDERS);
    assert_eq!(inserted, all);
    assert_eq!(duplicates, all * (WRITERS as u64 - 1));
    assert_eq!(
        scalar_i64(&store, "SELECT COUNT(*) FROM orders").await?,
        500
    );
    assert_eq!(scalar_i64(&store, "SELECT sold FROM campaigns").await?, 500);
    assert_eq!(store.sold(&c.id).await?, all);
    Ok(())
}
