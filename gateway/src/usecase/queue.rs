//! The waiting room (`POST/GET /api/v1/campaigns/{id}/queue`), a stage in
//! front of the grab funnel for campaigns with `waiting_room`.
//!
//! - **Join**: one place per buyer and campaign. Before the start the buyer
//!   is pre-queued with a draw (a keyed hash of campaign and buyer: secret,
//!   so unpredictable, and the same on every gateway and every rejoin); at
//!   the start the pre-queue is ranked by draw; later joiners are ranked
//!   first in first out behind it (`engine::ports::RoomStore`).
//! - **Ticket**: signed (HMAC) over campaign, buyer, the room's epoch, the
//!   rank and the join time; a poll with a ranked ticket is answered from
//!   this gateway's copy of the room's cursor, without a round trip.
//! - **Cursor**: each gateway ticks every `TICK_MS`; the one holding the
//!   room's lease advances the cursor (`engine::room::RoomState::advance`:
//!   the rate, the stock left, the admitted still able to buy) and stores
//!   it; every gateway reads it back.
//! - **Admission**: an admitted buyer's grab path carries a signature over
//!   (campaign, buyer, epoch, rank); the funnel's `path` stage accepts it
//!   while the cursor says the rank is admitted and not lapsed, and the
//!   `claim` stage spends one use of it (per-user limit) before the ledger.

use crate::api::{EtaAccuracy, QueuePhase, QueueState, QueueStatus, RoomStats};
use crate::app::{mono_ms, App};
use crate::error::{ApiError, Code};
use dashmap::DashMap;
use engine::ports::{Entry, Join, QueueCounts, RoomError};
use engine::room::{pre_queue_position, Place, RoomConfig, RoomState, TickInput, DRAW_RANGE};
use engine::{Campaign, CampaignId, CampaignState, UserId};
use parking_lot::{Mutex, RwLock};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How often every gateway refreshes its copy of each room (and the leader
/// advances the cursor).
pub const TICK_MS: u64 = 100;
/// The leader's lease: another gateway takes over this long after the
/// leader stops renewing it.
pub const LEASE_MS: u64 = 1_000;
/// A gateway whose copy of a room is older than this answers 503 rather
/// than a stale position or admission.
pub const VIEW_STALE_MS: u64 = 3_000;
/// How often a page should poll: often enough that a position counts down
/// visibly and a sold-out is seen within a second or two.
pub const POLL_MS: u64 = 1_000;
/// Most admitted ranks per room whose estimate this gateway scores.
const ACCURACY_SEEN_MAX: usize = 1_000_000;
/// Retry-After of a full queue.
const QUEUE_FULL_RETRY_S: u64 = 5;
/// Hex characters of a ticket's or an admission's signature (128 bits).
const SIG_HEX: usize = 32;
/// The header a poll carries its ticket in.
pub const TICKET_HEADER: &str = "x-queue-ticket";

/// This gateway's copy of one room.
#[derive(Debug, Default)]
pub struct RoomView {
    state: RwLock<Arc<RoomState>>,
    counts: Mutex<Option<QueueCounts>>,
    /// Monotonic ms of the last refresh (0: never).
    refreshed_mono_ms: AtomicU64,
    accuracy: Mutex<Accuracy>,
}

#[derive(Debug, Default)]
struct Accuracy {
    seen: HashSet<u64>,
    samples: u64,
    within: u64,
    abs_err_pct_sum: f64,
}

impl RoomView {
    fn state(&self) -> Arc<RoomState> {
        Arc::clone(&self.state.read())
    }

    fn counts(&self) -> Option<QueueCounts> {
        *self.counts.lock()
    }

    fn fresh(&self) -> bool {
        let at = self.refreshed_mono_ms.load(Ordering::Acquire);
        at != 0 && mono_ms().saturating_sub(at) <= VIEW_STALE_MS
    }

    /// Scores the estimate a buyer was shown at joining against the wait
    /// it turned out to be, once per rank.
    fn score(&self, rank: u64, estimated_s: u64, waited_ms: u64) {
        let mut a = self.accuracy.lock();
        if a.seen.len() >= ACCURACY_SEEN_MAX || !a.seen.insert(rank) {
            return;
        }
        let waited_s = waited_ms as f64 / 1000.0;
        let est = estimated_s as f64;
        let err = (waited_s - est).abs();
        a.samples += 1;
        if err <= (0.3 * est).max(2.0) {
            a.within += 1;
        }
        a.abs_err_pct_sum += 100.0 * err / est.max(1.0);
    }
}

/// The waiting rooms as this gateway sees them, and their keys.
pub struct Rooms {
    ticket_key: [u8; 32],
    draw_key: [u8; 32],
    /// This gateway's lease identity.
    owner: u64,
    /// The epoch this gateway proposes when it is the first to touch a room.
    epoch: u64,
    /// One per waiting-room campaign (bounded by the registry's cap).
    views: DashMap<CampaignId, Arc<RoomView>>,
}

impl std::fmt::Debug for Rooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rooms")
            .field("owner", &self.owner)
            .field("views", &self.views.len())
            .finish_non_exhaustive()
    }
}

