//! The waiting room, as pure decisions: a campaign's queue admits buyers in
//! rank order at a configured rate, never more at a time than the stock can
//! serve, and tells the rest "sold out" the moment they can no longer win.
//!
//! Ranks: buyers who join before the start are pre-queued and ranked at the
//! start by a keyed draw (so arriving early gives no edge and the order
//! cannot be predicted); later joiners are ranked first-in first-out behind
//! them. A rank never changes once given, so every gateway can answer a
//! buyer's poll from the rank alone and the room's [`RoomState`] (the
//! admission cursor), which one gateway at a time advances with
//! [`RoomState::advance`] and all of them read.
//!
//! Admission: the cursor moves at `admit_per_s`, but only while the buyers
//! admitted and still able to buy ("active": admitted, not lapsed, not yet
//! holding an order) are fewer than `min(admitted_max, units left ×
//! stock_factor_pct / 100)`. An admission lapses `admit_ttl_s` after it was
//! given (to the resolution of the cursor's history, 1/64 of that); a unit
//! returned by payment expiry raises the units left, so the cursor admits
//! exactly that many more (at factor 100 %).

use serde::{Deserialize, Serialize};

/// Defaults, each measured against the gateway's limits (BENCHMARKS.md):
/// one admitted buyer costs about three requests (quiz, grab, a poll) and
/// the Redis profile grabs about 4,500/s on this machine, so 1,000
/// admissions a second keep the funnel well inside its capacity.
pub const ADMIT_PER_S_DEFAULT: u32 = 1_000;
pub const ADMIT_PER_S_MAX: u32 = 100_000;
/// Buyers admitted and not yet finished, at most.
pub const ADMITTED_MAX_DEFAULT: u32 = 10_000;
pub const ADMITTED_MAX_MAX: u32 = 1_000_000;
/// How long an admission stays valid (long enough for the quiz).
pub const ADMIT_TTL_S_DEFAULT: u32 = 120;
pub const ADMIT_TTL_S_MIN: u32 = 5;
pub const ADMIT_TTL_S_MAX: u32 = 3_600;
/// Active admissions per unit left, in percent: 100 admits one buyer per
/// unit; more admits spare buyers for those who will not buy.
pub const STOCK_FACTOR_PCT_DEFAULT: u32 = 100;
pub const STOCK_FACTOR_PCT_MAX: u32 = 1_000;
/// Queued buyers per campaign, at most (past it a join is refused 503).
pub const QUEUE_MAX_DEFAULT: u64 = 2_000_000;
pub const QUEUE_MAX_MAX: u64 = 10_000_000;
/// Checkpoints of the cursor kept to tell when an admission lapses.
pub const HISTORY: usize = 64;
/// Pre-queue draws are uniform in `[0, DRAW_RANGE)`: 52 bits, exact as a
/// Redis sorted-set score (a double).
pub const DRAW_RANGE: u64 = 1 << 52;
/// Time constant of the measured admission rate.
const RATE_WINDOW_MS: u64 = 2_000;
/// Longest step one tick may take: a leader that stalled longer does not
/// admit a burst on its return.
const TICK_STEP_MAX_MS: u64 = 1_000;

/// A campaign's waiting-room settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomConfig {
    pub admit_per_s: u32,
    pub admitted_max: u32,
    pub admit_ttl_s: u32,
    pub stock_factor_pct: u32,
    pub queue_max: u64,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            admit_per_s: ADMIT_PER_S_DEFAULT,
            admitted_max: ADMITTED_MAX_DEFAULT,
            admit_ttl_s: ADMIT_TTL_S_DEFAULT,
            stock_factor_pct: STOCK_FACTOR_PCT_DEFAULT,
            queue_max: QUEUE_MAX_DEFAULT,
        }
    }
}

/// The operator's changes to a room's settings; absent fields are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomPatch {
    #[serde(default, deserialize_with = "crate::campaign::present")]
    pub admit_per_s: Option<u32>,
    #[serde(default, deserialize_with = "crate::campaign::present")]
    pub admitted_max: Option<u32>,
    #[serde(default, deserialize_with = "crate::campaign::present")]
    pub admit_ttl_s: Option<u32>,
    #[serde(default, deserialize_with = "crate::campaign::present")]
    pub stock_factor_pct: Option<u32>,
    #[serde(default, deserialize_with = "crate::campaign::present")]
    pub queue_max: Option<u64>,
}

