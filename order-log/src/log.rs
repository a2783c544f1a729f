//! `FileLog`: the handle the gateway and the order writer share.
//!
//! `append` frames the record on the caller's task (so serialization cost is
//! spread over the runtime, not serialized on the log thread), then offers it
//! to a bounded queue without waiting: a full queue is `Overloaded` at once,
//! because a flash sale must shed load rather than pile up waiters.

use crate::frame;
use crate::reader::FileLogReader;
use crate::recover::recover;
use crate::writer::{Answer, Job, Shared, Writer};
use crate::{FileLogConfig, LogError, Positioned};
use async_trait::async_trait;
use crossbeam::channel::{Sender, TrySendError};
use engine::ports::{AppendError, LogRecord, OrderLog};
use parking_lot::{Mutex, RwLock};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use tokio::sync::{oneshot, watch};

/// The embedded durable order log. Shared as `Arc<FileLog>`.
pub struct FileLog {
    path: PathBuf,
    /// `None` once closed. A read lock per append is uncontended in practice
    /// (readers do not block readers); close takes the write lock so that no
    /// append can slip in between "closed" and the queue's disconnection.
    jobs: RwLock<Option<Sender<Job>>>,
    /// The log thread, until close joins it.
    thread: Mutex<Option<JoinHandle<()>>>,
    durable: watch::Receiver<u64>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FileLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLog")
            .field("path", &self.path)
            .field("durable_end", &self.durable_end())
            .field("batches_synced", &self.batches_synced())
            .field("poisoned", &self.shared.poisoned.get())
            .finish_non_exhaustive()
    }
}

impl FileLog {
    /// Opens or creates the log, validates every record, cuts off a torn
    /// tail and returns the log with every durable record in file order.
    /// Damage that is not a torn tail is `LogError::Corrupt`.
    pub fn open(cfg: FileLogConfig) -> Result<(FileLog, Vec<Positioned>), LogError> {
        Self::open_gated(cfg, None)
    }

    /// [`FileLog::open`] whose thread, when `start_gate` is given, waits for
    /// a message (or the gate's sender to drop) before taking any job: tests
    /// use it to fill the queue deterministically.
    pub(crate) fn open_gated(
        cfg: FileLogConfig,
        start_gate: Option<mpsc::Receiver<()>>,
    ) -> Result<(FileLog, Vec<Positioned>), LogError> {
        if cfg.queue_capacity == 0 {
            // A zero-capacity crossbeam channel is a rendezvous: every
            // try_send would fail unless the thread happened to be waiting.
            return Err(LogError::Config("queue_capacity must be at least 1"));
        }
        if cfg.batch_records_max == 0 {
            return Err(LogError::Config("batch_records_max must be at least 1"));
        }
        let path = cfg.path;
        let mut file = open_file(&path)?;
        let recovered = recover(&file, &path)?;
        // Bytes written before a crash (kill -9 between write and fsync) may
        // sit only in the page cache; make them durable before calling them so.
        file.sync_data()
            .map_err(|e| LogError::io("cannot fsync", &path, e))?;
        file.seek(SeekFrom::Start(recovered.end))
            .map_err(|e| LogError::io("cannot seek", &path, e))?;

        let (durable_tx, durable) = watch::channel(recovered.end);
        let (jobs_tx, jobs) = crossbeam::channel::bounded(cfg.queue_capacity);
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            sink: file,
            jobs,
            durable: durable_tx,
            end: recovered.end,
            batch_records_max: cfg.batch_records_max,
            shared: Arc::clone(&shared),
        };
        let thread = std::thread::Builder::new()
            .name("order-log".into())
            .spawn(move || {
                if let Some(gate) = start_gate {
                    let _ = gate.recv();
                }
                writer.run();
            })
            .map_err(|e| LogError::io("cannot start the log thread for", &path, e))?;
        tracing::info!(
            path = %path.display(),
            records = recovered.records.len(),
            durable_end = recovered.end,
            truncated_len = recovered.truncated_len,
            "order log opened"
        );
        let log = FileLog {
            path,
            jobs: RwLock::new(Some(jobs_tx)),
            thread: Mutex::new(Some(thread)),
            durable,
            shared,
        };
        Ok((log, recovered.records))
    }

    /// Byte offset up to which records are durable (fsynced).
    pub fn durable_end(&self) -> u64 {
        *self.durable.borrow()
    }

    /// The durable end, updated after every fsync. The current value counts
    /// as seen, so `changed()` waits for the next fsync. The sender is
    /// dropped when nothing more can become durable (closed or poisoned),
    /// which makes `changed()` fail.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        let mut rx = self.durable.clone();
        rx.mark_unchanged();
        rx
    }

    /// Number of write + fsync batches completed; with concurrent appends it
    /// is far below the number of records, which shows group commit works.
    pub fn batches_synced(&self) -> u64 {
        self.shared.batches_synced.load(Ordering::Relaxed)
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A reader from byte offset `from`, which must be a record boundary
    /// (0, or some `Positioned::end`, e.g. a stored checkpoint). A start
    /// inside a record is reported as `Corrupt` by the first read.
    pub fn reader(&self, from: u64) -> Result<FileLogReader, LogError> {
        let durable_end = self.durable_end();
        if from > durable_end {
            return Err(LogError::OffsetPastEnd {
                offset: from,
                durable_end,
            });
        }
        let file =
            File::open(&self.path).map_err(|e| LogError::io("cannot open", &self.path, e))?;
        Ok(FileLogReader::new(file, from, self.subscribe()))
    }

    /// Stops accepting appends, lets the log thread write and fsync all that
    /// is queued and answer it, then joins the thread. Idempotent. Blocks for
    /// about one batch; from async code call it where blocking is allowed
    /// (shutdown, or `spawn_blocking`).
    pub fn close(&self) {
        // Dropping the only sender disconnects the queue; the thread then
        // drains what is queued and exits.
        drop(self.jobs.write().take());
        let thread = self.thread.lock().take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                // Its waiters saw their senders dropped and got `Unknown`.
                tracing::error!(path = %self.path.display(), "order log thread panicked");
            }
        }
    }

    /// Frames the record and queues it; the receiver yields the answer.
    fn submit(&self, record: &LogRecord) -> Result<oneshot::Receiver<Answer>, AppendError> {
        if let Some(reason) = self.shared.poisoned.get() {
            return Err(AppendError::Failed(format!(
                "order log is poisoned: {reason}"
            )));
        }
        let frame = frame::encode(record).map_err(|e| AppendError::Failed(e.to_string()))?;
        let (done, answer) = oneshot::channel();
        let jobs = self.jobs.read();
        let Some(jobs) = jobs.as_ref() else {
            return Err(AppendError::Failed("order log is closed".into()));
        };
        offer(jobs, Job { frame, done })?;
        Ok(answer)
    }
}

