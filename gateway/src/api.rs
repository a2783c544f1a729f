//! The response bodies of the HTTP contract (`../shared/API.md`), typed.
//! Handlers serialise them, the operator CLI and the tests deserialise
//! them: one definition of every field.

use engine::{CampaignId, CampaignState, Control, OrderId, OrderStatus, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `GET /healthz` (`ok`) and `GET /readyz` (`ready`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

/// `POST /api/v1/auth/login` and `/refresh` (the demo identity service).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in_s: u64,
}

/// `GET /api/v1/time`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerTime {
    pub now_ms: u64,
}

/// `GET /api/v1/campaigns/{id}`: what buyers see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignView {
    pub id: CampaignId,
    pub title: String,
    pub price_cents: u64,
    pub stock_total: u64,
    pub starts_at_ms: u64,
    pub ends_at_ms: u64,
    pub state: CampaignState,
    /// Units left, possibly a second old; `null` when the ledger cannot say.
    pub remaining_hint: Option<u64>,
    pub quiz: bool,
    pub hidden_path: bool,
    pub per_user_limit: u32,
    pub payment_window_s: u32,
    pub stock_buckets: Option<u32>,
    /// Buyers join the queue (`POST .../queue`) before they may grab.
    pub waiting_room: bool,
    /// The room's admissions per second (waiting-room campaigns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admit_per_s: Option<u32>,
}

/// The operators' view of a campaign (admin list, create, controls).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminCampaignView {
    #[serde(flatten)]
    pub view: CampaignView,
    pub control: Control,
    pub load_test: bool,
    pub quiz_questions: u32,
    /// The waiting room's settings (`null`: none).
    pub waiting_room_settings: Option<engine::room::RoomConfig>,
}

/// `GET /admin/v1/campaigns/{id}/stats`: live numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub campaign_id: CampaignId,
    pub stock_total: u64,
    /// Units the ledger holds for orders (`null`: ledger unreachable or lost).
    pub reserved: Option<u64>,
    /// Units held by live orders (queued, confirmed, paid).
    pub sold: u64,
    pub remaining: Option<u64>,
    /// Live orders not in the order store yet (the writer's lag).
    pub orders_queued: u64,
    /// Orders in the order store, whatever their status.
    pub orders_persisted: u64,
    pub orders_paid: u64,
    pub orders_expired: u64,
    pub orders_cancelled: u64,
    /// Units given back to the ledger by expiry (durable marks).
    pub units_returned: u64,
    /// The store's guarded counter of units held by live orders.
    pub store_sold: u64,
    pub orders_dead_lettered: u64,
    pub dead_letters_total: u64,
    /// Grabs refused by this gateway, by code.
    pub rejected: BTreeMap<String, u64>,
    /// This gateway's requests naming the campaign, per second.
    pub requests_per_s: f64,
    /// The waiting room's numbers (waiting-room campaigns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_room: Option<RoomStats>,
}

/// `POST /api/v1/campaigns/{id}/queue` and `GET` with the ticket: where the
/// buyer stands. `ticket` is always there on a join, and on a poll when the
/// buyer should keep a newer one (their rank became known at the start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// `waiting`, `admitted` or `sold_out`.
    pub state: QueueState,
    /// Buyers ahead, plus one (0 once admitted or sold out).
    pub position: u64,
    /// Estimated seconds until admission (0 once admitted or sold out).
    pub eta_s: u64,
    /// `pre_queue` (before the start: the order is drawn at the start) or
    /// `queue`.
    pub phase: QueuePhase,
    /// The position is an estimate: before the draw it is the buyer's
    /// expected place; after it, it may be up to `as_of_ms` old.
    pub approximate: bool,
    /// When the room's numbers behind this answer were taken.
    pub as_of_ms: u64,
    pub starts_at_ms: u64,
    /// Buyers in the queue (ranks given; before the draw, those pre-queued).
    pub queued: u64,
    /// Admissions per second the estimate assumes.
    pub admit_per_s: f64,
    /// When to poll again.
    pub poll_after_ms: u64,
    /// Admitted: where to POST the grab (with the quiz when the campaign
    /// has one); valid until about `admitted_until_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grab_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admitted_until_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    Waiting,
    Admitted,
    SoldOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuePhase {
    PreQueue,
    Queue,
}

/// A waiting room's numbers, in `stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomStats {
    pub settings: engine::room::RoomConfig,
    /// Pre-queued before the start (frozen at the draw).
    pub pre_queued: u64,
    /// Ranks given (everyone who joined, admitted included).
    pub queued: u64,
    /// Still waiting: queued and not admitted yet.
    pub waiting: u64,
    pub admitted: u64,
    pub admitted_per_s: f64,
    /// Admitted and still able to buy.
    pub active: u64,
    /// How many may be active now (`min(admitted_max, units left × factor)`).
    pub capacity: u64,
    /// Admissions that lapsed unused.
    pub abandoned: u64,
    /// The capacity holds the cursor back.
    pub blocked: bool,
    /// Nobody still waiting can be admitted.
    pub queue_sold_out: bool,
    /// This gateway's estimates against the waits they turned out to be.
    pub eta_accuracy: EtaAccuracy,
    pub as_of_ms: u64,
}

