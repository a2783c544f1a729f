//! `MemSharedState`: marks, rate buckets and compare-and-set values in
//! `DashMap`s, each with its expiry, bounded together.

use crate::gcra;
use async_trait::async_trait;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use engine::ports::{RateQuota, SharedState, SharedStateError, Swap, Throttle};

/// State of one process, at most `capacity` live entries at once (marks,
/// buckets and values together). When full, the expired entries are swept;
/// if none expired, a new entry is refused (`Full`) rather than growing or
/// forgetting a live one (which would let a token be used twice, or reset a
/// rate). An entry that already exists may always change.
#[derive(Debug)]
pub struct MemSharedState {
    /// Key -> expiry (ms).
    marks: DashMap<String, u64>,
    /// Key -> theoretical arrival time (µs); the bucket is full, and may
    /// go, once this is past.
    buckets: DashMap<String, u64>,
    /// Key -> (value, expiry in ms).
    values: DashMap<String, (String, u64)>,
    capacity: usize,
}

impl MemSharedState {
    pub fn new(capacity: usize) -> Self {
        Self {
            marks: DashMap::new(),
            buckets: DashMap::new(),
            values: DashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Live and not yet swept entries of every kind.
    pub fn len(&self) -> usize {
        self.marks.len() + self.buckets.len() + self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for one new entry: sweeps the expired ones when full,
    /// then refuses if still full.
    fn room_for_one(&self, now_ms: u64) -> Result<(), SharedStateError> {
        if self.len() < self.capacity {
            return Ok(());
        }
        let now_us = now_ms.saturating_mul(1000);
        self.marks.retain(|_, expires| *expires > now_ms);
        self.buckets.retain(|_, tat| *tat > now_us);
        self.values.retain(|_, (_, expires)| *expires > now_ms);
        if self.len() >= self.capacity {
            return Err(SharedStateError::Full(format!(
                "{} live entries",
                self.capacity
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl SharedState for MemSharedState {
    async fn use_once(
        &self,
        key: &str,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<bool, SharedStateError> {
        let until = now_ms.saturating_add(ttl_ms.max(1));
        if !self.marks.contains_key(key) {
            self.room_for_one(now_ms)?;
        }
        Ok(match self.marks.entry(key.to_string()) {
            Entry::Occupied(mut e) if *e.get() <= now_ms => {
                // Expired: a new life for the key.
                e.insert(until);
                true
            }
            Entry::Occupied(_) => false,
            Entry::Vacant(e) => {
                e.insert(until);
                true
            }
        })
    }

    async fn throttle(
        &self,
        key: &str,
        quota: RateQuota,
        now_ms: u64,
    ) -> Result<Throttle, SharedStateError> {
        let now_us = now_ms.saturating_mul(1000);
        if !self.buckets.contains_key(key) {
            self.room_for_one(now_ms)?;
        }
        // The entry lock makes read-step-write one step per key.
        Ok(match self.buckets.entry(key.to_string()) {
            Entry::Occupied(mut e) => {
                let (answer, tat) = gcra::step(Some(*e.get()), quota, now_us);
                e.insert(tat);
                answer
            }
            Entry::Vacant(e) => {
                let (answer, tat) = gcra::step(None, quota, now_us);
                e.insert(tat);
                answer
            }
        })
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&str>,
        new: &str,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<Swap, SharedStateError> {
        let until = now_ms.saturating_add(ttl_ms.max(1));
        if expected.is_none() && !self.values.contains_key(key) {
            self.room_for_one(now_ms)?;
        }
        Ok(match self.values.entry(key.to_string()) {
            Entry::Occupied(mut e) => {
                let (value, expires) = e.get();
                let current = (*expires > now_ms).then(|| value.clone());
                if current.as_deref() == expected {
                    e.insert((new.to_string(), until));
                    Swap::Done
                } else {
                    Swap::Current(current)
                }
            }
            Entry::Vacant(e) if expected.is_none() => {
                e.insert((new.to_string(), until));
                Swap::Done
            }
            Entry::Vacant(_) => Swap::Current(None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::shared_state_contract_tests!(|| async { MemSharedState::new(10_000) });

    #[tokio::test]
    async fn a_full_state_refuses_until_marks_expire() {
        let s = MemSharedState::new(2);
        assert_eq!(s.use_once("a", 100, 0).await, Ok(true));
        assert_eq!(s.use_once("b", 200, 0).await, Ok(true));
        assert!(matches!(
            s.use_once("c", 100, 50).await,
            Err(SharedStateError::Full(_))
        ));
        // A live mark is never forgotten to make room.
        assert_eq!(s.use_once("a", 100, 50).await, Ok(false));
        // Once "a" expired, its room is swept and reused.
        assert_eq!(s.use_once("c", 100, 150).await, Ok(true));
        assert_eq!(s.len(), 2);
        assert_eq!(s.use_once("b", 100, 150).await, Ok(false));
    }

    #[tokio::test]
    async fn buckets_and_values_share_the_bound_and_go_once_idle() {
        let q = RateQuota {
            per_s: 10,
            burst: 1,
        };
        let s = MemSharedState::new(2);
        assert!(matches!(
            s.throttle("r", q, 0).await,
            Ok(Throttle::Allowed { .. })
        ));
        assert_eq!(
            s.compare_and_set("v", None, "1", 1_000, 0).await,
            Ok(Swap::Done)
        );
        // Full: a new bucket and a new value are refused while both live.
        assert!(matches!(
            s.throttle("r2", q, 50).await,
            Err(SharedStateError::Full(_))
        ));
        assert!(matches!(
            s.compare_and_set("v2", None, "1", 1_000, 50).await,
            Err(SharedStateError::Full(_))
        ));
        // Existing entries still change when full.
        assert_eq!(
            s.compare_and_set("v", Some("1"), "2", 1_000, 50).await,
            Ok(Swap::Done)
        );
        // The bucket is full again 100 ms later: it is swept to make room.
        assert!(matches!(
            s.throttle("r2", q, 100).await,
            Ok(Throttle::Allowed { .. })
        ));
        assert_eq!(s.len(), 2);
    }
}