impl RoomPatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The first field the patch sets, if any.
    pub fn first_given(&self) -> Option<&'static str> {
        [
            ("admit_per_s", self.admit_per_s.is_some()),
            ("admitted_max", self.admitted_max.is_some()),
            ("admit_ttl_s", self.admit_ttl_s.is_some()),
            ("stock_factor_pct", self.stock_factor_pct.is_some()),
            ("queue_max", self.queue_max.is_some()),
        ]
        .into_iter()
        .find_map(|(name, given)| given.then_some(name))
    }

    /// `base` with this patch applied, validated; the error names the field.
    pub fn apply(&self, base: RoomConfig) -> Result<RoomConfig, &'static str> {
        let c = RoomConfig {
            admit_per_s: self.admit_per_s.unwrap_or(base.admit_per_s),
            admitted_max: self.admitted_max.unwrap_or(base.admitted_max),
            admit_ttl_s: self.admit_ttl_s.unwrap_or(base.admit_ttl_s),
            stock_factor_pct: self.stock_factor_pct.unwrap_or(base.stock_factor_pct),
            queue_max: self.queue_max.unwrap_or(base.queue_max),
        };
        c.validate().map(|()| c)
    }
}

impl RoomConfig {
    /// The first field out of its range, if any.
    pub fn validate(&self) -> Result<(), &'static str> {
        if !(1..=ADMIT_PER_S_MAX).contains(&self.admit_per_s) {
            return Err("admit_per_s");
        }
        if !(1..=ADMITTED_MAX_MAX).contains(&self.admitted_max) {
            return Err("admitted_max");
        }
        if !(ADMIT_TTL_S_MIN..=ADMIT_TTL_S_MAX).contains(&self.admit_ttl_s) {
            return Err("admit_ttl_s");
        }
        if !(100..=STOCK_FACTOR_PCT_MAX).contains(&self.stock_factor_pct) {
            return Err("stock_factor_pct");
        }
        if !(1..=QUEUE_MAX_MAX).contains(&self.queue_max) {
            return Err("queue_max");
        }
        Ok(())
    }

    fn ttl_ms(&self) -> u64 {
        u64::from(self.admit_ttl_s) * 1000
    }
}

/// What the leader reads before a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickInput {
    pub now_ms: u64,
    pub starts_at_ms: u64,
    /// Live and not paused: the cursor may move.
    pub open: bool,
    /// Ranks given so far (the queue's length, admitted included).
    pub queued: u64,
    /// Units the ledger has left; `None` when it could not be read (the
    /// cursor then holds still and nothing is declared sold out).
    pub units_left: Option<u64>,
    /// The ledger's sold-out flag.
    pub sold_out: bool,
    /// Ranks holding an order (finished) above the lapse point, and in all.
    pub finished_above: u64,
    pub finished_total: u64,
}

/// One campaign's admission cursor and what it was decided from: written
/// by the leading gateway every tick, read by every gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomState {
    /// Identifies this room's life: a room store that lost its data starts
    /// a new epoch, and tickets of an older one are refused (rejoin).
    pub epoch: u64,
    pub tick_ms: u64,
    /// Admitted ranks × 1000 (the cursor keeps fractions between ticks).
    pub admitted_milli: u64,
    /// `(at_ms, admitted)` checkpoints, oldest first.
    pub history: Vec<(u64, u64)>,
    /// Ranks at or below this were admitted at least `admit_ttl_s` ago.
    pub lapsed_through: u64,
    pub active: u64,
    /// Admissions that lapsed unused.
    pub abandoned: u64,
    /// How many may be active now: `min(admitted_max, units_left × factor)`.
    pub capacity: u64,
    pub units_left: u64,
    pub queued: u64,
    /// Measured admissions per second × 1000.
    pub rate_milli: u64,
    /// The cursor was held back by the capacity at the last tick.
    pub blocked: bool,
    /// Nobody still queued can be admitted: the stock left is spoken for.
    pub queue_sold_out: bool,
    /// The ledger has no stock left.
    pub sold_out: bool,
}

