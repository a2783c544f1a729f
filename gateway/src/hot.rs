//! Hot items (seed 001, ch. 03): this gateway counts requests per campaign
//! in a sliding window, finds the hot ones within a tick of the upkeep
//! (`limits::spawn_upkeep`, every 250 ms) and gives each hot campaign its
//! own bounded admission queue, so one campaign cannot take every grab
//! permit and starve the others on the same gateway.
//!
//! A campaign is hot when its rate reaches `hot.threshold_per_s` and
//! `hot.factor` times the median rate of the other campaigns this gateway
//! has counted (idle ones count as 0, so a lone busy campaign is hot once
//! past the threshold; two equally busy ones are not hot against each
//! other). A hot campaign's grabs first take a permit of its own semaphore
//! (`hot.inflight_percent` of `limits.grabs_inflight_max`), waiting in line
//! (FIFO, at most `hot.waiters_max` waiters, at most `hot.wait_ms` each;
//! past either, 503 `overloaded`), then a permit of the gateway's in-flight
//! cap as every grab does.
//!
//! Memory is bounded: a window exists only for a campaign of the registry
//! (callers record after the campaign is found), and each is a fixed ring
//! of `BUCKETS` atomic counters.

use crate::config::HotSettings;
use crate::error::ApiError;
use dashmap::DashMap;
use engine::{CampaignId, Rejection};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Sub-windows of the sliding window.
pub const BUCKETS: usize = 20;

/// One campaign's counts and queue.
#[derive(Debug)]
struct Window {
    /// Per bucket: the bucket's number (time / bucket_ms, low 32 bits) in
    /// the high half, its count in the low half, so a bucket is renewed and
    /// counted in one atomic step.
    slots: [AtomicU64; BUCKETS],
    hot: AtomicBool,
    /// Requests per second times 1000, as of the last refresh.
    rate_milli: AtomicU64,
    queue: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// The sliding windows and the hot set of one gateway.
#[derive(Debug)]
pub struct HotItems {
    settings: HotSettings,
    bucket_ms: u64,
    queue_permits: usize,
    windows: DashMap<CampaignId, Arc<Window>>,
    /// The hot campaigns with their rate, fastest first, as of the last refresh.
    hot: parking_lot::RwLock<Vec<(CampaignId, f64)>>,
    /// Grabs of hot campaigns refused for a full queue or a long wait.
    shed: AtomicU64,
}

/// Decrements a waiter count when the wait ends, however it ends (a
/// client hanging up drops the future mid-wait).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HotItems {
    pub fn new(settings: &HotSettings, grabs_inflight_max: usize) -> Self {
        let share = grabs_inflight_max.saturating_mul(settings.inflight_percent as usize) / 100;
        Self {
            bucket_ms: (settings.window_ms / BUCKETS as u64).max(1),
            queue_permits: share.max(1),
            settings: settings.clone(),
            windows: DashMap::new(),
            hot: parking_lot::RwLock::new(Vec::new()),
            shed: AtomicU64::new(0),
        }
    }

    /// The window the rates are taken over.
    pub fn window_ms(&self) -> u64 {
        self.bucket_ms * BUCKETS as u64
    }

    fn window(&self, id: &CampaignId) -> Arc<Window> {
        if let Some(w) = self.windows.get(id) {
            return Arc::clone(&w);
        }
        let w = self.windows.entry(id.clone()).or_insert_with(|| {
            Arc::new(Window {
                slots: Default::default(),
                hot: AtomicBool::new(false),
                rate_milli: AtomicU64::new(0),
                queue: Arc::new(Semaphore::new(self.queue_permits)),
                waiting: AtomicUsize::new(0),
            })
        });
        Arc::clone(&w)
    }

