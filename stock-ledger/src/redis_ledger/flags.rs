//! What one gateway knows about a campaign in Redis without asking: its
//! bucket count and, per bucket, the newest version of the data it has seen
//! (generation, seq), whether the bucket was empty then, and whether the
//! bucket is lost (keys gone) or stale (its data went back in time).
//!
//! News is ordered by (generation, seq): a newer generation (a restore)
//! replaces everything known about the bucket and unblocks it; within a
//! generation only a higher seq is newer.
//!
//! Going back in time is judged per request against the bucket's version
//! this gateway had seen *before it sent the request* (its floor): Redis runs
//! one command at a time, so a reply to a request that changed the bucket
//! carries a version above the floor, and any reply at least the floor.
//! Comparing with the floor rather than with the newest version seen keeps
//! replies that merely arrive out of order (concurrent requests) from
//! looking old.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The version of a bucket's data: ordered by generation, then seq.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub generation: u64,
    pub seq: u64,
}

/// What the request a reply answers did to its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// It changed the bucket: the reply's version must be above the floor.
    Changed,
    /// A read or a refusal: the reply's version must be at least the floor.
    Unchanged,
}

#[derive(Debug, Default)]
struct Bucket {
    seen: Version,
    empty: bool,
    /// The bucket's keys were missing (Redis lost data).
    lost: bool,
    /// The bucket's data went back in time; nothing of generation
    /// `seen.generation` or older is trusted until a newer generation.
    stale: bool,
}

/// A campaign's layout and local flags. Buckets are at most 64, so the
/// per-request checks read one bit mask each.
#[derive(Debug)]
pub struct CampaignFlags {
    pub buckets: u32,
    states: Box<[Mutex<Bucket>]>,
    all: u64,
    /// Bit `b`: bucket `b` was empty in the newest news.
    empty: AtomicU64,
    /// Bit `b`: bucket `b` is lost or stale; any bit blocks the campaign
    /// on this gateway (`NotLoaded`) until the bucket is seen again, for a
    /// stale one in a newer generation.
    blocked: AtomicU64,
}

impl CampaignFlags {
    pub fn new(buckets: u32) -> Self {
        let buckets = buckets.clamp(1, 64);
        Self {
            buckets,
            states: (0..buckets)
                .map(|_| Mutex::new(Bucket::default()))
                .collect(),
            all: if buckets == 64 {
                u64::MAX
            } else {
                (1u64 << buckets) - 1
            },
            empty: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
        }
    }

    /// The newest version of bucket `b` this gateway has seen: take it just
    /// before sending a request, and judge the reply against it.
    pub fn floor(&self, bucket: u32) -> Version {
        self.states
            .get(bucket as usize)
            .map_or_else(Version::default, |s| s.lock().seen)
    }

    /// Takes in a reply about bucket `b` (its version `at` and the stock it
    /// left) to a request sent when the bucket's floor was `floor`. Returns
    /// whether the reply can be trusted: false when the data went back in
    /// time (now or earlier, in this generation), which blocks the campaign.
    pub fn observe(
        &self,
        bucket: u32,
        floor: Version,
        at: Version,
        stock: u64,
        effect: Effect,
    ) -> bool {
        let Some(state) = self.states.get(bucket as usize) else {
            return false;
        };
        let mut st = state.lock();
        let trusted = if at.generation > st.seen.generation {
            // A newer generation replaces everything known about the bucket.
            *st = Bucket {
                seen: at,
                empty: stock == 0,
                lost: false,
                stale: false,
            };
            true
        } else if at < floor || (effect == Effect::Changed && at == floor) {
            st.stale = true;
            false
        } else if st.stale {
            false
        } else {
            st.lost = false;
            if at > st.seen {
                st.seen = at;
                st.empty = stock == 0;
            }
            true
        };
        self.publish(bucket, &st);
        trusted
    }

    /// Bucket `b`'s keys are gone: block until it is seen again.
    pub fn mark_lost(&self, bucket: u32) {
        if let Some(state) = self.states.get(bucket as usize) {
            let mut st = state.lock();
            st.lost = true;
            self.publish(bucket, &st);
        }
    }