/// Queues a job without waiting, naming the outcome for the caller.
fn offer(jobs: &Sender<Job>, job: Job) -> Result<(), AppendError> {
    jobs.try_send(job).map_err(|e| match e {
        TrySendError::Full(_) => AppendError::Overloaded,
        // The thread is gone (it panicked): nothing will write this record.
        TrySendError::Disconnected(_) => AppendError::Failed("order log thread has stopped".into()),
    })
}

#[async_trait]
impl OrderLog for FileLog {
    /// Returns once the record is durable. Dropping this future after the
    /// record was queued does not unqueue it: the record may still land.
    async fn append(&self, record: &LogRecord) -> Result<(), AppendError> {
        let answer = self.submit(record)?;
        answer.await.unwrap_or_else(|_| {
            Err(AppendError::Unknown(
                "order log thread stopped before answering".into(),
            ))
        })
    }

    fn unhealthy(&self) -> Option<String> {
        if let Some(reason) = self.shared.poisoned.get() {
            return Some(format!("order log is poisoned: {reason}"));
        }
        self.jobs
            .read()
            .is_none()
            .then(|| "order log is closed".to_string())
    }
}

impl Drop for FileLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// Opens the log file for reading and writing, creating it (and its parent
/// directories) if missing. Creation is made durable by fsyncing the
/// directory, or a crash could lose the file along with acknowledged records.
fn open_file(path: &Path) -> Result<File, LogError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    create_dir_all_durably(dir)?;
    let mut opts = OpenOptions::new();
    opts.read(true).write(true);
    match opts.clone().create_new(true).open(path) {
        Ok(file) => {
            sync_dir(dir)?;
            Ok(file)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => opts
            .open(path)
            .map_err(|e| LogError::io("cannot open", path, e)),
        Err(e) => Err(LogError::io("cannot create", path, e)),
    }
}

/// `create_dir_all`, then fsync the parent of every directory it created.
fn create_dir_all_durably(dir: &Path) -> Result<(), LogError> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| LogError::io("cannot create", dir, e))?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io("cannot fsync directory", dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), LogError> {
    // Directories cannot be opened for fsync here; NTFS journals creation.
    Ok(())
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
