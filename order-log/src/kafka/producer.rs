//! `KafkaLog`: the production `OrderLog`, an idempotent Kafka producer.
//!
//! An append waits for the broker's acknowledgement (acks=all) at most
//! `delivery_wait_ms`. When that wait runs out the append answers
//! `AppendError::Unknown` at once, so a buyer is never left hanging, and a
//! spawned task keeps waiting for librdkafka's final delivery report, which
//! comes within `message.timeout.ms`; it hands the final word to the
//! `on_settled` callback, so the gateway can count the order or return its
//! unit.
//!
//! Retries are librdkafka's job: with `enable.idempotence=true` it retries a
//! produce request until `message.timeout.ms` without duplicating or
//! reordering records, so this module never resends a record itself.

use super::admin::{ensure_topics, TopicSpec};
use super::outcome::{self, Settled};
use super::PARTITIONS_DEFAULT;
use crate::LogError;
use async_trait::async_trait;
use engine::ports::{AppendError, LogRecord, OrderLog};
use rdkafka::config::ClientConfig;
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Receives the final outcome of every append that answered
/// `AppendError::Unknown`, exactly once per such append. It runs on a tokio
/// worker, possibly before the `append` call has returned to its caller, so
/// it must not assume an order between the two; it must be quick (no
/// blocking I/O).
pub type OnSettled = Arc<dyn Fn(LogRecord, Settled) + Send + Sync>;

/// Extra time the settling task waits past `message.timeout.ms`, for
/// librdkafka's timeout scan and the report's trip to the task.
const SETTLE_MARGIN: Duration = Duration::from_secs(5);
/// librdkafka's `reconnect.backoff.max.ms` for the log's clients.
pub(crate) const RECONNECT_BACKOFF_MAX_MS: &str = "1000";
/// How long `connect` may take to reach the topic's brokers.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how `KafkaLog` produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaLogConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    pub topic: String,
    /// Partitions of the topic when this log creates it; an existing topic
    /// keeps its own count.
    pub partitions: i32,
    /// Replicas of the topic when this log creates it (1 for a single broker).
    pub replication_factor: i32,
    /// How long an append waits for its acknowledgement before it answers
    /// `Unknown` and leaves the rest to `on_settled`.
    pub delivery_wait_ms: u64,
    /// librdkafka's `message.timeout.ms`: how long it retries a record
    /// before it gives up with a delivery error.
    pub message_timeout_ms: u64,
    /// librdkafka's `queue.buffering.max.messages`: records queued or in
    /// flight; past it an append is `Overloaded` at once.
    pub queue_messages_max: u32,
    /// librdkafka's `linger.ms`: how long a record waits for others to join
    /// its batch. A few ms batch a crowd of grabs into few requests.
    pub linger_ms: u64,
}

impl KafkaLogConfig {
    /// The defaults: 8 partitions, replication 1, a 2 s delivery wait, a
    /// 20 s message timeout, 100,000 queued records, 5 ms linger.
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: topic.into(),
            partitions: PARTITIONS_DEFAULT,
            replication_factor: 1,
            delivery_wait_ms: 2_000,
            message_timeout_ms: 20_000,
            queue_messages_max: 100_000,
            linger_ms: 5,
        }
    }

    fn validate(&self) -> Result<(), LogError> {
        if self.brokers.is_empty() {
            return Err(LogError::Config("brokers must not be empty"));
        }
        if self.delivery_wait_ms == 0 || self.message_timeout_ms == 0 {
            // A message timeout of 0 means "retry forever" to librdkafka,
            // which would leave the settling task unbounded.
            return Err(LogError::Config(
                "delivery_wait_ms and message_timeout_ms must be at least 1",
            ));
        }
        if self.linger_ms >= self.message_timeout_ms {
            return Err(LogError::Config(
                "linger_ms must be less than message_timeout_ms",
            ));
        }
        if self.queue_messages_max == 0 {
            return Err(LogError::Config("queue_messages_max must be at least 1"));
        }
        Ok(())
    }
}

