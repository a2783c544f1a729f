//! `FileLog` through its public API: group commit, replay, close, and
//! recovery from torn tails and from damage in the middle.

mod common;

use common::*;
use engine::ports::{AppendError, OrderLog};
use order_log::{FileLog, FileLogConfig, FileLogReader, LogError, FRAME_HEADER_LEN};
use std::sync::Arc;

#[test]
fn handles_are_shareable_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<FileLog>();
    send::<FileLogReader>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_replay_exactly_once_with_group_commit() {
    const TASKS: u64 = 50;
    const PER_TASK: u64 = 40;
    const N: u64 = TASKS * PER_TASK;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = log_path(&dir);
    let (log, replay) = open(&path);
    assert!(replay.is_empty());
    let log = Arc::new(log);

    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let log = Arc::clone(&log);
        tasks.spawn(async move {
            for i in 0..PER_TASK {
                log.append(&record(t * PER_TASK + i)).await?;
            }
            Ok::<_, AppendError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task runs")
            .expect("every append is acknowledged");
    }
    let batches = log.batches_synced();
    let durable_end = log.durable_end();
    log.close();
    drop(log);
    assert!(
        batches < N,
        "group commit: {batches} fsync batches for {N} records"
    );

    let (_log, replay) = open(&path);
    assert_eq!(replay.len() as u64, N);
    for p in &replay {
        assert_eq!(p.record, record(index_of(&p.record)), "replayed intact");
    }
    let mut order: Vec<u64> = replay.iter().map(|p| index_of(&p.record)).collect();
    assert!(replay.windows(2).all(|w| w[0].end < w[1].end));
    assert_eq!(replay.last().map(|p| p.end), Some(durable_end));
    assert_eq!(file_len(&path), durable_end);
    // Each task appended in order and waited for each answer, so its own
    // records must replay in its order.
    for t in 0..TASKS {
        let mine: Vec<u64> = order
            .iter()
            .copied()
            .filter(|i| i / PER_TASK == t)
            .collect();
        let want: Vec<u64> = (t * PER_TASK..(t + 1) * PER_TASK).collect();
        assert_eq!(mine, want, "task {t} order");
    }
    order.sort_unstable();
    assert_eq!(
        order,
        (0..N).collect::<Vec<_>>(),
        "every record exactly once"
    );
    eprintln!("{N} records in {batches} fsync batches");
}

#[tokio::test]
async fn durable_end_covers_an_acknowledged_append() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, _) = open(&log_path(&dir));
    let mut watch = log.subscribe();
    assert_eq!(*watch.borrow_and_update(), 0);
    log.append(&record(1)).await.expect("append");
    assert!(log.durable_end() > 0);
    assert!(watch.has_changed().expect("log is open"));
    assert_eq!(*watch.borrow_and_update(), log.durable_end());
    assert_eq!(log.batches_synced(), 1);
}

#[tokio::test]
async fn append_after_close_fails_and_close_is_idempotent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, _) = open(&log_path(&dir));
    log.append(&record(1)).await.expect("append");
    let end = log.durable_end();
    log.close();
    log.close();
    assert!(matches!(
        log.append(&record(2)).await,
        Err(AppendError::Failed(_))
    ));
    assert_eq!(log.durable_end(), end);
    let mut watch = log.subscribe();
    assert!(watch.changed().await.is_err(), "nothing more will come");
}

#[tokio::test]
async fn open_creates_missing_directories_and_refuses_bad_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("a/b/orders.log");
    let (log, replay) = open(&path);
    assert!(replay.is_empty());
    log.append(&record(1)).await.expect("append");
    drop(log);
    assert_eq!(records(&open(&path).1), vec![record(1)]);

    let mut cfg = FileLogConfig::new(dir.path().join("x.log"));
    cfg.queue_capacity = 0;
    assert!(matches!(FileLog::open(cfg), Err(LogError::Config(_))));
    let mut cfg = FileLogConfig::new(dir.path().join("x.log"));
    cfg.batch_records_max = 0;
    assert!(matches!(FileLog::open(cfg), Err(LogError::Config(_))));
}

