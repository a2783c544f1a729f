//! `MeteredLedger`: counts and times the calls that reach the ledger backend (Redis
//! round trips in production), so metrics and tests can show which paths
//! touch it. `sold_out_hint` is local and not counted.

use async_trait::async_trait;
use engine::ports::{Hold, LedgerError, LedgerImage, LedgerSnapshot, Reservation, StockLedger};
use engine::{CampaignId, UserId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The ledger operations that reach the backend.
#[derive(Debug, Clone, Copy)]
pub enum LedgerOp {
    Load,
    Restore,
    Reserve,
    Release,
    Snapshot,
    Holds,
}

impl LedgerOp {
    pub const ALL: [LedgerOp; 6] = [
        LedgerOp::Load,
        LedgerOp::Restore,
        LedgerOp::Reserve,
        LedgerOp::Release,
        LedgerOp::Snapshot,
        LedgerOp::Holds,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LedgerOp::Load => "load",
            LedgerOp::Restore => "restore",
            LedgerOp::Reserve => "reserve",
            LedgerOp::Release => "release",
            LedgerOp::Snapshot => "snapshot",
            LedgerOp::Holds => "holds",
        }
    }
}

/// Calls per operation.
#[derive(Debug, Default)]
pub struct LedgerCalls([AtomicU64; 6]);

impl LedgerCalls {
    fn note(&self, op: LedgerOp) {
        self.0[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, op: LedgerOp) -> u64 {
        self.0[op as usize].load(Ordering::Relaxed)
    }
}

/// A ledger that counts the calls it passes on.
#[derive(Debug)]
pub struct MeteredLedger {
    inner: Arc<dyn StockLedger>,
    calls: Arc<LedgerCalls>,
}

impl MeteredLedger {
    pub fn new(inner: Arc<dyn StockLedger>) -> (Self, Arc<LedgerCalls>) {
        let calls = Arc::new(LedgerCalls::default());
        (
            Self {
                inner,
                calls: Arc::clone(&calls),
            },
            calls,
        )
    }
}

impl MeteredLedger {
    /// Counts the call and records its latency
    /// (`seckill_ledger_call_duration_seconds{op}`).
    async fn timed<T>(&self, op: LedgerOp, call: impl std::future::Future<Output = T>) -> T {
        self.calls.note(op);
        let started = std::time::Instant::now();
        let out = call.await;
        crate::metrics::LATENCY.ledger_call(op, started.elapsed());
        out
    }
}

#[async_trait]
impl StockLedger for MeteredLedger {
    async fn load(
        &self,
        campaign: &CampaignId,
        total: u64,
        buckets: Option<u32>,
    ) -> Result<bool, LedgerError> {
        self.timed(LedgerOp::Load, self.inner.load(campaign, total, buckets))
            .await
    }

    async fn restore(&self, campaign: &CampaignId, image: &LedgerImage) -> Result<(), LedgerError> {
        self.timed(LedgerOp::Restore, self.inner.restore(campaign, image))
            .await
    }

    async fn reserve(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        limit: u32,
    ) -> Result<Reservation, LedgerError> {
        self.timed(LedgerOp::Reserve, self.inner.reserve(campaign, user, limit))
            .await
    }

    async fn release(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        n: u32,
    ) -> Result<bool, LedgerError> {
        self.timed(LedgerOp::Release, self.inner.release(campaign, user, n))
            .await
    }

    fn sold_out_hint(&self, campaign: &CampaignId) -> bool {
        self.inner.sold_out_hint(campaign)
    }

    async fn snapshot(&self, campaign: &CampaignId) -> Result<Option<LedgerSnapshot>, LedgerError> {
        self.timed(LedgerOp::Snapshot, self.inner.snapshot(campaign))
            .await
    }

    async fn holds(&self, campaign: &CampaignId) -> Result<Option<Vec<Hold>>, LedgerError> {
        self.timed(LedgerOp::Holds, self.inner.holds(campaign))
            .await
    }
}
