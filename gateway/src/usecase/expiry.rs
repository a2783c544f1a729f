//! Payment expiry: an unpaid order whose window closed becomes `expired`
//! and its unit goes back to the ledger exactly once, so another buyer can
//! win it.
//!
//! Driven from durable data only (never an in-memory timer), in two steps
//! that each survive a crash:
//! 1. **Expire**: the store's compare-and-set `confirmed -> expired` (which
//!    also lowers the campaign's `sold`). A payment racing it is the other
//!    compare-and-set on the same row: exactly one of them wins.
//! 2. **Release**: for every order in a releasing status without the
//!    store's durable "released" mark, the ledger's release of that unit
//!    (idempotent, keyed by the unit `(campaign, user, n)`, which is what the
//!    order id is derived from, and never reused), then the mark.
//!
//! A crash after step 1 leaves an expired, unmarked order: the next sweep
//! (of any sweeper) releases it. A crash between the release and the mark
//! makes the next sweep release again, which the ledger answers "not held"
//! without creating stock. Several sweepers may run at once for the same
//! reasons. A restart of the embedded engine rebuilds its ledger from the
//! store's statuses (expired units are not held), so the sweep after it only
//! marks what the crash left unmarked.
//!
//! A unit whose grab claim was still pending in a shared ledger (its
//! gateway died between the log append and settling the claim) is not
//! released by the ledger; the order is marked anyway and the next
//! reconciliation returns that unit, as it settles every pending claim.

use engine::ports::{LedgerError, OrderStore, StatusChange, StockLedger, StoreError};
use engine::{Order, OrderStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Orders handled per step of one sweep; a longer backlog takes more sweeps.
pub const SWEEP_BATCH_MAX: u32 = 500;
/// How often sweepers look for due orders: an order expires at most about
/// this long after its deadline (plus the sweep itself).
pub const SWEEP_INTERVAL_MS: u64 = 250;

/// Where a sweep may be made to stop dead, for the crash tests: read from
/// `SECKILL_SWEEPER_CRASH` by both the embedded and the production sweeper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the first order is expired, before any release.
    AfterExpire,
    /// After the first ledger release, before its durable mark.
    AfterRelease,
}

impl CrashPoint {
    /// `SECKILL_SWEEPER_CRASH`: unset is `None`; a wrong value is refused.
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        match std::env::var("SECKILL_SWEEPER_CRASH") {
            Ok(s) => Self::parse(&s).map(Some).ok_or_else(|| {
                anyhow::anyhow!(
                    "SECKILL_SWEEPER_CRASH must be after_expire or after_release, not {s:?}"
                )
            }),
            Err(_) => Ok(None),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "after_expire" => Some(Self::AfterExpire),
            "after_release" => Some(Self::AfterRelease),
            _ => None,
        }
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Orders this sweep moved to `expired`.
    pub expired: u64,
    /// Due orders a payment (or another sweeper) had already settled.
    pub lost_race: u64,
    /// Units the ledger took back.
    pub released: u64,
    /// Releases the ledger answered "not held" (already returned, or a
    /// ledger rebuilt from the durable statuses): marked all the same.
    pub already_released: u64,
}

/// Totals since start, for `/metrics` and stats.
#[derive(Debug, Default)]
pub struct ExpiryCounters {
    pub expired: AtomicU64,
    pub released: AtomicU64,
    pub sweeps: AtomicU64,
    pub failures: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The expiry use case over the two ports it needs.
#[derive(Clone)]
pub struct Sweeper {
    pub store: Arc<dyn OrderStore>,
    pub ledger: Arc<dyn StockLedger>,
    pub batch: u32,
    pub counters: Arc<ExpiryCounters>,
    pub crash: Option<CrashPoint>,
}

impl std::fmt::Debug for Sweeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweeper")
            .field("batch", &self.batch)
            .field("crash", &self.crash)
            .finish_non_exhaustive()
    }
}

impl Sweeper {
    pub fn new(store: Arc<dyn OrderStore>, ledger: Arc<dyn StockLedger>) -> Self {
        Self {
            store,
            ledger,
            batch: SWEEP_BATCH_MAX,
            counters: Arc::default(),
            crash: None,
        }
    }

