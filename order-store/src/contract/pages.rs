//! Contract checks on `orders_page`: keyset pages over a campaign's orders
//! in order-id order, for exports that stream instead of holding every row.

use super::{campaign, orders, ContractResult};
use engine::ports::{LogRecord, OrderStore};
use engine::{CampaignId, Order, OrderId, OrderStatus};
use std::sync::Arc;

/// Several pages cover every order of the campaign exactly once, in
/// order-id order, and end with an empty page; other campaigns' orders,
/// a limit of 0 and a start past the last id are handled.
pub async fn orders_pages_cover_each_order_once_in_id_order(
    store: Arc<dyn OrderStore>,
) -> ContractResult {
    const ORDERS: u32 = 23;
    const PAGE: u32 = 5;
    let c = campaign("export", 100)?;
    let other = campaign("other", 100)?;
    store.insert_campaign(&c).await?;
    store.insert_campaign(&other).await?;
    store.write_batch(&orders(&c, 0..ORDERS)?, None).await?;
    store.write_batch(&orders(&other, 0..7)?, None).await?;
    let LogRecord::Order(first) = &orders(&c, 3..4)?[0];
    store.set_status(&first.order_id, OrderStatus::Paid).await?;

    let mut want: Vec<Order> = store.orders(&c.id).await?;
    want.sort_by(|x, y| x.record.order_id.cmp(&y.record.order_id));
    assert_eq!(want.len(), ORDERS as usize);

    let mut got: Vec<Order> = Vec::new();
    let mut sizes = Vec::new();
    let mut after: Option<OrderId> = None;
    // Bounded: one page more than the orders need, plus the empty one.
    for _ in 0..=(ORDERS / PAGE + 2) {
        let page = store.orders_page(&c.id, after.as_ref(), PAGE).await?;
        sizes.push(page.len());
        let Some(last) = page.last() else { break };
        after = Some(last.record.order_id.clone());
        got.extend(page);
    }
    assert_eq!(sizes, vec![5, 5, 5, 5, 3, 0]);
    assert_eq!(
        got, want,
        "every order once, in order-id order, with its status"
    );
    assert!(got
        .iter()
        .any(|o| o.record.order_id == first.order_id && o.status == OrderStatus::Paid));

    // A page larger than the campaign holds all of it.
    assert_eq!(store.orders_page(&c.id, None, 1_000).await?, want);
    // Limit 0 is an empty page, wherever it starts.
    assert!(store.orders_page(&c.id, None, 0).await?.is_empty());
    assert!(store
        .orders_page(&c.id, after.as_ref(), 0)
        .await?
        .is_empty());
    // The start is any id, stored or not: the page begins strictly after it.
    let middle = &want[10].record.order_id;
    let page = store.orders_page(&c.id, Some(middle), 3).await?;
    assert_eq!(page, want[11..14].to_vec());
    let lowest = OrderId::parse(&"0".repeat(32))?;
    assert_eq!(
        store.orders_page(&c.id, Some(&lowest), 2).await?,
        want[..2].to_vec()
    );
    let highest = OrderId::parse(&"f".repeat(32))?;
    assert!(store
        .orders_page(&c.id, Some(&highest), 5)
        .await?
        .is_empty());
    // An unknown campaign has no orders, like `orders`.
    let ghost = CampaignId::parse("ghost")?;
    assert!(store.orders_page(&ghost, None, 5).await?.is_empty());
    Ok(())
}