/// Where a ranked buyer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Waiting {
        position: u64,
    },
    Admitted,
    /// Admitted, and the admission lapsed unused.
    Lapsed,
    SoldOut,
}

impl RoomState {
    pub fn admitted(&self) -> u64 {
        self.admitted_milli / 1000
    }

    /// The admitted count at the newest checkpoint at least `ttl` old:
    /// ranks at or below it were admitted at least `ttl` ago.
    fn lapse_point(&self, now_ms: u64, ttl_ms: u64) -> u64 {
        let cutoff = now_ms.saturating_sub(ttl_ms);
        self.history
            .iter()
            .rev()
            .find(|&&(at, _)| at <= cutoff)
            .map_or(0, |&(_, admitted)| admitted)
    }

    /// The lapse point a tick at `now_ms` will use; the leader reads the
    /// finished counts against it before [`advance`](Self::advance).
    pub fn next_lapse_point(&self, cfg: &RoomConfig, now_ms: u64) -> u64 {
        self.lapse_point(now_ms, cfg.ttl_ms())
            .max(self.lapsed_through)
            .min(self.admitted())
    }

    /// One tick: lapse old admissions, then move the cursor as far as the
    /// rate, the capacity and the queue allow.
    pub fn advance(&mut self, cfg: &RoomConfig, input: &TickInput) {
        let now = input.now_ms.max(self.tick_ms);
        let from = self.tick_ms.max(input.starts_at_ms);
        let step = if self.tick_ms == 0 || now < input.starts_at_ms {
            0
        } else {
            now.saturating_sub(from).min(TICK_STEP_MAX_MS)
        };
        self.tick_ms = now;
        self.queued = self.queued.max(input.queued);
        let before = self.admitted_milli;
        self.lapsed_through = self.next_lapse_point(cfg, now);
        let admitted = self.admitted();
        self.active = admitted
            .saturating_sub(self.lapsed_through)
            .saturating_sub(input.finished_above);
        let finished_below = input.finished_total.saturating_sub(input.finished_above);
        self.abandoned = self.lapsed_through.saturating_sub(finished_below);
        self.sold_out = input.sold_out || input.units_left == Some(0);
        let by_stock = input
            .units_left
            .map(|u| u.saturating_mul(u64::from(cfg.stock_factor_pct)) / 100);
        if let Some(u) = input.units_left {
            self.units_left = u;
        }
        self.capacity = by_stock.map_or(0, |s| s.min(u64::from(cfg.admitted_max)));
        self.blocked = false;
        if input.open && step > 0 && by_stock.is_some() {
            let want = before + u64::from(cfg.admit_per_s) * step;
            let room = self.capacity.saturating_sub(self.active);
            let by_capacity = (admitted + room) * 1000;
            let by_queue = self.queued * 1000;
            let mut next = want.min(by_queue);
            if by_capacity < next {
                // Held back: no credit is banked for later.
                next = by_capacity;
                self.blocked = true;
            }
            self.admitted_milli = next.max(before);
            self.active += self.admitted() - admitted;
        }
        // After this tick's admissions: nobody still waiting can be
        // admitted once the stock left is spoken for.
        self.queue_sold_out = self.sold_out || by_stock.is_some_and(|s| self.active >= s);
        if let Some(gained) = ((self.admitted_milli - before) * 1000).checked_div(step) {
            let alpha = step.min(RATE_WINDOW_MS);
            self.rate_milli =
                (self.rate_milli * (RATE_WINDOW_MS - alpha) + gained * alpha) / RATE_WINDOW_MS;
        }
        let every = (cfg.ttl_ms() / HISTORY as u64).max(1);
        if self.history.last().is_none_or(|&(at, _)| now >= at + every) {
            self.history.push((now, self.admitted()));
            if self.history.len() > HISTORY + 2 {
                self.history.remove(0);
            }
        }
    }

    /// Where the buyer of `rank` stands.
    pub fn place(&self, rank: u64) -> Place {
        if self.sold_out {
            Place::SoldOut
        } else if rank <= self.lapsed_through {
            Place::Lapsed
        } else if rank <= self.admitted() {
            Place::Admitted
        } else if self.queue_sold_out {
            Place::SoldOut
        } else {
            Place::Waiting {
                position: rank - self.admitted(),
            }
        }
    }

