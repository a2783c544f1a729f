//! The ports: traits the core defines and the backends implement.
//!
//! Concrete names carry their backend as a prefix (`MemLedger`, `FileLog`,
//! `SqliteStore`); only the gateway's wiring module chooses among them.

use crate::campaign::{Campaign, Control};
use crate::ids::{CampaignId, OrderId, UserId};
use crate::order::{Order, OrderRecord, OrderStatus};
use crate::room::RoomState;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------- ledger

/// The ledger's answer to a reservation: a business outcome, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// One unit is held for the user; this is their `n`-th unit.
    Reserved {
        n: u32,
    },
    /// The user already holds their limit of units.
    AlreadyBought,
    SoldOut,
    /// The campaign was never loaded into this ledger (or was blocked).
    NotLoaded,
}

/// A unit held by a user, as rebuilt from durable records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub user: UserId,
    pub n: u32,
}

/// What a ledger is rebuilt from: durable records only, never the ledger's
/// own memory.
///
/// The rule for unit numbers, shared by every ledger, the order store, the
/// replay and reconciliation: the per-user limit bounds a user's *active*
/// units (orders that still hold stock), and `n` is a per-(campaign, user)
/// counter that never repeats, so an order id (`OrderId::derive(campaign,
/// user, n)`) is never reused, even after a release, an expiry, a cancel or
/// a repair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerImage {
    /// The campaign's stock.
    pub total: u64,
    /// Units held by orders that still count (queued, confirmed, paid).
    pub holds: Vec<Hold>,
    /// Units whose orders no longer hold stock (expired, cancelled): they
    /// take no stock, but their numbers are spent, so `n` continues after
    /// them.
    pub retired: Vec<Hold>,
    /// Split hint, as for `StockLedger::load`.
    pub buckets: Option<u32>,
    /// The generation of the rebuilt data: higher than any generation the
    /// campaign's ledger data had before (the order store hands it out, see
    /// `OrderStore::next_ledger_generation`). Gateways that cache news about
    /// the ledger follow a new generation and treat an older one as data
    /// that came back from the past.
    pub generation: u64,
}

/// The generation `StockLedger::load` gives a campaign's first ledger data.
pub const FIRST_LEDGER_GENERATION: u64 = 1;

/// Stock numbers of one campaign. Always `reserved + remaining == total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LedgerSnapshot {
    pub total: u64,
    pub reserved: u64,
    pub remaining: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("stock ledger unavailable: {0}")]
    Unavailable(String),
}

/// Atomic stock pre-deduction with per-user limits.
#[async_trait]
pub trait StockLedger: Send + Sync + 'static {
    /// Loads `total` units for a campaign unless it is already loaded;
    /// returns whether it was newly loaded. Safe to repeat. The data gets
    /// generation [`FIRST_LEDGER_GENERATION`].
    /// `buckets` asks for the stock to be split (a hint: backends without
    /// buckets ignore it; `None` leaves the choice to the backend).
    async fn load(
        &self,
        campaign: &CampaignId,
        total: u64,
        buckets: Option<u32>,
    ) -> Result<bool, LedgerError>;

    /// Replaces the campaign's state with `image.total` units minus the
    /// distinct `image.holds` (a duplicated record counts once), numbering
    /// each user's next unit after the highest `n` of their holds and
    /// retired units.
    async fn restore(&self, campaign: &CampaignId, image: &LedgerImage) -> Result<(), LedgerError>;

    /// In one atomic step: refuses if the user holds `limit` active units,
    /// else takes one unit if any remain and records it as the user's next
    /// hold, numbered one past the highest `n` the user ever had here.
    async fn reserve(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        limit: u32,
    ) -> Result<Reservation, LedgerError>;

    /// Gives back the unit of the user's `n`-th hold. Returns `false` (and
    /// changes nothing) if that hold is not active, so a repeated release can
    /// never create stock.
    async fn release(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        n: u32,
    ) -> Result<bool, LedgerError>;

    /// Contention-free hint that no unit remains; may lag behind the truth.
    fn sold_out_hint(&self, campaign: &CampaignId) -> bool;

    async fn snapshot(&self, campaign: &CampaignId) -> Result<Option<LedgerSnapshot>, LedgerError>;

    /// Every active hold of a campaign, as stored (for reconciliation and
    /// the conservation check `remaining + holds == total`); `None` when the
    /// campaign is not loaded.
    async fn holds(&self, campaign: &CampaignId) -> Result<Option<Vec<Hold>>, LedgerError>;
}

