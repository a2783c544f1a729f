//! The order store and the paced writer that fills it from the order log.
//!
//! Code map:
//! - [`sqlite`]: [`SqliteStore`], the embedded `OrderStore` on one SQLite
//!   file in WAL mode; the final guard (unique orders, sold <= stock).
//! - [`pacer`]: [`Pacer`], the token bucket that caps rows per second.
//! - [`writer`]: [`FileWriter`], which moves records from the embedded file
//!   log into a store in paced batches, each committed with its log position.
//!
//! **Architecture Invariant:** the checkpoint of a log source only moves in
//! the same transaction as the rows it covers, so a crash at any point leads
//! to a replay (absorbed as duplicates), never to a lost order.

pub mod pacer;
pub mod sqlite;
pub mod writer;

pub use pacer::Pacer;
pub use sqlite::SqliteStore;
pub use writer::{
    reader_from_checkpoint, FileWriter, OnCommit, WriterConfig, WriterError, WriterStats,
    FILE_LOG_SOURCE,
};
