//! `MemRoomStore`: the waiting room of the embedded default, one process.
//! Each campaign's queue sits behind its own short lock; the pre-queue is
//! a map of draws until the start, then sorted once into ranks.

use async_trait::async_trait;
use dashmap::DashMap;
use engine::ports::{Entry, Join, QueueCounts, RoomError, RoomStore};
use engine::room::RoomState;
use engine::{CampaignId, UserId};
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Room {
    epoch: u64,
    /// Pre-queued buyers and their draws.
    pre: HashMap<UserId, u64>,
    /// Their ranks, once sealed.
    pre_ranks: Option<HashMap<UserId, u64>>,
    /// Later joiners: (rank, joined at, estimate shown).
    post: HashMap<UserId, (u64, u64, Option<u32>)>,
    lease: Option<(u64, Instant)>,
    state: Option<RoomState>,
    claims: HashMap<u64, u32>,
    finished: BTreeSet<u64>,
}

impl Room {
    fn seal(&mut self) {
        if self.pre_ranks.is_some() {
            return;
        }
        let mut order: Vec<(u64, &UserId)> = self.pre.iter().map(|(u, &d)| (d, u)).collect();
        order.sort_unstable();
        let ranks = order
            .into_iter()
            .zip(1..)
            .map(|((_, u), rank)| (u.clone(), rank))
            .collect();
        self.pre_ranks = Some(ranks);
    }

    fn counts(&self) -> QueueCounts {
        let pre = self.pre.len() as u64;
        let sealed = self.pre_ranks.is_some();
        QueueCounts {
            epoch: self.epoch,
            pre,
            sealed,
            queued: if sealed {
                pre + self.post.len() as u64
            } else {
                0
            },
        }
    }
}

/// Waiting rooms of one process, at most `rooms_max` campaigns (each
/// bounded by its `queue_max`).
#[derive(Debug)]
pub struct MemRoomStore {
    rooms: DashMap<CampaignId, Arc<Mutex<Room>>>,
    rooms_max: usize,
}

impl MemRoomStore {
    pub fn new(rooms_max: usize) -> Self {
        Self {
            rooms: DashMap::new(),
            rooms_max: rooms_max.max(1),
        }
    }

    fn room(&self, c: &CampaignId, epoch: u64) -> Result<Arc<Mutex<Room>>, RoomError> {
        if let Some(r) = self.rooms.get(c) {
            return Ok(Arc::clone(&r));
        }
        if self.rooms.len() >= self.rooms_max {
            return Err(RoomError::Full);
        }
        let room = self.rooms.entry(c.clone()).or_insert_with(|| {
            Arc::new(Mutex::new(Room {
                epoch,
                ..Room::default()
            }))
        });
        Ok(Arc::clone(&room))
    }

    fn existing(&self, c: &CampaignId) -> Option<Arc<Mutex<Room>>> {
        self.rooms.get(c).map(|r| Arc::clone(&r))
    }
}

#[async_trait]
impl RoomStore for MemRoomStore {
    async fn join(&self, j: &Join<'_>) -> Result<(u64, Entry), RoomError> {
        let room = self.room(j.campaign, j.epoch)?;
        let mut r = room.lock();
        if r.pre.contains_key(j.user) {
            return Ok((r.epoch, Entry::Pre));
        }
        if let Some(&(rank, joined_ms, eta_s)) = r.post.get(j.user) {
            return Ok((
                r.epoch,
                Entry::Ranked {
                    rank,
                    joined_ms,
                    eta_s,
                },
            ));
        }
        if (r.pre.len() + r.post.len()) as u64 >= j.queue_max {
            return Err(RoomError::Full);
        }
        if j.now_ms < j.starts_at_ms && r.pre_ranks.is_none() {
            r.pre.insert(j.user.clone(), j.draw);
            return Ok((r.epoch, Entry::Pre));
        }
        r.seal();
        let rank = (r.pre.len() + r.post.len()) as u64 + 1;
        r.post.insert(j.user.clone(), (rank, j.now_ms, None));
        Ok((
            r.epoch,
            Entry::Ranked {
                rank,
                joined_ms: j.now_ms,
                eta_s: None,
            },
        ))
    }

    async fn set_eta(&self, c: &CampaignId, user: &UserId, eta_s: u32) -> Result<u32, RoomError> {
        let Some(room) = self.existing(c) else {
            return Ok(eta_s);
        };
        let mut r = room.lock();
        Ok(match r.post.get_mut(user) {
            Some((_, _, kept)) => *kept.get_or_insert(eta_s),
            None => eta_s,
        })
    }

    async fn pre_rank(&self, c: &CampaignId, user: &UserId) -> Result<Option<u64>, RoomError> {
        let Some(room) = self.existing(c) else {
            return Ok(None);
        };
        let r = room.lock();
        Ok(r.pre_ranks.as_ref().and_then(|m| m.get(user).copied()))
    }

    async fn counts(
        &self,
        c: &CampaignId,
        now_ms: u64,
        starts_at_ms: u64,
        epoch: u64,
    ) -> Result<QueueCounts, RoomError> {
        let room = self.room(c, epoch)?;
        let mut r = room.lock();
        if now_ms >= starts_at_ms {
            r.seal();
        }
        Ok(r.counts())
    }

    async fn lead(&self, c: &CampaignId, owner: u64, lease_ms: u64) -> Result<bool, RoomError> {
        let Some(room) = self.existing(c) else {
            return Ok(false);
        };
        let mut r = room.lock();
        let now = Instant::now();
        match r.lease {
            Some((holder, until)) if holder != owner && until > now => Ok(false),
            _ => {
                r.lease = Some((owner, now + Duration::from_millis(lease_ms)));
                Ok(true)
            }
        }
    }

    async fn state(&self, c: &CampaignId) -> Result<Option<RoomState>, RoomError> {
        Ok(self.existing(c).and_then(|room| room.lock().state.clone()))
    }

    async fn put_state(
        &self,
        c: &CampaignId,
        owner: u64,
        s: &RoomState,
    ) -> Result<bool, RoomError> {
        let Some(room) = self.existing(c) else {
            return Ok(false);
        };
        let mut r = room.lock();
        let holds =
            matches!(r.lease, Some((holder, until)) if holder == owner && until > Instant::now());
        if holds {
            r.state = Some(s.clone());
        }
        Ok(holds)
    }

    async fn claim(&self, c: &CampaignId, rank: u64, limit: u32) -> Result<bool, RoomError> {
        let Some(room) = self.existing(c) else {
            return Ok(false);
        };
        let mut r = room.lock();
        let used = r.claims.entry(rank).or_insert(0);
        if *used >= limit {
            return Ok(false);
        }
        *used += 1;
        r.finished.insert(rank);
        Ok(true)
    }

    async fn unclaim(&self, c: &CampaignId, rank: u64) -> Result<(), RoomError> {
        let Some(room) = self.existing(c) else {
            return Ok(());
        };
        let mut r = room.lock();
        if let Some(used) = r.claims.get_mut(&rank) {
            *used = used.saturating_sub(1);
            if *used == 0 {
                r.claims.remove(&rank);
                r.finished.remove(&rank);
            }
        }
        Ok(())
    }

    async fn finished(&self, c: &CampaignId, above: u64) -> Result<(u64, u64), RoomError> {
        let Some(room) = self.existing(c) else {
            return Ok((0, 0));
        };
        let r = room.lock();
        // The ranks above the lapse point are the recent ones: few.
        let above = r.finished.range(above.saturating_add(1)..).count() as u64;
        Ok((above, r.finished.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::room_contract_tests!(|| async { MemRoomStore::new(1_000) });
}