fn random_u64() -> u64 {
    // Never 0: 0 stands for "no epoch" in a default state.
    rand::random::<u64>().max(1) >> 12
}

impl Rooms {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            ticket_key: crate::quiz::hmac(secret, &[b"seckill queue ticket key v1"]),
            draw_key: crate::quiz::hmac(secret, &[b"seckill queue draw key v1"]),
            owner: random_u64(),
            epoch: random_u64(),
            views: DashMap::new(),
        }
    }

    fn view(&self, c: &CampaignId) -> Arc<RoomView> {
        if let Some(v) = self.views.get(c) {
            return Arc::clone(&v);
        }
        Arc::clone(&self.views.entry(c.clone()).or_default())
    }

    /// The pre-queue draw of a buyer: uniform in `[0, DRAW_RANGE)`.
    fn draw(&self, c: &CampaignId, user: &UserId) -> u64 {
        let mac = crate::quiz::hmac(
            &self.draw_key,
            &[c.as_str().as_bytes(), user.as_str().as_bytes()],
        );
        u64::from_be_bytes(mac[..8].try_into().unwrap_or_default()) % DRAW_RANGE
    }

    fn sig(&self, parts: &[&[u8]]) -> String {
        hex::encode(&crate::quiz::hmac(&self.ticket_key, parts)[..SIG_HEX / 2])
    }

    fn ticket(&self, c: &CampaignId, user: &UserId, t: &Ticket) -> String {
        let body = t.body();
        let sig = self.sig(&[
            b"ticket",
            c.as_str().as_bytes(),
            user.as_str().as_bytes(),
            body.as_bytes(),
        ]);
        format!("{body}.{sig}")
    }

    /// The ticket `text` if it is this buyer's for this campaign.
    fn verify(&self, c: &CampaignId, user: &UserId, text: &str) -> Result<Ticket, ApiError> {
        use subtle::ConstantTimeEq;
        let bad = || {
            ApiError::new(
                Code::BadTicket,
                "this queue ticket is not yours for this sale; join with POST .../queue",
            )
        };
        let (body, sig) = text.rsplit_once('.').ok_or_else(bad)?;
        let ticket = Ticket::parse(body).ok_or_else(bad)?;
        let want = self.sig(&[
            b"ticket",
            c.as_str().as_bytes(),
            user.as_str().as_bytes(),
            body.as_bytes(),
        ]);
        if bool::from(want.as_bytes().ct_eq(sig.as_bytes())) {
            Ok(ticket)
        } else {
            Err(bad())
        }
    }

    fn admission_sig(&self, c: &CampaignId, user: &UserId, epoch: u64, rank: u64) -> String {
        self.sig(&[
            b"admission",
            c.as_str().as_bytes(),
            user.as_str().as_bytes(),
            &epoch.to_be_bytes(),
            &rank.to_be_bytes(),
        ])
    }

    /// The grab path of an admitted rank: `.../grab/r<rank>.<sig>`.
    fn grab_path(&self, c: &CampaignId, user: &UserId, epoch: u64, rank: u64) -> String {
        format!(
            "/api/v1/campaigns/{c}/grab/r{rank}.{}",
            self.admission_sig(c, user, epoch, rank)
        )
    }
}

/// What a ticket says; signed with the campaign and the buyer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ticket {
    epoch: u64,
    /// `None`: pre-queued, ranked at the start.
    rank: Option<u64>,
    joined_ms: u64,
    eta_s: u64,
}

impl Ticket {
    fn body(&self) -> String {
        match self.rank {
            None => format!("1.{}.p", self.epoch),
            Some(rank) => format!("1.{}.r{rank}.{}.{}", self.epoch, self.joined_ms, self.eta_s),
        }
    }

