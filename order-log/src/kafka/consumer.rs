//! `KafkaSource`: the order writers' side of the Kafka order log.
//!
//! Writers share the topic's partitions through a consumer group. Offsets are
//! committed by hand, only after the records are committed to the order
//! store, so a crash between the two redelivers records instead of losing
//! them; the store's idempotent insert absorbs the repeats.
//!
//! Rebalances need nothing special: when a partition moves to another writer,
//! its uncommitted records are simply delivered again to the new owner. A
//! commit for a partition this writer no longer owns is skipped (see
//! [`KafkaSource::commit`]).

use super::admin::{ensure_topics, TopicSpec};
use super::producer::RECONNECT_BACKOFF_MAX_MS;
use super::{DEAD_LETTER_REASON_HEADER, DEAD_LETTER_SOURCE_HEADER, PARTITIONS_DEFAULT};
use crate::LogError;
use engine::ports::LogRecord;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a dead-letter record may take to be acknowledged.
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and as whom `KafkaSource` consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSourceConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    pub topic: String,
    /// Every writer of one deployment uses the same group.
    pub group_id: String,
    /// Where records that cannot be written are parked for an operator.
    pub dead_letter_topic: String,
    /// Partitions of the topic when the source creates it (the dead-letter
    /// topic gets one); an existing topic keeps its own count.
    pub partitions: i32,
    /// Replicas of the topics when the source creates them.
    pub replication_factor: i32,
    /// How long a silent member keeps its partitions (librdkafka's
    /// `session.timeout.ms`). Longer rides out broker hiccups without a
    /// rebalance; shorter hands a killed writer's partitions over sooner.
    pub session_timeout_ms: u64,
}

impl KafkaSourceConfig {
    /// The defaults: dead letters on `<topic>.dlq`, 8 partitions, replication 1.
    pub fn new(
        brokers: impl Into<String>,
        topic: impl Into<String>,
        group_id: impl Into<String>,
    ) -> Self {
        let topic = topic.into();
        Self {
            brokers: brokers.into(),
            dead_letter_topic: format!("{topic}.dlq"),
            topic,
            group_id: group_id.into(),
            partitions: PARTITIONS_DEFAULT,
            replication_factor: 1,
            session_timeout_ms: SESSION_TIMEOUT_MS_DEFAULT,
        }
    }
}

/// Kafka's own default session timeout, in ms.
pub const SESSION_TIMEOUT_MS_DEFAULT: u64 = 45_000;

/// A payload that is not a log record; it goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    pub payload: Vec<u8>,
    pub reason: String,
}

/// One record read from the topic, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced {
    pub partition: i32,
    pub offset: i64,
    pub record: Result<LogRecord, Poison>,
}

/// Logs group membership changes; the assignment itself is librdkafka's.
struct SourceContext {
    group_id: String,
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka recovers from these on its own (reconnects, retries).
        tracing::warn!(group = %self.group_id, %error, reason, "kafka consumer client error");
    }
}

impl ConsumerContext for SourceContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(group = %self.group_id, ?partitions, "kafka partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(group = %self.group_id, ?partitions, "kafka partitions revoked");
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group_id, error = %e, "kafka rebalance error");
            }
        }
    }
}

