//! The flash-sale domain: campaigns, the admission funnel as pure decisions,
//! the order state machine, deterministic order ids and the ports (traits)
//! that the ledger, order log and order store backends implement.
//!
//! Nothing in this crate performs I/O or reads the wall clock: time is always
//! passed in as Unix milliseconds, so every decision can be tested exhaustively.

pub mod admission;
pub mod campaign;
pub mod ids;
pub mod order;
pub mod ports;
pub mod reconcile;
pub mod room;

pub use admission::{admit, Rejection};
pub use campaign::{Campaign, CampaignSpec, CampaignState, Control, SpecError};
pub use ids::{CampaignId, IdError, OrderId, UserId};
pub use order::{Order, OrderRecord, OrderStatus, TransitionError};
