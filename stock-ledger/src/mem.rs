//! `MemLedger`: in-memory sharded stock counters with an exact per-user limit.
//!
//! Stock of a campaign is split over cache-line-padded atomic shards so that
//! concurrent buyers on different cores do not all bounce one cache line; a
//! buyer starts at the shard their user hash picks and moves on when it is
//! empty, so a unit left in any shard is always found (no undersell).
//!
//! The per-user check and the stock decrement happen while holding the lock
//! of the user's entry in a `DashMap`, so one user racing themselves is
//! serialized and can never take more than the limit, while different users
//! only meet on the (sharded) atomics.

use async_trait::async_trait;
use crossbeam::utils::CachePadded;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use engine::ports::{Hold, LedgerError, LedgerImage, LedgerSnapshot, Reservation, StockLedger};
use engine::{CampaignId, UserId};
use smallvec::{smallvec, SmallVec};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Tuning of the in-memory ledger.
#[derive(Debug, Clone)]
pub struct MemLedgerConfig {
    /// Stock shards per campaign (capped by the stock itself).
    pub shards: usize,
}

impl Default for MemLedgerConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        Self { shards: cores * 4 }
    }
}

/// The holds of one user in one campaign: 32 bytes, and no allocation while
/// the user holds at most two units (the usual per-user limit is one), so a
/// winner costs the ledger its map slot alone (the user id is the request's
/// shared `Arc`).
#[derive(Debug, Default)]
struct UserHolds {
    /// Highest `n` ever handed out, so order ids are never reused after a release.
    last_n: u32,
    /// The `n` of each hold not released. At most `per_user_limit` long.
    active: SmallVec<[u32; 2]>,
}

#[derive(Debug)]
struct Stock {
    total: u64,
    shards: Box<[CachePadded<AtomicU64>]>,
    sold_out: AtomicBool,
    users: DashMap<UserId, UserHolds>,
}

impl Stock {
    fn new(total: u64, shards: usize) -> Self {
        let n = shards.clamp(1, usize::try_from(total).unwrap_or(usize::MAX).max(1));
        let per = total / n as u64;
        let extra = total % n as u64;
        let shards = (0..n as u64)
            .map(|i| CachePadded::new(AtomicU64::new(per + u64::from(i < extra))))
            .collect();
        Self {
            total,
            shards,
            sold_out: AtomicBool::new(total == 0),
            users: DashMap::new(),
        }
    }

    fn remaining(&self) -> u64 {
        self.shards.iter().map(|s| s.load(Ordering::SeqCst)).sum()
    }

    /// Takes one unit from a shard; `Some(left)` with what the shard holds now.
    fn take_from(shard: &AtomicU64) -> Option<u64> {
        shard
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
            .ok()
            .map(|before| before - 1)
    }

    fn take_any(&self, start: usize) -> Option<u64> {
        let n = self.shards.len();
        (0..n).find_map(|i| Self::take_from(&self.shards[(start + i) % n]))
    }

