//! What the SQL stores ([`SqliteStore`](crate::SqliteStore) and
//! [`MysqlStore`](crate::MysqlStore)) share: row conversions and the error
//! mapping ([`rows`]), the backend-neutral steps of a batch ([`batch`]) and
//! of a status change ([`status`]).
//!
//! Only the code that talks to one driver lives in the backend modules; the
//! rules (what a duplicate is, when a batch is refused, which status moves
//! are allowed) are written once here, so the backends cannot drift apart.

pub(crate) mod batch;
pub(crate) mod rows;
pub(crate) mod status;
pub(crate) mod store_impl;
#[cfg(test)]
pub(crate) mod testing;
