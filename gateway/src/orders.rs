//! The in-memory index of orders this gateway knows, for status look-ups
//! without a database round trip. Rebuilt from the order log at start-up.
//!
//! Bounded: it only ever holds orders, and orders are bounded by the stock
//! of the campaigns (each campaign's stock is capped by the engine).

use dashmap::DashMap;
use engine::{OrderId, OrderRecord, OrderStatus};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct IndexedOrder {
    pub record: Arc<OrderRecord>,
    pub status: OrderStatus,
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
            });
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