// ---------------------------------------------------------------- order log

/// One entry of the order log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LogRecord {
    /// A winning grab; durable before the buyer hears "queued".
    Order(OrderRecord),
}

impl LogRecord {
    pub fn campaign_id(&self) -> &CampaignId {
        match self {
            LogRecord::Order(o) => &o.campaign_id,
        }
    }
}

/// Why an append was not acknowledged. The variant says whether the record
/// may be in the log, which decides whether its stock may be returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The log's queue is full; the record was not written.
    #[error("order log queue is full")]
    Overloaded,
    /// The record was definitely not written.
    #[error("order log refused the record: {0}")]
    Failed(String),
    /// The record may or may not be durable; only reconciliation can tell.
    #[error("order log outcome unknown: {0}")]
    Unknown(String),
}

/// The durable order log: an append returns only once the record is durable.
#[async_trait]
pub trait OrderLog: Send + Sync + 'static {
    async fn append(&self, record: &LogRecord) -> Result<(), AppendError>;

    /// Why the log cannot take appends now, if it cannot (for readiness).
    fn unhealthy(&self) -> Option<String>;

    /// Appends answered `AppendError::Unknown` that still wait for their
    /// final word (a record that may yet reach the log). 0 for a log whose
    /// appends never stay unknown.
    fn unsettled(&self) -> u64 {
        0
    }
}

// ---------------------------------------------------------------- order store

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// Writing would break an invariant (sold > total): never retried blindly.
    #[error("invariant violated: {0}")]
    Invariant(String),
    #[error("order store unavailable: {0}")]
    Unavailable(String),
}

/// Where a batch came from, stored atomically with it so it lands once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint<'a> {
    pub source: &'a str,
    pub position: u64,
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub inserted: u64,
    /// Records already present (replays after a crash), absorbed idempotently.
    pub duplicates: u64,
}

/// What a status change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Changed,
    /// The order already had that status (a retry).
    Unchanged,
    /// The state machine forbids the move from `current`.
    Refused {
        current: OrderStatus,
    },
}

