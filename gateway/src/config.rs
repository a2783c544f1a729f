//! Settings of `seckill serve`, with their defaults and bounds.

use order_store::WriterConfig;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Limits on what clients may make the server hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub body_bytes_max: usize,
    /// Time a client has to send a request's headers.
    pub header_read_timeout_ms: u64,
    /// Open connections at most; the accept loop waits for a free slot.
    pub connections_max: usize,
    /// Grabs between admission and answer at most; past it, 503 `overloaded`.
    pub grabs_inflight_max: usize,
    /// Time in-flight requests get to finish after a shutdown signal.
    pub shutdown_grace_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes_max: 4 * 1024,
            header_read_timeout_ms: 5_000,
            connections_max: 20_000,
            grabs_inflight_max: 20_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// Everything the embedded default needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Create the demo campaign at start-up when it does not exist yet.
    pub demo: bool,
    pub limits: Limits,
    pub writer: WriterConfig,
    /// HS256 secret for buyer tokens; generated and kept in the data
    /// directory when absent, so tokens survive a restart.
    pub jwt_secret: Option<String>,
    /// The operator credential; generated per start when absent.
    pub admin_token: Option<String>,
}
