//! The GCRA (generic cell rate algorithm) both backends compute: the Redis
//! script mirrors `step` line by line.
//!
//! A bucket is one number, its theoretical arrival time (`tat`, in
//! microseconds, so rates that do not divide a second stay exact to 1 µs per
//! request). Each request moves it `interval = 1 s / per_s` later; a request
//! is admitted while the new `tat` is at most `burst` intervals ahead of now.
//! A full bucket (`tat <= now`) is the same as no bucket, so its key may go.

use engine::ports::{RateQuota, Throttle};

/// Microseconds per request at `quota`, and the burst window, both at least 1.
pub fn shape(quota: RateQuota) -> (u64, u64) {
    let interval_us = (1_000_000 / u64::from(quota.per_s.max(1))).max(1);
    let window_us = interval_us * u64::from(quota.burst.max(1));
    (interval_us, window_us)
}

/// One request at `now_us` on a bucket at `tat_us` (`None`: full). Returns
/// the answer and the bucket's new `tat` (unchanged when limited).
pub fn step(tat_us: Option<u64>, quota: RateQuota, now_us: u64) -> (Throttle, u64) {
    let (interval_us, window_us) = shape(quota);
    let base = tat_us.unwrap_or(now_us).max(now_us);
    let new_tat = base.saturating_add(interval_us);
    let ahead = new_tat - now_us;
    if ahead <= window_us {
        let remaining = (window_us - ahead) / interval_us;
        let remaining = u32::try_from(remaining).unwrap_or(u32::MAX);
        (Throttle::Allowed { remaining }, new_tat)
    } else {
        let wait_us = ahead - window_us;
        let retry_after_ms = wait_us.div_ceil(1000);
        (Throttle::Limited { retry_after_ms }, base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_admits_the_burst_then_limits() {
        let q = RateQuota {
            per_s: 10,
            burst: 3,
        };
        let mut tat = None;
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (t, n) = step(tat, q, 1_000_000);
            if matches!(t, Throttle::Allowed { .. }) {
                tat = Some(n);
            }
            seen.push(t);
        }
        assert_eq!(
            seen,
            vec![
                Throttle::Allowed { remaining: 2 },
                Throttle::Allowed { remaining: 1 },
                Throttle::Allowed { remaining: 0 },
                Throttle::Limited {
                    retry_after_ms: 100
                },
            ]
        );
    }
}
