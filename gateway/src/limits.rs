//! Rate limits: GCRA token buckets (`governor`) per client address, per
//! buyer and gateway-wide, and one per campaign shared by every gateway
//! through the `SharedState` port.
//!
//! Where each one runs (cheapest and most protective first):
//! - per address and global: at the router for every buyer `/api/` request
//!   before any token is verified (`RateLimits::address`); for grabs, in the
//!   funnel right after the local campaign-state check, so a sold-out or
//!   not-started storm ends at that check without spending anyone's budget;
//! - per buyer: after the token (the `sub` is trusted only once verified,
//!   else anyone could spend a victim's budget): the funnel's `user` stage
//!   and, for grab path, quiz, order status and pay, the router (which
//!   verifies the token once more for it; the handler answers a bad one);
//! - per campaign: the funnel's `campaign_rate` stage, after every local
//!   check (quiz included), so only complete, correct grabs spend the
//!   campaign's shared budget, and before the in-flight cap so a refused
//!   grab holds no permit.
//!
//! Memory is bounded: each keyed limiter holds at most `keys_max` keys
//! (`CappedStore`), and a periodic sweep (`spawn_upkeep`) drops keys whose
//! bucket is full again (governor's `retain_recent`, then `shrink_to_fit`
//! once the table is mostly empty). When the table is full, a key that is
//! not in it is judged as a fresh key and not stored: that request is not
//! limited by this limiter (the global, campaign and in-flight limits still
//! apply). Refusing instead would let a flood of new addresses lock every
//! newcomer out; evicting a live key would hand its owner a full bucket
//! again. Keys live only while their bucket is not full (seconds), so the
//! table is full only while more than `keys_max` distinct clients are
//! active at once; `seckill_rate_limit_keys_overflow_total` counts it.

use crate::app::App;
use crate::config::RateLimitSettings;
use crate::error::ApiError;
use dashmap::DashMap;
use engine::ports::{RateQuota, SharedState, Throttle};
use engine::{CampaignId, UserId};
use governor::clock::Clock as GovernorClock;
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

/// The app's clock as governor's: nanoseconds from the app's milliseconds,
/// so tests that move the app's clock move the buckets too.
#[derive(Debug, Clone)]
pub struct AppClock(pub Arc<dyn crate::clock::Clock>);

impl GovernorClock for AppClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::new(self.0.now_ms().saturating_mul(1_000_000))
    }
}

/// A keyed state store holding at most `cap` keys (see the module doc).
#[derive(Debug, Clone)]
pub struct CappedStore(Arc<CappedInner>);

#[derive(Debug)]
struct CappedInner {
    map: DashMap<u64, InMemoryState>,
    /// Keys held or being inserted; taken before an insert, so concurrent
    /// inserts never pass `cap`.
    len: AtomicUsize,
    cap: usize,
    /// Requests whose key did not fit.
    overflow: AtomicU64,
}

impl CappedStore {
    pub fn new(cap: usize) -> Self {
        Self(Arc::new(CappedInner {
            map: DashMap::new(),
            len: AtomicUsize::new(0),
            cap,
            overflow: AtomicU64::new(0),
        }))
    }

    pub fn overflowed(&self) -> u64 {
        self.0.overflow.load(Ordering::Relaxed)
    }

    /// Slots allocated (the memory the table holds, in keys).
    pub fn capacity(&self) -> usize {
        self.0.map.capacity()
    }
}

/// The bucket's theoretical arrival time, read without changing it.
fn tat(state: &InMemoryState) -> Option<Nanos> {
    match state.measure_and_replace(&NotKeyed::NonKey, |tat| {
        Err::<((), Nanos), Option<Nanos>>(tat)
    }) {
        Ok(()) => None,
        Err(tat) => tat,
    }
}

