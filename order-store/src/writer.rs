//! `FileWriter`: the paced order writer from the embedded file log to an
//! order store.
//!
//! It follows the log's durable end, gathers records into batches and writes
//! each batch with `OrderStore::write_batch`, together with the log position
//! just past its last record. Because rows and checkpoint commit in one
//! transaction and the store absorbs duplicates, every order lands exactly
//! once whatever crashes in between: after a restart the writer resumes from
//! the committed checkpoint and anything replayed is counted as a duplicate.
//!
//! **Architecture Invariant:** a batch is never skipped. A store that is
//! unavailable gets the same batch again (with backoff) until it takes it or
//! the writer is shut down; a store that refuses a batch as breaking an
//! invariant stops the writer with an error for an operator to look at.
//! A user's re-grab after a release (a unit number past the per-user limit
//! while no earlier unit is active) is not such a refusal: the store's
//! limit bounds active orders, not unit numbers (see `crate::sql::batch`).

use crate::pacer::Pacer;
use engine::ports::{Checkpoint, LogRecord, OrderStore, StoreError};
use order_log::{FileLog, FileLogReader, LogError, Positioned};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{sleep, sleep_until, Instant};

/// The checkpoint source name of the embedded file log.
pub const FILE_LOG_SOURCE: &str = "file-log";

/// First retry delay after the store was unavailable; doubles per failure.
const RETRY_BACKOFF_MS_MIN: u64 = 50;

/// How the writer batches and paces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    /// Most rows in one batch (one transaction); also the pacer's burst.
    pub batch_rows_max: usize,
    /// Longest a batch waits for more rows after its first row arrived.
    pub batch_interval_ms: u64,
    /// Ceiling on rows written to the store per second.
    pub rows_per_s_max: u32,
    /// Ceiling on the delay between retries of an unavailable store.
    pub retry_backoff_ms_max: u64,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            batch_rows_max: 500,
            batch_interval_ms: 20,
            rows_per_s_max: 10_000,
            retry_backoff_ms_max: 2_000,
        }
    }
}

/// What a writer did before it returned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Batches committed.
    pub batches: u64,
    /// Records in committed batches, inserted or duplicate.
    pub rows: u64,
    /// Of those, records the store already held (replays).
    pub duplicates: u64,
}

/// Why a writer stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The log could not be read. The reader is not reused after an error
    /// (its position may be past records it did not return); restart the
    /// writer with a fresh reader from the store's checkpoint.
    #[error("reading the order log: {0}")]
    Log(#[from] LogError),
    /// The store refused a batch for a reason a retry cannot fix.
    #[error("order store refused the batch ending at log byte {position}: {source}")]
    Store { position: u64, source: StoreError },
    /// The store's checkpoint could not be read.
    #[error("reading the writer checkpoint: {0}")]
    Checkpoint(StoreError),
}

/// Called after each committed batch with the records it contained and how
/// long the store took to commit it (the successful attempt).
pub type OnCommit = Arc<dyn Fn(&[LogRecord], Duration) + Send + Sync>;

/// A reader of `log` positioned at the store's checkpoint for the file log
/// (the start of the log if there is none): where a writer must resume.
pub async fn reader_from_checkpoint(
    log: &FileLog,
    store: &dyn OrderStore,
) -> Result<FileLogReader, WriterError> {
    let from = store
        .checkpoint(FILE_LOG_SOURCE)
        .await
        .map_err(WriterError::Checkpoint)?
        .unwrap_or(0);
    Ok(log.reader(from)?)
}

/// Moves records from a file log reader into an order store.
pub struct FileWriter {
    store: Arc<dyn OrderStore>,
    reader: FileLogReader,
    cfg: WriterConfig,
    on_commit: OnCommit,
}

impl std::fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter")
            .field("reader", &self.reader)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// The batch being gathered.
#[derive(Debug)]
struct Batch {
    records: Vec<LogRecord>,
    /// Log position just past the last record: the batch's checkpoint.
    end: u64,
    /// When the first row arrived; `None` while empty.
    first_at: Option<Instant>,
}

impl Batch {
    fn push(&mut self, rows: Vec<Positioned>, now: Instant) {
        if let Some(last) = rows.last() {
            self.end = last.end;
            self.first_at.get_or_insert(now);
        }
        self.records.extend(rows.into_iter().map(|p| p.record));
    }

    fn clear(&mut self) {
        self.records.clear();
        self.first_at = None;
    }
}

/// Whether the writer goes on after a flush.
enum Flow {
    Continue,
    /// Shutdown came while the store was unavailable: the batch stays in the
    /// log and is written after the next start.
    Stop,
}

impl FileWriter {
    /// `on_commit` is called after each committed batch with the records that
    /// batch contained (inserted or duplicate). The reader must start at the
    /// store's checkpoint (see [`reader_from_checkpoint`]).
    pub fn new(
        store: Arc<dyn OrderStore>,
        reader: FileLogReader,
        cfg: WriterConfig,
        on_commit: OnCommit,
    ) -> Self {
        Self {
            store,
            reader,
            cfg,
            on_commit,
        }
    }