/// The Kafka order log. Shared as `Arc<KafkaLog>`.
///
/// An `append` must run to completion (the gateway runs grabs in tasks of
/// their own): a cancelled append drops its delivery report, and with it the
/// `on_settled` call it would have made.
pub struct KafkaLog {
    producer: FutureProducer,
    topic: String,
    delivery_wait: Duration,
    /// How long a settling task waits for the final report.
    settle_wait: Duration,
    on_settled: OnSettled,
    /// Appends that answered `Unknown` and still wait for their final word.
    settling: Arc<AtomicU64>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("topic", &self.topic)
            .field("delivery_wait", &self.delivery_wait)
            .field("settling", &self.settling())
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Creates the idempotent producer and the topic if missing, and reads
    /// the topic's metadata. Fails when the broker cannot be reached.
    ///
    /// The first appends within about 0.5 s of `connect` wait for the
    /// producer id (librdkafka's timer), so they may take that much longer.
    pub async fn connect(cfg: KafkaLogConfig, on_settled: OnSettled) -> Result<KafkaLog, LogError> {
        cfg.validate()?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &cfg.brokers)
            .set("client.id", "seckill-order-log")
            // Idempotence makes librdkafka's own retries safe: no duplicates,
            // no reordering within a partition. It implies acks=all; we set
            // it anyway so the intent is visible.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
            .set(
                "queue.buffering.max.messages",
                cfg.queue_messages_max.to_string(),
            )
            .set("linger.ms", cfg.linger_ms.to_string())
            // After a broker restart, reconnect within a second rather than
            // librdkafka's default backoff of up to 10 s: during a sale every
            // second without a broker turns grabs into Unknown.
            .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS)
            .create()
            .map_err(|e| LogError::Kafka(format!("cannot create the Kafka producer: {e}")))?;
        // The producer first: librdkafka asks for its idempotent producer id
        // 500 ms after creation (and every 500 ms until a broker is up), so
        // the topic work below overlaps that wait.
        ensure_topics(
            &cfg.brokers,
            &[TopicSpec {
                name: &cfg.topic,
                partitions: cfg.partitions,
                replication_factor: cfg.replication_factor,
            }],
        )
        .await?;
        warm_up(&producer, &cfg.topic).await?;
        Ok(KafkaLog {
            producer,
            topic: cfg.topic,
            delivery_wait: Duration::from_millis(cfg.delivery_wait_ms),
            settle_wait: Duration::from_millis(cfg.message_timeout_ms) + SETTLE_MARGIN,
            on_settled,
            settling: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Appends that answered `Unknown` and still wait for their final word.
    pub fn settling(&self) -> u64 {
        self.settling.load(Ordering::Relaxed)
    }

    /// librdkafka's fatal error, if the producer has one (for example an
    /// idempotence sequence it cannot repair). A fatal producer refuses
    /// every later append with `Failed`; only a new `KafkaLog` recovers.
    pub fn fatal_error(&self) -> Option<String> {
        self.producer
            .client()
            .fatal_error()
            .map(|(code, why)| format!("{code}: {why}"))
    }

    /// Waits up to `timeout` until every queued record has its delivery
    /// report, for a graceful shutdown. Settling tasks still call
    /// `on_settled` afterwards, as long as the runtime lives.
    pub async fn flush(&self, timeout: Duration) -> Result<(), LogError> {
        let producer = self.producer.clone();
        // librdkafka's flush blocks its thread: keep it off the runtime's.
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| LogError::Kafka(format!("flush task failed: {e}")))?
            .map_err(|e| LogError::Kafka(format!("flush did not finish: {e}")))
    }

    /// Hands the rest of the wait to a task that reports the final word.
    fn settle_later(&self, record: &LogRecord, delivery: DeliveryFuture) {
        let on_settled = Arc::clone(&self.on_settled);
        let settling = Arc::clone(&self.settling);
        let record = record.clone();
        let wait = self.settle_wait;
        settling.fetch_add(1, Ordering::Relaxed);
        // Bounded: each task's record sits in librdkafka's bounded queue
        // until its report, and the timeout caps the task's life anyway.
        tokio::spawn(async move {
            let settled = match tokio::time::timeout(wait, delivery).await {
                Ok(report) => settle(report),
                Err(_) => {
                    Settled::Unknown(format!("no delivery report within {} ms", wait.as_millis()))
                }
            };
            settling.fetch_sub(1, Ordering::Relaxed);
            on_settled(record, settled);
        });
    }
}

/// Connects to the topic's leaders before the first append, so the first
/// grab after start does not pay for the connection and the metadata.
async fn warm_up(producer: &FutureProducer, topic: &str) -> Result<(), LogError> {
    let producer = producer.clone();
    let topic = topic.to_string();
    // Metadata fetches block their thread.
    tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&topic), WARM_UP_TIMEOUT)
            .map(|_| ())
            .map_err(|e| LogError::Kafka(format!("cannot read metadata of {topic}: {e}")))
    })
    .await
    .map_err(|e| LogError::Kafka(format!("warm-up task failed: {e}")))?
}

/// Turns librdkafka's delivery report into the final word. The outer error
/// is the channel's: the producer went away without reporting.
fn settle<E>(report: Result<OwnedDeliveryResult, E>) -> Settled {
    match report {
        Ok(Ok(_delivery)) => Settled::Delivered,
        Ok(Err((err, _message))) => outcome::delivery_error(&err),
        Err(_) => Settled::Unknown("the producer closed before reporting".to_string()),
    }
}

#[async_trait]
impl OrderLog for KafkaLog {
    fn unhealthy(&self) -> Option<String> {
        self.fatal_error()
            .map(|why| format!("kafka producer is broken: {why}"))
    }

    fn unsettled(&self) -> u64 {
        self.settling()
    }

    async fn append(&self, record: &LogRecord) -> Result<(), AppendError> {
        let payload = serde_json::to_vec(record)
            .map_err(|e| AppendError::Failed(format!("cannot encode the record: {e}")))?;
        let key = record.campaign_id().as_str();
        let mut delivery = self
            .producer
            .send_result(FutureRecord::to(&self.topic).key(key).payload(&payload))
            .map_err(|(err, _)| outcome::enqueue_error(&err))?;
        match tokio::time::timeout(self.delivery_wait, &mut delivery).await {
            Ok(report) => {
                let settled = settle(report);
                if let Settled::Unknown(_) = settled {
                    // Every Unknown gets its final word through the callback,
                    // also when it is already final.
                    (self.on_settled)(record.clone(), settled.clone());
                }
                outcome::append_result(&settled)
            }
            Err(_) => {
                self.settle_later(record, delivery);
                Err(AppendError::Unknown(format!(
                    "no acknowledgement within {} ms; the final outcome goes to on_settled",
                    self.delivery_wait.as_millis()
                )))
            }
        }
    }
}