impl StateStore for CappedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let inner = &self.0;
        if let Some(state) = inner.map.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        if inner.len.fetch_add(1, Ordering::AcqRel) >= inner.cap {
            inner.len.fetch_sub(1, Ordering::AcqRel);
            inner.overflow.fetch_add(1, Ordering::Relaxed);
            // Judged as a fresh key, not kept (see the module doc).
            return f(None).map(|(t, _)| t);
        }
        let entry = inner.map.entry(*key);
        if matches!(entry, dashmap::Entry::Occupied(_)) {
            inner.len.fetch_sub(1, Ordering::AcqRel);
        }
        let state = entry.or_default();
        state.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl ShrinkableKeyedStateStore<u64> for CappedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let inner = &self.0;
        inner.map.retain(|_, state| {
            let keep = tat(state).is_some_and(|t| t > drop_below);
            if !keep {
                inner.len.fetch_sub(1, Ordering::AcqRel);
            }
            keep
        });
    }

    fn shrink_to_fit(&self) {
        self.0.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.map.len()
    }

    fn is_empty(&self) -> bool {
        self.0.map.is_empty()
    }
}

fn quota(per_s: u32, burst: u32) -> Option<Quota> {
    let per_s = NonZeroU32::new(per_s)?;
    Some(Quota::per_second(per_s).allow_burst(NonZeroU32::new(burst).unwrap_or(per_s)))
}

/// Milliseconds until `earliest`, rounded up.
fn wait_ms(earliest: Nanos, now: Nanos) -> u64 {
    earliest.saturating_sub(now).as_u64().div_ceil(1_000_000)
}

/// One keyed limiter with a bounded table; generic over the clock so unit
/// tests can use governor's `FakeRelativeClock`.
#[derive(Debug)]
pub struct KeyedLimit<C: GovernorClock<Instant = Nanos>> {
    limiter: RateLimiter<u64, CappedStore, C, StateInformationMiddleware>,
    store: CappedStore,
    burst: u32,
}

impl<C: GovernorClock<Instant = Nanos>> KeyedLimit<C> {
    /// `None` when `per_s` is 0 (the limit is off).
    pub fn new(per_s: u32, burst: u32, keys_max: usize, clock: C) -> Option<Self> {
        let q = quota(per_s, burst)?;
        let store = CappedStore::new(keys_max);
        Some(Self {
            limiter: RateLimiter::<u64, _, C, NoOpMiddleware<Nanos>>::new(q, store.clone(), clock)
                .with_middleware::<StateInformationMiddleware>(),
            store,
            burst: q.burst_size().get(),
        })
    }

    /// `Ok(remaining)` or `Err(ms until one more would conform)`.
    pub fn check(&self, key: u64) -> Result<u32, u64> {
        match self.limiter.check_key(&key) {
            Ok(state) => Ok(state.remaining_burst_capacity()),
            Err(not_until) => {
                Err(wait_ms(not_until.earliest_possible(), self.limiter.clock().now()).max(1))
            }
        }
    }

    /// Drops keys whose bucket is full again; gives memory back once the
    /// table is mostly empty.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        if self.store.0.map.len().saturating_mul(4) < self.store.capacity() {
            self.limiter.shrink_to_fit();
        }
    }

    pub fn keys(&self) -> usize {
        // The table itself: the reservation counter may pass the cap for
        // an instant while a refused newcomer gives its slot back.
        self.store.0.map.len()
    }

    pub fn store(&self) -> &CappedStore {
        &self.store
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }
}

type Global = RateLimiter<NotKeyed, InMemoryState, AppClock, StateInformationMiddleware>;

/// Which limit refused a request (metrics and messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ip,
    User,
    Global,
    Campaign,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Ip, Kind::User, Kind::Global, Kind::Campaign];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ip => "ip",
            Kind::User => "user",
            Kind::Global => "global",
            Kind::Campaign => "campaign",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Kind::Ip => "too many requests from this address; slow down",
            Kind::User => "too many requests from this buyer; slow down",
            Kind::Global => "this gateway is at its request rate; try again shortly",
            Kind::Campaign => "this sale is at its request rate; try again shortly",
        }
    }
}

