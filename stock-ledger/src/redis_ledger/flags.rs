//! What one gateway knows about a campaign in Redis without asking: its
//! bucket count and, per bucket, the newest (seq, sold out) it has seen.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// `seq << 1 | empty` of one bucket.
#[derive(Debug, Default)]
struct BucketFlag(AtomicU64);

impl BucketFlag {
    /// Applies news only if it is newer than what this gateway has seen, so
    /// a slow answer can never overwrite a fresher one.
    fn observe(&self, seq: u64, remaining: u64) {
        let next = (seq << 1) | u64::from(remaining == 0);
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
                (cur >> 1 < seq).then_some(next)
            });
    }

    fn empty(&self) -> bool {
        self.0.load(Ordering::Relaxed) & 1 == 1
    }
}

/// A campaign's layout and local flags.
#[derive(Debug)]
pub struct CampaignFlags {
    pub buckets: u32,
    flags: Box<[BucketFlag]>,
    /// Set when any bucket was found without its keys (Redis lost data):
    /// this gateway refuses to sell the campaign until a restore.
    blocked: AtomicBool,
}

impl CampaignFlags {
    pub fn new(buckets: u32) -> Self {
        Self {
            buckets,
            flags: (0..buckets).map(|_| BucketFlag::default()).collect(),
            blocked: AtomicBool::new(false),
        }
    }

    pub fn observe(&self, bucket: u32, seq: u64, remaining: u64) {
        if let Some(f) = self.flags.get(bucket as usize) {
            f.observe(seq, remaining);
        }
    }

    pub fn bucket_empty(&self, bucket: u32) -> bool {
        self.flags
            .get(bucket as usize)
            .is_some_and(BucketFlag::empty)
    }

    /// Sold out only when every bucket is known to be empty.
    pub fn sold_out(&self) -> bool {
        self.flags.iter().all(BucketFlag::empty)
    }

    pub fn set_blocked(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::SeqCst);
    }

    pub fn blocked(&self) -> bool {
        self.blocked.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_news_never_overwrites_newer() {
        let f = CampaignFlags::new(2);
        f.observe(0, 5, 0);
        f.observe(0, 4, 3);
        assert!(f.bucket_empty(0));
        assert!(!f.sold_out(), "bucket 1 not known empty");
        f.observe(1, 1, 0);
        assert!(f.sold_out());
        f.observe(0, 6, 1);
        assert!(!f.sold_out());
    }
}
