//! The group-commit thread: the only code that writes the log file.
//!
//! It blocks for one queued append, drains whatever else is already queued
//! (up to the batch limits), writes the batch with one `write_all`, calls
//! `sync_data` once, publishes the new durable end and then answers every
//! waiter. Under load a batch grows by itself: while one fsync runs, the
//! next batch queues up, so fsyncs per second stay roughly constant while
//! appends per second grow.
//!
//! Failure semantics: if the write or the fsync fails, the batch may be
//! partly on disk and, after a failed fsync, the page cache state is
//! unknowable (the kernel may have dropped the dirty pages and cleared the
//! error). So the batch is answered `Unknown`, the log is poisoned and never
//! writes again: every later append is answered `Failed`, which is true
//! because nothing is written after the poison.

use engine::ports::AppendError;
use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::{oneshot, watch};

/// A batch stops growing once it holds this many bytes, so one write stays
/// bounded even when the queue holds many large records.
pub(crate) const BATCH_BYTES_SOFT_MAX: usize = 8 << 20;

/// The answer an appender waits for.
pub(crate) type Answer = Result<(), AppendError>;

/// One queued append: its frame, ready to write, and who waits for it.
#[derive(Debug)]
pub(crate) struct Job {
    pub frame: Vec<u8>,
    pub done: oneshot::Sender<Answer>,
}

/// State the thread shares with the `FileLog` handle.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Batches written and fsynced successfully.
    pub batches_synced: AtomicU64,
    /// Set once, by the thread, when a write or fsync failed.
    pub poisoned: OnceLock<String>,
}

/// Where the batches go: the log file, or a fake in tests.
pub(crate) trait Sink {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    fn sync_data(&mut self) -> io::Result<()>;
}

impl Sink for File {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Write::write_all(self, buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
}

/// Everything the thread owns.
#[derive(Debug)]
pub(crate) struct Writer<S> {
    pub sink: S,
    pub jobs: crossbeam::channel::Receiver<Job>,
    /// Dropped when nothing more can become durable, which tells readers.
    pub durable: watch::Sender<u64>,
    /// Byte offset where the next batch lands; equals the durable end.
    pub end: u64,
    pub batch_records_max: usize,
    pub shared: Arc<Shared>,
}

impl<S: Sink> Writer<S> {
    /// Runs until every sender is gone and the queue is empty.
    pub fn run(mut self) {
        let mut buf = Vec::new();
        let mut waiters = Vec::with_capacity(self.batch_records_max);
        // `recv` keeps returning queued jobs after the senders are dropped and
        // fails only once the queue is empty: that is what makes close drain.
        while let Ok(first) = self.jobs.recv() {
            buf.clear();
            add(&mut buf, &mut waiters, first);
            while waiters.len() < self.batch_records_max && buf.len() < BATCH_BYTES_SOFT_MAX {
                match self.jobs.try_recv() {
                    Ok(job) => add(&mut buf, &mut waiters, job),
                    Err(_) => break,
                }
            }
            let committed = self
                .sink
                .write_all(&buf)
                .and_then(|()| self.sink.sync_data());
            if let Err(e) = committed {
                return self.poison(e, waiters);
            }
            self.end += buf.len() as u64;
            self.shared.batches_synced.fetch_add(1, Ordering::Relaxed);
            // Publish before answering, so a caller that sees Ok also sees a
            // durable end that covers its record.
            self.durable.send_replace(self.end);
            for done in waiters.drain(..) {
                // A dropped receiver is an appender that stopped waiting; its
                // record is durable all the same.
                let _ = done.send(Ok(()));
            }
        }
    }

    fn poison(self, err: io::Error, waiters: Vec<oneshot::Sender<Answer>>) {
        let reason = format!(
            "order log write or fsync failed at byte {}: {err}",
            self.end
        );
        tracing::error!(%reason, batch_len = waiters.len(), "order log poisoned");
        let _ = self.shared.poisoned.set(reason.clone());
        for done in waiters {
            let _ = done.send(Err(AppendError::Unknown(reason.clone())));
        }
        // No byte will ever become durable again: let readers finish.
        drop(self.durable);
        let refusal = AppendError::Failed(format!("order log is poisoned: {reason}"));
        for job in self.jobs.iter() {
            let _ = job.done.send(Err(refusal.clone()));
        }
    }
}

fn add(buf: &mut Vec<u8>, waiters: &mut Vec<oneshot::Sender<Answer>>, job: Job) {
    buf.extend_from_slice(&job.frame);
    waiters.push(job.done);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam::channel::{bounded, Sender};

    /// Records what was written; can be told to fail the fsync.
    #[derive(Debug, Default)]
    struct FakeSink {
        written: Vec<u8>,
        fail_sync: bool,
    }

    impl Sink for FakeSink {
        fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
            self.written.extend_from_slice(buf);
            Ok(())
        }

        fn sync_data(&mut self) -> io::Result<()> {
            if self.fail_sync {
                Err(io::Error::other("injected fsync failure"))
            } else {
                Ok(())
            }
        }
    }

    fn queue(tx: &Sender<Job>, frame: &[u8]) -> oneshot::Receiver<Answer> {
        let (done, rx) = oneshot::channel();
        tx.try_send(Job {
            frame: frame.to_vec(),
            done,
        })
        .expect("queue has room");
        rx
    }

    fn writer(sink: FakeSink, batch_records_max: usize) -> (Writer<FakeSink>, Sender<Job>) {
        let (tx, jobs) = bounded(64);
        let (durable, _) = watch::channel(100);
        let w = Writer {
            sink,
            jobs,
            durable,
            end: 100,
            batch_records_max,
            shared: Arc::default(),
        };
        (w, tx)
    }

    #[test]
    fn queued_jobs_share_batches_and_are_answered_ok() {
        let (w, tx) = writer(FakeSink::default(), 4);
        let shared = Arc::clone(&w.shared);
        let mut durable = w.durable.subscribe();
        // Everything is queued before the thread starts, so the batches are
        // exactly 4 + 4 + 2.
        let answers: Vec<_> = (0..10u8).map(|i| queue(&tx, &[i; 3])).collect();
        drop(tx);
        w.run();
        for mut a in answers {
            assert_eq!(a.try_recv(), Ok(Ok(())));
        }
        assert_eq!(shared.batches_synced.load(Ordering::Relaxed), 3);
        assert_eq!(*durable.borrow_and_update(), 130);
        assert!(shared.poisoned.get().is_none());
    }

    #[test]
    fn failed_fsync_answers_unknown_then_failed_and_stops_readers() {
        let sink = FakeSink {
            fail_sync: true,
            ..FakeSink::default()
        };
        let (w, tx) = writer(sink, 2);
        let shared = Arc::clone(&w.shared);
        let durable = w.durable.subscribe();
        let answers: Vec<_> = (0..5u8).map(|i| queue(&tx, &[i])).collect();
        drop(tx);
        w.run();
        let got: Vec<_> = answers
            .into_iter()
            .map(|mut a| a.try_recv().expect("answered"))
            .collect();
        assert!(matches!(got[0], Err(AppendError::Unknown(_))));
        assert!(matches!(got[1], Err(AppendError::Unknown(_))));
        for a in &got[2..] {
            assert!(matches!(a, Err(AppendError::Failed(_))), "{a:?}");
        }
        assert!(shared.poisoned.get().is_some());
        assert_eq!(shared.batches_synced.load(Ordering::Relaxed), 0);
        assert_eq!(*durable.borrow(), 100, "durable end never moved");
        assert!(durable.has_changed().is_err(), "watch closed for readers");
    }
}