/// Longest a grab waits for the shared campaign bucket before going on
/// without it (a limit protects; it must not stall the sale).
const THROTTLE_WAIT_MS: u64 = 500;

/// The campaign-wide limit: one bucket per campaign in the shared state
/// (Redis in production, so all gateways share it). A `Limited` answer is
/// kept locally until it passes, so during a flood the shared state sees
/// about the admitted rate plus one call per gateway per refill interval.
#[derive(Debug)]
struct CampaignLimit {
    quota: RateQuota,
    /// Campaign -> app-clock ms until which this gateway refuses locally.
    /// Bounded: only campaigns of the registry reach this stage.
    blocked_until_ms: DashMap<CampaignId, u64>,
    /// Shared-state calls made, and those that failed or timed out (the
    /// grab went on).
    calls: AtomicU64,
    errors: AtomicU64,
}

/// Every rate limit of one gateway.
#[derive(Debug)]
pub struct RateLimits {
    enabled: bool,
    ip: Option<KeyedLimit<AppClock>>,
    user: Option<KeyedLimit<AppClock>>,
    global: Option<(Global, u32)>,
    campaign: Option<CampaignLimit>,
    /// Keys are hashes of addresses and user ids under a per-process
    /// random key: a client cannot aim a collision at someone else.
    hasher: std::collections::hash_map::RandomState,
    refused: [AtomicU64; Kind::ALL.len()],
    pub sweep_ms: u64,
}

impl RateLimits {
    pub fn new(s: &RateLimitSettings, clock: Arc<dyn crate::clock::Clock>) -> Self {
        let clock = AppClock(clock);
        let on = s.enabled;
        Self {
            enabled: on,
            ip: KeyedLimit::new(s.ip_per_s, s.ip_burst, s.keys_max, clock.clone()).filter(|_| on),
            user: KeyedLimit::new(s.user_per_s, s.user_burst, s.keys_max, clock.clone())
                .filter(|_| on),
            global: quota(s.global_per_s, s.global_burst)
                .filter(|_| on)
                .map(|q| {
                    let limiter = RateLimiter::direct_with_clock(q, clock.clone())
                        .with_middleware::<StateInformationMiddleware>();
                    (limiter, q.burst_size().get())
                }),
            campaign: (on && s.campaign_per_s > 0).then(|| CampaignLimit {
                quota: RateQuota {
                    per_s: s.campaign_per_s,
                    burst: s.campaign_burst.max(1),
                },
                blocked_until_ms: DashMap::new(),
                calls: AtomicU64::new(0),
                errors: AtomicU64::new(0),
            }),
            hasher: Default::default(),
            refused: Default::default(),
            sweep_ms: s.sweep_ms,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn refuse(&self, kind: Kind, limit: u32, retry_after_ms: u64) -> ApiError {
        self.refused[kind as usize].fetch_add(1, Ordering::Relaxed);
        ApiError::rate_limited(kind.message(), limit, retry_after_ms)
    }

    fn keyed(
        &self,
        kind: Kind,
        limit: &Option<KeyedLimit<AppClock>>,
        key: u64,
    ) -> Result<(), ApiError> {
        match limit {
            Some(l) => l
                .check(key)
                .map(|_| ())
                .map_err(|ms| self.refuse(kind, l.burst(), ms)),
            None => Ok(()),
        }
    }

    /// The client address's bucket (IPv6 counts per /64, which one
    /// subscriber usually holds whole).
    pub fn ip(&self, client: IpAddr) -> Result<(), ApiError> {
        let net: u128 = match client {
            IpAddr::V4(a) => u128::from(a.to_bits()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => u128::from(v4.to_bits()),
                None => (a.to_bits() >> 64) << 64 | 1 << 63,
            },
        };
        self.keyed(Kind::Ip, &self.ip, self.hasher.hash_one(net))
    }

    /// The gateway-wide bucket.
    pub fn global(&self) -> Result<(), ApiError> {
        match &self.global {
            Some((g, burst)) => g.check().map(|_| ()).map_err(|not_until| {
                let ms = wait_ms(not_until.earliest_possible(), g.clock().now()).max(1);
                self.refuse(Kind::Global, *burst, ms)
            }),
            None => Ok(()),
        }
    }

    /// The address, then the gateway-wide bucket: the router's check of
    /// every buyer request (the funnel's `ip` and `global` stages for grabs).
    pub fn address(&self, client: IpAddr) -> Result<(), ApiError> {
        self.ip(client)?;
        self.global()
    }

    /// The buyer's bucket; `user` must come from a verified token.
    pub fn user(&self, user: &UserId) -> Result<(), ApiError> {
        self.keyed(Kind::User, &self.user, self.hasher.hash_one(user.as_str()))
    }

    pub fn user_enabled(&self) -> bool {
        self.user.is_some()
    }

    /// The campaign's shared bucket (see `CampaignLimit`). A failing or
    /// slow shared state lets the grab go on: the ledger, on the same
    /// store, answers for it next.
    pub async fn campaign(
        &self,
        shared: &dyn SharedState,
        id: &CampaignId,
        now_ms: u64,
    ) -> Result<(), ApiError> {
        let Some(c) = &self.campaign else {
            return Ok(());
        };
        if let Some(until) = c.blocked_until_ms.get(id).map(|u| *u) {
            if now_ms < until {
                return Err(self.refuse(Kind::Campaign, c.quota.burst, until - now_ms));
            }
        }
        c.calls.fetch_add(1, Ordering::Relaxed);
        let key = format!("campaign:{id}");
        let wait = std::time::Duration::from_millis(THROTTLE_WAIT_MS);
        match tokio::time::timeout(wait, shared.throttle(&key, c.quota, now_ms)).await {
            Ok(Ok(Throttle::Allowed { .. })) => Ok(()),
            Ok(Ok(Throttle::Limited { retry_after_ms })) => {
                let retry_after_ms = retry_after_ms.max(1);
                c.blocked_until_ms
                    .insert(id.clone(), now_ms.saturating_add(retry_after_ms));
                Err(self.refuse(Kind::Campaign, c.quota.burst, retry_after_ms))
            }
            Ok(Err(e)) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(campaign = %id, error = %e, "campaign rate limit unavailable");
                Ok(())
            }
            Err(_) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(campaign = %id, "campaign rate limit timed out");
                Ok(())
            }
        }
    }

