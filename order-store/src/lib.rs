//! The order store and the paced writer that fills it from the order log.
//!
//! Code map:
//! - [`sqlite`]: [`SqliteStore`], the embedded `OrderStore` on one SQLite
//!   file in WAL mode; the final guard (unique orders, sold <= stock, no
//!   user past the per-user limit in active orders).
//! - [`mysql`]: [`MysqlStore`], the production `OrderStore` on MySQL 8 or
//!   MariaDB (InnoDB), safe for several writers at once.
//! - `sql` (private): what both SQL stores share, so their rules cannot drift.
//! - [`contract`]: the behaviour every `OrderStore` must show, as async
//!   checks plus [`store_contract_tests!`] that runs them for one backend.
//! - [`pacer`]: [`Pacer`], the token bucket that caps rows per second.
//! - [`writer`]: [`FileWriter`], which moves records from the embedded file
//!   log into a store in paced batches, each committed with its log position.
//! - [`kafka_writer`]: [`KafkaWriter`], the production writer: a consumer
//!   group member that commits offsets only after the store's transaction
//!   and dead-letters records refused `tries_max` times.
//!
//! **Architecture Invariant:** the checkpoint of a log source only moves in
//! the same transaction as the rows it covers, so a crash at any point leads
//! to a replay (absorbed as duplicates), never to a lost order.

pub mod contract;
pub mod kafka_writer;
pub mod mysql;
pub mod pacer;
mod sql;
pub mod sqlite;
pub mod writer;

pub use kafka_writer::{KafkaWriter, KafkaWriterConfig, KafkaWriterError, KafkaWriterStats};
pub use mysql::MysqlStore;
pub use pacer::Pacer;
pub use sqlite::SqliteStore;
pub use writer::{
    reader_from_checkpoint, FileWriter, OnCommit, WriterConfig, WriterError, WriterStats,
    FILE_LOG_SOURCE,
};
