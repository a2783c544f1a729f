//! `FileLog`: the embedded durable order log, one append-only local file.
//!
//! The gateway answers a grab "queued" only after its record is durable, so
//! every append waits for an fsync. To make thousands of appends per second
//! affordable, one dedicated thread owns the file and commits in groups: it
//! takes whatever is queued, writes it with one `write_all`, calls
//! `sync_data` once and then answers every waiter of that batch.
//!
//! Code map:
//! - [`frame`]: the on-disk record format and its size limit.
//! - `recover`: validation of an existing file at open, torn-tail truncation.
//! - `writer`: the group-commit thread and its failure semantics.
//! - `log`: [`FileLog`], the handle callers share as `Arc<FileLog>`.
//! - `reader`: [`FileLogReader`], which follows the durable end.
//! - [`kafka`]: the production backend, [`KafkaLog`] (producer) and
//!   [`KafkaSource`] (consumer group), on a Kafka-API broker.
//!
//! **Architecture Invariant:** bytes past [`FileLog::durable_end`] are never
//! handed to anyone: they may be half-written. Readers stop at the durable end
//! and only an fsync moves it.
//!
//! **Architecture Invariant:** one process, one `FileLog` per file. Nothing
//! locks the file against a second writer (std offers no file lock at our
//! minimum Rust version and `unsafe` is forbidden); the gateway's wiring must
//! guarantee it.

pub mod frame;
pub mod kafka;
mod log;
mod reader;
mod recover;
mod writer;

pub use frame::{FRAME_HEADER_LEN, RECORD_PAYLOAD_LEN_MAX};
pub use kafka::{
    KafkaLog, KafkaLogConfig, KafkaSource, KafkaSourceConfig, OnSettled, Poison, Settled, Sourced,
};
pub use log::FileLog;
pub use reader::FileLogReader;

use engine::ports::LogRecord;
use std::path::PathBuf;

/// Default bound of the append queue, in records.
pub const QUEUE_CAPACITY_DEFAULT: usize = 65_536;
/// Default largest number of records written and fsynced as one batch.
pub const BATCH_RECORDS_MAX_DEFAULT: usize = 4_096;

/// Where the log lives and how much it may buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLogConfig {
    /// The log file; its parent directory is created if missing.
    pub path: PathBuf,
    /// Appends waiting for the log thread; past it an append is refused with
    /// `AppendError::Overloaded` at once instead of waiting (shed load).
    pub queue_capacity: usize,
    /// Most records one write + fsync may carry.
    pub batch_records_max: usize,
}

impl FileLogConfig {
    /// The defaults: a 65,536-record queue and 4,096-record batches.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            queue_capacity: QUEUE_CAPACITY_DEFAULT,
            batch_records_max: BATCH_RECORDS_MAX_DEFAULT,
        }
    }
}

/// Why the log could not be opened or read. Appends report through
/// [`engine::ports::AppendError`] instead, whose variants say whether the
/// record may be in the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The operating system refused an operation; retrying may help.
    #[error("order log I/O error: {0}")]
    Io(String),
    /// A record that is not a torn tail fails validation: acknowledged data
    /// may be damaged, so nothing is dropped silently and an operator must
    /// look at the file.
    #[error("order log is corrupt at byte {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    /// A reader was asked to start past the durable end (for example a
    /// checkpoint that belongs to another log file).
    #[error("offset {offset} is past the durable end {durable_end} of the order log")]
    OffsetPastEnd { offset: u64, durable_end: u64 },
    /// The configuration cannot work.
    #[error("invalid order log config: {0}")]
    Config(&'static str),
    /// The Kafka client or broker refused an operation (unreachable broker,
    /// failed commit, unacknowledged dead letter); retrying later may help.
    #[error("kafka order log: {0}")]
    Kafka(String),
}

impl LogError {
    pub(crate) fn io(what: &str, path: &std::path::Path, err: std::io::Error) -> Self {
        LogError::Io(format!("{what} {}: {err}", path.display()))
    }
}

/// A record together with where it ends in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positioned {
    /// Byte offset just past this record: a record boundary, usable as the
    /// checkpoint from which a later reader resumes after this record.
    pub end: u64,
    pub record: LogRecord,
}

#[doc(hidden)]
pub mod test_support {
    //! Sample records for this crate's unit and integration tests; tiny, so
    //! it is compiled always rather than written twice.

    use engine::ports::LogRecord;
    use engine::{CampaignId, OrderId, OrderRecord, UserId};

    /// A distinct, valid order record for index `i`.
    pub fn record(i: u64) -> LogRecord {
        let campaign_id = CampaignId::parse("c1").expect("valid campaign id");
        let user_id = UserId::parse(&format!("user-{i}")).expect("valid user id");
        LogRecord::Order(OrderRecord {
            order_id: OrderId::derive(&campaign_id, &user_id, 1),
            campaign_id,
            user_id,
            n: 1,
            price_cents: 100,
            created_at_ms: 1_700_000_000_000 + i,
            pay_by_ms: 1_700_000_900_000 + i,
        })
    }
}