    fn parse(body: &str) -> Option<Self> {
        let mut parts = body.split('.');
        if parts.next()? != "1" {
            return None;
        }
        let epoch = parts.next()?.parse().ok()?;
        let kind = parts.next()?;
        let t = if kind == "p" {
            Ticket {
                epoch,
                rank: None,
                joined_ms: 0,
                eta_s: 0,
            }
        } else {
            Ticket {
                epoch,
                rank: Some(kind.strip_prefix('r')?.parse().ok()?),
                joined_ms: parts.next()?.parse().ok()?,
                eta_s: parts.next()?.parse().ok()?,
            }
        };
        parts.next().is_none().then_some(t)
    }
}

fn room_error(e: RoomError) -> ApiError {
    match e {
        RoomError::Full => ApiError::new(
            Code::QueueFull,
            "the queue for this sale is full; try again shortly",
        )
        .retry_after(QUEUE_FULL_RETRY_S),
        RoomError::Unavailable(why) => {
            tracing::warn!(%why, "waiting room store failed");
            ApiError::unavailable("the waiting room is unavailable")
        }
    }
}

/// The campaign, its room settings and the buyer, for a join or a poll.
fn open(
    app: &App,
    id: &str,
    headers: &http::HeaderMap,
) -> Result<(Arc<Campaign>, RoomConfig, UserId, u64), ApiError> {
    let live = crate::usecase::campaigns::find(app, id)?;
    let c = live.get();
    let Some(cfg) = c.waiting_room else {
        return Err(ApiError::new(
            Code::NoWaitingRoom,
            "this sale has no waiting room; GET .../grab-path and grab",
        ));
    };
    let now = app.clock.now_ms();
    let user = app.auth.buyer(
        headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
        now,
    )?;
    if c.state(now, false) == CampaignState::Ended {
        return Err(engine::Rejection::Ended.into());
    }
    Ok((c, cfg, user, now))
}

/// `POST /api/v1/campaigns/{id}/queue`: joins (once) and says where the
/// buyer stands.
pub async fn join(app: &App, id: &str, headers: &http::HeaderMap) -> Result<QueueStatus, ApiError> {
    let (c, cfg, user, now) = open(app, id, headers)?;
    app.rate.user(&user)?;
    let rooms = &app.rooms;
    let view = rooms.view(&c.id);
    ensure_fresh(app, &c, &cfg, &view, now).await?;
    let (epoch, entry) = app
        .room
        .join(&Join {
            campaign: &c.id,
            user: &user,
            draw: rooms.draw(&c.id, &user),
            now_ms: now,
            starts_at_ms: c.starts_at_ms,
            queue_max: cfg.queue_max,
            epoch: rooms.epoch,
        })
        .await
        .map_err(room_error)?;
    let ticket = match entry {
        Entry::Pre => Ticket {
            epoch,
            rank: None,
            joined_ms: 0,
            eta_s: 0,
        },
        Entry::Ranked {
            rank,
            joined_ms,
            eta_s,
        } => {
            let eta_s = match eta_s {
                Some(kept) => u64::from(kept),
                None => {
                    let state = view.state();
                    let position = rank.saturating_sub(state.admitted()).max(1);
                    let eta = u32::try_from(state.eta_s(&cfg, position)).unwrap_or(u32::MAX);
                    u64::from(
                        app.room
                            .set_eta(&c.id, &user, eta)
                            .await
                            .map_err(room_error)?,
                    )
                }
            };
            Ticket {
                epoch,
                rank: Some(rank),
                joined_ms,
                eta_s,
            }
        }
    };
    let mut status = answer(app, &c, &cfg, &user, &view, ticket, now).await?;
    status.ticket = Some(rooms.ticket(&c.id, &user, &ticket));
    Ok(status)
}

/// `GET /api/v1/campaigns/{id}/queue` with `X-Queue-Ticket`.
pub async fn poll(app: &App, id: &str, headers: &http::HeaderMap) -> Result<QueueStatus, ApiError> {
    let (c, cfg, user, now) = open(app, id, headers)?;
    let text = headers
        .get(TICKET_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::bad_request("send the ticket of your join in the X-Queue-Ticket header")
        })?;
    let ticket = app.rooms.verify(&c.id, &user, text)?;
    let view = app.rooms.view(&c.id);
    answer(app, &c, &cfg, &user, &view, ticket, now).await
}

/// Reads a room this gateway has not read yet (just created), or one its
/// ticker could not read lately, once, now.
async fn ensure_fresh(
    app: &App,
    c: &Campaign,
    cfg: &RoomConfig,
    view: &RoomView,
    now: u64,
) -> Result<(), ApiError> {
    if view.fresh() {
        return Ok(());
    }
    tick_one(app, c, cfg, now).await.map_err(room_error)
}

