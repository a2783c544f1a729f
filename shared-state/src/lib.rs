//! Backends of the `SharedState` port: state every gateway must see the
//! same: single-use marks (quiz tokens), GCRA rate buckets (campaign-wide
//! limits) and compare-and-set values (refresh-token families).
//!
//! - `MemSharedState`: one process (the embedded default); bounded.
//! - `RedisSharedState`: many gateways; one key per entry and one command or
//!   Lua script per call, atomic on a single server and on Redis Cluster (one
//!   key, one slot).
//!
//! The same crate holds the backends of the `RoomStore` port (the waiting
//! room: `MemRoomStore`, `RedisRoomStore`), checked by `room_contract.rs`
//! (`room_contract_tests!`).
//!
//! `contract.rs` is the suite every backend must pass
//! (`shared_state_contract_tests!`).

pub mod contract;
mod gcra;
mod mem;
mod redis_state;
pub mod room_contract;
mod room_mem;
mod room_redis;

pub use mem::MemSharedState;
pub use redis_state::RedisSharedState;
pub use room_mem::MemRoomStore;
pub use room_redis::RedisRoomStore;