    /// Drops idle keys (the periodic upkeep).
    pub fn sweep(&self) {
        for l in [&self.ip, &self.user].into_iter().flatten() {
            l.sweep();
        }
    }

    /// Prometheus lines: refusals per limit, keys held, keys that did not fit.
    pub fn metrics(&self, scrape: &crate::metrics::Scrape) {
        scrape.value(
            "seckill_rate_limits_enabled",
            "1 when the rate limits are on (SECKILL_LIMITS).",
            f64::from(u8::from(self.enabled)),
        );
        let limited = scrape.counter(
            "seckill_rate_limited_total",
            "Requests refused with 429 rate_limited, by limit.",
            &["limit"],
        );
        for kind in Kind::ALL {
            limited
                .with_label_values(&[kind.as_str()])
                .inc_by(self.refused[kind as usize].load(Ordering::Relaxed));
        }
        let keyed = [(Kind::Ip, &self.ip), (Kind::User, &self.user)];
        let keys = scrape.gauge(
            "seckill_rate_limit_keys",
            "Keys a keyed rate limiter holds now.",
            &["limit"],
        );
        let overflow = scrape.counter(
            "seckill_rate_limit_keys_overflow_total",
            "Requests whose key did not fit a full keyed limiter (judged as new, not stored).",
            &["limit"],
        );
        for (kind, l) in keyed {
            if let Some(l) = l {
                keys.with_label_values(&[kind.as_str()])
                    .set(l.keys() as f64);
                overflow
                    .with_label_values(&[kind.as_str()])
                    .inc_by(l.store().overflowed());
            }
        }
        if let Some(c) = &self.campaign {
            scrape.total(
                "seckill_rate_limit_shared_calls_total",
                "Calls to the shared state for the campaign rate limit.",
                c.calls.load(Ordering::Relaxed),
            );
            scrape.total(
                "seckill_rate_limit_errors_total",
                "Campaign rate limit checks the shared state failed (the grab went on).",
                c.errors.load(Ordering::Relaxed),
            );
        }
    }
}

