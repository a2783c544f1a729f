//! Batching, pacing, retry and shutdown of the writer, on paused tokio time
//! against the scripted in-memory store, so every timing is exact.

use crate::support::{campaign, commit_counter, log_with, records, FakeStore, Script, TestResult};
use order_store::{FileWriter, WriterConfig, WriterError, WriterStats};
use std::future::{pending, ready};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::{timeout, Instant};

/// A bound on how long (virtual) time a writer may take, so that a writer
/// that never stops fails the test instead of hanging it.
const RUN_LIMIT: Duration = Duration::from_secs(600);

fn cfg(batch_rows_max: usize, rows_per_s_max: u32) -> WriterConfig {
    WriterConfig {
        batch_rows_max,
        rows_per_s_max,
        ..WriterConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn writer_respects_rows_per_s_max() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = log_with(dir.path(), records(&campaign(1_000)?, 300)?).await?;
    let store = FakeStore::new(vec![]);
    let (on_commit, mut committed) = commit_counter();
    let writer = FileWriter::new(store.clone(), log.reader(0)?, cfg(100, 100), on_commit);
    let (stop, stopped) = oneshot::channel::<()>();
    let start = Instant::now();
    let task = tokio::spawn(writer.run(async {
        let _ = stopped.await;
    }));
    timeout(RUN_LIMIT, committed.wait_for(|n| *n >= 300)).await??;
    let elapsed = start.elapsed();
    let _ = stop.send(());
    let stats = timeout(RUN_LIMIT, task).await???;

    // A burst of 100 rows, then 200 more at 100 rows/s.
    assert!(elapsed >= Duration::from_secs(2), "took {elapsed:?}");
    assert!(elapsed < Duration::from_millis(2_100), "took {elapsed:?}");
    assert_eq!(stats.rows, 300);
    let seen = store.state().committed.clone();
    for (i, first) in seen.iter().enumerate() {
        let window: usize = seen[i..]
            .iter()
            .take_while(|s| s.at < first.at + Duration::from_secs(1))
            .map(|s| s.rows)
            .sum();
        assert!(window <= 100 + 100, "{window} rows within 1 s of batch {i}");
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn partial_batch_is_flushed_after_the_interval() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = log_with(dir.path(), records(&campaign(1_000)?, 1_050)?).await?;
    let store = FakeStore::new(vec![]);
    let (on_commit, _) = commit_counter();
    let writer = FileWriter::new(
        store.clone(),
        log.reader(0)?,
        cfg(500, 1_000_000),
        on_commit,
    );
    let start = Instant::now();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(writer.run(async {
        let _ = stopped.await;
    }));
    let mut calls = store.calls();
    timeout(RUN_LIMIT, calls.wait_for(|n| *n >= 3)).await??;
    let _ = stop.send(());
    timeout(RUN_LIMIT, task).await???;

    let seen = store.state().committed.clone();
    let sizes: Vec<usize> = seen.iter().map(|s| s.rows).collect();
    assert_eq!(sizes, [500, 500, 50]);
    // Full batches go at once (up to the timer's 1 ms resolution, as the
    // pacer refills 500 rows in 0.5 ms); the remainder waits for the interval.
    assert!(seen[1].at - start <= Duration::from_millis(1));
    assert_eq!(seen[2].at - seen[1].at, Duration::from_millis(20));
    assert_eq!(seen[2].checkpoint, log.durable_end());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn unavailable_store_gets_the_same_batch_again_with_backoff() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = log_with(dir.path(), records(&campaign(1_000)?, 250)?).await?;
    let outage = vec![Script::Unavailable; 3];
    let store = FakeStore::new(outage);
    let (on_commit, committed) = commit_counter();
    let (on_commit, mut committed) = (on_commit, committed);
    let writer = FileWriter::new(
        store.clone(),
        log.reader(0)?,
        cfg(100, 1_000_000),
        on_commit,
    );
    let start = Instant::now();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(writer.run(async {
        let _ = stopped.await;
    }));
    timeout(RUN_LIMIT, committed.wait_for(|n| *n >= 250)).await??;
    let _ = stop.send(());
    let stats = timeout(RUN_LIMIT, task).await???;

    assert_eq!(
        stats,
        WriterStats {
            batches: 3,
            rows: 250,
            duplicates: 0
        }
    );
    let st = store.state();
    let waits: Vec<Duration> = st.calls.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(waits[..3], [50, 100, 200].map(Duration::from_millis));
    assert_eq!(st.calls[3] - start, Duration::from_millis(350));
    assert_eq!(st.ids.len(), 250);
    let sizes: Vec<usize> = st.committed.iter().map(|s| s.rows).collect();
    assert_eq!(sizes, [100, 100, 50]);
    assert_eq!(
        st.committed.last().map(|s| s.checkpoint),
        Some(log.durable_end())
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn backoff_is_capped() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = log_with(dir.path(), records(&campaign(1_000)?, 10)?).await?;
    let store = FakeStore::new(vec![Script::Unavailable; 8]);
    let (on_commit, _) = commit_counter();
    let cfg = WriterConfig {
        retry_backoff_ms_max: 300,
        ..WriterConfig::default()
    };
    let writer = FileWriter::new(store.clone(), log.reader(0)?, cfg, on_commit);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(writer.run(async {
        let _ = stopped.await;
    }));
    timeout(RUN_LIMIT, store.calls().wait_for(|n| *n >= 9)).await??;
    let _ = stop.send(());
    let stats = timeout(RUN_LIMIT, task).await???;
    assert_eq!(stats.rows, 10);
    let st = store.state();
    let waits: Vec<u128> = st
        .calls
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    assert_eq!(waits, [50, 100, 200, 300, 300, 300, 300, 300]);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_backoff_stops_promptly_without_writing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = log_with(dir.path(), records(&campaign(1_000)?, 10)?).await?;
    let store = FakeStore::new(vec![Script::Unavailable; 1_000]);
    let (on_commit, committed) = commit_counter();
    let cfg = WriterConfig {
        retry_backoff_ms_max: 60_000,
        ..WriterConfig::default()
    };
    let writer = FileWriter::new(store.clone(), log.reader(0)?, cfg, on_commit);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(writer.run(async {
        let _ = stopped.await;
    }));
    timeout(RUN_LIMIT, store.calls().wait_for(|n| *n >= 3)).await??;
    let asked = Instant::now();
    let _ = stop.send(());
    let stats = timeout(RUN_LIMIT, task).await???;

    assert_eq!(asked.elapsed(), Duration::ZERO, "did not stop promptly");
    assert_eq!(stats, WriterStats::default());
    assert_eq!(store.state().calls.len(), 3);
    assert_eq!(*committed.borrow(), 0);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn invariant_refusal_stops_the_writer_with_an_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = log_with(dir.path(), records(&campaign(1_000)?, 10)?).await?;
    let store = FakeStore::new(vec![Script::Invariant]);
    let (on_commit, committed) = commit_counter();
    let writer = FileWriter::new(
        store.clone(),
        log.reader(0)?,
        WriterConfig::default(),
        on_commit,
    );
    let result = timeout(RUN_LIMIT, writer.run(pending())).await?;

    match result {
        Err(WriterError::Store { position, .. }) => assert_eq!(position, log.durable_end()),
        other => panic!("expected a store refusal, got {other:?}"),
    }
    assert_eq!(
        store.state().calls.len(),
        1,
        "a refused batch must not be retried"
    );
    assert_eq!(*committed.borrow(), 0);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn closed_log_drains_and_ends_the_writer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = log_with(dir.path(), records(&campaign(1_000)?, 120)?).await?;
    let store = FakeStore::new(vec![]);
    let (on_commit, _) = commit_counter();
    let writer = FileWriter::new(store.clone(), log.reader(0)?, cfg(50, 1_000_000), on_commit);
    let end = log.durable_end();
    let closer = Arc::clone(&log);
    tokio::task::spawn_blocking(move || closer.close()).await?;
    let stats = timeout(RUN_LIMIT, writer.run(pending())).await??;
    assert_eq!(stats.rows, 120);
    assert_eq!(
        store.state().committed.last().map(|s| s.checkpoint),
        Some(end)
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn shutdown_before_start_still_drains_what_is_durable() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = log_with(dir.path(), records(&campaign(1_000)?, 230)?).await?;
    let store = FakeStore::new(vec![]);
    let (on_commit, committed) = commit_counter();
    let writer = FileWriter::new(
        store.clone(),
        log.reader(0)?,
        cfg(100, 1_000_000),
        on_commit,
    );
    let stats = timeout(RUN_LIMIT, writer.run(ready(()))).await??;
    assert_eq!(stats.rows, 230);
    assert_eq!(*committed.borrow(), 230);
    assert_eq!(
        store.state().committed.last().map(|s| s.checkpoint),
        Some(log.durable_end())
    );
    Ok(())
}