/// A consumer-group member reading the order log. Call [`KafkaSource::close`]
/// to leave the group: dropping it leaves too, but blocks the thread.
pub struct KafkaSource {
    consumer: Arc<StreamConsumer<SourceContext>>,
    dead_letters: FutureProducer,
    topic: String,
    dead_letter_topic: String,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topic", &self.topic)
            .field("dead_letter_topic", &self.dead_letter_topic)
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// Creates both topics if missing, joins the group and subscribes.
    /// Records nobody in the group has committed are read from the start.
    pub async fn connect(cfg: KafkaSourceConfig) -> Result<Self, LogError> {
        if cfg.group_id.is_empty() {
            return Err(LogError::Config("group_id must not be empty"));
        }
        ensure_topics(
            &cfg.brokers,
            &[
                TopicSpec {
                    name: &cfg.topic,
                    partitions: cfg.partitions,
                    replication_factor: cfg.replication_factor,
                },
                TopicSpec {
                    name: &cfg.dead_letter_topic,
                    partitions: 1,
                    replication_factor: cfg.replication_factor,
                },
            ],
        )
        .await?;
        let context = SourceContext {
            group_id: cfg.group_id.clone(),
        };
        let consumer: StreamConsumer<SourceContext> = ClientConfig::new()
            .set("bootstrap.servers", &cfg.brokers)
            .set("client.id", "seckill-order-writer")
            .set("group.id", &cfg.group_id)
            // Offsets move only through `commit`, after the store's commit.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // A writer killed with -9 never says goodbye: its partitions move
            // to the survivors after this long.
            .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
            // Heartbeats well inside the session, as Kafka recommends.
            .set(
                "heartbeat.interval.ms",
                (cfg.session_timeout_ms / 4).max(100).to_string(),
            )
            .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS)
            .create_with_context(context)
            .map_err(|e| LogError::Kafka(format!("cannot create the Kafka consumer: {e}")))?;
        consumer
            .subscribe(&[&cfg.topic])
            .map_err(|e| LogError::Kafka(format!("cannot subscribe to {}: {e}", cfg.topic)))?;
        let dead_letters: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &cfg.brokers)
            .set("client.id", "seckill-order-writer-dlq")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                DEAD_LETTER_TIMEOUT.as_millis().to_string(),
            )
            .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS)
            .create()
            .map_err(|e| LogError::Kafka(format!("cannot create the dead-letter producer: {e}")))?;
        Ok(KafkaSource {
            consumer: Arc::new(consumer),
            dead_letters,
            topic: cfg.topic,
            dead_letter_topic: cfg.dead_letter_topic,
        })
    }

    /// Waits up to `wait_ms` for at least one record, then returns up to
    /// `rows_max` records that are already fetched, without waiting more.
    /// An empty result means nothing arrived in time. Errors are the
    /// client's (for example the topic vanished); retrying later may help.
    pub async fn poll(&mut self, rows_max: usize, wait_ms: u64) -> Result<Vec<Sourced>, LogError> {
        let mut out = Vec::new();
        if rows_max == 0 {
            return Ok(out);
        }
        match tokio::time::timeout(Duration::from_millis(wait_ms), self.consumer.recv()).await {
            Err(_) => return Ok(out),
            Ok(Err(e)) => {
                return Err(LogError::Kafka(format!(
                    "cannot consume {}: {e}",
                    self.topic
                )))
            }
            Ok(Ok(m)) => out.push(sourced(&m)),
        }
        while out.len() < rows_max {
            // A zero timeout still polls the receive once: it takes what is
            // already fetched and never waits.
            match tokio::time::timeout(Duration::ZERO, self.consumer.recv()).await {
                Ok(Ok(m)) => out.push(sourced(&m)),
                // Returned on the next poll, if it persists, once this batch is handled.
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "kafka consume error after a partial batch");
                    break;
                }
                Err(_) => break,
            }
        }
        Ok(out)
    }

    /// Partitions of the topic this member owns now (sorted); empty before
    /// the group's first assignment and during an eager rebalance.
    pub fn assigned_partitions(&self) -> Result<Vec<i32>, LogError> {
        let assigned = self
            .consumer
            .assignment()
            .map_err(|e| LogError::Kafka(format!("cannot read the assignment: {e}")))?;
        let mut partitions: Vec<i32> = assigned
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        partitions.sort_unstable();
        Ok(partitions)
    }

    /// Commits, synchronously, the offset after the highest record of each
    /// partition in `through`. Call it only after those records (and every
    /// earlier one of their partitions) are committed to the store.
    ///
    /// Partitions this member no longer owns (a rebalance moved them) are
    /// skipped, and a commit the group refuses because of a rebalance is
    /// logged and answered `Ok`: the new owner reads those records again and
    /// the store absorbs them, so nothing is lost by not committing.
    pub async fn commit(&mut self, through: &[Sourced]) -> Result<(), LogError> {
        let mut highest: BTreeMap<i32, i64> = BTreeMap::new();
        for s in through {
            let top = highest.entry(s.partition).or_insert(s.offset);
            *top = (*top).max(s.offset);
        }
        if highest.is_empty() {
            return Ok(());
        }
        let assigned = self
            .consumer
            .assignment()
            .map_err(|e| LogError::Kafka(format!("cannot read the assignment: {e}")))?;
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in highest {
            if assigned.find_partition(&self.topic, partition).is_none() {
                tracing::info!(
                    partition,
                    offset,
                    "not committing a partition this writer no longer owns"
                );
                continue;
            }
            tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset + 1))
                .map_err(|e| LogError::Kafka(format!("bad offset {offset}: {e}")))?;
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        let consumer = Arc::clone(&self.consumer);
        // A synchronous commit blocks its thread: keep it off the runtime's.
        let result = tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| LogError::Kafka(format!("commit task failed: {e}")))?;
        match result {
            Ok(()) => Ok(()),
            Err(e) if lost_by_rebalance(&e) => {
                tracing::warn!(error = %e, "offset commit refused during a rebalance; records will be redelivered");
                Ok(())
            }
            Err(e) => Err(LogError::Kafka(format!("cannot commit offsets: {e}"))),
        }
    }

    /// Writes the record's payload (the raw bytes for poison, the JSON for a
    /// valid record the store refused) to the dead-letter topic with a
    /// reason header and a `<topic>/<partition>/<offset>` source header, and
    /// waits for the acknowledgement. Only after `Ok` may the record's offset
    /// be committed; a retry after a failure may leave a duplicate dead
    /// letter, never a lost one.
    pub async fn dead_letter(&self, s: &Sourced, reason: &str) -> Result<(), LogError> {
        let (payload, key) = match &s.record {
            Ok(record) => (
                serde_json::to_vec(record)
                    .map_err(|e| LogError::Kafka(format!("cannot encode the record: {e}")))?,
                Some(record.campaign_id().as_str().to_string()),
            ),
            Err(poison) => (poison.payload.clone(), None),
        };
        let source = format!("{}/{}/{}", self.topic, s.partition, s.offset);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: DEAD_LETTER_REASON_HEADER,
                value: Some(reason),
            })
            .insert(Header {
                key: DEAD_LETTER_SOURCE_HEADER,
                value: Some(&source),
            });
        let mut letter = FutureRecord::to(&self.dead_letter_topic)
            .payload(&payload)
            .headers(headers);
        if let Some(key) = &key {
            letter = letter.key(key);
        }
        // librdkafka's message timeout bounds the wait: no timer needed here.
        self.dead_letters
            .send(letter, Duration::ZERO)
            .await
            .map(|_| ())
            .map_err(|(e, _)| LogError::Kafka(format!("cannot dead-letter {source}: {e}")))
    }

    /// Leaves the group (so its partitions move at once, not after the
    /// session timeout) on a blocking thread, and drops the clients.
    pub async fn close(self) {
        let KafkaSource {
            consumer,
            dead_letters,
            ..
        } = self;
        let closing = tokio::task::spawn_blocking(move || {
            drop(consumer);
            drop(dead_letters);
        });
        if let Err(e) = closing.await {
            tracing::warn!(error = %e, "closing the kafka consumer failed");
        }
    }
}

fn sourced(m: &BorrowedMessage<'_>) -> Sourced {
    let record = match m.payload() {
        None => Err(Poison {
            payload: Vec::new(),
            reason: "empty payload".to_string(),
        }),
        Some(bytes) => serde_json::from_slice::<LogRecord>(bytes).map_err(|e| Poison {
            payload: bytes.to_vec(),
            reason: format!("not a log record: {e}"),
        }),
    };
    Sourced {
        partition: m.partition(),
        offset: m.offset(),
        record,
    }
}

/// Commit refusals that only mean "this member's generation is over".
fn lost_by_rebalance(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::AssignmentLost
                | RDKafkaErrorCode::StaleMemberEpoch
        )
    )
}
