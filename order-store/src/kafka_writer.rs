//! `KafkaWriter`: the production order writer. One process of a consumer
//! group (several share the partitions) moves orders from the Kafka topic
//! into the order store in paced batches.
//!
//! Offsets are committed only after the store's transaction: a crash
//! anywhere replays records, which the store's idempotent insert absorbs.
//! A store outage pauses the writer (nothing committed, same batch retried
//! with backoff). A record the store refuses for a reason a retry cannot fix,
//! or that does not decode, is tried `tries_max` times and then sent to the
//! dead-letter topic before its offset is committed, so the writer keeps
//! going and nothing disappears silently.
//!
//! **Invariant:** a batch's offsets are committed only once every record of
//! the batch is either stored or dead-lettered (acknowledged by the broker).
//! A refused record never takes its batch-mates with it, and a dead-letter
//! send cut short by shutdown commits nothing.

#[cfg(test)]
mod tests;

use crate::pacer::Pacer;
use crate::writer::WriterConfig;
use async_trait::async_trait;
use engine::ports::{LogRecord, OrderStore, StoreError};
use order_log::{KafkaSource, LogError, Sourced};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{sleep, Instant};

/// First retry delay after a failure; doubles per failure.
const RETRY_BACKOFF_MS_MIN: u64 = 50;

#[derive(Debug, Clone)]
pub struct KafkaWriterConfig {
    pub batch: WriterConfig,
    /// Tries a refused record gets before it is dead-lettered.
    pub tries_max: u32,
    /// The topic, to name dead letters `<topic>/<partition>/<offset>`.
    pub topic: String,
}

impl Default for KafkaWriterConfig {
    fn default() -> Self {
        Self {
            batch: WriterConfig::default(),
            tries_max: 3,
            topic: String::new(),
        }
    }
}

/// Running totals, published after every batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KafkaWriterStats {
    pub batches: u64,
    pub rows: u64,
    pub duplicates: u64,
    pub dead_lettered: u64,
}

/// Why the writer stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum KafkaWriterError {
    #[error("order log: {0}")]
    Log(#[from] LogError),
}

/// What the writer needs of its source: a [`KafkaSource`] in production, a
/// scripted one in this crate's tests (no broker needed).
#[async_trait]
trait Source: Send + Sync {
    async fn poll(&mut self, rows_max: usize, wait_ms: u64) -> Result<Vec<Sourced>, LogError>;
    async fn commit(&mut self, through: &[Sourced]) -> Result<(), LogError>;
    async fn dead_letter(&self, s: &Sourced, reason: &str) -> Result<(), LogError>;
    async fn close(self: Box<Self>);
}

#[async_trait]
impl Source for KafkaSource {
    async fn poll(&mut self, rows_max: usize, wait_ms: u64) -> Result<Vec<Sourced>, LogError> {
        KafkaSource::poll(self, rows_max, wait_ms).await
    }
    async fn commit(&mut self, through: &[Sourced]) -> Result<(), LogError> {
        KafkaSource::commit(self, through).await
    }
    async fn dead_letter(&self, s: &Sourced, reason: &str) -> Result<(), LogError> {
        KafkaSource::dead_letter(self, s, reason).await
    }
    async fn close(self: Box<Self>) {
        KafkaSource::close(*self).await;
    }
}

pub struct KafkaWriter {
    store: Arc<dyn OrderStore>,
    source: Box<dyn Source>,
    cfg: KafkaWriterConfig,
    stats: KafkaWriterStats,
    published: watch::Sender<KafkaWriterStats>,
}

impl std::fmt::Debug for KafkaWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaWriter")
            .field("cfg", &self.cfg)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Whether to go on after a step.
enum Flow {
    Continue,
    Stop,
}

impl KafkaWriter {
    pub fn new(store: Arc<dyn OrderStore>, source: KafkaSource, cfg: KafkaWriterConfig) -> Self {
        Self::with_source(store, Box::new(source), cfg)
    }

