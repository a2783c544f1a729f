//! `FileLogReader`: stays below the durable end, wakes on appends, resumes
//! from checkpoints, and ends when the log closes.

mod common;

use common::*;
use engine::ports::OrderLog;
use order_log::LogError;
use std::time::Duration;

/// Polls `fut` once: `true` if it was ready. A zero timeout polls the inner
/// future before looking at the clock, so this never waits.
async fn ready_now<F: std::future::Future>(fut: F) -> bool {
    tokio::time::timeout(Duration::ZERO, fut).await.is_ok()
}

#[tokio::test]
async fn never_reads_past_the_durable_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = log_path(&dir);
    let (log, _) = open(&path);
    for i in 0..3 {
        log.append(&record(i)).await.expect("append");
    }
    let durable_end = log.durable_end();
    // A complete, valid frame beyond the durable end, as the log thread
    // leaves it between its write and its fsync.
    let in_flight = {
        let other = tempfile::tempdir().expect("temp dir");
        let p = log_path(&other);
        log_with(&p, 4).await;
        let bytes = std::fs::read(&p).expect("read");
        bytes[durable_end as usize..].to_vec()
    };
    append_bytes(&path, &in_flight);
    assert!(file_len(&path) > durable_end);

    let mut reader = log.reader(0).expect("reader");
    let got = reader.read_available(100).expect("reads");
    assert_eq!(records(&got), (0..3).map(record).collect::<Vec<_>>());
    assert_eq!(reader.position(), durable_end);
    assert!(reader.read_available(100).expect("reads").is_empty());
    assert!(
        !ready_now(reader.wait_for_more()).await,
        "nothing durable to wait for"
    );
}

#[tokio::test]
async fn wait_for_more_wakes_when_an_append_lands() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, _) = open(&log_path(&dir));
    let mut reader = log.reader(0).expect("reader");
    assert!(reader.read_available(10).expect("reads").is_empty());

    let mut wait = Box::pin(reader.wait_for_more());
    assert!(!ready_now(&mut wait).await, "empty log: waits");
    log.append(&record(1)).await.expect("append");
    assert!(wait.await, "woken by the append");
    let got = reader.read_available(10).expect("reads");
    assert_eq!(records(&got), vec![record(1)]);
    assert_eq!(got[0].end, log.durable_end());
    // Already ahead: returns at once.
    log.append(&record(2)).await.expect("append");
    assert!(ready_now(reader.wait_for_more()).await);
}

#[tokio::test]
async fn reader_from_a_checkpoint_returns_only_later_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = log_path(&dir);
    let replay = log_with(&path, 5).await;
    let (log, _) = open(&path);
    let checkpoint = replay[1].end;
    let mut reader = log.reader(checkpoint).expect("reader");
    assert_eq!(reader.position(), checkpoint);
    let got = reader.read_available(100).expect("reads");
    assert_eq!(got, replay[2..].to_vec());

    // rows_max is honoured and the position moves record by record.
    let mut reader = log.reader(0).expect("reader");
    assert!(reader.read_available(0).expect("reads").is_empty());
    let first = reader.read_available(2).expect("reads");
    assert_eq!(first, replay[..2].to_vec());
    assert_eq!(reader.position(), replay[1].end);
    let rest = reader.read_available(2).expect("reads");
    assert_eq!(rest, replay[2..4].to_vec());
}

#[tokio::test]
async fn bad_start_offsets_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = log_path(&dir);
    log_with(&path, 2).await;
    let (log, _) = open(&path);
    let end = log.durable_end();
    assert!(matches!(
        log.reader(end + 1),
        Err(LogError::OffsetPastEnd { .. })
    ));
    // Inside the first record: the first read says so instead of guessing.
    let mut reader = log.reader(3).expect("reader");
    assert!(matches!(
        reader.read_available(10),
        Err(LogError::Corrupt { offset: 3, .. })
    ));
}

#[tokio::test]
async fn wait_for_more_ends_after_close_once_caught_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, _) = open(&log_path(&dir));
    let mut reader = log.reader(0).expect("reader");
    log.append(&record(1)).await.expect("append");
    log.close();
    // Durable data written before close is still delivered.
    assert!(reader.wait_for_more().await);
    assert_eq!(reader.read_available(10).expect("reads").len(), 1);
    assert!(!reader.wait_for_more().await, "closed and caught up");
}

#[tokio::test]
async fn a_waiting_reader_is_released_by_close() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, _) = open(&log_path(&dir));
    let mut reader = log.reader(0).expect("reader");
    let waiter = tokio::spawn(async move { reader.wait_for_more().await });
    log.close();
    assert!(!waiter.await.expect("task runs"));
}
