//! Topic creation: both sides make sure their topics exist before use, so the
//! order writers may start before any gateway and the other way round.

use crate::LogError;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// How long topic creation may take, broker look-up included.
const CREATE_TIMEOUT: Duration = Duration::from_secs(10);

/// One topic to create when missing.
#[derive(Debug, Clone, Copy)]
pub struct TopicSpec<'a> {
    pub name: &'a str,
    pub partitions: i32,
    pub replication_factor: i32,
}

/// Creates each topic unless it exists. An existing topic is left as it is,
/// whatever its partition count: the first creator wins.
pub async fn ensure_topics(brokers: &str, topics: &[TopicSpec<'_>]) -> Result<(), LogError> {
    for t in topics {
        if t.name.is_empty() {
            return Err(LogError::Config("topic names must not be empty"));
        }
        if t.partitions < 1 || t.replication_factor < 1 {
            return Err(LogError::Config(
                "partitions and replication factor must be at least 1",
            ));
        }
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "seckill-order-log-admin")
        .create()
        .map_err(|e| LogError::Kafka(format!("cannot create the Kafka admin client: {e}")))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t.name,
                t.partitions,
                TopicReplication::Fixed(t.replication_factor),
            )
        })
        .collect();
    let opts = AdminOptions::new()
        .request_timeout(Some(CREATE_TIMEOUT))
        .operation_timeout(Some(CREATE_TIMEOUT));
    let results = admin.create_topics(&new, &opts).await.map_err(|e| {
        LogError::Kafka(format!(
            "cannot create topics at {brokers} (is the broker up?): {e}"
        ))
    })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(LogError::Kafka(format!(
                    "cannot create topic {name} at {brokers}: {code}"
                )))
            }
        }
    }
    Ok(())
}
