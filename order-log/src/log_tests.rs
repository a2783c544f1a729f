//! Tests of `FileLog` that need its private start gate or `submit`.
//! Everything reachable through the public API is in `tests/file_log.rs`.

use super::*;
use crate::test_support::record;

fn gated(capacity: usize) -> (tempfile::TempDir, FileLog, mpsc::Sender<()>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = FileLogConfig::new(dir.path().join("orders.log"));
    cfg.queue_capacity = capacity;
    let (gate_tx, gate) = mpsc::channel();
    let (log, replay) = FileLog::open_gated(cfg, Some(gate)).expect("opens");
    assert!(replay.is_empty());
    (dir, log, gate_tx)
}

#[tokio::test]
async fn full_queue_is_overloaded_at_once_and_queued_records_still_land() {
    let (dir, log, gate) = gated(2);
    // The thread waits at its gate, so these two fill the queue.
    let first = log.submit(&record(1)).expect("room for the first");
    let second = log.submit(&record(2)).expect("room for the second");
    assert_eq!(log.append(&record(3)).await, Err(AppendError::Overloaded));
    assert_eq!(
        log.durable_end(),
        0,
        "nothing is durable before the thread runs"
    );

    gate.send(()).expect("thread waits at the gate");
    assert_eq!(first.await, Ok(Ok(())));
    assert_eq!(second.await, Ok(Ok(())));
    // The queue has room again.
    assert_eq!(log.append(&record(4)).await, Ok(()));
    log.close();

    let (_log, replay) =
        FileLog::open(FileLogConfig::new(dir.path().join("orders.log"))).expect("reopens");
    let got: Vec<_> = replay.into_iter().map(|p| p.record).collect();
    assert_eq!(got, vec![record(1), record(2), record(4)]);
}

#[tokio::test]
async fn close_drains_everything_queued_before_it() {
    let (dir, log, gate) = gated(16);
    let answers: Vec<_> = (0..10)
        .map(|i| log.submit(&record(i)).expect("room"))
        .collect();
    // Close from another thread (it blocks until drained), then open the
    // gate: close must not return before the queued records are written.
    let log = Arc::new(log);
    let closer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.close())
    };
    gate.send(()).expect("thread waits at the gate");
    closer.join().expect("close does not panic");
    let expected_end: usize = (0..10)
        .map(|i| frame::encode(&record(i)).expect("encodes").len())
        .sum();
    assert_eq!(
        log.durable_end(),
        expected_end as u64,
        "close returned drained"
    );
    for a in answers {
        assert_eq!(a.await, Ok(Ok(())));
    }
    assert_eq!(log.batches_synced(), 1, "all ten were queued: one batch");
    assert!(matches!(
        log.append(&record(99)).await,
        Err(AppendError::Failed(_))
    ));
    let (_log, replay) =
        FileLog::open(FileLogConfig::new(dir.path().join("orders.log"))).expect("reopens");
    assert_eq!(replay.len(), 10);
}

#[test]
fn offer_names_full_and_disconnected_queues() {
    let (tx, rx) = crossbeam::channel::bounded(1);
    let job = || Job {
        frame: vec![1],
        done: oneshot::channel().0,
    };
    assert_eq!(offer(&tx, job()), Ok(()));
    assert_eq!(offer(&tx, job()), Err(AppendError::Overloaded));
    drop(rx);
    assert!(matches!(offer(&tx, job()), Err(AppendError::Failed(_))));
}

#[tokio::test]
async fn poisoned_log_refuses_appends_as_failed() {
    let (_dir, log, gate) = gated(4);
    let _ = log.shared.poisoned.set("injected".into());
    assert!(matches!(
        log.append(&record(1)).await,
        Err(AppendError::Failed(_))
    ));
    drop(gate);
}
