//! Backends of the `SharedState` port: single-use marks every gateway must
//! see the same (quiz tokens now, refresh-token families later).
//!
//! - `MemSharedState`: one process (the embedded default); bounded.
//! - `RedisSharedState`: many gateways; one `SET NX PX` per mark, atomic on
//!   a single server and on Redis Cluster (one key, one slot).
//!
//! `contract.rs` is the suite every backend must pass
//! (`shared_state_contract_tests!`).

pub mod contract;
mod mem;
mod redis_state;

pub use mem::MemSharedState;
pub use redis_state::RedisSharedState;
