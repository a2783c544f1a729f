//! Tests of `MysqlStore` against the real server (MariaDB 10.11 here, MySQL 8
//! in production), each in a scratch database of its own: the store
//! contract, plus what only this backend has (server-side schema rules,
//! strict sessions, a pool that can lose its server, many writers at once).

mod scratch;

use super::MysqlStore;
use crate::contract::units::unit;
use crate::contract::{self, campaign, orders, ContractError};
use crate::sql::testing::{migrations_before, PRE_0004_CAMPAIGN_SQL};
use engine::ports::{Checkpoint, LogRecord, OrderStore, StoreError, FIRST_LEDGER_GENERATION};
use engine::{Campaign, CampaignId, OrderStatus};
use scratch::ScratchDb;
use sqlx::migrate::Migrator;
use sqlx::mysql::MySqlPoolOptions;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::task::JoinSet;

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

/// A database migrated by a release before 0004 keeps its campaigns, which
/// start at the first ledger generation; generations survive reconnecting.
#[tokio::test]
async fn migration_0004_upgrades_and_generations_survive_reconnecting() -> TestResult {
    let db = ScratchDb::create().await?;
    let dir = tempfile::tempdir()?;
    migrations_before("mysql", "0004", dir.path())?;
    let pool = MySqlPoolOptions::new()
        .max_connections(1)
        .connect_with(db.options())
        .await?;
    Migrator::new(dir.path()).await?.run(&pool).await?;
    sqlx::query(PRE_0004_CAMPAIGN_SQL).execute(&pool).await?;
    pool.close().await;

    let store = MysqlStore::connect_with(db.options(), 2).await?;
    let old = CampaignId::parse("old")?;
    assert_eq!(store.campaigns().await?.len(), 1);
    assert_eq!(
        store.next_ledger_generation(&old).await?,
        FIRST_LEDGER_GENERATION + 1
    );
    let c = campaign("new", 3)?;
    store.insert_campaign(&c).await?;
    assert_eq!(
        store.next_ledger_generation(&c.id).await?,
        FIRST_LEDGER_GENERATION + 1
    );
    store.close().await;
    let store = MysqlStore::connect_with(db.options(), 2).await?;
    assert_eq!(
        store.next_ledger_generation(&old).await?,
        FIRST_LEDGER_GENERATION + 2
    );
    assert_eq!(
        store.next_ledger_generation(&c.id).await?,
        FIRST_LEDGER_GENERATION + 2
    );
    Ok(())
}

/// Eight sessions raise one campaign's generation at once: every value is
/// handed out once, with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_sessions_raise_a_generation_without_repeats_or_gaps() -> TestResult {
    const TASKS: u64 = 8;
    const CALLS: u64 = 25;
    let (store, _db) = fresh_with(8).await?;
    let c = campaign("gens", 3)?;
    store.insert_campaign(&c).await?;
    let mut tasks = JoinSet::new();
    for _ in 0..TASKS {
        let (store, id) = (store.clone(), c.id.clone());
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
        }
    }
    let first = FIRST_LEDGER_GENERATION + 1;
    let want: BTreeSet<u64> = (first..first + TASKS * CALLS).collect();
    assert_eq!(seen, want);
    Ok(())
}

/// Eight writers offer re-grabs (distinct unit numbers past the limit of 1)
/// for the same users while an operator task expires confirmed orders: a
/// user never ends with more than one active order, `sold` is exactly the
/// active orders (each expiry lowered it once), and no writer saw anything
/// but success or a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regrabs_racing_expiries_never_pass_the_limit() -> TestResult {
    const USERS: u32 = 10;
    const WRITERS: u32 = 8;
    const TRIES: u32 = 3;
    const EXPIRY_ROUNDS: usize = 20;
    let (store, _db) = fresh_with(10).await?;
    let c = campaign("race", 10_000)?;
    store.insert_campaign(&c).await?;
    let store: Arc<dyn OrderStore> = Arc::new(store);
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        let (store, c) = (Arc::clone(&store), c.clone());
        writers.spawn(async move {
            for t in 0..TRIES {
                for u in 0..USERS {
                    let n = 2 + w * TRIES + t;
                    let record = unit(&c, &format!("u{u}"), n)
                        .map_err(|e| StoreError::Invariant(e.to_string()))?;
                    match store.write_batch(&[record], None).await {
                        Ok(_) | Err(StoreError::Invariant(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok::<_, StoreError>(())
        });
    }
    let expirer = {
        let (store, id) = (Arc::clone(&store), c.id.clone());
        tokio::spawn(async move {
            for _ in 0..EXPIRY_ROUNDS {
                for o in store.orders(&id).await? {
                    if o.status == OrderStatus::Confirmed {
                        store
                            .set_status(&o.record.order_id, OrderStatus::Expired)
                            .await?;
                    }
                }
                tokio::task::yield_now().await;
            }
            Ok::<_, StoreError>(())
        })
    };
    while let Some(done) = writers.join_next().await {
        done??;
    }
    expirer.await??;
    let stored = store.orders(&c.id).await?;
    let mut active: BTreeMap<String, u32> = BTreeMap::new();
    for o in &stored {
        if !o.status.releases_stock() {
            *active.entry(o.record.user_id.to_string()).or_default() += 1;
        }
    }
    assert!(active.values().all(|&k| k <= 1), "{active:?}");
    assert_eq!(
        store.sold(&c.id).await?,
        u64::from(active.values().sum::<u32>())
    );
    Ok(())
}
