//! Orders: the durable record a grab produces, and the status state machine.

use crate::campaign::Campaign;
use crate::ids::{CampaignId, OrderId, UserId};
use serde::{Deserialize, Serialize};

/// What the order log carries for one winning grab. Immutable once written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order_id: OrderId,
    pub campaign_id: CampaignId,
    pub user_id: UserId,
    /// The user's n-th unit in this campaign, starting at 1.
    pub n: u32,
    pub price_cents: u64,
    pub created_at_ms: u64,
    pub pay_by_ms: u64,
}

impl OrderRecord {
    /// The record for `user`'s `n`-th unit of `campaign`, created at `now_ms`.
    pub fn new(campaign: &Campaign, user: UserId, n: u32, now_ms: u64) -> Self {
        Self {
            order_id: OrderId::derive(&campaign.id, &user, n),
            campaign_id: campaign.id.clone(),
            user_id: user,
            n,
            price_cents: campaign.price_cents,
            created_at_ms: now_ms,
            pay_by_ms: campaign.pay_by_ms(now_ms),
        }
    }
}

/// The status of an order, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Durable in the order log, not yet in the order store.
    Queued,
    /// Written to the order store; awaiting payment.
    Confirmed,
    Paid,
    Cancelled,
    Expired,
}

/// An illegal status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order cannot go from {from:?} to {to:?}")]
pub struct TransitionError {
    pub from: OrderStatus,
    pub to: OrderStatus,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Queued => "queued",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Paid => "paid",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            OrderStatus::Queued,
            OrderStatus::Confirmed,
            OrderStatus::Paid,
            OrderStatus::Cancelled,
            OrderStatus::Expired,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Legal moves: `queued -> confirmed -> paid | expired | cancelled`, and
    /// `queued -> cancelled` for an order that reconciliation finds was never
    /// written. Staying put is legal (idempotent retries).
    pub fn can_become(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        self == to
            || matches!(
                (self, to),
                (Queued, Confirmed)
                    | (Queued, Cancelled)
                    | (Confirmed, Paid)
                    | (Confirmed, Expired)
                    | (Confirmed, Cancelled)
            )
    }

    pub fn transition(self, to: OrderStatus) -> Result<OrderStatus, TransitionError> {
        if self.can_become(to) {
            Ok(to)
        } else {
            Err(TransitionError { from: self, to })
        }
    }

    /// Whether an order in this status gives its unit back to the stock.
    pub fn releases_stock(self) -> bool {
        matches!(self, OrderStatus::Cancelled | OrderStatus::Expired)
    }

    /// Whether no further change is possible.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Paid | OrderStatus::Cancelled | OrderStatus::Expired
        )
    }
}

/// An order together with its current status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub record: OrderRecord,
    pub status: OrderStatus,
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::{self, *};

    const ALL: [OrderStatus; 5] = [Queued, Confirmed, Paid, Cancelled, Expired];

    #[test]
    fn only_documented_transitions_are_legal() {
        let legal = [
            (Queued, Confirmed),
            (Queued, Cancelled),
            (Confirmed, Paid),
            (Confirmed, Expired),
            (Confirmed, Cancelled),
        ];
        for from in ALL {
            for to in ALL {
                let want = from == to || legal.contains(&(from, to));
                assert_eq!(from.can_become(to), want, "{from:?} -> {to:?}");
                assert_eq!(from.transition(to).is_ok(), want);
            }
        }
    }

    #[test]
    fn terminal_states_have_no_exit() {
        for from in ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in ALL.into_iter().filter(|&t| t != from) {
                assert!(!from.can_become(to));
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(OrderStatus::parse("shipped"), None);
    }
}
