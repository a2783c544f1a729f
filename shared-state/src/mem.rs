//! `MemSharedState`: marks in a `DashMap`, with their expiry, bounded.

use async_trait::async_trait;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use engine::ports::{SharedState, SharedStateError};

/// Marks of one process, at most `capacity` live at once. When full, the
/// expired marks are swept; if none expired, the new mark is refused
/// (`Full`) rather than growing or forgetting a live mark (which would let
/// its token be used twice).
#[derive(Debug)]
pub struct MemSharedState {
    marks: DashMap<String, u64>,
    capacity: usize,
}

impl MemSharedState {
    pub fn new(capacity: usize) -> Self {
        Self {
            marks: DashMap::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.marks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
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
        if self.marks.len() >= self.capacity && !self.marks.contains_key(key) {
            self.marks.retain(|_, expires| *expires > now_ms);
            if self.marks.len() >= self.capacity {
                return Err(SharedStateError::Full(format!(
                    "{} live marks",
                    self.capacity
                )));
            }
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
}
