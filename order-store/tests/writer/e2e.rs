//! The writer end to end: a real `FileLog` in a temporary directory feeding
//! a real `SqliteStore`, including replays and a writer killed mid-stream.

use crate::support::{append_all, campaign, commit_counter, records, Fallible, TestResult};
use engine::ports::{LogRecord, OrderStore, StatusChange};
use engine::{OrderId, OrderRecord, OrderStatus, UserId};
use order_log::{FileLog, FileLogConfig};
use order_store::{
    reader_from_checkpoint, FileWriter, SqliteStore, WriterConfig, WriterError, WriterStats,
    FILE_LOG_SOURCE,
};
use std::future::ready;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Generous real-time bound so a stuck writer fails instead of hanging.
const WAIT_LIMIT: Duration = Duration::from_secs(60);
const ORDERS: u64 = 1_000;

async fn open_store(dir: &Path) -> Fallible<Arc<SqliteStore>> {
    let store = Arc::new(SqliteStore::open(&dir.join("orders.db")).await?);
    store.insert_campaign(&campaign(ORDERS)?).await?;
    Ok(store)
}

/// Runs a writer from `from` until `ORDERS` records were committed, then
/// shuts it down and returns its stats.
async fn write_all(store: &Arc<SqliteStore>, log: &FileLog, from: u64) -> Fallible<WriterStats> {
    let (on_commit, mut committed) = commit_counter();
    let writer = FileWriter::new(
        store.clone(),
        log.reader(from)?,
        WriterConfig::default(),
        on_commit,
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(writer.run(async {
        let _ = stopped.await;
    }));
    timeout(WAIT_LIMIT, committed.wait_for(|n| *n >= ORDERS)).await??;
    let _ = stop.send(());
    Ok(timeout(WAIT_LIMIT, task).await???)
}

async fn assert_all_written_once(store: &SqliteStore, log: &FileLog) -> TestResult {
    let c = campaign(ORDERS)?;
    let orders = store.orders(&c.id).await?;
    assert_eq!(orders.len() as u64, ORDERS);
    assert_eq!(store.sold(&c.id).await?, ORDERS);
    assert_eq!(
        store.checkpoint(FILE_LOG_SOURCE).await?,
        Some(log.durable_end())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_moves_every_order_once_and_absorbs_a_replay() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open_store(dir.path()).await?;
    let (log, _) = FileLog::open(FileLogConfig::new(dir.path().join("orders.log")))?;
    let log = Arc::new(log);

    // The writer follows the log live: it starts before the first append.
    let from = reader_from_checkpoint(&log, store.as_ref())
        .await?
        .position();
    assert_eq!(from, 0);
    let writing = {
        let (store, log) = (store.clone(), log.clone());
        tokio::spawn(async move { write_all(&store, &log, from).await })
    };
    append_all(&log, records(&campaign(ORDERS)?, ORDERS)?).await?;
    let stats = writing.await??;
    assert_eq!((stats.rows, stats.duplicates), (ORDERS, 0));
    assert_all_written_once(&store, &log).await?;

    // The checkpoint is lost: a writer from 0 replays everything, absorbed.
    let replay = write_all(&store, &log, 0).await?;
    assert_eq!((replay.rows, replay.duplicates), (ORDERS, ORDERS));
    assert_all_written_once(&store, &log).await?;

    // After a restart of both, the writer resumes at the end: nothing to do.
    log.close();
    store.close().await;
    let store = Arc::new(SqliteStore::open(&dir.path().join("orders.db")).await?);
    let (log, recovered) = FileLog::open(FileLogConfig::new(dir.path().join("orders.log")))?;
    assert_eq!(recovered.len() as u64, ORDERS);
    let reader = reader_from_checkpoint(&log, store.as_ref()).await?;
    assert_eq!(reader.position(), log.durable_end());
    let (on_commit, _) = commit_counter();
    let idle = FileWriter::new(store.clone(), reader, WriterConfig::default(), on_commit);
    assert_eq!(idle.run(ready(())).await?, WriterStats::default());
    assert_all_written_once(&store, &log).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_killed_mid_stream_resumes_from_its_checkpoint() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open_store(dir.path()).await?;
    let (log, _) = FileLog::open(FileLogConfig::new(dir.path().join("orders.log")))?;
    append_all(&Arc::new(log), records(&campaign(ORDERS)?, ORDERS)?).await?;
    let (log, _) = FileLog::open(FileLogConfig::new(dir.path().join("orders.log")))?;

    // Slow enough (about 2 s for the whole log) that the kill lands while
    // most of the log is unwritten, even on a busy machine.
    let slow = WriterConfig {
        batch_rows_max: 50,
        rows_per_s_max: 500,
        ..WriterConfig::default()
    };
    let (on_commit, mut committed) = commit_counter();
    let reader = reader_from_checkpoint(&log, store.as_ref()).await?;
    let writer = FileWriter::new(store.clone(), reader, slow, on_commit);
    let task = tokio::spawn(writer.run(std::future::pending()));
    timeout(WAIT_LIMIT, committed.wait_for(|n| *n >= 100)).await??;
    // Aborting drops the writer wherever it is, possibly inside a transaction.
    task.abort();
    let _ = task.await;
    let resumed_at = store.checkpoint(FILE_LOG_SOURCE).await?.unwrap_or(0);
    assert!(
        resumed_at > 0 && resumed_at < log.durable_end(),
        "{resumed_at}"
    );

    let (on_commit, _) = commit_counter();
    let reader = reader_from_checkpoint(&log, store.as_ref()).await?;
    let writer = FileWriter::new(store.clone(), reader, WriterConfig::default(), on_commit);
    let stats = timeout(WAIT_LIMIT, writer.run(ready(()))).await??;
    assert!(stats.rows < ORDERS, "resumed from the start: {stats:?}");
    assert_all_written_once(&store, &log).await?;
    Ok(())
}

/// Waits until `n` records were committed, failing at once with the
/// writer's own result if it ends first (a refused batch stops it).
async fn wait_committed(
    committed: &mut watch::Receiver<u64>,
    n: u64,
    task: &mut JoinHandle<Result<WriterStats, WriterError>>,
) -> TestResult {
    if committed.wait_for(|c| *c >= n).await.is_ok() {
        return Ok(());
    }
    // The counter's only sender lives in the writer: it has ended. Say why.
    let ended = (&mut *task).await;
    Err(format!("the writer ended before {n} commits: {ended:?}").into())
}

/// The unit rule end to end: with a per-user limit of 1, a log holding only
/// a user's unit 2 (their unit 1 was released before it reached the log)
/// and a re-grab after an expiry both land, and the writer never stops on
/// them; a replay of the whole log is absorbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regrabs_past_the_limit_land_and_never_stop_the_writer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open_store(dir.path()).await?;
    let c = campaign(ORDERS)?;
    assert_eq!(c.per_user_limit, 1);
    let (log, _) = FileLog::open(FileLogConfig::new(dir.path().join("orders.log")))?;
    let log = Arc::new(log);
    let (on_commit, mut committed) = commit_counter();
    let writer = FileWriter::new(
        store.clone(),
        log.reader(0)?,
        WriterConfig::default(),
        on_commit,
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let mut task = tokio::spawn(writer.run(async {
        let _ = stopped.await;
    }));

    let record = |user: &str, n: u32| -> Fallible<LogRecord> {
        Ok(LogRecord::Order(OrderRecord::new(
            &c,
            UserId::parse(user)?,
            n,
            2_000,
        )))
    };
    // Only unit 2 of "u" is in the log.
    append_all(&log, vec![record("u", 2)?]).await?;
    timeout(WAIT_LIMIT, wait_committed(&mut committed, 1, &mut task)).await??;
    // "v" takes unit 1, lets it expire, and grabs again.
    append_all(&log, vec![record("v", 1)?]).await?;
    timeout(WAIT_LIMIT, wait_committed(&mut committed, 2, &mut task)).await??;
    let v1 = OrderId::derive(&c.id, &UserId::parse("v")?, 1);
    assert_eq!(
        store.set_status(&v1, OrderStatus::Expired).await?,
        StatusChange::Changed
    );
    append_all(&log, vec![record("v", 2)?]).await?;
    timeout(WAIT_LIMIT, wait_committed(&mut committed, 3, &mut task)).await??;
    let _ = stop.send(());
    let stats = timeout(WAIT_LIMIT, task).await???;
    assert_eq!((stats.rows, stats.duplicates), (3, 0));

    let u2 = OrderId::derive(&c.id, &UserId::parse("u")?, 2);
    let stored = store.order(&u2).await?.map(|o| (o.record.n, o.status));
    assert_eq!(stored, Some((2, OrderStatus::Confirmed)));
    let v2 = OrderId::derive(&c.id, &UserId::parse("v")?, 2);
    let stored = store.order(&v2).await?.map(|o| o.status);
    assert_eq!(stored, Some(OrderStatus::Confirmed));
    assert_eq!(
        store.checkpoint(FILE_LOG_SOURCE).await?,
        Some(log.durable_end())
    );

    // A replay of the whole log (one batch) is absorbed, expired unit and all.
    let (on_commit, _) = commit_counter();
    let replay = FileWriter::new(
        store.clone(),
        log.reader(0)?,
        WriterConfig::default(),
        on_commit,
    );
    let stats = timeout(WAIT_LIMIT, replay.run(ready(()))).await??;
    assert_eq!((stats.rows, stats.duplicates), (3, 3));
    assert_eq!(store.orders(&c.id).await?.len(), 3);
    Ok(())
}
