//! The shared-state contract: behaviour every `SharedState` backend must
//! show. Keys are unique per call, so backends on a shared server need no
//! cleanup between tests.

use engine::ports::SharedState;
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

/// Expands to one `#[tokio::test]` per contract check for the backend that
/// `$make` (a closure returning a future of the backend) builds.
#[macro_export]
macro_rules! shared_state_contract_tests {
    ($make:expr) => {
        $crate::shared_state_contract_tests!(@each $make;
            a_mark_is_used_once,
            racing_uses_have_one_winner,
            a_mark_expires
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
