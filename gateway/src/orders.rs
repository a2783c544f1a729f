//! The in-memory index of orders this gateway knows, for status look-ups
//! without a database round trip. Rebuilt from the order log at start-up
//! (embedded); filled by this gateway's grabs and by look-ups that read
//! through to the store.
//!
//! Bounded: it only ever holds orders that exist durably (or are on their
//! way), and orders are bounded by the stock of the campaigns (each
//! campaign's stock is capped by the engine).

use dashmap::DashMap;
use engine::{CampaignId, Order, OrderId, OrderRecord, OrderStatus, UserId};
use std::sync::Arc;

/// How often one order's status may be read through to the store: a buyer
/// polling every few hundred ms costs the store one read per second.
pub const ORDER_RECHECK_MS: u64 = 1_000;

/// An order as a look-up answers it.
#[derive(Debug, Clone)]
pub struct IndexedOrder {
    pub record: Arc<OrderRecord>,
    pub status: OrderStatus,
}

/// An order as the index keeps it: fixed size and no allocation of its own
/// (the campaign id is the campaign's shared `Arc`, the user id the one the
/// grab's request and the ledger share; the order id is the map's key, as
/// its 128 bits), because a big sale keeps one per winner.
#[derive(Debug)]
struct Slot {
    campaign_id: CampaignId,
    user_id: UserId,
    n: u32,
    status: OrderStatus,
    price_cents: u64,
    created_at_ms: u64,
    pay_by_ms: u64,
    /// When the store was last asked about this order (monotonic ms; 0 = never).
    checked_at_ms: u64,
}

impl Slot {
    fn new(r: OrderRecord, status: OrderStatus, checked_at_ms: u64) -> Self {
        Self {
            campaign_id: r.campaign_id,
            user_id: r.user_id,
            n: r.n,
            status,
            price_cents: r.price_cents,
            created_at_ms: r.created_at_ms,
            pay_by_ms: r.pay_by_ms,
            checked_at_ms,
        }
    }

    fn record(&self, id: &OrderId) -> Arc<OrderRecord> {
        Arc::new(OrderRecord {
            order_id: id.clone(),
            campaign_id: self.campaign_id.clone(),
            user_id: self.user_id.clone(),
            n: self.n,
            price_cents: self.price_cents,
            created_at_ms: self.created_at_ms,
            pay_by_ms: self.pay_by_ms,
        })
    }
}

/// The map key of an order id: its 32 hex digits as a number (`OrderId`
/// admits exactly that form; anything else would be in no index).
fn key(id: &OrderId) -> Option<u128> {
    let s = id.as_str();
    if s.len() != engine::ids::ORDER_ID_LEN {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

#[derive(Debug, Default)]
pub struct OrderIndex {
    orders: DashMap<u128, Slot>,
}

impl OrderIndex {
    /// Records a durable order as queued; a known order is left as it is.
    pub fn insert_queued(&self, record: OrderRecord) {
        if let Some(k) = key(&record.order_id) {
            self.orders
                .entry(k)
                .or_insert_with(|| Slot::new(record, OrderStatus::Queued, 0));
        }
    }

    /// Records what the store says about an order, read at `now_ms`: its
    /// status only moves forward (a read that raced a payment on this
    /// gateway cannot undo it). Returns the record to answer with.
    pub fn insert_stored(&self, order: Order, now_ms: u64) -> Arc<OrderRecord> {
        let Some(k) = key(&order.record.order_id) else {
            return Arc::new(order.record);
        };
        let id = order.record.order_id.clone();
        let mut e = self
            .orders
            .entry(k)
            .or_insert_with(|| Slot::new(order.record, order.status, now_ms));
        let o = e.value_mut();
        o.checked_at_ms = o.checked_at_ms.max(now_ms);
        if o.status != order.status && o.status.can_become(order.status) {
            o.status = order.status;
        } else if o.status == OrderStatus::Queued && order.status != OrderStatus::Queued {
            // Stored means at least confirmed; any stored status wins over
            // "on its way".
            o.status = order.status;
        }
        o.record(&id)
    }

    /// Whether the store should be asked about `id` now: true at most once
    /// per `ORDER_RECHECK_MS` per order (the caller that gets true does the
    /// read; concurrent pollers answer from the index meanwhile).
    pub fn due_for_recheck(&self, id: &OrderId, now_ms: u64) -> bool {
        match key(id).and_then(|k| self.orders.get_mut(&k)) {
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
        match key(id).and_then(|k| self.orders.get_mut(&k)) {
            Some(mut o) if o.status != to && o.status.can_become(to) => {
                o.status = to;
                true
            }
            _ => false,
        }
    }

    pub fn get(&self, id: &OrderId) -> Option<IndexedOrder> {
        let o = self.orders.get(&key(id)?)?;
        Some(IndexedOrder {
            record: o.record(id),
            status: o.status,
        })
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
            waiting_room: None,
            admit_per_s: None,
            admitted_max: None,
            admit_ttl_s: None,
            stock_factor_pct: None,
            queue_max: None,
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

    #[test]
    fn ids_are_keyed_by_their_128_bits_and_answer_whole() {
        let idx = OrderIndex::default();
        let mut r = record();
        // Leading zeros survive: the answer carries the id asked with.
        r.order_id = OrderId::parse("000000000000000000000000000000ff").unwrap();
        idx.insert_queued(r.clone());
        let got = idx.get(&r.order_id).unwrap();
        assert_eq!(*got.record, r);
        assert_eq!(got.status, OrderStatus::Queued);
        let other = OrderId::parse("100000000000000000000000000000ff").unwrap();
        assert!(idx.get(&other).is_none());
        assert_eq!(idx.len(), 1);
    }
}