/// Where the holder of `ticket` stands, from this gateway's copy of the
/// room (plus one look-up for a pre-queued buyer's rank after the draw,
/// answered with a ranked ticket to keep).
async fn answer(
    app: &App,
    c: &Campaign,
    cfg: &RoomConfig,
    user: &UserId,
    view: &RoomView,
    ticket: Ticket,
    now: u64,
) -> Result<QueueStatus, ApiError> {
    ensure_fresh(app, c, cfg, view, now).await?;
    let Some(counts) = view.counts() else {
        return Err(ApiError::unavailable(
            "this gateway has not read the waiting room yet; try again shortly",
        ));
    };
    if ticket.epoch != counts.epoch {
        return Err(ApiError::new(
            Code::QueueReset,
            "the queue was reset (its store restarted); join again with POST .../queue",
        ));
    }
    let state = view.state();
    let mut out = QueueStatus {
        ticket: None,
        state: QueueState::Waiting,
        position: 0,
        eta_s: 0,
        phase: QueuePhase::Queue,
        approximate: true,
        as_of_ms: state.tick_ms,
        starts_at_ms: c.starts_at_ms,
        queued: counts.queued.max(state.queued),
        admit_per_s: (state.rate_per_s(cfg) * 10.0).round() / 10.0,
        poll_after_ms: POLL_MS,
        grab_path: None,
        admitted_until_ms: None,
    };
    let sold_out = state.sold_out || app.ledger.sold_out_hint(&c.id);
    let rank = match ticket.rank {
        Some(rank) => rank,
        None if !counts.sealed => {
            out.phase = QueuePhase::PreQueue;
            out.queued = counts.pre;
            if sold_out {
                out.state = QueueState::SoldOut;
                return Ok(out);
            }
            let position = pre_queue_position(app.rooms.draw(&c.id, user), counts.pre);
            let until_start = c.starts_at_ms.saturating_sub(now).div_ceil(1000);
            out.position = position;
            out.eta_s = until_start + state.eta_s(cfg, position);
            out.poll_after_ms = POLL_MS
                .max(until_start.saturating_sub(5) * 1000)
                .min(10_000);
            return Ok(out);
        }
        None => {
            let Some(rank) = app.room.pre_rank(&c.id, user).await.map_err(room_error)? else {
                return Err(ApiError::new(
                    Code::QueueReset,
                    "the queue does not know this ticket (its store restarted); join again",
                ));
            };
            // The rank is fixed from now on: a ticket that carries it lets
            // every later poll be answered without a look-up.
            let ranked = Ticket {
                epoch: ticket.epoch,
                rank: Some(rank),
                joined_ms: c.starts_at_ms,
                eta_s: state.eta_s(cfg, rank.saturating_sub(state.admitted()).max(1)),
            };
            out.ticket = Some(app.rooms.ticket(&c.id, user, &ranked));
            rank
        }
    };
    out.approximate = false;
    out.queued = out.queued.max(rank);
    match state.place(rank) {
        _ if sold_out => out.state = QueueState::SoldOut,
        Place::SoldOut => out.state = QueueState::SoldOut,
        Place::Lapsed => {
            return Err(ApiError::new(
                Code::AdmissionExpired,
                "your admission lapsed unused; your place in this sale is spent",
            ))
        }
        Place::Admitted => {
            out.state = QueueState::Admitted;
            out.grab_path = Some(app.rooms.grab_path(&c.id, user, counts.epoch, rank));
            out.admitted_until_ms = Some(now + u64::from(cfg.admit_ttl_s) * 1000);
            if ticket.rank.is_some() && ticket.joined_ms > 0 {
                view.score(rank, ticket.eta_s, now.saturating_sub(ticket.joined_ms));
            }
        }
        Place::Waiting { position } => {
            out.position = position;
            out.eta_s = state.eta_s(cfg, position);
            out.approximate = true;
        }
    }
    Ok(out)
}

