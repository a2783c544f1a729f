//! Reconciliation arithmetic: what the ledger holds against what the
//! durable records (the order store, fed by the order log) say was sold.
//!
//! The durable records win. A hold without a record is a grab whose log
//! append never became durable (a timeout answered "unknown", a crashed
//! gateway): its unit goes back on sale. A record without a hold means the
//! ledger lost data (Redis restarted empty): the hold is restored. Both are
//! settled by rebuilding the ledger from the records, never by guessing.

use crate::ids::UserId;
use crate::ports::Hold;
use std::collections::BTreeSet;

/// The difference between ledger and records for one campaign.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    pub stock_total: u64,
    /// Units the records say are sold (held by an order that is not
    /// cancelled or expired).
    pub durable: u64,
    /// Units the ledger holds.
    pub held: u64,
    /// Holds with no durable record: released by a repair.
    pub holds_without_record: Vec<Hold>,
    /// Durable records with no hold: restored by a repair.
    pub records_without_hold: Vec<Hold>,
    /// Units the ledger has left to sell (the sum over its buckets).
    pub stock_left: u64,
}

impl Diff {
    pub fn is_clean(&self) -> bool {
        self.holds_without_record.is_empty()
            && self.records_without_hold.is_empty()
            && self.conserved()
    }

    /// Whether `stock_left + held == stock_total` in the ledger.
    pub fn conserved(&self) -> bool {
        self.stock_left.checked_add(self.held) == Some(self.stock_total)
    }

    /// Units the ledger lost (positive: neither on sale nor held, stranded)
    /// or made up (negative: an oversell risk), by conservation.
    pub fn leaked(&self) -> i128 {
        i128::from(self.stock_total) - i128::from(self.stock_left) - i128::from(self.held)
    }

    /// Remaining stock after a repair: total minus durable sales.
    pub fn remaining_after_repair(&self) -> u64 {
        self.stock_total.saturating_sub(self.durable)
    }
}

fn key(h: &Hold) -> (UserId, u32) {
    (h.user.clone(), h.n)
}

/// Compares durable records with ledger holds, and the ledger's stock left
/// with its holds. Duplicates on either side count once (a hold is
/// identified by user and n).
pub fn diff(stock_total: u64, durable: &[Hold], held: &[Hold], stock_left: u64) -> Diff {
    let d: BTreeSet<_> = durable.iter().map(key).collect();
    let h: BTreeSet<_> = held.iter().map(key).collect();
    let to_hold = |(user, n): &(UserId, u32)| Hold {
        user: user.clone(),
        n: *n,
    };
    Diff {
        stock_total,
        durable: d.len() as u64,
        held: h.len() as u64,
        holds_without_record: h.difference(&d).map(to_hold).collect(),
        records_without_hold: d.difference(&h).map(to_hold).collect(),
        stock_left,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hold(u: u8, n: u32) -> Hold {
        Hold {
            user: UserId::parse(&format!("u{u}")).unwrap(),
            n,
        }
    }

    #[test]
    fn names_both_directions() {
        let d = diff(10, &[hold(1, 1), hold(2, 1)], &[hold(2, 1), hold(3, 1)], 8);
        assert_eq!(d.holds_without_record, vec![hold(3, 1)]);
        assert_eq!(d.records_without_hold, vec![hold(1, 1)]);
        assert_eq!((d.durable, d.held), (2, 2));
        assert_eq!(d.remaining_after_repair(), 8);
        assert!(d.conserved());
        assert!(!d.is_clean());
    }

    #[test]
    fn a_leak_is_unclean_even_when_the_holds_agree() {
        // A lost reply after a DECR: the same holds, one unit fewer on sale.
        let d = diff(10, &[hold(1, 1)], &[hold(1, 1)], 8);
        assert!(d.holds_without_record.is_empty() && d.records_without_hold.is_empty());
        assert!(!d.conserved());
        assert_eq!(d.leaked(), 1);
        assert!(!d.is_clean());
        let made_up = diff(10, &[hold(1, 1)], &[hold(1, 1)], 10);
        assert_eq!(made_up.leaked(), -1);
        assert!(!made_up.is_clean());
        assert!(diff(10, &[hold(1, 1)], &[hold(1, 1)], 9).is_clean());
    }

    proptest! {
        /// Repairing (ledger := records) always leaves a clean diff, and the
        /// two difference lists partition the symmetric difference.
        #[test]
        fn repair_converges(
            recs in prop::collection::vec((0u8..20, 1u32..3), 0..30),
            helds in prop::collection::vec((0u8..20, 1u32..3), 0..30),
        ) {
            let recs: Vec<Hold> = recs.into_iter().map(|(u, n)| hold(u, n)).collect();
            let helds: Vec<Hold> = helds.into_iter().map(|(u, n)| hold(u, n)).collect();
            let d = diff(100, &recs, &helds, 100 - helds.len() as u64);
            let distinct: BTreeSet<_> = recs.iter().map(key).collect();
            let after = diff(100, &recs, &recs, 100 - distinct.len() as u64);
            prop_assert!(after.is_clean());
            prop_assert_eq!(
                d.held + d.records_without_hold.len() as u64,
                d.durable + d.holds_without_record.len() as u64
            );
        }
    }
}