/// Estimated waits shown at joining, against the actual waits, for the
/// buyers this gateway saw admitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EtaAccuracy {
    pub samples: u64,
    /// Actual wait within ±30 % of the estimate (or within 2 s of it).
    pub within_30pct: u64,
    pub mean_abs_error_pct: f64,
}

/// The quiz bank part of a preload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuizRender {
    #[serde(flatten)]
    pub status: crate::quiz::RenderStatus,
    /// Where the images are written.
    pub dir: String,
    /// Threads drawing them.
    pub threads: usize,
}

/// `POST /admin/v1/campaigns/{id}/preload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreloadReport {
    pub campaign_id: CampaignId,
    pub ledger_newly_loaded: bool,
    pub stock_total: u64,
    pub remaining: Option<u64>,
    /// The item page's path on the CDN.
    pub page: String,
    pub static_page_file: String,
    pub quiz_images: Option<QuizRender>,
}

/// One thing a validation found: the spec field concerned (`stock`,
/// `starts_at_ms`, ...; `body` for the body as a whole) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

/// `POST /admin/v1/campaigns/validate`: a dry run of a create.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Validation {
    /// A create of this body would succeed and sell as meant: no problem.
    pub ok: bool,
    /// What a create would refuse, or what would make the sale run other
    /// than meant (a start in the past, a quiz bank too small for the
    /// expected crowd).
    pub problems: Vec<Problem>,
    /// What would run but deserves a second look (an extension of the
    /// contract; `ok` ignores them).
    pub warnings: Vec<Problem>,
}

/// `GET /api/v1/orders/{id}` and the payment's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    pub order_id: OrderId,
    pub campaign_id: CampaignId,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub created_at_ms: u64,
    pub pay_by_ms: u64,
    pub price_cents: u64,
}

impl OrderView {
    pub fn new(r: &engine::OrderRecord, status: OrderStatus) -> Self {
        Self {
            order_id: r.order_id.clone(),
            campaign_id: r.campaign_id.clone(),
            user_id: r.user_id.clone(),
            status,
            created_at_ms: r.created_at_ms,
            pay_by_ms: r.pay_by_ms,
            price_cents: r.price_cents,
        }
    }
}

/// A winners-export row (JSON export; the CSV has the same columns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportRow {
    pub order_id: OrderId,
    pub campaign_id: CampaignId,
    pub user_id: UserId,
    pub n: u32,
    pub price_cents: u64,
    pub status: OrderStatus,
    pub created_at_ms: u64,
    pub pay_by_ms: u64,
}

impl ExportRow {
    pub fn new(o: &engine::Order) -> Self {
        let r = &o.record;
        Self {
            order_id: r.order_id.clone(),
            campaign_id: r.campaign_id.clone(),
            user_id: r.user_id.clone(),
            n: r.n,
            price_cents: r.price_cents,
            status: o.status,
            created_at_ms: r.created_at_ms,
            pay_by_ms: r.pay_by_ms,
        }
    }
}

/// `POST /api/v1/campaigns/{id}/grab` (and the hidden path): 202.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrabAccepted {
    pub order_id: OrderId,
    pub status: OrderStatus,
}

/// `POST /admin/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tokens {
    pub tokens: BTreeMap<String, String>,
    pub expires_at_ms: u64,
}

/// One hot campaign.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HotItem {
    pub campaign_id: CampaignId,
    pub requests_per_s: f64,
}

/// `GET /admin/v1/hot`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HotList {
    pub window_ms: u64,
    pub items: Vec<HotItem>,
}

/// `GET /api/v1/campaigns/{id}/grab-path`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrabPath {
    pub grab_path: String,
}

/// `GET /api/v1/campaigns/{id}/quiz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuizQuestion {
    pub quiz_token: String,
    pub image_url: String,
    pub min_answer_ms: u64,
    pub expires_in_ms: u64,
}

/// `GET /admin/v1/campaigns/{id}/quiz-answers`: image URL to answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuizAnswers {
    pub answers: BTreeMap<String, String>,
}

/// One unit of stock: the buyer's `n`-th order of the campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRef {
    pub user_id: UserId,
    pub n: u32,
}

/// `GET /admin/v1/campaigns/{id}/reconcile`: the ledger against the
/// durable orders, read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileCheck {
    pub campaign_id: CampaignId,
    /// Active and not ended: grabs may be changing both sides right now.
    pub selling: bool,
    /// Orders not in the store yet (they are holds without a record).
    pub orders_queued: u64,
    /// The ledger holds the campaign (false after a Redis loss).
    pub ledger_loaded: bool,
    pub stock_total: u64,
    /// Units the durable orders hold (not expired or cancelled).
    pub durable: u64,
    /// Units the ledger holds.
    pub held: u64,
    /// Units the ledger has left to sell.
    pub stock_left: u64,
    /// `stock_left + held == stock_total`.
    pub conserved: bool,
    pub holds_without_record: u64,
    pub records_without_hold: u64,
    /// The first of them (at most 20 each).
    pub holds_without_record_sample: Vec<UnitRef>,
    pub records_without_hold_sample: Vec<UnitRef>,
    /// Loaded, conserved and no mismatch.
    pub clean: bool,
    /// What to do next, in words.
    pub advice: String,
}
