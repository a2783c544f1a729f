//! Atomic stock pre-deduction: the backends of the `StockLedger` port.
//!
//! `MemLedger` is the embedded default (one process). Every backend must pass
//! the same contract suite in [`contract`], which is public so that each
//! backend's tests (and later crates' backends) run it unchanged.

pub mod contract;
mod mem;

pub use mem::{MemLedger, MemLedgerConfig};