/// The order store: campaigns and the final record of every order.
#[async_trait]
pub trait OrderStore: Send + Sync + 'static {
    async fn insert_campaign(&self, campaign: &Campaign) -> Result<(), StoreError>;
    async fn set_control(&self, campaign: &CampaignId, control: Control) -> Result<(), StoreError>;
    /// Replaces a campaign's waiting-room settings (the operator's changes
    /// during a sale).
    async fn set_waiting_room(
        &self,
        campaign: &CampaignId,
        room: Option<&crate::room::RoomConfig>,
    ) -> Result<(), StoreError>;
    async fn campaigns(&self) -> Result<Vec<Campaign>, StoreError>;

    /// Writes orders idempotently in one transaction, raising each campaign's
    /// sold counter with a guard that it never exceeds the stock, together
    /// with the checkpoint when one is given. A record is refused
    /// (`Invariant`) when its `n` is 0 or when it would give its user more
    /// active orders in the campaign than the per-user limit; `n` itself may
    /// be past the limit (see `LedgerImage` for the rule).
    async fn write_batch(
        &self,
        records: &[LogRecord],
        checkpoint: Option<Checkpoint<'_>>,
    ) -> Result<BatchReport, StoreError>;

    async fn checkpoint(&self, source: &str) -> Result<Option<u64>, StoreError>;
    async fn order(&self, order: &OrderId) -> Result<Option<Order>, StoreError>;
    async fn orders(&self, campaign: &CampaignId) -> Result<Vec<Order>, StoreError>;
    /// Up to `limit` orders of a campaign in order-id order, starting after
    /// `after`: pages for exports that must not hold every row at once.
    async fn orders_page(
        &self,
        campaign: &CampaignId,
        after: Option<&OrderId>,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError>;
    /// Raises the generation of the campaign's ledger data and returns the
    /// new value, for a restore (`LedgerImage::generation`). A campaign
    /// starts at [`FIRST_LEDGER_GENERATION`] (its first load); every call
    /// returns a higher number than any before, across restarts.
    async fn next_ledger_generation(&self, campaign: &CampaignId) -> Result<u64, StoreError>;
    /// Number of stored orders per status for a campaign.
    async fn count_by_status(
        &self,
        campaign: &CampaignId,
    ) -> Result<Vec<(OrderStatus, u64)>, StoreError>;
    /// The campaign's guarded sold counter: units held by its active orders
    /// (queued, confirmed, paid), never more than its stock.
    async fn sold(&self, campaign: &CampaignId) -> Result<u64, StoreError>;
    /// Moves a stored order to `to` when the state machine allows it from the
    /// order's current status, as one compare-and-set. A move to a status
    /// that releases stock lowers the campaign's `sold` in the same
    /// transaction. `NotFound` when the order is not stored (yet).
    async fn set_status(
        &self,
        order: &OrderId,
        to: OrderStatus,
    ) -> Result<StatusChange, StoreError>;
    /// Confirmed orders whose payment window had closed at `now_ms`
    /// (`pay_by_ms < now_ms`), earliest deadline first, at most `limit`: what
    /// the expiry sweeper moves to `expired`.
    async fn due_for_expiry(&self, now_ms: u64, limit: u32) -> Result<Vec<Order>, StoreError>;
    /// Orders whose status releases stock (expired, cancelled) and whose unit
    /// is not marked as returned to the ledger yet, at most `limit`.
    async fn unreleased(&self, limit: u32) -> Result<Vec<Order>, StoreError>;
    /// The durable mark that an order's unit went back to the ledger (see
    /// `unreleased`). Idempotent. `NotFound` when the order is not stored,
    /// `Invariant` when its status still holds stock.
    async fn mark_released(&self, order: &OrderId) -> Result<(), StoreError>;
    /// Orders of the campaign whose unit was returned to the ledger.
    async fn released(&self, campaign: &CampaignId) -> Result<u64, StoreError>;
    /// Notes that the log record at `source` (e.g. `topic/partition/offset`)
    /// went to the dead-letter topic, so operators see it in stats.
    /// Idempotent per `source`; `campaign` is `None` for an undecodable record.
    async fn record_dead_letter(
        &self,
        source: &str,
        campaign: Option<&CampaignId>,
        reason: &str,
    ) -> Result<(), StoreError>;
    /// Dead letters recorded for a campaign, or for all (`None`).
    async fn dead_letters(&self, campaign: Option<&CampaignId>) -> Result<u64, StoreError>;
}

// ---------------------------------------------------------------- shared state

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SharedStateError {
    #[error("shared state unavailable: {0}")]
    Unavailable(String),
    /// The backend holds as many live marks as it may; nothing was marked.
    #[error("shared state is full: {0}")]
    Full(String),
}

/// State that every gateway must see the same: marks that may be used
/// once (quiz tokens), shared rate buckets (campaign-wide limits) and
/// compare-and-set values (refresh-token families), each living for a while.
#[async_trait]
pub trait SharedState: Send + Sync + 'static {
    /// Marks `key` as used until `ttl_ms` after `now_ms`; `true` only for
    /// the first call while the mark lives, across every gateway sharing
    /// the state. A backend with its own clock (Redis) may use that
    /// instead of `now_ms` for the expiry.
    async fn use_once(&self, key: &str, ttl_ms: u64, now_ms: u64)
        -> Result<bool, SharedStateError>;
    /// One request against the GCRA bucket `key` (same answer on every
    /// gateway sharing the state). `per_s` and `burst` count as at least 1.
    /// Time is `now_ms` on every backend, so gateways' clocks should agree
    /// (NTP); a clock going back never admits more than the quota.
    async fn throttle(
        &self,
        key: &str,
        quota: RateQuota,
        now_ms: u64,
    ) -> Result<Throttle, SharedStateError>;
    /// Sets `key` to `new`, living `ttl_ms` from now, only when its current
    /// value is `expected` (`None` = absent or expired); otherwise changes
    /// nothing and says what is there.
    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&str>,
        new: &str,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<Swap, SharedStateError>;
}

/// A rate for a GCRA token bucket: `per_s` requests per second on average,
/// at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuota {
    pub per_s: u32,
    pub burst: u32,
}

/// One request's fate against a shared rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    Allowed { remaining: u32 },
    Limited { retry_after_ms: u64 },
}