    /// Mirrors a bucket's state into the masks; called with its lock held,
    /// so each bucket's bits change in the order of its news.
    fn publish(&self, bucket: u32, st: &Bucket) {
        let bit = 1u64 << bucket;
        let set = |mask: &AtomicU64, on: bool| {
            if on {
                mask.fetch_or(bit, Ordering::SeqCst);
            } else {
                mask.fetch_and(!bit, Ordering::SeqCst);
            }
        };
        set(&self.empty, st.empty);
        set(&self.blocked, st.lost || st.stale);
    }

    pub fn bucket_empty(&self, bucket: u32) -> bool {
        bucket < self.buckets && self.empty.load(Ordering::Relaxed) & (1u64 << bucket) != 0
    }

    /// Sold out only when every bucket is known to be empty.
    pub fn sold_out(&self) -> bool {
        self.empty.load(Ordering::Relaxed) == self.all
    }

    /// Some bucket is lost or stale: this gateway refuses to sell the
    /// campaign until a restore (or, for lost keys, until they are back).
    pub fn blocked(&self) -> bool {
        self.blocked.load(Ordering::SeqCst) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(generation: u64, seq: u64) -> Version {
        Version { generation, seq }
    }

    #[test]
    fn older_news_never_overwrites_newer() {
        let f = CampaignFlags::new(2);
        let none = Version::default();
        assert!(f.observe(0, none, v(1, 5), 0, Effect::Unchanged));
        // A slower reply, sent before the first was seen: older, but honest.
        assert!(f.observe(0, none, v(1, 4), 3, Effect::Changed));
        assert!(f.bucket_empty(0));
        assert!(!f.sold_out(), "bucket 1 not known empty");
        f.observe(1, none, v(1, 1), 0, Effect::Unchanged);
        assert!(f.sold_out());
        f.observe(0, v(1, 5), v(1, 6), 1, Effect::Changed);
        assert!(!f.sold_out());
        assert!(!f.blocked());
    }

    #[test]
    fn a_newer_generation_replaces_everything() {
        let f = CampaignFlags::new(1);
        f.observe(0, Version::default(), v(1, 40), 0, Effect::Unchanged);
        assert!(f.sold_out());
        // Restored: the counter starts low again, in a newer generation.
        assert!(f.observe(0, v(1, 40), v(2, 1), 3, Effect::Unchanged));
        assert!(!f.sold_out());
        assert_eq!(f.floor(0), v(2, 1));
    }

    #[test]
    fn data_from_the_past_blocks_until_a_newer_generation() {
        let f = CampaignFlags::new(2);
        f.observe(0, Version::default(), v(1, 10), 4, Effect::Unchanged);
        f.observe(1, Version::default(), v(1, 10), 4, Effect::Unchanged);
        // A change answered with the floor's own version: it ran on older data.
        assert!(!f.observe(0, v(1, 10), v(1, 10), 3, Effect::Changed));
        assert!(f.blocked());
        // Later news of the same generation, even above the floor, stays
        // untrusted: it is the old data moving on.
        assert!(!f.observe(0, v(1, 10), v(1, 12), 2, Effect::Changed));
        assert!(f.blocked());
        // A read below the floor on another bucket, and an older generation.
        assert!(!f.observe(1, v(1, 10), v(1, 9), 4, Effect::Unchanged));
        let g = CampaignFlags::new(1);
        g.observe(0, Version::default(), v(3, 1), 4, Effect::Unchanged);
        assert!(!g.observe(0, v(3, 1), v(2, 50), 4, Effect::Unchanged));
        assert!(g.blocked());
        // A restore (newer generation) unblocks, bucket by bucket.
        assert!(f.observe(0, v(1, 10), v(2, 1), 5, Effect::Changed));
        assert!(f.blocked(), "bucket 1 still stale");
        assert!(f.observe(1, v(1, 10), v(2, 1), 5, Effect::Changed));
        assert!(!f.blocked());
    }

    #[test]
    fn lost_keys_block_until_seen_again() {
        let f = CampaignFlags::new(1);
        f.observe(0, Version::default(), v(1, 3), 1, Effect::Unchanged);
        f.mark_lost(0);
        assert!(f.blocked());
        assert!(f.observe(0, v(1, 3), v(2, 1), 1, Effect::Unchanged));
        assert!(!f.blocked());
    }
}