    /// The admission rate estimates use: the configured one while the
    /// cursor runs free, the measured one while the capacity holds it back.
    pub fn rate_per_s(&self, cfg: &RoomConfig) -> f64 {
        if self.blocked {
            (self.rate_milli as f64 / 1000.0).max(0.1)
        } else {
            f64::from(cfg.admit_per_s)
        }
    }

    /// Seconds until `position` buyers ahead have been admitted.
    pub fn eta_s(&self, cfg: &RoomConfig, position: u64) -> u64 {
        (position as f64 / self.rate_per_s(cfg)).ceil() as u64
    }
}

/// A pre-queued buyer's estimated position before the draw: a draw is
/// uniform, so its share of the range is its expected share of the queue.
pub fn pre_queue_position(draw: u64, pre_size: u64) -> u64 {
    let share = draw.min(DRAW_RANGE - 1) as f64 / DRAW_RANGE as f64;
    ((share * pre_size as f64).floor() as u64 + 1).min(pre_size.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rate: u32) -> RoomConfig {
        RoomConfig {
            admit_per_s: rate,
            admit_ttl_s: 64,
            ..RoomConfig::default()
        }
    }

    fn input(now_ms: u64, queued: u64, units_left: u64) -> TickInput {
        TickInput {
            now_ms,
            starts_at_ms: 1_000,
            open: true,
            queued,
            units_left: Some(units_left),
            sold_out: units_left == 0,
            finished_above: 0,
            finished_total: 0,
        }
    }

    fn run(s: &mut RoomState, c: &RoomConfig, from: u64, to: u64, every: u64, i: TickInput) {
        let mut t = from;
        while t <= to {
            s.advance(c, &TickInput { now_ms: t, ..i });
            t += every;
        }
    }

    #[test]
    fn admits_at_the_rate_from_the_start_only() {
        let c = cfg(100);
        let mut s = RoomState::default();
        run(&mut s, &c, 0, 999, 100, input(0, 10_000, 10_000));
        assert_eq!(s.admitted(), 0, "nothing before the start");
        run(&mut s, &c, 1_000, 11_000, 100, input(0, 10_000, 10_000));
        assert_eq!(s.admitted(), 1_000, "10 s at 100/s");
        assert!(
            (s.rate_milli as i64 - 100_000).abs() < 2_000,
            "{}",
            s.rate_milli
        );
        assert_eq!(s.place(1_000), Place::Admitted);
        assert_eq!(s.place(1_500), Place::Waiting { position: 500 });
        assert_eq!(s.eta_s(&c, 500), 5);
    }

    #[test]
    fn a_stalled_leader_does_not_admit_a_burst() {
        let c = cfg(100);
        let mut s = RoomState::default();
        s.advance(&c, &input(1_000, 10_000, 10_000));
        s.advance(&c, &input(60_000, 10_000, 10_000));
        assert_eq!(s.admitted(), 100, "one step is at most a second");
    }

    #[test]
    fn stops_at_the_queue_end_and_the_stock() {
        let c = cfg(1_000);
        let mut s = RoomState::default();
        run(&mut s, &c, 1_000, 3_000, 100, input(0, 50, 10_000));
        assert_eq!(s.admitted(), 50);
        assert!(!s.blocked && !s.queue_sold_out);
        // Stock 10 at factor 100 %: ten active, then the queue is sold out.
        let mut s = RoomState::default();
        run(&mut s, &c, 1_000, 3_000, 100, input(0, 20_000, 10));
        assert_eq!(s.admitted(), 10);
        assert!(s.blocked && s.queue_sold_out);
        assert_eq!(s.place(10), Place::Admitted);
        assert_eq!(s.place(11), Place::SoldOut);
        // Twice the buyers at 200 %.
        let c2 = RoomConfig {
            stock_factor_pct: 200,
            ..c
        };
        let mut s = RoomState::default();
        run(&mut s, &c2, 1_000, 3_000, 100, input(0, 20_000, 10));
        assert_eq!(s.admitted(), 20);
    }

    #[test]
    fn finished_buyers_free_their_places_and_returned_units_admit_exactly_that_many() {
        let c = cfg(1_000);
        let mut s = RoomState::default();
        run(&mut s, &c, 1_000, 2_000, 100, input(0, 20_000, 100));
        assert_eq!(s.admitted(), 100);
        // All hundred buy: no unit left, everyone is told sold out.
        let sold = TickInput {
            finished_above: 100,
            finished_total: 100,
            ..input(0, 20_000, 0)
        };
        run(&mut s, &c, 2_100, 3_000, 100, sold);
        assert_eq!(s.admitted(), 100);
        assert_eq!(s.place(101), Place::SoldOut);
        assert_eq!(s.place(50), Place::SoldOut);
        // Five orders expire: five units back, exactly five more admitted.
        let back = TickInput {
            finished_above: 100,
            finished_total: 100,
            ..input(0, 20_000, 5)
        };
        run(&mut s, &c, 3_100, 5_000, 100, back);
        assert_eq!(s.admitted(), 105);
        assert_eq!(s.place(105), Place::Admitted);
        assert_eq!(s.place(106), Place::SoldOut);
    }

    #[test]
    fn unused_admissions_lapse_and_free_their_places() {
        let c = cfg(1_000); // ttl 64 s, checkpoints every second
        let mut s = RoomState::default();
        run(&mut s, &c, 1_000, 2_000, 100, input(0, 20_000, 10));
        assert_eq!(s.admitted(), 10);
        run(&mut s, &c, 2_100, 64_000, 100, input(0, 20_000, 10));
        assert_eq!(s.admitted(), 10, "still within the ttl");
        run(&mut s, &c, 64_100, 67_000, 100, input(0, 20_000, 10));
        assert_eq!(s.lapsed_through, 10);
        assert_eq!(s.abandoned, 10);
        assert_eq!(s.place(3), Place::Lapsed);
        assert_eq!(s.admitted(), 20, "ten new places");
        assert_eq!(s.place(20), Place::Admitted);
    }

    #[test]
    fn an_unreadable_ledger_holds_the_cursor_and_declares_nothing() {
        let c = cfg(1_000);
        let mut s = RoomState::default();
        let i = TickInput {
            units_left: None,
            ..input(0, 100, 0)
        };
        let i = TickInput {
            sold_out: false,
            ..i
        };
        run(&mut s, &c, 1_000, 2_000, 100, i);
        assert_eq!(s.admitted(), 0);
        assert!(!s.queue_sold_out && !s.sold_out);
        assert_eq!(s.place(1), Place::Waiting { position: 1 });
    }

    #[test]
    fn a_closed_room_holds_the_cursor() {
        let c = cfg(1_000);
        let mut s = RoomState::default();
        let i = TickInput {
            open: false,
            ..input(0, 100, 100)
        };
        run(&mut s, &c, 1_000, 2_000, 100, i);
        assert_eq!(s.admitted(), 0);
    }

    #[test]
    fn pre_queue_positions_spread_over_the_queue() {
        assert_eq!(pre_queue_position(0, 1_000), 1);
        assert_eq!(pre_queue_position(DRAW_RANGE / 2, 1_000), 501);
        assert_eq!(pre_queue_position(DRAW_RANGE - 1, 1_000), 1_000);
        assert_eq!(pre_queue_position(u64::MAX, 0), 1);
    }

    #[test]
    fn patches_validate_and_name_the_field() {
        let base = RoomConfig::default();
        let p = RoomPatch {
            admit_per_s: Some(5),
            ..RoomPatch::default()
        };
        assert_eq!(p.apply(base).unwrap().admit_per_s, 5);
        assert_eq!(p.apply(base).unwrap().admitted_max, base.admitted_max);
        let bad = RoomPatch {
            admit_per_s: Some(0),
            ..RoomPatch::default()
        };
        assert_eq!(bad.apply(base), Err("admit_per_s"));
        let bad = RoomPatch {
            stock_factor_pct: Some(99),
            ..RoomPatch::default()
        };
        assert_eq!(bad.apply(base), Err("stock_factor_pct"));
        assert!(RoomPatch::default().is_empty());
    }
}