    /// Publishes "sold out", then looks again: a release that landed after
    /// our look clears the flag after its increment, so either we see its
    /// unit here or its clear comes after our set. Either way the flag stays
    /// true only when every shard is really empty. A stale `false` is
    /// harmless: it only costs one ledger call.
    fn mark_if_empty(&self) -> bool {
        self.sold_out.store(true, Ordering::SeqCst);
        if self.remaining() > 0 {
            self.sold_out.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Takes one unit, starting at shard `start`; false if every shard is empty.
    fn take(&self, start: usize) -> bool {
        match self.take_any(start) {
            Some(left) => {
                if left == 0 {
                    self.mark_if_empty();
                }
                true
            }
            None => !self.mark_if_empty() && self.take_any(start).is_some(),
        }
    }

    fn give_back(&self, start: usize) {
        self.shards[start % self.shards.len()].fetch_add(1, Ordering::SeqCst);
        self.sold_out.store(false, Ordering::SeqCst);
    }

    fn check_conserved(&self) {
        let held: u64 = self.users.iter().map(|e| e.active.len() as u64).sum();
        // Kept on in release builds: crashing beats overselling.
        assert_eq!(
            held + self.remaining(),
            self.total,
            "stock not conserved: held {held} + remaining != total {}",
            self.total
        );
    }
}

/// The embedded, single-process ledger.
#[derive(Debug, Default)]
pub struct MemLedger {
    cfg: MemLedgerConfig,
    campaigns: DashMap<CampaignId, Arc<Stock>>,
    hasher: std::collections::hash_map::RandomState,
}

impl MemLedger {
    pub fn new(cfg: MemLedgerConfig) -> Self {
        Self {
            cfg,
            campaigns: DashMap::new(),
            hasher: Default::default(),
        }
    }

    fn stock(&self, campaign: &CampaignId) -> Option<Arc<Stock>> {
        self.campaigns.get(campaign).map(|s| Arc::clone(&s))
    }

    fn shard_of(&self, user: &UserId) -> usize {
        self.hasher.hash_one(user) as usize
    }

    /// Checks `held + remaining == total` for a campaign; panics otherwise.
    /// Walks every user entry, so it is meant for tests and shutdown, not per request.
    pub fn assert_conserved(&self, campaign: &CampaignId) {
        if let Some(s) = self.stock(campaign) {
            s.check_conserved();
        }
    }

    /// The reservation itself; the async trait method only wraps it.
    pub fn reserve_sync(&self, campaign: &CampaignId, user: &UserId, limit: u32) -> Reservation {
        let Some(stock) = self.stock(campaign) else {
            return Reservation::NotLoaded;
        };
        if stock.sold_out.load(Ordering::SeqCst) {
            return Reservation::SoldOut;
        }
        let start = self.shard_of(user);
        // The entry guard holds this user's map shard for the whole decision.
        let outcome = match stock.users.entry(user.clone()) {
            Entry::Occupied(mut e) => {
                let holds = e.get_mut();
                if holds.active.len() >= limit as usize {
                    return Reservation::AlreadyBought;
                }
                if !stock.take(start) {
                    return Reservation::SoldOut;
                }
                holds.last_n += 1;
                holds.active.push(holds.last_n);
                Reservation::Reserved { n: holds.last_n }
            }
            Entry::Vacant(e) => {
                if limit == 0 {
                    return Reservation::AlreadyBought;
                }
                if !stock.take(start) {
                    return Reservation::SoldOut;
                }
                e.insert(UserHolds {
                    last_n: 1,
                    active: smallvec![1],
                });
                Reservation::Reserved { n: 1 }
            }
        };
        outcome
    }

    /// The release itself; the async trait method only wraps it.
    pub fn release_sync(&self, campaign: &CampaignId, user: &UserId, n: u32) -> bool {
        let Some(stock) = self.stock(campaign) else {
            return false;
        };
        let Some(mut holds) = stock.users.get_mut(user) else {
            return false;
        };
        let Some(pos) = holds.active.iter().position(|&h| h == n) else {
            return false;
        };
        holds.active.swap_remove(pos);
        stock.give_back(self.shard_of(user));
        true
    }
}

#[async_trait]
impl StockLedger for MemLedger {
    /// The memory ledger shards every campaign already; `_buckets` is a
    /// hint for backends whose keys would otherwise be hot.
    async fn load(
        &self,
        campaign: &CampaignId,
        total: u64,
        _buckets: Option<u32>,
    ) -> Result<bool, LedgerError> {
        let mut fresh = false;
        self.campaigns.entry(campaign.clone()).or_insert_with(|| {
            fresh = true;
            Arc::new(Stock::new(total, self.cfg.shards))
        });
        Ok(fresh)
    }

    async fn restore(&self, campaign: &CampaignId, image: &LedgerImage) -> Result<(), LedgerError> {
        let total = image.total;
        // Distinct holds first: a record read twice is one unit, so it must
        // count once, before the stock is split and conservation checked.
        let mut users: std::collections::HashMap<&UserId, UserHolds> = Default::default();
        let mut held = 0u64;
        for h in &image.holds {
            let e = users.entry(&h.user).or_default();
            if !e.active.contains(&h.n) {
                e.active.push(h.n);
                e.last_n = e.last_n.max(h.n);
                held += 1;
            }
        }
        // Retired units take no stock, but their numbers are spent.
        for h in &image.retired {
            let e = users.entry(&h.user).or_default();
            e.last_n = e.last_n.max(h.n);
        }
        if held > total {
            return Err(LedgerError::Unavailable(format!(
                "durable records hold {held} units of {campaign} but its stock is {total}"
            )));
        }
        let stock = Stock::new(total - held, self.cfg.shards);
        let stock = Stock { total, ..stock };
        for (user, holds) in users {
            stock.users.insert(user.clone(), holds);
        }
        stock.check_conserved();
        self.campaigns.insert(campaign.clone(), Arc::new(stock));
        Ok(())
    }

    async fn reserve(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        limit: u32,
    ) -> Result<Reservation, LedgerError> {
        Ok(self.reserve_sync(campaign, user, limit))
    }

    async fn release(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        n: u32,
    ) -> Result<bool, LedgerError> {
        Ok(self.release_sync(campaign, user, n))
    }

    fn sold_out_hint(&self, campaign: &CampaignId) -> bool {
        self.campaigns
            .get(campaign)
            .is_some_and(|s| s.sold_out.load(Ordering::Relaxed))
    }

    async fn holds(&self, campaign: &CampaignId) -> Result<Option<Vec<Hold>>, LedgerError> {
        Ok(self.stock(campaign).map(|s| {
            s.users
                .iter()
                .flat_map(|e| {
                    let user = e.key().clone();
                    e.active
                        .iter()
                        .map(move |&n| Hold {
                            user: user.clone(),
                            n,
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        }))
    }

    async fn snapshot(&self, campaign: &CampaignId) -> Result<Option<LedgerSnapshot>, LedgerError> {
        Ok(self.stock(campaign).map(|s| {
            let remaining = s.remaining();
            LedgerSnapshot {
                total: s.total,
                reserved: s.total - remaining,
                remaining,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::ledger_contract_tests!(|| async { MemLedger::new(MemLedgerConfig { shards: 8 }) });

    #[test]
    fn shards_never_exceed_stock() {
        let s = Stock::new(3, 64);
        assert_eq!(s.shards.len(), 3);
        assert_eq!(s.remaining(), 3);
        let s = Stock::new(10, 4);
        let per: Vec<u64> = s.shards.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        assert_eq!(per, vec![3, 3, 2, 2]);
    }
}
