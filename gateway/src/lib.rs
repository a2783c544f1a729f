//! The HTTP edge of the seckill engine and its wiring: config, auth,
//! routes, the admission funnel's I/O side, and orderly shutdown.
//!
//! Only this crate knows HTTP; the domain lives in `engine`.

pub mod admin_cli;
pub mod api;
pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
mod config_resolve;
pub mod error;
pub mod funnel;
pub mod handlers;
pub mod hot;
pub mod identity;
pub mod limits;
pub mod metered;
pub mod metrics;
pub mod orders;
pub mod pages;
pub mod production;
pub mod quiz;
pub mod reconcile;
pub mod registry;
pub mod routes;
pub mod server;
pub mod shed;
pub mod usecase;
pub mod web;
