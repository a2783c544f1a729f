//! The in-memory index of orders this gateway knows, for status look-ups
//! without a database round trip. Rebuilt from the order log at start-up
//! (embedded); filled by this gateway's grabs and by look-ups that read
//! through to the store.
//!
//! Bounded: it only ever holds orders that exist durably (or are on their
//! way), and orders are bounded by the stock of the campaigns (each
//! campaign's stock is capped by the engine).

use dashmap::DashMap;
use engine::{Order, OrderId, OrderRecord, OrderStatus};
use std::sync::Arc;

/// How often one order's status may be read through to the store: a buyer
/// polling every few hundred ms costs the store one read per second.
pub const ORDER_RECHECK_MS: u64 = 1_000;

#[derive(Debug, Clone)]
pub struct IndexedOrder {
    pub record: Arc<OrderRecord>,
    pub status: OrderStatus,
    /// When the store was last asked about this order (monotonic ms; 0 = never).
    checked_at_ms: u64,
}

#[derive(Debug, Default)]
pub struct OrderIndex {
    orders: DashMap<OrderId, IndexedOrder>,
}

impl OrderIndex {
    /// Records a durable order as queued; a known order is left as it is.
    pub fn insert_queued(&self, record: OrderRecord) {
        self.orders
            .entry(record.order_id.clone())
            .or_insert_with(|| IndexedOrder {
                record: Arc::new(record),
                status: OrderStatus::Queued,
                checked_at_ms: 0,
            });
    }

    /// Records what the store says about an order, read at `now_ms`: its
    /// status only moves forward (a read that raced a payment on this
    /// gateway cannot undo it). Returns the record to answer with.
    pub fn insert_stored(&self, order: Order, now_ms: u64) -> Arc<OrderRecord> {
        let mut e = self
            .orders
            .entry(order.record.order_id.clone())
            .or_insert_with(|| IndexedOrder {
                record: Arc::new(order.record),
                status: order.status,
                checked_at_ms: now_ms,
            });
        let o = e.value_mut();
        o.checked_at_ms = o.checked_at_ms.max(now_ms);
        if o.status != order.status && o.status.can_become(order.status) {
            o.status = order.status;
        } else if o.status == OrderStatus::Queued && order.status != OrderStatus::Queued {
            // Stored means at least confirmed; any stored status wins over
            // "on its way".
            o.status = order.status;
        }
        Arc::clone(&o.record)
    }

    /// Whether the store should be asked about `id` now: true at most once
    /// per `ORDER_RECHECK_MS` per order (the caller that gets true does the
    /// read; concurrent pollers answer from the index meanwhile).
    pub fn due_for_recheck(&self, id: &OrderId, now_ms: u64) -> bool {
        match self.orders.get_mut(id) {
            Some(mut o) => {
                let due = o.checked_at_ms == 0
                    || now_ms.saturating_sub(o.checked_at_ms) >= ORDER_RECHECK_MS;
                if due {
                    o.checked_at_ms = now_ms;
                }
                due
            }
            None => true,
        }
    }

    /// Moves an order to `to` if that transition is legal; returns whether it moved.
    pub fn advance(&self, id: &OrderId, to: OrderStatus) -> bool {
        match self.orders.get_mut(id) {
            Some(mut o) if o.status != to && o.status.can_become(to) => {
                o.status = to;
                true
            }
            _ => false,
        }
    }

    pub fn get(&self, id: &OrderId) -> Option<IndexedOrder> {
        self.orders.get(id).map(|o| o.clone())
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{CampaignSpec, UserId};

    fn record() -> OrderRecord {
        let c = CampaignSpec {
            id: None,
            title: "t".into(),
            price_cents: 1,
            stock: 5,
            starts_at_ms: 0,
            ends_at_ms: 10,
            per_user_limit: None,
            quiz: None,
            quiz_questions: None,
            hidden_path: None,
            payment_window_s: None,
            load_test: None,
            stock_buckets: None,
        }
        .validate(engine::CampaignId::parse("c").unwrap())
        .unwrap();
        OrderRecord::new(&c, UserId::parse("u").unwrap(), 1, 0)
    }

    fn stored(r: &OrderRecord, status: OrderStatus) -> Order {
        Order {
            record: r.clone(),
            status,
        }
    }

    #[test]
    fn stored_status_moves_queued_forward_and_never_back() {
        let idx = OrderIndex::default();
        let r = record();
        idx.insert_queued(r.clone());
        assert_eq!(idx.get(&r.order_id).unwrap().status, OrderStatus::Queued);
        idx.insert_stored(stored(&r, OrderStatus::Confirmed), 5);
        assert_eq!(idx.get(&r.order_id).unwrap().status, OrderStatus::Confirmed);
        idx.insert_stored(stored(&r, OrderStatus::Paid), 6);
        assert_eq!(idx.get(&r.order_id).unwrap().status, OrderStatus::Paid);
        // A read that started before the payment answers later: ignored.
        idx.insert_stored(stored(&r, OrderStatus::Confirmed), 7);
        assert_eq!(idx.get(&r.order_id).unwrap().status, OrderStatus::Paid);
        // Paid elsewhere while this index still said queued.
        let other = OrderIndex::default();
        other.insert_queued(r.clone());
        other.insert_stored(stored(&r, OrderStatus::Paid), 1);
        assert_eq!(other.get(&r.order_id).unwrap().status, OrderStatus::Paid);
    }

    #[test]
    fn the_store_is_asked_at_most_once_per_period() {
        let idx = OrderIndex::default();
        let r = record();
        assert!(idx.due_for_recheck(&r.order_id, 10), "unknown order");
        idx.insert_queued(r.clone());
        assert!(idx.due_for_recheck(&r.order_id, 10), "never checked");
        assert!(!idx.due_for_recheck(&r.order_id, 500));
        assert!(idx.due_for_recheck(&r.order_id, 10 + ORDER_RECHECK_MS));
        assert!(!idx.due_for_recheck(&r.order_id, 11 + ORDER_RECHECK_MS));
    }
}
