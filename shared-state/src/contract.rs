//! The shared-state contract: behaviour every `SharedState` backend must
//! show. Keys are unique per call, so backends on a shared server need no
//! cleanup between tests.

use engine::ports::{RateQuota, SharedState, Swap, Throttle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A key no other test in this process (or recent process) uses.
pub fn unique_key(tag: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "t-{tag}-{}-{nanos}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub async fn a_mark_is_used_once(s: Arc<dyn SharedState>) {
    let (a, b) = (unique_key("a"), unique_key("b"));
    let now = now_ms();
    assert_eq!(s.use_once(&a, 60_000, now).await, Ok(true));
    assert_eq!(s.use_once(&a, 60_000, now).await, Ok(false), "used twice");
    assert_eq!(
        s.use_once(&b, 60_000, now).await,
        Ok(true),
        "keys are independent"
    );
}

/// 64 gateways (tasks) present the same token at once: exactly one wins.
pub async fn racing_uses_have_one_winner(s: Arc<dyn SharedState>) {
    let key = unique_key("race");
    let now = now_ms();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (s, key) = (Arc::clone(&s), key.clone());
            tokio::spawn(async move { s.use_once(&key, 60_000, now).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        if t.await.expect("task").expect("reachable") {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

/// A mark lives for its ttl, then the key may be used again.
pub async fn a_mark_expires(s: Arc<dyn SharedState>) {
    let key = unique_key("ttl");
    assert_eq!(s.use_once(&key, 100, now_ms()).await, Ok(true));
    assert_eq!(s.use_once(&key, 100, now_ms()).await, Ok(false));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if s.use_once(&key, 100, now_ms()).await == Ok(true) {
            return;
        }
        assert!(Instant::now() < deadline, "the mark never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn allowed(t: Throttle) -> bool {
    matches!(t, Throttle::Allowed { .. })
}

/// A full bucket admits `burst` at once, counts down `remaining`, then says
/// when to retry; one interval later one more request passes.
pub async fn a_bucket_admits_its_burst_then_limits(s: Arc<dyn SharedState>) {
    let (key, other) = (unique_key("rl"), unique_key("rl-other"));
    let q = RateQuota {
        per_s: 10,
        burst: 3,
    };
    let now = now_ms();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(s.throttle(&key, q, now).await.expect("reachable"));
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
    assert_eq!(
        s.throttle(&other, q, now).await,
        Ok(Throttle::Allowed { remaining: 2 }),
        "buckets are independent"
    );
    assert_eq!(
        s.throttle(&key, q, now + 50).await,
        Ok(Throttle::Limited { retry_after_ms: 50 })
    );
    assert_eq!(
        s.throttle(&key, q, now + 100).await,
        Ok(Throttle::Allowed { remaining: 0 })
    );
    // A second later the bucket is full again.
    assert_eq!(
        s.throttle(&key, q, now + 1_100).await,
        Ok(Throttle::Allowed { remaining: 2 })
    );
}

/// Ten times the rate for a simulated 10 s admits `per_s * 10 + burst`,
/// within one. The burst window (1 s) is long so that Redis's own expiry of
/// the bucket (real time) cannot reset it while the test runs.
pub async fn a_bucket_holds_its_rate(s: Arc<dyn SharedState>) {
    let key = unique_key("rate");
    let q = RateQuota {
        per_s: 20,
        burst: 20,
    };
    let start = now_ms();
    let step_ms = 1_000 / (u64::from(q.per_s) * 10);
    let mut admitted = 0_u64;
    for i in 0..(10_000 / step_ms) {
        if allowed(
            s.throttle(&key, q, start + i * step_ms)
                .await
                .expect("reachable"),
        ) {
            admitted += 1;
        }
    }
    let want = u64::from(q.per_s) * 10 + u64::from(q.burst);
    assert!(
        admitted.abs_diff(want) <= 1,
        "admitted {admitted}, want {want} within 1"
    );
}

/// 64 gateways (tasks) at the same instant on a burst of 10: exactly 10 pass.
pub async fn racing_requests_share_one_bucket(s: Arc<dyn SharedState>) {
    let key = unique_key("rl-race");
    let q = RateQuota {
        per_s: 1,
        burst: 10,
    };
    let now = now_ms();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (s, key) = (Arc::clone(&s), key.clone());
            tokio::spawn(async move { s.throttle(&key, q, now).await })
        })
        .collect();
    let mut passed = 0;
    for t in tasks {
        if allowed(t.await.expect("task").expect("reachable")) {
            passed += 1;
        }
    }
    assert_eq!(passed, 10);
}

/// A gateway whose clock is behind gets no extra requests.
pub async fn a_clock_going_back_admits_no_more(s: Arc<dyn SharedState>) {
    let key = unique_key("rl-back");
    let q = RateQuota {
        per_s: 10,
        burst: 2,
    };
    let now = now_ms();
    assert!(allowed(s.throttle(&key, q, now).await.expect("reachable")));
    assert!(allowed(s.throttle(&key, q, now).await.expect("reachable")));
    assert_eq!(
        s.throttle(&key, q, now - 500).await,
        Ok(Throttle::Limited {
            retry_after_ms: 600
        })
    );
}

pub async fn compare_and_set_swaps_only_the_expected_value(s: Arc<dyn SharedState>) {
    let key = unique_key("cas");
    let now = now_ms();
    let cur = |v: &str| Ok(Swap::Current(Some(v.to_string())));
    assert_eq!(
        s.compare_and_set(&key, Some("1"), "2", 60_000, now).await,
        Ok(Swap::Current(None)),
        "nothing there yet"
    );
    assert_eq!(
        s.compare_and_set(&key, None, "1", 60_000, now).await,
        Ok(Swap::Done)
    );
    assert_eq!(
        s.compare_and_set(&key, None, "9", 60_000, now).await,
        cur("1")
    );
    assert_eq!(
        s.compare_and_set(&key, Some("0"), "9", 60_000, now).await,
        cur("1")
    );
    assert_eq!(
        s.compare_and_set(&key, Some("1"), "2", 60_000, now).await,
        Ok(Swap::Done)
    );
    assert_eq!(
        s.compare_and_set(&key, Some("1"), "3", 60_000, now).await,
        cur("2")
    );
}

/// 64 gateways rotate the same value at once: exactly one wins, the others
/// see the winner's value.
pub async fn racing_swaps_have_one_winner(s: Arc<dyn SharedState>) {
    let key = unique_key("cas-race");
    let now = now_ms();
    assert_eq!(
        s.compare_and_set(&key, None, "0", 60_000, now).await,
        Ok(Swap::Done)
    );
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (s, key) = (Arc::clone(&s), key.clone());
            tokio::spawn(async move {
                let new = format!("t{i}");
                let r = s.compare_and_set(&key, Some("0"), &new, 60_000, now).await;
                (new, r)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut seen = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            (new, Ok(Swap::Done)) => winners.push(new),
            (_, Ok(Swap::Current(Some(v)))) => seen.push(v),
            (_, other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert!(seen.iter().all(|v| *v == winners[0]), "{seen:?}");
}

/// A value lives for its ttl, then counts as absent.
pub async fn a_value_expires(s: Arc<dyn SharedState>) {
    let key = unique_key("cas-ttl");
    assert_eq!(
        s.compare_and_set(&key, None, "1", 100, now_ms()).await,
        Ok(Swap::Done)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match s.compare_and_set(&key, None, "2", 60_000, now_ms()).await {
            Ok(Swap::Done) => return,
            Ok(Swap::Current(Some(v))) => assert_eq!(v, "1"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(Instant::now() < deadline, "the value never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The refresh-family protocol the gateway's identity service runs on this
/// port: a family's current sequence number, rotated by CAS `n -> n+1`; a
/// spent token (an older `n`) revokes the family by CAS to `revoked`, after
/// which no token of the family, the newest included, rotates.
pub async fn a_refresh_family_rotates_and_revokes(s: Arc<dyn SharedState>) {
    const REVOKED: &str = "revoked";
    let family = unique_key("family");
    let now = now_ms();
    let ttl = 60_000;
    let rotate = |n: u64| {
        let (s, family) = (Arc::clone(&s), family.clone());
        async move {
            let (from, to) = (n.to_string(), (n + 1).to_string());
            s.compare_and_set(&family, Some(&from), &to, ttl, now).await
        }
    };
    assert_eq!(
        s.compare_and_set(&family, None, "0", ttl, now).await,
        Ok(Swap::Done)
    );
    assert_eq!(rotate(0).await, Ok(Swap::Done));
    assert_eq!(rotate(1).await, Ok(Swap::Done));
    // Token 0 again: spent. The family is revoked against what was seen.
    let seen = rotate(0).await.expect("reachable");
    assert_eq!(seen, Swap::Current(Some("2".into())));
    assert_eq!(
        s.compare_and_set(&family, Some("2"), REVOKED, ttl, now)
            .await,
        Ok(Swap::Done)
    );
    // The newest token (2) no longer rotates.
    assert_eq!(rotate(2).await, Ok(Swap::Current(Some(REVOKED.into()))));
}

/// Expands to one `#[tokio::test]` per contract check for the backend that
/// `$make` (a closure returning a future of the backend) builds.
#[macro_export]
macro_rules! shared_state_contract_tests {
    ($make:expr) => {
        $crate::shared_state_contract_tests!(@each $make;
            a_mark_is_used_once,
            racing_uses_have_one_winner,
            a_mark_expires,
            a_bucket_admits_its_burst_then_limits,
            a_bucket_holds_its_rate,
            racing_requests_share_one_bucket,
            a_clock_going_back_admits_no_more,
            compare_and_set_swaps_only_the_expected_value,
            racing_swaps_have_one_winner,
            a_value_expires,
            a_refresh_family_rotates_and_revokes
        );
    };
    (@each $make:expr; $($name:ident),*) => {
        mod shared_state_contract {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let make = $make;
                    let state: ::std::sync::Arc<dyn ::engine::ports::SharedState> =
                        ::std::sync::Arc::new(make().await);
                    $crate::contract::$name(state).await;
                }
            )*
        }
    };
}
