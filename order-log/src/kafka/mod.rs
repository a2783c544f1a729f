//! The production order log on Kafka: [`KafkaLog`] appends, [`KafkaSource`]
//! reads in a consumer group.
//!
//! Both use `rdkafka` with librdkafka built from source (bundled), never the
//! system's library: old librdkafka releases fail the handshake with our
//! broker. Records are the JSON of [`engine::ports::LogRecord`], keyed by
//! campaign id, so one campaign's orders stay in order in one partition.
//!
//! Code map:
//! - `admin`: topic creation shared by both sides.
//! - `outcome`: what a librdkafka error says about whether a record was
//!   written; the one place that decides `Failed` against `Unknown`.
//! - `producer`: [`KafkaLog`], the `OrderLog` the gateway appends to.
//! - `consumer`: [`KafkaSource`], what the order writers poll and commit.
//!
//! **Architecture Invariant:** an append is called `Failed` only when
//! librdkafka's own rules say the record was not persisted. Everything that
//! may have reached the broker (a message timeout while in flight, an
//! in-flight purge, a fatal idempotence error, a missing delivery report) is
//! `Unknown`, because a unit released for a record that is in the log oversells.

mod admin;
pub use admin::{ensure_topics, TopicSpec};
mod consumer;
mod outcome;
mod producer;

mod lag;
pub use consumer::{KafkaSource, KafkaSourceConfig, Poison, Sourced, SESSION_TIMEOUT_MS_DEFAULT};
pub use lag::group_lag;
pub use outcome::Settled;
pub use producer::{KafkaLog, KafkaLogConfig, OnSettled};

/// Default number of partitions of a topic this crate creates.
pub const PARTITIONS_DEFAULT: i32 = 8;
/// Header that carries the reason on a dead-lettered record.
pub const DEAD_LETTER_REASON_HEADER: &str = "seckill-dlq-reason";
/// Header that says where a dead-lettered record came from:
/// `<topic>/<partition>/<offset>`.
pub const DEAD_LETTER_SOURCE_HEADER: &str = "seckill-dlq-source";
