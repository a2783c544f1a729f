//! `Pacer`: the token bucket that bounds how many rows per second the writer
//! sends to the order store.
//!
//! The flash sale's wall of traffic is absorbed by the log; the database sees
//! a steady stream no faster than it was sized for. The pacer is pure: it
//! takes `now` as an argument and never sleeps, so its arithmetic is tested
//! without a clock and the writer decides how to wait.

use std::time::Duration;
use tokio::time::Instant;

/// Tokens are counted in millionths of a row so that a rate in rows/s refills
/// `rate` units per microsecond exactly, with no floating point drift.
const UNITS_PER_ROW: u64 = 1_000_000;

/// A token bucket of rows: refills at `rows_per_s`, holds at most `burst_rows`.
#[derive(Debug, Clone)]
pub struct Pacer {
    rows_per_s: u64,
    burst_units: i128,
    /// Available units; negative while paying off a take larger than the burst.
    units: i128,
    last: Instant,
}

impl Pacer {
    /// A full bucket at `now`. A rate or burst of 0 is raised to 1 so the
    /// pacer always makes progress instead of blocking forever.
    pub fn new(rows_per_s: u32, burst_rows: usize, now: Instant) -> Self {
        let burst = u64::try_from(burst_rows.max(1)).unwrap_or(u64::MAX);
        let burst_units = i128::from(burst) * i128::from(UNITS_PER_ROW);
        Self {
            rows_per_s: u64::from(rows_per_s.max(1)),
            burst_units,
            units: burst_units,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        // A `now` earlier than the last call (it cannot happen with a monotonic
        // clock, but a test may pass one) adds nothing rather than panicking.
        let elapsed_us = now.saturating_duration_since(self.last).as_micros();
        if elapsed_us == 0 {
            return;
        }
        self.last = now;
        let added = i128::try_from(elapsed_us)
            .unwrap_or(i128::MAX)
            .saturating_mul(i128::from(self.rows_per_s));
        self.units = self.units.saturating_add(added).min(self.burst_units);
    }

    /// Takes `rows` tokens at `now`, or says how long to wait before they are
    /// available (and takes nothing).
    ///
    /// A take larger than the burst waits for a full bucket and then leaves
    /// the bucket in debt, so the long-run rate still holds.
    pub fn try_take(&mut self, rows: usize, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        let rows = i128::try_from(rows).unwrap_or(i128::MAX);
        let want = rows.saturating_mul(i128::from(UNITS_PER_ROW));
        let needed = want.min(self.burst_units);
        if self.units >= needed {
            self.units -= want;
            return Ok(());
        }
        let missing = needed - self.units;
        let rate = i128::from(self.rows_per_s);
        // Round up: waking a microsecond early would only cause a second wait.
        let wait_us = (missing + rate - 1) / rate;
        Err(Duration::from_micros(
            u64::try_from(wait_us).unwrap_or(u64::MAX),
        ))
    }

    /// Whole rows available at `now` (for tests and metrics).
    pub fn available_rows(&mut self, now: Instant) -> u64 {
        self.refill(now);
        u64::try_from(self.units / i128::from(UNITS_PER_ROW)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn starts_full_and_allows_one_burst() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100, 50, t0);
        assert_eq!(p.available_rows(t0), 50);
        assert_eq!(p.try_take(50, t0), Ok(()));
        // Empty now: one row takes 1/100 s to refill.
        assert_eq!(p.try_take(1, t0), Err(ms(10)));
        assert_eq!(p.available_rows(t0), 0);
    }

    #[test]
    fn refills_at_the_configured_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1_000, 500, t0);
        assert_eq!(p.try_take(500, t0), Ok(()));
        assert_eq!(p.try_take(100, t0), Err(ms(100)));
        assert_eq!(p.try_take(100, t0 + ms(99)), Err(ms(1)));
        assert_eq!(p.try_take(100, t0 + ms(100)), Ok(()));
        // The bucket never holds more than the burst, however long it idles.
        assert_eq!(p.available_rows(t0 + ms(60_000)), 500);
    }

    #[test]
    fn a_failed_take_consumes_nothing() {
        let t0 = Instant::now();
        let mut p = Pacer::new(10, 10, t0);
        assert_eq!(p.try_take(10, t0), Ok(()));
        assert!(p.try_take(5, t0 + ms(100)).is_err());
        assert_eq!(p.available_rows(t0 + ms(100)), 1);
        assert_eq!(p.try_take(5, t0 + ms(500)), Ok(()));
    }

    #[test]
    fn oversized_take_waits_for_full_bucket_then_owes() {
        let t0 = Instant::now();
        let mut p = Pacer::new(10, 5, t0);
        assert_eq!(p.try_take(15, t0), Ok(()));
        // 10 rows of debt plus 1 row: 1.1 s at 10 rows/s.
        assert_eq!(p.try_take(1, t0), Err(ms(1_100)));
    }

    #[test]
    fn zero_rate_and_burst_still_make_progress() {
        let t0 = Instant::now();
        let mut p = Pacer::new(0, 0, t0);
        assert_eq!(p.try_take(1, t0), Ok(()));
        assert_eq!(p.try_take(1, t0), Err(ms(1_000)));
    }

    #[test]
    fn never_exceeds_the_ceiling_over_any_simulated_second() {
        let (rate, burst) = (1_000u64, 100usize);
        let t0 = Instant::now();
        let mut p = Pacer::new(1_000, burst, t0);
        // A greedy taker tries every millisecond for 5 s, in odd-sized bites.
        let mut taken_per_ms = vec![0u64; 5_000];
        for (i, slot) in taken_per_ms.iter_mut().enumerate() {
            let now = t0 + ms(u64::try_from(i).unwrap_or(0));
            while p.try_take(7, now).is_ok() {
                *slot += 7;
            }
        }
        // In any window of one second at most one burst plus one second of refill.
        for start in 0..=taken_per_ms.len() - 1_000 {
            let window: u64 = taken_per_ms[start..start + 1_000].iter().sum();
            assert!(
                window <= rate + burst as u64,
                "window at {start} ms: {window}"
            );
        }
        // Over the run the greedy taker gets the full rate, not less.
        let total: u64 = taken_per_ms.iter().sum();
        assert!(total >= 5 * rate, "total {total}");
        assert!(total <= 5 * rate + burst as u64, "total {total}");
    }
}