    fn with_source(
        store: Arc<dyn OrderStore>,
        source: Box<dyn Source>,
        cfg: KafkaWriterConfig,
    ) -> Self {
        Self {
            store,
            source,
            cfg,
            stats: KafkaWriterStats::default(),
            published: watch::channel(KafkaWriterStats::default()).0,
        }
    }

    /// Totals so far, updated after each committed batch.
    pub fn subscribe(&self) -> watch::Receiver<KafkaWriterStats> {
        self.published.subscribe()
    }

    /// Runs until `shutdown` resolves. The batch in hand is finished (or,
    /// if the store is down, left uncommitted for the next owner) first.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<KafkaWriterStats, KafkaWriterError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let rows_max = self.cfg.batch.batch_rows_max.max(1);
        let mut pacer = Pacer::new(self.cfg.batch.rows_per_s_max, rows_max, Instant::now());
        let mut backoff = RETRY_BACKOFF_MS_MIN;
        loop {
            let polled = tokio::select! {
                () = &mut shutdown => break,
                polled = self.source.poll(rows_max, self.cfg.batch.batch_interval_ms.max(1)) => polled,
            };
            let batch = match polled {
                Ok(b) => {
                    backoff = RETRY_BACKOFF_MS_MIN;
                    b
                }
                Err(e) => {
                    // A broker outage is not the writer's end: wait and poll again.
                    tracing::warn!(error = %e, backoff_ms = backoff, "consuming the order log failed; retrying");
                    if !self.pause(&mut backoff, &mut shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                continue;
            }
            while let Err(wait) = pacer.try_take(batch.len(), Instant::now()) {
                sleep(wait).await;
            }
            if let Flow::Stop = self.write(&batch, &mut shutdown).await? {
                break;
            }
            if let Err(e) = self.source.commit(&batch).await {
                // Not fatal: the records are stored; a replay is absorbed.
                tracing::warn!(error = %e, "offset commit failed; records will be replayed");
            }
            self.stats.batches += 1;
            self.published.send_replace(self.stats);
        }
        let stats = self.stats;
        self.source.close().await;
        Ok(stats)
    }

    /// Writes one batch; `Continue` only once every record of it is stored
    /// or dead-lettered, so its offsets may be committed. `Stop` when
    /// shutdown came while the store or the dead-letter topic was down
    /// (nothing committed: the records stay in the topic).
    async fn write<S: Future<Output = ()>>(
        &mut self,
        batch: &[Sourced],
        shutdown: &mut std::pin::Pin<&mut S>,
    ) -> Result<Flow, KafkaWriterError> {
        let records: Vec<LogRecord> = batch
            .iter()
            .filter_map(|s| s.record.as_ref().ok().cloned())
            .collect();
        let mut backoff = RETRY_BACKOFF_MS_MIN;
        loop {
            match self.store.write_batch(&records, None).await {
                Ok(report) => {
                    self.stats.rows += records.len() as u64;
                    self.stats.duplicates += report.duplicates;
                    break;
                }
                Err(StoreError::Unavailable(why)) => {
                    tracing::warn!(%why, backoff_ms = backoff, "order store unavailable; pausing");
                    if !self.pause(&mut backoff, shutdown).await {
                        return Ok(Flow::Stop);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "batch refused; writing its records one by one");
                    if let Flow::Stop = self.write_one_by_one(batch, shutdown).await? {
                        return Ok(Flow::Stop);
                    }
                    return self.dead_letter_poison(batch, shutdown).await;
                }
            }
        }
        self.dead_letter_poison(batch, shutdown).await
    }

    /// Isolates the records the store refuses: each gets `tries_max` tries,
    /// then goes to the dead-letter topic, and the records after it are
    /// still written. `Continue` means every decoded record of the batch is
    /// stored or dead-lettered; `Stop` (shutdown while the store or the
    /// dead-letter topic was down) means the batch must not be committed.
    async fn write_one_by_one<S: Future<Output = ()>>(
        &mut self,
        batch: &[Sourced],
        shutdown: &mut std::pin::Pin<&mut S>,
    ) -> Result<Flow, KafkaWriterError> {
        for s in batch {
            let Ok(record) = &s.record else { continue };
            let (mut tries, mut backoff) = (0, RETRY_BACKOFF_MS_MIN);
            loop {
                match self
                    .store
                    .write_batch(std::slice::from_ref(record), None)
                    .await
                {
                    Ok(report) => {
                        self.stats.rows += 1;
                        self.stats.duplicates += report.duplicates;
                        break;
                    }
                    Err(StoreError::Unavailable(_)) => {
                        if !self.pause(&mut backoff, shutdown).await {
                            return Ok(Flow::Stop);
                        }
                    }
                    Err(e) => {
                        tries += 1;
                        if tries >= self.cfg.tries_max {
                            let reason = format!("refused {tries} times: {e}");
                            match self.send_dead_letter(s, &reason, shutdown).await? {
                                // Dead-lettered: on to the next record.
                                Flow::Continue => break,
                                Flow::Stop => return Ok(Flow::Stop),
                            }
                        }
                    }
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// Records that do not decode: decoding is deterministic, so each
    /// counts its tries at once and goes to the dead-letter topic.
    async fn dead_letter_poison<S: Future<Output = ()>>(
        &mut self,
        batch: &[Sourced],
        shutdown: &mut std::pin::Pin<&mut S>,
    ) -> Result<Flow, KafkaWriterError> {
        for s in batch {
            if let Err(p) = &s.record {
                let reason = format!(
                    "undecodable after {} tries: {}",
                    self.cfg.tries_max, p.reason
                );
                if let Flow::Stop = self.send_dead_letter(s, &reason, shutdown).await? {
                    return Ok(Flow::Stop);
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// Sends one record to the dead-letter topic, retrying with backoff:
    /// `Continue` once the broker acknowledged it, `Stop` if shutdown came
    /// first (the record is then not safe, so its batch must not commit).
    async fn send_dead_letter<S: Future<Output = ()>>(
        &mut self,
        s: &Sourced,
        reason: &str,
        shutdown: &mut std::pin::Pin<&mut S>,
    ) -> Result<Flow, KafkaWriterError> {
        let mut backoff = RETRY_BACKOFF_MS_MIN;
        loop {
            match self.source.dead_letter(s, reason).await {
                Ok(()) => {
                    tracing::error!(partition = s.partition, offset = s.offset, %reason, "record dead-lettered");
                    self.stats.dead_lettered += 1;
                    self.note_dead_letter(s, reason).await;
                    return Ok(Flow::Continue);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dead-letter send failed; retrying");
                    if !self.pause(&mut backoff, shutdown).await {
                        return Ok(Flow::Stop);
                    }
                }
            }
        }
    }

    /// Records the dead letter in the store so stats show it. Best effort:
    /// the letter itself is safe in the dead-letter topic either way.
    async fn note_dead_letter(&self, s: &Sourced, reason: &str) {
        let source = format!("{}/{}/{}", self.cfg.topic, s.partition, s.offset);
        let campaign = s.record.as_ref().ok().map(LogRecord::campaign_id);
        if let Err(e) = self
            .store
            .record_dead_letter(&source, campaign, reason)
            .await
        {
            tracing::warn!(error = %e, %source, "could not count a dead letter in the store");
        }
    }

    /// Sleeps for the backoff (then doubles it); false if shutdown came first.
    async fn pause<S: Future<Output = ()>>(
        &self,
        backoff: &mut u64,
        shutdown: &mut std::pin::Pin<&mut S>,
    ) -> bool {
        let wait = Duration::from_millis(*backoff);
        *backoff = (*backoff * 2).min(
            self.cfg
                .batch
                .retry_backoff_ms_max
                .max(RETRY_BACKOFF_MS_MIN),
        );
        tokio::select! {
            () = shutdown.as_mut() => false,
            () = sleep(wait) => true,
        }
    }
}