/// The funnel's `path` stage for a waiting-room campaign: the grab came on
/// this buyer's admission path and the admission is valid now. The rank.
pub fn check_admission(
    app: &App,
    c: &Campaign,
    user: &UserId,
    sig: Option<&str>,
) -> Result<u64, ApiError> {
    use subtle::ConstantTimeEq;
    let not_admitted = || {
        ApiError::new(
            Code::NotAdmitted,
            "this sale has a waiting room: join with POST .../queue and grab on the path your admission gives",
        )
    };
    let (rank_text, given) = sig
        .and_then(|s| s.strip_prefix('r'))
        .and_then(|s| s.split_once('.'))
        .ok_or_else(not_admitted)?;
    let rank: u64 = rank_text.parse().map_err(|_| not_admitted())?;
    let view = app.rooms.view(&c.id);
    let counts = view.counts().filter(|_| view.fresh()).ok_or_else(|| {
        ApiError::unavailable("this gateway has not read the waiting room yet; try again shortly")
    })?;
    let want = app.rooms.admission_sig(&c.id, user, counts.epoch, rank);
    if !bool::from(want.as_bytes().ct_eq(given.as_bytes())) {
        return Err(not_admitted());
    }
    match view.state().place(rank) {
        Place::Admitted => Ok(rank),
        Place::SoldOut => Err(engine::Rejection::SoldOut.into()),
        Place::Lapsed => Err(ApiError::new(
            Code::AdmissionExpired,
            "your admission lapsed unused",
        )),
        Place::Waiting { .. } => Err(not_admitted()),
    }
}

/// The funnel's `claim` stage: one use of the admission, before the ledger.
pub async fn claim(app: &App, c: &Campaign, rank: u64) -> Result<(), ApiError> {
    match app.room.claim(&c.id, rank, c.per_user_limit).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(engine::Rejection::AlreadyBought.into()),
        Err(e) => Err(room_error(e)),
    }
}

/// Gives a use back: the grab failed through no fault of the buyer.
pub async fn unclaim(app: &App, c: &Campaign, rank: u64) {
    if let Err(e) = app.room.unclaim(&c.id, rank).await {
        tracing::warn!(campaign = %c.id, rank, error = %e, "could not give an admission's use back");
    }
}

/// One refresh of every waiting room: the leader advances the cursor,
/// everyone reads it.
pub async fn tick(app: &App) {
    let now = app.clock.now_ms();
    for live in app.registry.all() {
        let c = live.get();
        let Some(cfg) = c.waiting_room else {
            continue;
        };
        // A room is kept up to date until a minute after its sale ends.
        if now > c.ends_at_ms.saturating_add(60_000) {
            continue;
        }
        if let Err(e) = tick_one(app, &c, &cfg, now).await {
            tracing::warn!(campaign = %c.id, error = %e, "waiting room refresh failed");
        }
    }
}

async fn tick_one(app: &App, c: &Campaign, cfg: &RoomConfig, now: u64) -> Result<(), RoomError> {
    let rooms = &app.rooms;
    let view = rooms.view(&c.id);
    let counts = app
        .room
        .counts(&c.id, now, c.starts_at_ms, rooms.epoch)
        .await?;
    let mut state = app.room.state(&c.id).await?.unwrap_or_default();
    if state.epoch != counts.epoch {
        state = RoomState {
            epoch: counts.epoch,
            ..RoomState::default()
        };
    }
    if app.room.lead(&c.id, rooms.owner, LEASE_MS).await? {
        let lapse = state.next_lapse_point(cfg, now);
        let (finished_above, finished_total) = app.room.finished(&c.id, lapse).await?;
        let units_left = match app.ledger.snapshot(&c.id).await {
            Ok(s) => s.map(|s| s.remaining),
            Err(e) => {
                tracing::warn!(campaign = %c.id, error = %e, "ledger snapshot failed");
                None
            }
        };
        let input = TickInput {
            now_ms: now,
            starts_at_ms: c.starts_at_ms,
            open: c.state(now, false) == CampaignState::Live,
            queued: counts.queued,
            units_left,
            sold_out: app.ledger.sold_out_hint(&c.id),
            finished_above,
            finished_total,
        };
        state.advance(cfg, &input);
        app.room.put_state(&c.id, rooms.owner, &state).await?;
    }
    *view.state.write() = Arc::new(state);
    *view.counts.lock() = Some(counts);
    view.refreshed_mono_ms.store(mono_ms(), Ordering::Release);
    Ok(())
}

/// Refreshes the rooms every `TICK_MS` until the app is dropped.
pub fn spawn_ticker(app: &Arc<App>) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(app);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(TICK_MS));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(app) = weak.upgrade() else { return };
            tick(&app).await;
        }
    })
}

