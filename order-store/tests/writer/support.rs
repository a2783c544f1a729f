//! Shared pieces of the writer tests: records, a commit counter, a file log
//! filled with orders, and a scriptable in-memory store.

use async_trait::async_trait;
use engine::ports::{BatchReport, Checkpoint, LogRecord, OrderLog, OrderStore, StoreError};
use engine::{Campaign, CampaignId, Control, Order, OrderId, OrderRecord, OrderStatus, UserId};
use order_log::{FileLog, FileLogConfig};
use order_store::OnCommit;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
pub type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub fn campaign(stock_total: u64) -> Fallible<Campaign> {
    Ok(Campaign {
        id: CampaignId::parse("sale")?,
        title: "Phone".into(),
        price_cents: 99_900,
        stock_total,
        starts_at_ms: 1_000,
        ends_at_ms: 9_000_000,
        per_user_limit: 1,
        quiz: false,
        quiz_questions: 0,
        hidden_path: false,
        payment_window_s: 900,
        load_test: false,
        control: Control::Active,
        stock_buckets: None,
        waiting_room: None,
    })
}

/// One order per user `u0..u{count}`.
pub fn records(c: &Campaign, count: u64) -> Fallible<Vec<LogRecord>> {
    (0..count)
        .map(|i| {
            let user = UserId::parse(&format!("u{i}"))?;
            Ok(LogRecord::Order(OrderRecord::new(c, user, 1, 2_000 + i)))
        })
        .collect()
}

/// A log in `dir` holding `records`, appended concurrently so group commit
/// keeps the test fast.
pub async fn log_with(dir: &std::path::Path, records: Vec<LogRecord>) -> Fallible<Arc<FileLog>> {
    let (log, _) = FileLog::open(FileLogConfig::new(dir.join("orders.log")))?;
    let log = Arc::new(log);
    append_all(&log, records).await?;
    Ok(log)
}

pub async fn append_all(log: &Arc<FileLog>, records: Vec<LogRecord>) -> TestResult {
    let mut tasks = JoinSet::new();
    for r in records {
        let log = Arc::clone(log);
        tasks.spawn(async move { log.append(&r).await });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// An `on_commit` that counts committed records into a watch channel, so a
/// test can await "n records committed" instead of sleeping.
pub fn commit_counter() -> (OnCommit, watch::Receiver<u64>) {
    let (tx, rx) = watch::channel(0u64);
    let on_commit: OnCommit = Arc::new(move |batch: &[LogRecord], _took| {
        tx.send_modify(|n| *n += batch.len() as u64);
    });
    (on_commit, rx)
}

/// What the fake store does on a `write_batch` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Accept,
    Unavailable,
    Invariant,
}

/// A committed batch as the fake store saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub rows: usize,
    pub checkpoint: u64,
}

#[derive(Debug, Default)]
pub struct FakeState {
    /// Answers for the first calls, in order; `Accept` after they run out.
    pub script: Vec<Script>,
    /// Every call, accepted or not, with its (virtual) time.
    pub calls: Vec<Instant>,
    pub committed: Vec<Seen>,
    pub ids: HashSet<OrderId>,
}

/// An in-memory `OrderStore` that only implements `write_batch`; it runs on
/// tokio time alone (no threads), so paused-time tests are deterministic.
#[derive(Debug)]
pub struct FakeStore {
    state: Mutex<FakeState>,
    calls_tx: watch::Sender<usize>,
}

impl FakeStore {
    pub fn new(script: Vec<Script>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(FakeState {
                script,
                ..FakeState::default()
            }),
            calls_tx: watch::channel(0).0,
        })
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake store lock poisoned")
    }

    /// Notified with the number of `write_batch` calls so far.
    pub fn calls(&self) -> watch::Receiver<usize> {
        self.calls_tx.subscribe()
    }
}

fn unused() -> StoreError {
    StoreError::Unavailable("not implemented by the fake store".into())
}

#[async_trait]
impl OrderStore for FakeStore {
    async fn insert_campaign(&self, _: &Campaign) -> Result<(), StoreError> {
        Err(unused())
    }
    async fn set_control(&self, _: &CampaignId, _: Control) -> Result<(), StoreError> {
        Err(unused())
    }
    async fn set_waiting_room(
        &self,
        _: &CampaignId,
        _: Option<&engine::room::RoomConfig>,
    ) -> Result<(), StoreError> {
        Err(unused())
    }
    async fn campaigns(&self) -> Result<Vec<Campaign>, StoreError> {
        Err(unused())
    }
    async fn set_status(
        &self,
        _: &engine::OrderId,
        _: engine::OrderStatus,
    ) -> Result<engine::ports::StatusChange, StoreError> {
        Err(unused())
    }
    async fn due_for_expiry(&self, _: u64, _: u32) -> Result<Vec<Order>, StoreError> {
        Err(unused())
    }
    async fn unreleased(&self, _: u32) -> Result<Vec<Order>, StoreError> {
        Err(unused())
    }
    async fn mark_released(&self, _: &OrderId) -> Result<(), StoreError> {
        Err(unused())
    }
    async fn released(&self, _: &CampaignId) -> Result<u64, StoreError> {
        Err(unused())
    }
    async fn record_dead_letter(
        &self,
        _: &str,
        _: Option<&CampaignId>,
        _: &str,
    ) -> Result<(), StoreError> {
        Err(unused())
    }
    async fn dead_letters(&self, _: Option<&CampaignId>) -> Result<u64, StoreError> {
        Err(unused())
    }
    async fn write_batch(
        &self,
        records: &[LogRecord],
        checkpoint: Option<Checkpoint<'_>>,
    ) -> Result<BatchReport, StoreError> {
        let result = {
            let mut st = self.state();
            let call = st.calls.len();
            st.calls.push(Instant::now());
            match st.script.get(call).copied().unwrap_or(Script::Accept) {
                Script::Unavailable => Err(StoreError::Unavailable("scripted outage".into())),
                Script::Invariant => Err(StoreError::Invariant("scripted refusal".into())),
                Script::Accept => {
                    let mut report = BatchReport::default();
                    for LogRecord::Order(o) in records {
                        if st.ids.insert(o.order_id.clone()) {
                            report.inserted += 1;
                        } else {
                            report.duplicates += 1;
                        }
                    }
                    let seen = Seen {
                        at: Instant::now(),
                        rows: records.len(),
                        checkpoint: checkpoint.map_or(0, |c| c.position),
                    };
                    st.committed.push(seen);
                    Ok(report)
                }
            }
        };
        self.calls_tx.send_modify(|n| *n += 1);
        result
    }
    async fn checkpoint(&self, _: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.state().committed.last().map(|s| s.checkpoint))
    }
    async fn order(&self, _: &OrderId) -> Result<Option<Order>, StoreError> {
        Err(unused())
    }
    async fn orders(&self, _: &CampaignId) -> Result<Vec<Order>, StoreError> {
        Err(unused())
    }
    async fn orders_page(
        &self,
        _: &CampaignId,
        _: Option<&OrderId>,
        _: u32,
    ) -> Result<Vec<Order>, StoreError> {
        Err(unused())
    }
    async fn next_ledger_generation(&self, _: &CampaignId) -> Result<u64, StoreError> {
        Err(unused())
    }
    async fn count_by_status(&self, _: &CampaignId) -> Result<Vec<(OrderStatus, u64)>, StoreError> {
        Err(unused())
    }
    async fn sold(&self, _: &CampaignId) -> Result<u64, StoreError> {
        Err(unused())
    }
}
