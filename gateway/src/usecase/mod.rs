//! The use cases: business operations as plain functions over the app's
//! ports, returning typed results (`crate::api`) and errors
//! (`crate::error::ApiError`: a stable code; its HTTP status is decided in
//! `crate::error` only). HTTP handlers, the CLI (through the admin API),
//! the background workers and start-up call them; none of those holds a
//! business rule of its own.

pub mod campaigns;
pub mod expiry;
pub mod payment;
pub mod queue;
pub mod reconcile;