/// Damages the tail with `damage`, reopens, and checks that exactly the
/// records before `keep_end` survive and that the log works afterwards.
async fn check_torn_tail(n: u64, keep: usize, damage: impl FnOnce(&std::path::Path, u64)) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = log_path(&dir);
    let replay = log_with(&path, n).await;
    let keep_end = if keep == 0 { 0 } else { replay[keep - 1].end };
    damage(&path, file_len(&path));

    let (log, got) = open(&path);
    assert_eq!(got, replay[..keep].to_vec(), "the valid prefix survives");
    assert_eq!(file_len(&path), keep_end, "tail cut back to a boundary");
    assert_eq!(log.durable_end(), keep_end);
    log.append(&record(100))
        .await
        .expect("append after recovery");
    drop(log);
    let (_log, got) = open(&path);
    let mut want: Vec<_> = (0..keep as u64).map(record).collect();
    want.push(record(100));
    assert_eq!(records(&got), want);
}

fn truncate_to(path: &std::path::Path, len: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    f.set_len(len).expect("truncate");
}

#[tokio::test]
async fn torn_tail_cut_inside_the_last_record_is_truncated() {
    let frame_len = {
        let dir = tempfile::tempdir().expect("temp dir");
        log_with(&log_path(&dir), 1).await[0].end
    };
    // Cut inside the header, at the header's end, inside the payload and
    // one byte short of the end.
    for cut in [1, FRAME_HEADER_LEN as u64, frame_len / 2, frame_len - 1] {
        check_torn_tail(3, 2, |p, len| truncate_to(p, len - frame_len + cut)).await;
    }
}

#[tokio::test]
async fn torn_tail_of_garbage_or_zeros_is_truncated() {
    check_torn_tail(3, 3, |p, _| append_bytes(p, b"{\"kind\":\"ord")).await;
    check_torn_tail(3, 3, |p, _| append_bytes(p, &[0xAB; 5])).await;
    check_torn_tail(3, 3, |p, _| append_bytes(p, &[0u8; 4096])).await;
    // A header that promises more than the file holds.
    check_torn_tail(3, 3, |p, _| {
        let mut head = 500u32.to_le_bytes().to_vec();
        head.extend_from_slice(&[7, 7, 7, 7]);
        head.extend_from_slice(b"{\"kind\"");
        append_bytes(p, &head)
    })
    .await;
    // An empty log that only holds garbage.
    check_torn_tail(0, 0, |p, _| append_bytes(p, &[9, 9, 9])).await;
}

#[tokio::test]
async fn last_record_failing_its_crc_is_a_torn_tail() {
    check_torn_tail(3, 2, |p, len| flip_byte(p, len - 2)).await;
}

#[tokio::test]
async fn corruption_in_the_middle_is_an_error_and_leaves_the_file_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = log_path(&dir);
    let replay = log_with(&path, 3).await;
    let len = file_len(&path);
    // A byte inside the first record's payload.
    flip_byte(&path, FRAME_HEADER_LEN as u64 + 5);
    match FileLog::open(FileLogConfig::new(&path)) {
        Err(LogError::Corrupt { offset, .. }) => assert_eq!(offset, 0),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(file_len(&path), len, "nothing truncated");

    // A length field that points past the end of the file, on the
    // second-to-last record: looks torn, but a valid record follows it.
    flip_byte(&path, FRAME_HEADER_LEN as u64 + 5);
    let second_to_last = replay[0].end;
    let mut bytes = std::fs::read(&path).expect("read");
    // Byte 1 of the little-endian length: now about 32 KiB, under the limit.
    bytes[second_to_last as usize + 1] = 0x7F;
    std::fs::write(&path, bytes).expect("write");
    match FileLog::open(FileLogConfig::new(&path)) {
        Err(LogError::Corrupt { offset, .. }) => assert_eq!(offset, second_to_last),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(file_len(&path), len, "nothing truncated");
}

#[tokio::test]
async fn valid_crc_over_unparseable_payload_is_corrupt_even_at_the_tail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = log_path(&dir);
    log_with(&path, 1).await;
    let payload = b"{\"kind\":\"refund\"}";
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    append_bytes(&path, &frame);
    assert!(matches!(
        FileLog::open(FileLogConfig::new(&path)),
        Err(LogError::Corrupt { .. })
    ));
}
