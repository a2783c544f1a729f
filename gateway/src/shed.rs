//! Requests and connections the server sheds to protect itself, counted by
//! reason for `/metrics` (`seckill_shed_total{reason=...}`).
//!
//! The counters are process-wide: the connection layer (server.rs) and
//! body reading (web.rs) have no `App` at hand, and one process serves one
//! gateway.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why something was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A request head not complete within `header_read_timeout_ms`.
    HeaderTimeout,
    /// A request head over `head_bytes_max` or `headers_max` (431).
    HeadTooLarge,
    /// A keep-alive connection with no request for `idle_timeout_ms`.
    IdleTimeout,
    /// A body not complete within `body_read_timeout_ms` (408).
    BodyTimeout,
    /// A body over `body_bytes_max` (413).
    BodyTooLarge,
    /// A request not answered within `request_timeout_ms` (503).
    RequestTimeout,
    /// A connection that had to wait for a slot under `connections_max`.
    ConnectionsMax,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::HeaderTimeout,
        Reason::HeadTooLarge,
        Reason::IdleTimeout,
        Reason::BodyTimeout,
        Reason::BodyTooLarge,
        Reason::RequestTimeout,
        Reason::ConnectionsMax,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HeaderTimeout => "header_timeout",
            Reason::HeadTooLarge => "head_too_large",
            Reason::IdleTimeout => "idle_timeout",
            Reason::BodyTimeout => "body_timeout",
            Reason::BodyTooLarge => "body_too_large",
            Reason::RequestTimeout => "request_timeout",
            Reason::ConnectionsMax => "connections_max",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

static COUNTS: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];

/// Counts one shed.
pub fn count(reason: Reason) {
    COUNTS[reason.index()].fetch_add(1, Ordering::Relaxed);
}

/// How many were shed for `reason` since start.
pub fn total(reason: Reason) -> u64 {
    COUNTS[reason.index()].load(Ordering::Relaxed)
}

/// Adds `seckill_shed_total{reason}` to a scrape.
pub fn metrics(scrape: &crate::metrics::Scrape) {
    let shed = scrape.counter(
        "seckill_shed_total",
        "Requests and connections shed to protect the server, by reason.",
        &["reason"],
    );
    for r in Reason::ALL {
        shed.with_label_values(&[r.as_str()]).inc_by(total(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter_and_line() {
        let before: Vec<u64> = Reason::ALL.iter().map(|r| total(*r)).collect();
        count(Reason::IdleTimeout);
        for (r, b) in Reason::ALL.iter().zip(before) {
            let want = b + u64::from(*r == Reason::IdleTimeout);
            assert!(total(*r) >= want, "{r:?}");
        }
        let scrape = crate::metrics::Scrape::new();
        metrics(&scrape);
        let text = String::from_utf8(scrape.encode()).expect("utf-8");
        for r in Reason::ALL {
            let key = format!("seckill_shed_total{{reason=\"{}\"}} ", r.as_str());
            assert!(text.contains(&key), "{key}");
        }
    }
}