    /// One sweep at `now_ms`: expires the due orders, then releases every
    /// unmarked one. `on_expired` hears each order this sweep expired.
    pub async fn sweep(
        &self,
        now_ms: u64,
        on_expired: &(dyn Fn(&Order) + Send + Sync),
    ) -> Result<SweepReport, SweepError> {
        let mut report = SweepReport::default();
        let result = self.sweep_into(now_ms, on_expired, &mut report).await;
        self.counters.sweeps.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
        result.map(|()| report)
    }

    async fn sweep_into(
        &self,
        now_ms: u64,
        on_expired: &(dyn Fn(&Order) + Send + Sync),
        report: &mut SweepReport,
    ) -> Result<(), SweepError> {
        for o in self.store.due_for_expiry(now_ms, self.batch).await? {
            match self
                .store
                .set_status(&o.record.order_id, OrderStatus::Expired)
                .await
            {
                Ok(StatusChange::Changed) => {
                    report.expired += 1;
                    self.counters.expired.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        campaign = %o.record.campaign_id,
                        order_id = %o.record.order_id,
                        user = %o.record.user_id,
                        "order expired unpaid"
                    );
                    on_expired(&Order {
                        record: o.record.clone(),
                        status: OrderStatus::Expired,
                    });
                    self.crash_at(CrashPoint::AfterExpire);
                }
                Ok(StatusChange::Unchanged | StatusChange::Refused { .. }) => report.lost_race += 1,
                // Gone between the scan and the change: nothing to expire.
                Err(StoreError::NotFound(_)) => report.lost_race += 1,
                Err(e) => return Err(e.into()),
            }
        }
        for o in self.store.unreleased(self.batch).await? {
            let r = &o.record;
            if self.ledger.release(&r.campaign_id, &r.user_id, r.n).await? {
                report.released += 1;
                self.counters.released.fetch_add(1, Ordering::Relaxed);
            } else {
                report.already_released += 1;
            }
            self.crash_at(CrashPoint::AfterRelease);
            self.store.mark_released(&r.order_id).await?;
        }
        Ok(())
    }

    /// Stops the process dead (as `kill -9` would) at `point` when asked to.
    fn crash_at(&self, point: CrashPoint) {
        if self.crash == Some(point) {
            tracing::warn!(?point, "crashing on purpose (SECKILL_SWEEPER_CRASH)");
            std::process::abort();
        }
    }
}

/// The embedded engine's sweeper: a task sweeping every
/// `SWEEP_INTERVAL_MS` over the app's store and ledger; an expired order is
/// also moved in the order index, so its buyer sees it at once. Ends by
/// itself once the app is dropped.
pub fn spawn_in_gateway(app: &Arc<crate::app::App>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let weak = Arc::downgrade(app);
    let sweeper = Sweeper {
        counters: Arc::clone(&app.expiry),
        crash: CrashPoint::from_env()?,
        ..Sweeper::new(Arc::clone(&app.store), Arc::clone(&app.ledger))
    };
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(SWEEP_INTERVAL_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(app) = weak.upgrade() else { return };
            let index = Arc::clone(&app);
            let on_expired = move |o: &Order| {
                index
                    .orders
                    .advance(&o.record.order_id, OrderStatus::Expired);
            };
            if let Err(e) = sweeper.sweep(app.clock.now_ms(), &on_expired).await {
                tracing::warn!(error = %e, "expiry sweep failed; the next one retries");
            }
        }
    }))
}

/// Runs sweeps every `SWEEP_INTERVAL_MS` until `shutdown` (the production
/// `seckill sweeper`); returns the totals.
pub async fn run(
    sweeper: Sweeper,
    clock: Arc<dyn crate::clock::Clock>,
    shutdown: impl std::future::Future<Output = ()>,
) -> SweepReport {
    let mut total = SweepReport::default();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(SWEEP_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return total,
            _ = tick.tick() => {}
        }
        match sweeper.sweep(clock.now_ms(), &|_| {}).await {
            Ok(r) => {
                total.expired += r.expired;
                total.lost_race += r.lost_race;
                total.released += r.released;
                total.already_released += r.already_released;
            }
            Err(e) => tracing::warn!(error = %e, "expiry sweep failed; the next one retries"),
        }
    }
}
