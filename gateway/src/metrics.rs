//! `/metrics` in the Prometheus text format, encoded by the `prometheus`
//! crate (names, label escaping and the format are the library's, not
//! hand-written text). Two kinds of families:
//!
//! - **latency histograms** observed as things happen (`LATENCY`,
//!   process-wide like `crate::shed`: one process serves one gateway, and
//!   the connection layer has no `App` at hand): grabs by outcome, order
//!   log appends, ledger calls by operation, order store batches;
//! - **values read at scrape time** from the gateway's own atomic counters
//!   (per campaign, per funnel stage, rate limits, hot items, sheds): each
//!   scrape builds them in a registry of its own (`Scrape`), so the
//!   counters stay plain atomics on the hot path.

use crate::funnel::Stage;
use crate::metered::LedgerOp;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry,
    TextEncoder,
};
use std::sync::LazyLock;
use std::time::Duration;

/// Bucket bounds in seconds (Prometheus' unit) with millisecond resolution
/// where grabs and appends live: 0.5 ms to 10 s.
const BUCKETS_S: [f64; 17] = [
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// The latency histograms.
#[derive(Debug)]
pub struct Latency {
    registry: Registry,
    /// One append to the order log, until durable (or refused).
    pub log_append: Histogram,
    /// One batch written to the order store by the in-process writer.
    pub store_batch: Histogram,
    /// A grab from the funnel's first stage to its answer, by outcome
    /// (`accepted`, or the refusal's stage), and a call to the stock ledger
    /// backend by operation: the children of `seckill_grab_duration_seconds`
    /// and `seckill_ledger_call_duration_seconds`, resolved once, so the hot
    /// path indexes an array instead of hashing label values under a lock.
    grab_accepted: Histogram,
    grab_refused: Vec<Histogram>,
    ledger_by_op: Vec<Histogram>,
}

fn histogram_opts(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(BUCKETS_S.to_vec())
}

impl Latency {
    fn new() -> Self {
        let registry = Registry::new();
        // The names and buckets are constants: a failure here is a bug
        // caught by the first test that touches metrics.
        let grab = HistogramVec::new(
            histogram_opts(
                "seckill_grab_duration_seconds",
                "Grabs from the funnel's first stage to the answer, by outcome.",
            ),
            &["outcome"],
        )
        .expect("valid histogram");
        let log_append = Histogram::with_opts(histogram_opts(
            "seckill_log_append_duration_seconds",
            "Order log appends until durable (or refused).",
        ))
        .expect("valid histogram");
        let ledger_call = HistogramVec::new(
            histogram_opts(
                "seckill_ledger_call_duration_seconds",
                "Calls to the stock ledger backend, by operation.",
            ),
            &["op"],
        )
        .expect("valid histogram");
        let store_batch = Histogram::with_opts(histogram_opts(
            "seckill_store_batch_duration_seconds",
            "Batches the in-process writer committed to the order store.",
        ))
        .expect("valid histogram");
        for c in [
            Box::new(grab.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(log_append.clone()),
            Box::new(ledger_call.clone()),
            Box::new(store_batch.clone()),
        ] {
            registry.register(c).expect("distinct names");
        }
        let grab_accepted = grab.with_label_values(&["accepted"]);
        let grab_refused = Stage::ALL
            .iter()
            .map(|s| grab.with_label_values(&[s.as_str()]))
            .collect();
        let ledger_by_op = LedgerOp::ALL
            .iter()
            .map(|op| ledger_call.with_label_values(&[op.as_str()]))
            .collect();
        Self {
            registry,
            log_append,
            store_batch,
            grab_accepted,
            grab_refused,
            ledger_by_op,
        }
    }

    /// Records a grab's latency: accepted (`None`) or refused at `stage`.
    pub fn grab(&self, refused_at: Option<Stage>, d: Duration) {
        let h = match refused_at {
            None => &self.grab_accepted,
            Some(stage) => &self.grab_refused[stage as usize],
        };
        observe(h, d);
    }

    /// Records a ledger call's latency.
    pub fn ledger_call(&self, op: LedgerOp, d: Duration) {
        observe(&self.ledger_by_op[op as usize], d);
    }
}

/// The process's latency histograms.
pub static LATENCY: LazyLock<Latency> = LazyLock::new(Latency::new);

/// Records `d` in `h`.
pub fn observe(h: &Histogram, d: Duration) {
    h.observe(d.as_secs_f64());
}

/// One scrape's families of values read from counters at scrape time.
#[derive(Debug)]
pub struct Scrape {
    registry: Registry,
}

impl Default for Scrape {
    fn default() -> Self {
        Self::new()
    }
}

impl Scrape {
    pub fn new() -> Self {
        Self {
            registry: Registry::new(),
        }
    }

    /// A counter family (values set once per scrape with `inc_by`).
    pub fn counter(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let c = IntCounterVec::new(Opts::new(name, help), labels)
            .unwrap_or_else(|e| unreachable_family(name, &e));
        if let Err(e) = self.registry.register(Box::new(c.clone())) {
            tracing::error!(name, error = %e, "a metrics family was not registered");
        }
        c
    }

    /// A gauge family.
    pub fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        let g = GaugeVec::new(Opts::new(name, help), labels)
            .unwrap_or_else(|e| unreachable_family(name, &e));
        if let Err(e) = self.registry.register(Box::new(g.clone())) {
            tracing::error!(name, error = %e, "a metrics family was not registered");
        }
        g
    }

    /// An unlabelled gauge set to `v`.
    pub fn value(&self, name: &str, help: &str, v: f64) {
        self.gauge(name, help, &[])
            .with_label_values(&[] as &[&str])
            .set(v);
    }

    /// An unlabelled counter at `n`.
    pub fn total(&self, name: &str, help: &str, n: u64) {
        self.counter(name, help, &[])
            .with_label_values(&[] as &[&str])
            .inc_by(n);
    }

    /// The text format of this scrape's families and the histograms.
    pub fn encode(&self) -> Vec<u8> {
        let mut families = self.registry.gather();
        families.extend(LATENCY.registry.gather());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}

/// The content type of `Scrape::encode`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Family names and labels are constants of this crate; an invalid one is a
/// bug that the metrics tests catch. Panicking in a handler is not an
/// option, so the family is replaced by a placeholder that is never
/// registered (its values are dropped) and the bug is logged.
fn unreachable_family<T: Placeholder>(name: &str, e: &prometheus::Error) -> T {
    tracing::error!(name, error = %e, "invalid metrics family");
    T::placeholder()
}

trait Placeholder {
    fn placeholder() -> Self;
}

impl Placeholder for IntCounterVec {
    fn placeholder() -> Self {
        IntCounterVec::new(Opts::new("seckill_invalid_family", "-"), &[]).expect("valid constant")
    }
}

impl Placeholder for GaugeVec {
    fn placeholder() -> Self {
        GaugeVec::new(Opts::new("seckill_invalid_family", "-"), &[]).expect("valid constant")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_encodes_counters_gauges_and_histograms() {
        let s = Scrape::new();
        s.counter("seckill_test_total", "t", &["campaign"])
            .with_label_values(&["a\"b"])
            .inc_by(3);
        s.value("seckill_test_gauge", "g", 1.5);
        s.total("seckill_test_plain_total", "p", 7);
        observe(&LATENCY.log_append, Duration::from_micros(700));
        let text = String::from_utf8(s.encode()).expect("utf-8");
        assert!(
            text.contains("seckill_test_total{campaign=\"a\\\"b\"} 3"),
            "{text}"
        );
        assert!(text.contains("seckill_test_gauge 1.5"), "{text}");
        assert!(text.contains("seckill_test_plain_total 7"), "{text}");
        assert!(
            text.contains("seckill_log_append_duration_seconds_bucket{le=\"0.001\"}"),
            "{text}"
        );
    }
}
