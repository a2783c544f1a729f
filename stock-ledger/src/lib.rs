//! Atomic stock pre-deduction: the backends of the `StockLedger` port.
//!
//! `MemLedger` is the embedded default (one process); `RedisLedger` is the
//! production backend shared by many gateways (single Redis or Redis
//! Cluster). Every backend must pass the same contract suite in
//! [`contract`], which is public so each backend's tests run it unchanged.

pub mod contract;
mod mem;
mod redis_ledger;

pub use mem::{MemLedger, MemLedgerConfig};
/// The Lua scripts of `RedisLedger`, for tests that need their SHA1
/// (`redis::Script::new(TEXT).get_hash()`) to recognise them on the wire.
#[doc(hidden)]
pub use redis_ledger::scripts;
pub use redis_ledger::{RedisClusterConn, RedisConn, RedisLedger, RedisLedgerConfig, BUCKETS_MAX};
