//! How far the writers' consumer group is behind the topic: the records
//! that are durable in the log but not yet committed to the store. The
//! reconciliation refuses to repair while this is not zero, because such
//! records would look like holds without an order.

use crate::LogError;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

/// How long each metadata or offset look-up may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Records of `topic` that `group` has not committed, over all partitions.
/// Reads metadata and offsets only; it never joins the group.
pub async fn group_lag(brokers: &str, topic: &str, group: &str) -> Result<u64, LogError> {
    let (brokers, topic, group) = (brokers.to_string(), topic.to_string(), group.to_string());
    // The client's look-ups block; keep them off the async runtime.
    tokio::task::spawn_blocking(move || lag_blocking(&brokers, &topic, &group))
        .await
        .map_err(|e| LogError::Kafka(format!("lag look-up task failed: {e}")))?
}

fn lag_blocking(brokers: &str, topic: &str, group: &str) -> Result<u64, LogError> {
    let kafka = |what: &str, e: rdkafka::error::KafkaError| LogError::Kafka(format!("{what}: {e}"));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| kafka("cannot create a consumer", e))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), LOOKUP_TIMEOUT)
        .map_err(|e| kafka("cannot read the topic's metadata", e))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition(topic, *p);
    }
    let committed = consumer
        .committed_offsets(tpl, LOOKUP_TIMEOUT)
        .map_err(|e| kafka("cannot read committed offsets", e))?;
    let mut lag = 0u64;
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, LOOKUP_TIMEOUT)
            .map_err(|e| kafka("cannot read watermarks", e))?;
        let done = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            // Nothing committed yet: everything still in the log is pending.
            _ => low,
        };
        lag += u64::try_from(high - done.max(low)).unwrap_or(0);
    }
    Ok(lag)
}