/// What a compare-and-set found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swap {
    Done,
    Current(Option<String>),
}

// ---------------------------------------------------------------- waiting room

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("waiting room unavailable: {0}")]
    Unavailable(String),
    /// The queue holds its most buyers already; nobody was added.
    #[error("the queue is full")]
    Full,
}

/// A buyer's place in a campaign's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Joined before the start: ranked by the draw once the queue is sealed.
    Pre,
    /// Joined after the start: ranked at the back, first in first out.
    Ranked {
        rank: u64,
        joined_ms: u64,
        /// The wait estimated at joining, once kept (`RoomStore::set_eta`).
        eta_s: Option<u32>,
    },
}

/// One join: `draw` orders the pre-queue; `epoch` is the room's epoch if
/// this join starts the room (the store keeps the first one).
#[derive(Debug, Clone, Copy)]
pub struct Join<'a> {
    pub campaign: &'a CampaignId,
    pub user: &'a UserId,
    pub draw: u64,
    pub now_ms: u64,
    pub starts_at_ms: u64,
    pub queue_max: u64,
    pub epoch: u64,
}

/// A queue's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    pub epoch: u64,
    /// Buyers pre-queued (frozen once sealed).
    pub pre: u64,
    pub sealed: bool,
    /// Ranks given: the pre-queue once sealed, plus later joiners.
    pub queued: u64,
}

/// Where a campaign's queue lives: embedded in memory, or in Redis for all
/// gateways. Ranks never change once given; the cursor (`RoomState`) is
/// advanced by one gateway at a time under a lease and read by all.
#[async_trait]
pub trait RoomStore: Send + Sync + 'static {
    /// Joins a buyer once: a second join returns the first entry. Before
    /// the start, into the pre-queue; the first join or count at or after
    /// the start seals the pre-queue (ranks 1..=pre by draw) and every
    /// later join is ranked behind. `Full` past `queue_max` buyers.
    async fn join(&self, j: &Join<'_>) -> Result<(u64, Entry), RoomError>;
    /// Keeps the wait estimated at a ranked buyer's join unless one is kept
    /// already; returns the kept one.
    async fn set_eta(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        eta_s: u32,
    ) -> Result<u32, RoomError>;
    /// A pre-queued buyer's rank once the queue is sealed.
    async fn pre_rank(
        &self,
        campaign: &CampaignId,
        user: &UserId,
    ) -> Result<Option<u64>, RoomError>;
    /// The queue's size, sealing it if `now_ms` is at or past the start.
    async fn counts(
        &self,
        campaign: &CampaignId,
        now_ms: u64,
        starts_at_ms: u64,
        epoch: u64,
    ) -> Result<QueueCounts, RoomError>;
    /// Takes or keeps the lease on advancing the cursor for `lease_ms`;
    /// `true` while `owner` holds it.
    async fn lead(
        &self,
        campaign: &CampaignId,
        owner: u64,
        lease_ms: u64,
    ) -> Result<bool, RoomError>;
    async fn state(&self, campaign: &CampaignId) -> Result<Option<RoomState>, RoomError>;
    /// Stores the cursor only while `owner` holds the lease.
    async fn put_state(
        &self,
        campaign: &CampaignId,
        owner: u64,
        state: &RoomState,
    ) -> Result<bool, RoomError>;
    /// One use of `rank`'s admission, at most `limit` in all: `true` if
    /// granted. A rank with a use counts as finished.
    async fn claim(&self, campaign: &CampaignId, rank: u64, limit: u32) -> Result<bool, RoomError>;
    /// Gives back one use (its grab failed through no fault of the buyer).
    async fn unclaim(&self, campaign: &CampaignId, rank: u64) -> Result<(), RoomError>;
    /// Finished ranks: `(above rank, in all)`.
    async fn finished(&self, campaign: &CampaignId, above: u64) -> Result<(u64, u64), RoomError>;
}

// Trait objects of the ports are held in structs that derive `Debug`.
macro_rules! opaque_debug {
    ($($t:ident),*) => {$(
        impl std::fmt::Debug for dyn $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!("dyn ", stringify!($t)))
            }
        }
    )*};
}
opaque_debug!(StockLedger, OrderLog, OrderStore, SharedState, RoomStore);