    /// Counts one request of `id`, which must be a campaign of the registry.
    pub fn record(&self, id: &CampaignId, now_ms: u64) {
        let bucket = now_ms / self.bucket_ms;
        let slot = &self.window(id).slots[(bucket % BUCKETS as u64) as usize];
        let tag = (bucket & 0xffff_ffff) << 32;
        let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            Some(if v & !0xffff_ffff == tag {
                v + u64::from(v & 0xffff_ffff < 0xffff_ffff)
            } else {
                tag | 1
            })
        });
    }

    /// Requests per second of `id` over the window ending at `now_ms`.
    pub fn rate_per_s(&self, id: &CampaignId, now_ms: u64) -> f64 {
        match self.windows.get(id) {
            Some(w) => self.rate_of(&w, now_ms),
            None => 0.0,
        }
    }

    fn rate_of(&self, w: &Window, now_ms: u64) -> f64 {
        let bucket = now_ms / self.bucket_ms;
        let mut total = 0u64;
        for slot in &w.slots {
            let v = slot.load(Ordering::Acquire);
            let age = (bucket & 0xffff_ffff).wrapping_sub(v >> 32) & 0xffff_ffff;
            if age < BUCKETS as u64 {
                total += v & 0xffff_ffff;
            }
        }
        // The current bucket is only partly over.
        let elapsed_ms = (BUCKETS as u64 - 1) * self.bucket_ms + now_ms % self.bucket_ms + 1;
        total as f64 * 1_000.0 / elapsed_ms as f64
    }

    /// Re-judges which campaigns are hot (the upkeep, every tick).
    pub fn refresh(&self, now_ms: u64) {
        let windows: Vec<(CampaignId, Arc<Window>)> = self
            .windows
            .iter()
            .map(|e| (e.key().clone(), Arc::clone(e.value())))
            .collect();
        let rates: Vec<f64> = windows
            .iter()
            .map(|(_, w)| self.rate_of(w, now_ms))
            .collect();
        let mut sorted = rates.clone();
        sorted.sort_by(f64::total_cmp);
        let mut hot = Vec::new();
        for ((id, w), &rate) in windows.iter().zip(&rates) {
            let is_hot = rate >= f64::from(self.settings.threshold_per_s)
                && rate >= f64::from(self.settings.factor) * median_without(&sorted, rate);
            w.hot.store(is_hot, Ordering::Relaxed);
            w.rate_milli
                .store((rate * 1_000.0) as u64, Ordering::Relaxed);
            if is_hot {
                hot.push((id.clone(), rate));
            }
        }
        hot.sort_by(|a, b| b.1.total_cmp(&a.1));
        *self.hot.write() = hot;
    }

    /// The hot campaigns, fastest first, as of the last refresh.
    pub fn hot(&self) -> Vec<(CampaignId, f64)> {
        self.hot.read().clone()
    }

    pub fn is_hot(&self, id: &CampaignId) -> bool {
        self.windows
            .get(id)
            .is_some_and(|w| w.hot.load(Ordering::Relaxed))
    }

    /// A permit of the campaign's own queue when it is hot (`None` when it
    /// is not: its grabs go straight to the in-flight cap). Waits in line,
    /// bounded in waiters and time; past either, 503 `overloaded`.
    pub async fn admit(&self, id: &CampaignId) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
        let Some(w) = self.windows.get(id).map(|w| Arc::clone(&w)) else {
            return Ok(None);
        };
        if !w.hot.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if let Ok(p) = Arc::clone(&w.queue).try_acquire_owned() {
            return Ok(Some(p));
        }
        if w.waiting.fetch_add(1, Ordering::AcqRel) >= self.settings.waiters_max {
            w.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(self.shed());
        }
        let _waiting = Waiting(&w.waiting);
        let wait = std::time::Duration::from_millis(self.settings.wait_ms);
        match tokio::time::timeout(wait, Arc::clone(&w.queue).acquire_owned()).await {
            Ok(Ok(p)) => Ok(Some(p)),
            _ => Err(self.shed()),
        }
    }

    fn shed(&self) -> ApiError {
        self.shed.fetch_add(1, Ordering::Relaxed);
        let mut e = ApiError::from(Rejection::Overloaded);
        e.message = "this sale is very busy on this gateway; try again shortly".into();
        e
    }

    /// Prometheus lines: every counted campaign's rate and hot flag, the
    /// hot queue's waiters, grabs shed by it.
    pub fn metrics(&self, scrape: &crate::metrics::Scrape) {
        let rates = scrape.gauge(
            "seckill_campaign_requests_per_s",
            "Requests naming the campaign per second on this gateway, over the hot window.",
            &["campaign"],
        );
        let hot = scrape.gauge(
            "seckill_campaign_hot",
            "1 while the campaign is hot on this gateway.",
            &["campaign"],
        );
        let waiting = scrape.gauge(
            "seckill_hot_queue_waiting",
            "Grabs of a hot campaign waiting for its admission share.",
            &["campaign"],
        );
        for e in self.windows.iter() {
            let (id, w) = (e.key().as_str(), e.value());
            rates
                .with_label_values(&[id])
                .set(w.rate_milli.load(Ordering::Relaxed) as f64 / 1_000.0);
            hot.with_label_values(&[id])
                .set(f64::from(u8::from(w.hot.load(Ordering::Relaxed))));
            waiting
                .with_label_values(&[id])
                .set(w.waiting.load(Ordering::Relaxed) as f64);
        }
        scrape.value(
            "seckill_hot_items",
            "Campaigns hot on this gateway.",
            self.hot.read().len() as f64,
        );
        scrape.total(
            "seckill_hot_queue_shed_total",
            "Grabs of a hot campaign refused 503 by its admission queue.",
            self.shed.load(Ordering::Relaxed),
        );
    }
}