/// How often the upkeep runs: hot items are re-judged every tick; idle
/// rate-limit keys are swept every `rate_limits.sweep_ms`.
pub const UPKEEP_TICK_MS: u64 = 250;

/// Starts the upkeep task; it ends once the app is dropped.
pub fn spawn_upkeep(app: &Arc<App>) -> tokio::task::JoinHandle<()> {
    let weak: Weak<App> = Arc::downgrade(app);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(UPKEEP_TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut since_sweep_ms = 0;
        loop {
            tick.tick().await;
            let Some(app) = weak.upgrade() else { return };
            app.hot.refresh(app.clock.now_ms());
            since_sweep_ms += UPKEEP_TICK_MS;
            if since_sweep_ms >= app.rate.sweep_ms {
                since_sweep_ms = 0;
                // A sweep walks whole tables: off the request threads.
                let sweeping = Arc::clone(&app);
                if let Err(e) = tokio::task::spawn_blocking(move || sweeping.rate.sweep()).await {
                    tracing::error!(error = %e, "rate-limit sweep failed");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    #[test]
    fn a_key_gets_its_burst_then_its_rate() {
        let clock = FakeRelativeClock::default();
        let l = KeyedLimit::new(10, 5, 100, clock.clone()).unwrap();
        for left in (0..5).rev() {
            assert_eq!(l.check(1), Ok(left));
        }
        assert_eq!(l.check(1), Err(100), "one cell per 100 ms");
        assert_eq!(l.check(2), Ok(4), "other keys keep their own bucket");
        clock.advance(Duration::from_millis(100));
        assert_eq!(l.check(1), Ok(0));
        assert!(l.check(1).is_err());
        // Over 10 s at 10x the rate: burst + rate x time, exactly.
        let mut admitted = 0;
        for _ in 0..1_000 {
            clock.advance(Duration::from_millis(10));
            admitted += u32::from(l.check(3).is_ok());
        }
        assert_eq!(
            admitted,
            5 + 100 - 1,
            "burst + 10/s over 10 s (less one cell)"
        );
    }

    #[test]
    fn the_table_never_grows_past_its_cap_and_newcomers_still_pass() {
        let clock = FakeRelativeClock::default();
        let l = KeyedLimit::new(1, 1, 1_000, clock.clone()).unwrap();
        for k in 0..5_000u64 {
            assert!(l.check(k).is_ok(), "a fresh key always passes once");
            assert!(l.keys() <= 1_000);
        }
        assert_eq!(l.keys(), 1_000);
        assert_eq!(l.store().overflowed(), 4_000);
        // Keys in the table stay limited while it is full.
        assert!(l.check(7).is_err());
        // Once their buckets are full again they are swept, and the room
        // is used again.
        clock.advance(Duration::from_secs(3));
        l.sweep();
        assert_eq!(l.keys(), 0);
        assert!(l.check(7).is_ok());
        assert!(l.check(7).is_err(), "tracked again");
        assert_eq!(l.keys(), 1);
    }

    #[test]
    fn sweeping_keeps_keys_whose_bucket_is_not_full() {
        let clock = FakeRelativeClock::default();
        let l = KeyedLimit::new(1, 2, 100, clock.clone()).unwrap();
        assert!(l.check(1).is_ok());
        assert!(l.check(1).is_ok());
        clock.advance(Duration::from_millis(500));
        l.sweep();
        assert_eq!(l.keys(), 1, "still owes time");
        assert!(l.check(1).is_err(), "not reset by the sweep");
    }

    #[test]
    fn concurrent_newcomers_never_pass_the_cap() {
        let l = Arc::new(KeyedLimit::new(5, 5, 500, FakeRelativeClock::default()).unwrap());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let l = Arc::clone(&l);
                std::thread::spawn(move || {
                    for k in 0..2_000u64 {
                        let _ = l.check(t * 10_000 + k);
                        assert!(l.keys() <= 500);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(l.keys(), 500);
        assert_eq!(l.store().0.map.len(), 500);
    }

    fn limiters(s: RateLimitSettings) -> (RateLimits, Arc<crate::clock::ManualClock>) {
        let clock = Arc::new(crate::clock::ManualClock::new(1_000_000));
        (RateLimits::new(&s, clock.clone()), clock)
    }

    #[test]
    fn refusals_carry_the_bucket_and_a_whole_second_retry() {
        let (l, clock) = limiters(RateLimitSettings {
            ip_per_s: 2,
            ip_burst: 3,
            ..RateLimitSettings::default()
        });
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..3 {
            l.ip(ip).unwrap();
        }
        let e = l.ip(ip).unwrap_err();
        assert_eq!(e.code, crate::error::Code::RateLimited);
        assert_eq!(e.retry_after_s, Some(1));
        assert_eq!(e.rate_limit.map(|r| (r.limit, r.remaining)), Some((3, 0)));
        clock.advance(500);
        l.ip(ip).unwrap();
        // IPv6 counts per /64: another address of the same network shares it.
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        for _ in 0..3 {
            l.ip(a).unwrap();
        }
        assert!(l.ip(b).is_err());
        assert!(l.ip("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn switched_off_nothing_is_limited() {
        let (l, _) = limiters(RateLimitSettings {
            enabled: false,
            ip_per_s: 1,
            ip_burst: 1,
            user_per_s: 1,
            user_burst: 1,
            global_per_s: 1,
            global_burst: 1,
            ..RateLimitSettings::default()
        });
        let user = UserId::parse("u1").unwrap();
        for _ in 0..100 {
            l.address("198.51.100.1".parse().unwrap()).unwrap();
            l.user(&user).unwrap();
        }
        assert!(!l.user_enabled());
    }

    #[test]
    fn the_global_bucket_is_shared_by_every_address() {
        let (l, _) = limiters(RateLimitSettings {
            global_per_s: 10,
            global_burst: 10,
            ..RateLimitSettings::default()
        });
        for i in 0..10u8 {
            l.address(IpAddr::from([10, 0, 0, i])).unwrap();
        }
        let e = l.address("10.0.0.99".parse().unwrap()).unwrap_err();
        assert_eq!(e.message, Kind::Global.message());
        let scrape = crate::metrics::Scrape::new();
        l.metrics(&scrape);
        let m = String::from_utf8(scrape.encode()).expect("utf-8");
        assert!(
            m.contains("seckill_rate_limited_total{limit=\"global\"} 1"),
            "{m}"
        );
    }

    #[tokio::test]
    async fn a_campaign_refused_by_the_shared_state_is_refused_locally_until_it_passes() {
        let (l, _) = limiters(RateLimitSettings {
            campaign_per_s: 10,
            campaign_burst: 2,
            ..RateLimitSettings::default()
        });
        let shared = shared_state::MemSharedState::new(1_000);
        let id = CampaignId::parse("c1").unwrap();
        let now = 5_000_000;
        l.campaign(&shared, &id, now).await.unwrap();
        l.campaign(&shared, &id, now).await.unwrap();
        let e = l.campaign(&shared, &id, now).await.unwrap_err();
        assert_eq!(e.code, crate::error::Code::RateLimited);
        // Refused locally meanwhile: even a fresh shared state is not asked.
        let fresh = shared_state::MemSharedState::new(1_000);
        assert!(l.campaign(&fresh, &id, now + 50).await.is_err());
        // After the refill interval the shared bucket decides again.
        l.campaign(&shared, &id, now + 100).await.unwrap();
    }
}
