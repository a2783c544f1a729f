//! Live campaigns held in memory: the local cache the funnel reads on every
//! grab (campaign state without a round trip), plus per-campaign counters.

use dashmap::DashMap;
use engine::{Campaign, CampaignId, Rejection};
use parking_lot::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Most campaigns one gateway holds; creation past it is refused.
pub const CAMPAIGNS_MAX: usize = 10_000;

/// Counters of one campaign; all monotonic except where noted.
#[derive(Debug, Default)]
pub struct Counters {
    rejected: [AtomicU64; Rejection::ALL.len()],
    /// Grabs answered 503 `unavailable` (a dependency failed).
    pub unavailable: AtomicU64,
    /// Orders durable in the order log (answered 202, or unknown then found).
    pub logged: AtomicU64,
    /// Orders the writer has committed to the order store.
    pub persisted: AtomicU64,
}

impl Counters {
    pub fn reject(&self, r: Rejection) {
        self.rejected[r.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// `(code, count)` of every rejection seen at least once.
    pub fn rejected(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<_> = Rejection::ALL
            .iter()
            .map(|r| (r.code(), self.rejected[r.index()].load(Ordering::Relaxed)))
            .collect();
        out.push(("unavailable", self.unavailable.load(Ordering::Relaxed)));
        out.retain(|&(_, n)| n > 0);
        out
    }
}

/// One campaign as the gateway holds it.
#[derive(Debug)]
pub struct LiveCampaign {
    // A read-mostly lock: every grab reads, only operators write.
    campaign: RwLock<Arc<Campaign>>,
    pub counters: Counters,
    /// (read at ms, remaining) of the last ledger snapshot, for buyers' status.
    // A short lock: one copy in, one copy out.
    remaining_hint: parking_lot::Mutex<Option<(u64, Option<u64>)>>,
}

impl LiveCampaign {
    pub fn get(&self) -> Arc<Campaign> {
        Arc::clone(&self.campaign.read())
    }

    pub fn set(&self, campaign: Campaign) {
        *self.campaign.write() = Arc::new(campaign);
    }

    /// The remaining count read at most `max_age_ms` before `now_ms`.
    pub fn remaining_hint(&self, now_ms: u64, max_age_ms: u64) -> Option<Option<u64>> {
        match *self.remaining_hint.lock() {
            Some((at, hint)) if now_ms.saturating_sub(at) <= max_age_ms => Some(hint),
            _ => None,
        }
    }

    pub fn set_remaining_hint(&self, now_ms: u64, hint: Option<u64>) {
        *self.remaining_hint.lock() = Some((now_ms, hint));
    }
}

/// A campaign refused because the registry holds `CAMPAIGNS_MAX` already.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this gateway holds at most {CAMPAIGNS_MAX} campaigns; campaign {0} does not fit")]
pub struct RegistryFull(pub CampaignId);

/// All campaigns of this gateway, by id.
#[derive(Debug, Default)]
pub struct Registry {
    campaigns: DashMap<CampaignId, Arc<LiveCampaign>>,
    /// Set when a campaign was refused because the registry is full:
    /// readiness reports it, since this gateway cannot serve that campaign.
    full: AtomicBool,
    /// When the campaigns were last read from the shared store (monotonic
    /// ms, see `app::mono_ms`; 0 = never). Production gateways stop selling
    /// on a view that is too old: a pause must reach every gateway within a
    /// bound that `seckill reconcile` can wait out.
    synced_at_mono_ms: AtomicU64,
}

impl Registry {
    /// Whether a campaign was ever refused for lack of room.
    pub fn overflowed(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Notes that every campaign was read from the shared store as of
    /// `mono_ms` (the read's start).
    pub fn mark_synced(&self, mono_ms: u64) {
        self.synced_at_mono_ms.fetch_max(mono_ms, Ordering::SeqCst);
    }

    /// Age of the campaign view at `mono_ms`; `None` if never synced.
    pub fn view_age_ms(&self, mono_ms: u64) -> Option<u64> {
        match self.synced_at_mono_ms.load(Ordering::SeqCst) {
            0 => None,
            at => Some(mono_ms.saturating_sub(at)),
        }
    }

    pub fn get(&self, id: &CampaignId) -> Option<Arc<LiveCampaign>> {
        self.campaigns.get(id).map(|c| Arc::clone(&c))
    }

    /// Adds a campaign; `Ok(false)` if the id is taken, `Err` (and nothing
    /// added) when the registry is full, which callers must not swallow: a
    /// campaign this gateway does not hold is one it cannot sell or show.
    pub fn insert(&self, campaign: Campaign) -> Result<bool, RegistryFull> {
        if self.campaigns.contains_key(&campaign.id) {
            return Ok(false);
        }
        if self.campaigns.len() >= CAMPAIGNS_MAX {
            self.full.store(true, Ordering::Relaxed);
            return Err(RegistryFull(campaign.id));
        }
        let mut inserted = false;
        self.campaigns
            .entry(campaign.id.clone())
            .or_insert_with(|| {
                inserted = true;
                Arc::new(LiveCampaign {
                    campaign: RwLock::new(Arc::new(campaign)),
                    counters: Counters::default(),
                    remaining_hint: parking_lot::Mutex::new(None),
                })
            });
        Ok(inserted)
    }

    pub fn len(&self) -> usize {
        self.campaigns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.campaigns.is_empty()
    }

    /// Every campaign, ordered by start time then id.
    pub fn all(&self) -> Vec<Arc<LiveCampaign>> {
        let mut v: Vec<_> = self
            .campaigns
            .iter()
            .map(|e| Arc::clone(e.value()))
            .collect();
        v.sort_by_cached_key(|c| {
            let c = c.get();
            (c.starts_at_ms, c.id.clone())
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(id: &str) -> Campaign {
        engine::CampaignSpec {
            id: None,
            title: "t".into(),
            price_cents: 1,
            stock: 5,
            starts_at_ms: 0,
            ends_at_ms: 10,
            per_user_limit: None,
            quiz: None,
            quiz_questions: None,
            hidden_path: None,
            payment_window_s: None,
            load_test: None,
            stock_buckets: None,
            waiting_room: None,
            admit_per_s: None,
            admitted_max: None,
            admit_ttl_s: None,
            stock_factor_pct: None,
            queue_max: None,
        }
        .validate(CampaignId::parse(id).unwrap())
        .unwrap()
    }

    #[test]
    fn a_full_registry_refuses_instead_of_dropping() {
        let r = Registry::default();
        for i in 0..CAMPAIGNS_MAX {
            assert_eq!(r.insert(campaign(&format!("c{i}"))), Ok(true));
        }
        let extra = campaign("one-too-many");
        assert_eq!(r.insert(extra.clone()), Err(RegistryFull(extra.id.clone())));
        assert!(r.get(&extra.id).is_none());
        assert!(r.overflowed(), "readiness must learn of it");
        // A campaign it already holds is still found, not refused.
        assert_eq!(r.insert(campaign("c0")), Ok(false));
    }

    #[test]
    fn remaining_hint_expires() {
        let r = Registry::default();
        let c = engine::CampaignSpec {
            id: None,
            title: "t".into(),
            price_cents: 1,
            stock: 5,
            starts_at_ms: 0,
            ends_at_ms: 10,
            per_user_limit: None,
            quiz: None,
            quiz_questions: None,
            hidden_path: None,
            payment_window_s: None,
            load_test: None,
            stock_buckets: None,
            waiting_room: None,
            admit_per_s: None,
            admitted_max: None,
            admit_ttl_s: None,
            stock_factor_pct: None,
            queue_max: None,
        }
        .validate(CampaignId::parse("c").unwrap())
        .unwrap();
        assert_eq!(r.insert(c.clone()), Ok(true));
        assert_eq!(r.insert(c), Ok(false), "the id is taken");
        let live = r.get(&CampaignId::parse("c").unwrap()).unwrap();
        assert_eq!(live.remaining_hint(1_000, 1_000), None, "nothing read yet");
        live.set_remaining_hint(1_000, Some(4));
        assert_eq!(live.remaining_hint(2_000, 1_000), Some(Some(4)));
        assert_eq!(live.remaining_hint(2_001, 1_000), None, "too old");
    }
}