/// The (upper) median of `sorted` once one element equal to `value` is left out.
fn median_without(sorted: &[f64], value: f64) -> f64 {
    let n = sorted.len();
    if n <= 1 {
        return 0.0;
    }
    let k = sorted.partition_point(|&x| x < value);
    let m = (n - 1) / 2;
    if m < k {
        sorted[m]
    } else {
        sorted.get(m + 1).copied().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> CampaignId {
        CampaignId::parse(s).unwrap()
    }

    fn settings() -> HotSettings {
        HotSettings {
            window_ms: 2_000,
            threshold_per_s: 50,
            factor: 4,
            inflight_percent: 25,
            waiters_max: 2,
            wait_ms: 50,
        }
    }

    /// `per_s` requests a second for `secs` seconds, evenly, from `start_ms`.
    fn feed(h: &HotItems, c: &CampaignId, per_s: u64, start_ms: u64, secs: u64) {
        let n = per_s * secs;
        for i in 0..n {
            h.record(c, start_ms + i * 1_000 / per_s);
        }
    }

    #[test]
    fn the_rate_is_counted_over_the_sliding_window() {
        let h = HotItems::new(&settings(), 100);
        let c = id("c");
        feed(&h, &c, 100, 10_000, 3);
        let r = h.rate_per_s(&c, 13_000);
        assert!((95.0..=105.0).contains(&r), "{r}");
        // Old buckets fall out of the window.
        assert_eq!(h.rate_per_s(&c, 16_000), 0.0);
        assert_eq!(h.rate_per_s(&id("never"), 13_000), 0.0);
    }

    #[test]
    fn hot_means_past_the_threshold_and_well_above_the_others() {
        let h = HotItems::new(&settings(), 100);
        let (a, b, c) = (id("a"), id("b"), id("c"));
        feed(&h, &a, 400, 0, 2);
        feed(&h, &b, 40, 0, 2);
        feed(&h, &c, 40, 0, 2);
        h.refresh(2_000);
        assert!(h.is_hot(&a));
        assert!(!h.is_hot(&b) && !h.is_hot(&c), "below the threshold");
        let hot = h.hot();
        assert_eq!(hot.len(), 1);
        assert_eq!(hot[0].0, a);
        // Two equally busy campaigns are not hot against each other.
        let h = HotItems::new(&settings(), 100);
        feed(&h, &a, 400, 0, 2);
        feed(&h, &b, 400, 0, 2);
        h.refresh(2_000);
        assert!(!h.is_hot(&a) && !h.is_hot(&b));
        // A lone busy campaign is hot once past the threshold.
        let h = HotItems::new(&settings(), 100);
        feed(&h, &a, 60, 0, 2);
        h.refresh(2_000);
        assert!(h.is_hot(&a));
    }

    #[test]
    fn median_of_the_others() {
        let s = [0.0, 1.0, 2.0, 10.0];
        assert_eq!(median_without(&s, 10.0), 1.0);
        assert_eq!(median_without(&s, 0.0), 2.0);
        assert_eq!(median_without(&[5.0], 5.0), 0.0);
        assert_eq!(median_without(&[5.0, 7.0], 7.0), 5.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hot_campaign_queues_for_its_own_share_and_sheds_past_it() {
        // 8 in flight at most: a hot campaign gets 25% = 2 permits.
        let h = HotItems::new(&settings(), 8);
        let (a, b) = (id("a"), id("b"));
        feed(&h, &a, 400, 0, 2);
        h.record(&b, 1_000);
        h.refresh(2_000);
        assert!(h.admit(&b).await.unwrap().is_none(), "not hot: no queue");
        let p1 = h.admit(&a).await.unwrap().expect("permit");
        let _p2 = h.admit(&a).await.unwrap().expect("permit");
        // Two may wait; the third is shed at once.
        let h = Arc::new(h);
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let (h, a) = (Arc::clone(&h), a.clone());
                tokio::spawn(async move {
                    let got = h.admit(&a).await;
                    // Hold a permit past the other waiter's deadline.
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    got.map(|p| p.is_some())
                })
            })
            .collect();
        tokio::task::yield_now().await;
        let e = h.admit(&a).await.unwrap_err();
        assert_eq!(e.code, crate::error::Code::Overloaded);
        // A freed permit goes to the first waiter; the other times out.
        drop(p1);
        let mut outcomes = Vec::new();
        for w in waiters {
            outcomes.push(w.await.unwrap().is_ok());
        }
        outcomes.sort();
        assert_eq!(outcomes, vec![false, true]);
        let scrape = crate::metrics::Scrape::new();
        h.metrics(&scrape);
        let m = String::from_utf8(scrape.encode()).expect("utf-8");
        assert!(m.contains("seckill_hot_queue_shed_total 2"), "{m}");
        assert!(m.contains("seckill_campaign_hot{campaign=\"a\"} 1"), "{m}");
    }
}
