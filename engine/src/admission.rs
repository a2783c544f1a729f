//! The admission funnel as a pure decision.
//!
//! The gateway runs the cheap checks (`admit`) before it touches the ledger;
//! the ledger then decides the last two outcomes (already bought, sold out)
//! atomically. Both kinds of "no" are [`Rejection`] values, not errors.

use crate::campaign::{Campaign, CampaignState};

/// A business outcome that refuses a grab. Each has a stable snake_case code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    NotStarted,
    Ended,
    Paused,
    SoldOut,
    AlreadyBought,
    RateLimited,
    Overloaded,
}

impl Rejection {
    /// Every variant, in a fixed order (used to index per-code counters).
    pub const ALL: [Rejection; 7] = [
        Rejection::NotStarted,
        Rejection::Ended,
        Rejection::Paused,
        Rejection::SoldOut,
        Rejection::AlreadyBought,
        Rejection::RateLimited,
        Rejection::Overloaded,
    ];

    /// The stable error code of the API contract.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::NotStarted => "not_started",
            Rejection::Ended => "ended",
            Rejection::Paused => "paused",
            Rejection::SoldOut => "sold_out",
            Rejection::AlreadyBought => "already_bought",
            Rejection::RateLimited => "rate_limited",
            Rejection::Overloaded => "overloaded",
        }
    }

    /// Position in [`Rejection::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Decides whether a grab may go on to the ledger, at `now_ms`.
///
/// `sold_out_hint` is the ledger's contention-free flag; a stale `false` only
/// costs a ledger call (which then answers sold out), never an oversell.
pub fn admit(campaign: &Campaign, sold_out_hint: bool, now_ms: u64) -> Result<(), Rejection> {
    match campaign.state(now_ms, sold_out_hint) {
        CampaignState::Live => Ok(()),
        CampaignState::Scheduled => Err(Rejection::NotStarted),
        CampaignState::Ended => Err(Rejection::Ended),
        CampaignState::Paused => Err(Rejection::Paused),
        CampaignState::SoldOut => Err(Rejection::SoldOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::tests::campaign;
    use crate::campaign::Control;
    use proptest::prelude::*;

    #[test]
    fn all_is_indexed_in_order() {
        for (i, r) in Rejection::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    proptest! {
        /// Exhaustive over clock, control and flag: a grab is admitted exactly
        /// when the campaign is running, active and not flagged sold out.
        #[test]
        fn admitted_iff_live(now in 0u64..3_000, sold in any::<bool>(), ctl in 0u8..3) {
            let mut c = campaign();
            c.control = [Control::Active, Control::Paused, Control::Stopped][ctl as usize];
            let running = now >= c.starts_at_ms && now < c.ends_at_ms;
            let want_ok = running && c.control == Control::Active && !sold;
            prop_assert_eq!(admit(&c, sold, now).is_ok(), want_ok);
            if now < c.starts_at_ms && c.control != Control::Stopped {
                prop_assert_eq!(admit(&c, sold, now), Err(Rejection::NotStarted));
            }
            if now >= c.ends_at_ms {
                prop_assert_eq!(admit(&c, sold, now), Err(Rejection::Ended));
            }
        }
    }
}