/// The room's numbers for `stats`, from this gateway's copy.
pub fn stats(app: &App, c: &Campaign) -> Option<RoomStats> {
    let settings = c.waiting_room?;
    let view = app.rooms.view(&c.id);
    let state = view.state();
    let counts = view.counts();
    let a = view.accuracy.lock();
    let queued = counts.map_or(0, |k| k.queued).max(state.queued);
    Some(RoomStats {
        settings,
        pre_queued: counts.map_or(0, |k| k.pre),
        queued,
        waiting: queued.saturating_sub(state.admitted()),
        admitted: state.admitted(),
        admitted_per_s: (state.rate_milli as f64 / 100.0).round() / 10.0,
        active: state.active,
        capacity: state.capacity,
        abandoned: state.abandoned,
        blocked: state.blocked,
        queue_sold_out: state.queue_sold_out,
        eta_accuracy: EtaAccuracy {
            samples: a.samples,
            within_30pct: a.within,
            mean_abs_error_pct: if a.samples == 0 {
                0.0
            } else {
                (a.abs_err_pct_sum / a.samples as f64 * 10.0).round() / 10.0
            },
        },
        as_of_ms: state.tick_ms,
    })
}

/// `POST /admin/v1/campaigns/{id}/waiting-room`: the operator changes the
/// room's settings during the sale (every gateway's next tick uses them).
pub async fn configure(
    app: &App,
    id: &str,
    patch: &engine::room::RoomPatch,
) -> Result<crate::api::AdminCampaignView, ApiError> {
    let live = crate::usecase::campaigns::find_fresh(app, id).await?;
    let mut c = (*live.get()).clone();
    let Some(base) = c.waiting_room else {
        return Err(ApiError::new(
            Code::NoWaitingRoom,
            "this sale has no waiting room (it is chosen at creation)",
        ));
    };
    let room = patch.apply(base).map_err(|field| {
        ApiError::bad_request(format!("{field} is out of range (see the API document)"))
    })?;
    app.store.set_waiting_room(&c.id, Some(&room)).await?;
    tracing::info!(campaign = %c.id, ?room, "waiting room settings changed");
    c.waiting_room = Some(room);
    live.set(c);
    Ok(crate::usecase::campaigns::admin_view(app, &live, app.clock.now_ms()).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_round_trip_and_refuse_tampering() {
        let rooms = Rooms::new(b"0123456789abcdef0123456789abcdef");
        let c = CampaignId::parse("c1").unwrap();
        let (u, v) = (UserId::parse("u1").unwrap(), UserId::parse("u2").unwrap());
        for t in [
            Ticket {
                epoch: 9,
                rank: None,
                joined_ms: 0,
                eta_s: 0,
            },
            Ticket {
                epoch: 9,
                rank: Some(42),
                joined_ms: 1_700,
                eta_s: 12,
            },
        ] {
            let text = rooms.ticket(&c, &u, &t);
            assert_eq!(rooms.verify(&c, &u, &text).unwrap(), t);
            assert!(rooms.verify(&c, &v, &text).is_err(), "another buyer's");
            let other = CampaignId::parse("c2").unwrap();
            assert!(rooms.verify(&other, &u, &text).is_err(), "another sale's");
            let forged = text.replacen(".9.", ".8.", 1);
            assert!(rooms.verify(&c, &u, &forged).is_err(), "{forged}");
        }
        assert!(rooms.verify(&c, &u, "1.9.r1.0.0.00").is_err());
        assert!(rooms.verify(&c, &u, "").is_err());
        let other_key = Rooms::new(b"another secret, also 32 bytes ok");
        let t = rooms.ticket(
            &c,
            &u,
            &Ticket {
                epoch: 1,
                rank: Some(1),
                joined_ms: 1,
                eta_s: 1,
            },
        );
        assert!(other_key.verify(&c, &u, &t).is_err());
    }

    #[test]
    fn draws_are_keyed_and_spread() {
        let rooms = Rooms::new(b"0123456789abcdef0123456789abcdef");
        let other = Rooms::new(b"another secret, also 32 bytes ok");
        let c = CampaignId::parse("c1").unwrap();
        let u = UserId::parse("u1").unwrap();
        assert_eq!(rooms.draw(&c, &u), rooms.draw(&c, &u));
        assert_ne!(rooms.draw(&c, &u), other.draw(&c, &u));
        let mean = (0..10_000)
            .map(|i| rooms.draw(&c, &UserId::parse(&format!("u{i}")).unwrap()) as f64)
            .sum::<f64>()
            / 10_000.0
            / DRAW_RANGE as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }
}