    /// Runs until `shutdown` resolves (or the log closes for good), then
    /// writes what is already durable in the log and returns.
    ///
    /// The final drain ends the first time the writer has caught up with the
    /// log's durable end, so the gateway should stop appending first. It is
    /// paced like everything else; to bound it in time, drop this future
    /// after a grace period: that is safe, because a batch whose transaction
    /// did not commit is read again from the checkpoint on the next start.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<WriterStats, WriterError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut stopping = false;
        let rows_max = self.cfg.batch_rows_max.max(1);
        let interval = Duration::from_millis(self.cfg.batch_interval_ms);
        let mut pacer = Pacer::new(self.cfg.rows_per_s_max, rows_max, Instant::now());
        let mut batch = Batch {
            records: Vec::with_capacity(rows_max),
            end: self.reader.position(),
            first_at: None,
        };
        let mut stats = WriterStats::default();
        loop {
            let room = rows_max.saturating_sub(batch.records.len());
            let rows = if room > 0 {
                self.reader.read_available(room).inspect_err(|e| {
                    tracing::error!(error = %e, position = self.reader.position(), "order writer cannot read the log");
                })?
            } else {
                Vec::new()
            };
            // Fewer rows than asked means the reader reached the durable end.
            let caught_up = rows.len() < room;
            batch.push(rows, Instant::now());

            let now = Instant::now();
            let due = batch.records.len() >= rows_max
                || batch.first_at.is_some_and(|t| now >= t + interval)
                || (stopping && !batch.records.is_empty());
            if due {
                let flow = self
                    .flush(
                        &mut batch,
                        &mut pacer,
                        &mut stats,
                        shutdown.as_mut(),
                        stopping,
                    )
                    .await?;
                match flow {
                    Flow::Continue => continue,
                    Flow::Stop => return Ok(stats),
                }
            }
            if stopping && caught_up {
                tracing::info!(
                    ?stats,
                    position = batch.end,
                    "order writer drained and stopped"
                );
                return Ok(stats);
            }
            // Only a partial batch or an empty one reaches here: wait for the
            // log, the batch's deadline or shutdown, whichever comes first.
            let deadline = batch.first_at.map_or(now, |t| t + interval);
            tokio::select! {
                () = shutdown.as_mut(), if !stopping => stopping = true,
                more = self.reader.wait_for_more() => {
                    if !more {
                        tracing::info!("order log closed; draining the order writer");
                        stopping = true;
                    }
                }
                () = sleep_until(deadline), if batch.first_at.is_some() => {}
            }
        }
    }

    /// Paces, then writes the batch until the store takes it.
    async fn flush(
        &mut self,
        batch: &mut Batch,
        pacer: &mut Pacer,
        stats: &mut WriterStats,
        mut shutdown: std::pin::Pin<&mut (impl Future<Output = ()> + Send)>,
        stopping: bool,
    ) -> Result<Flow, WriterError> {
        let rows = batch.records.len();
        // Waits are at most one burst's worth of refill (batch_rows_max /
        // rows_per_s_max), so pacing does not need to watch for shutdown.
        while let Err(wait) = pacer.try_take(rows, Instant::now()) {
            sleep(wait).await;
        }
        let backoff_max = Duration::from_millis(self.cfg.retry_backoff_ms_max.max(1));
        let mut backoff = Duration::from_millis(RETRY_BACKOFF_MS_MIN).min(backoff_max);
        loop {
            let checkpoint = Checkpoint {
                source: FILE_LOG_SOURCE,
                position: batch.end,
            };
            let attempt = Instant::now();
            match self
                .store
                .write_batch(&batch.records, Some(checkpoint))
                .await
            {
                Ok(report) => {
                    stats.batches += 1;
                    stats.rows += u64::try_from(rows).unwrap_or(u64::MAX);
                    stats.duplicates += report.duplicates;
                    (self.on_commit)(&batch.records, attempt.elapsed());
                    batch.clear();
                    return Ok(Flow::Continue);
                }
                Err(StoreError::Unavailable(reason)) => {
                    if stopping {
                        tracing::warn!(%reason, rows, position = batch.end,
                            "order store unavailable during the final drain; the rows stay in the log");
                        return Ok(Flow::Stop);
                    }
                    tracing::warn!(%reason, rows, retry_in = ?backoff,
                        "order store unavailable; retrying the same batch");
                    tokio::select! {
                        () = shutdown.as_mut() => {
                            tracing::warn!(rows, position = batch.end,
                                "shutdown while the order store is unavailable; the rows stay in the log");
                            return Ok(Flow::Stop);
                        }
                        () = sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(backoff_max);
                }
                Err(source) => {
                    tracing::error!(error = %source, rows, position = batch.end,
                        "order store refused a batch; the order writer stops");
                    return Err(WriterError::Store {
                        position: batch.end,
                        source,
                    });
                }
            }
        }
    }
}
