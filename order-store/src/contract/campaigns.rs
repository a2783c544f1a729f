//! Contract checks on campaigns, reading orders back, and status changes.

use super::{campaign, order, orders, ContractResult};
use engine::campaign::TITLE_LEN_MAX;
use engine::ids::{CAMPAIGN_ID_LEN_MAX, USER_ID_LEN_MAX};
use engine::ports::{LogRecord, OrderStore, StatusChange, StoreError, FIRST_LEDGER_GENERATION};
use engine::{Campaign, CampaignId, Control, OrderRecord, OrderStatus, UserId};
use std::sync::Arc;

pub async fn campaigns_round_trip_and_conflict_on_duplicate_id(
    store: Arc<dyn OrderStore>,
) -> ContractResult {
    let a = campaign("a", 10)?;
    let b = Campaign {
        quiz: true,
        quiz_questions: 250,
        hidden_path: true,
        load_test: true,
        per_user_limit: 3,
        control: Control::Paused,
        stock_buckets: Some(4),
        waiting_room: Some(engine::room::RoomConfig {
            admit_per_s: 77,
            ..engine::room::RoomConfig::default()
        }),
        ..campaign("b", 5)?
    };
    store.insert_campaign(&a).await?;
    store.insert_campaign(&b).await?;
    // Listed in creation order, not in id order.
    let z = campaign("0-first-by-id", 1)?;
    store.insert_campaign(&z).await?;
    assert_eq!(store.campaigns().await?, vec![a.clone(), b, z]);
    let again = Campaign {
        title: "other".into(),
        ..a.clone()
    };
    let err = store.insert_campaign(&again).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    assert_eq!(store.campaigns().await?[0].title, a.title);
    assert_eq!(store.sold(&a.id).await?, 0);
    Ok(())
}

pub async fn set_control_updates_or_reports_not_found(
    store: Arc<dyn OrderStore>,
) -> ContractResult {
    let c = campaign("c1", 3)?;
    store.insert_campaign(&c).await?;
    store.set_control(&c.id, Control::Paused).await?;
    assert_eq!(store.campaigns().await?[0].control, Control::Paused);
    // Setting the current control again is not "not found".
    store.set_control(&c.id, Control::Paused).await?;
    store.set_control(&c.id, Control::Stopped).await?;
    assert_eq!(store.campaigns().await?[0].control, Control::Stopped);
    // The operator changes a waiting room's rate during the sale, or ends it.
    let room = engine::room::RoomConfig {
        admit_per_s: 5,
        ..engine::room::RoomConfig::default()
    };
    store.set_waiting_room(&c.id, Some(&room)).await?;
    assert_eq!(store.campaigns().await?[0].waiting_room, Some(room));
    store.set_waiting_room(&c.id, None).await?;
    assert_eq!(store.campaigns().await?[0].waiting_room, None);
    let missing = CampaignId::parse("nope")?;
    let err = store.set_control(&missing, Control::Stopped).await;
    assert!(matches!(err, Err(StoreError::NotFound(_))), "{err:?}");
    let err = store.sold(&missing).await;
    assert!(matches!(err, Err(StoreError::NotFound(_))), "{err:?}");
    Ok(())
}

/// Ids compare byte for byte (a case-insensitive collation would merge "Sale"
/// and "sale"), values at the engine's length limits fit, and titles keep
/// characters outside the Basic Multilingual Plane.
pub async fn ids_are_exact_and_text_round_trips(store: Arc<dyn OrderStore>) -> ContractResult {
    let upper = campaign("Sale", 10)?;
    let lower = campaign("sale", 10)?;
    store.insert_campaign(&upper).await?;
    store.insert_campaign(&lower).await?;
    let longest = Campaign {
        title: "\u{1F4F1}é".repeat(TITLE_LEN_MAX / 2),
        ..campaign(&"x".repeat(CAMPAIGN_ID_LEN_MAX), 10)?
    };
    store.insert_campaign(&longest).await?;
    assert_eq!(
        store.campaigns().await?,
        vec![upper.clone(), lower.clone(), longest.clone()]
    );

    let bob = order(&upper, "Bob")?;
    let bob_lower = order(&upper, "bob")?;
    let other_campaign = order(&lower, "Bob")?;
    let long_user = "~".repeat(USER_ID_LEN_MAX);
    let long = LogRecord::Order(OrderRecord::new(&longest, UserId::parse(&long_user)?, 1, 7));
    let batch = vec![bob, bob_lower, other_campaign, long.clone()];
    let report = store.write_batch(&batch, None).await?;
    assert_eq!((report.inserted, report.duplicates), (4, 0));
    assert_eq!(store.sold(&upper.id).await?, 2);
    assert_eq!(store.sold(&lower.id).await?, 1);
    let LogRecord::Order(long) = long;
    let stored = store.orders(&longest.id).await?;
    assert_eq!(
        stored.into_iter().map(|o| o.record).collect::<Vec<_>>(),
        vec![long]
    );
    Ok(())
}

pub async fn written_orders_read_back_confirmed(store: Arc<dyn OrderStore>) -> ContractResult {
    let c = campaign("c1", 100)?;
    store.insert_campaign(&c).await?;
    let batch = orders(&c, 0..3)?;
    store.write_batch(&batch, None).await?;
    let listed = store.orders(&c.id).await?;
    let records: Vec<LogRecord> = listed
        .iter()
        .map(|o| LogRecord::Order(o.record.clone()))
        .collect();
    // Same creation time, so the order id breaks the tie.
    let mut want = batch.clone();
    want.sort_by(|x, y| {
        let (LogRecord::Order(x), LogRecord::Order(y)) = (x, y);
        x.order_id.cmp(&y.order_id)
    });
    assert_eq!(records, want);
    assert!(listed.iter().all(|o| o.status == OrderStatus::Confirmed));
    let LogRecord::Order(first) = &batch[0];
    let one = store.order(&first.order_id).await?;
    assert_eq!(one.map(|o| o.record), Some(first.clone()));
    let absent = OrderRecord::new(&c, UserId::parse("nobody")?, 1, 1);
    assert_eq!(store.order(&absent.order_id).await?, None);
    assert_eq!(
        store.count_by_status(&c.id).await?,
        vec![(OrderStatus::Confirmed, 3)]
    );
    // Listed by creation time first, whatever the order id.
    let earliest = OrderRecord::new(&c, UserId::parse("early")?, 1, 10);
    store
        .write_batch(&[LogRecord::Order(earliest.clone())], None)
        .await?;
    assert_eq!(store.orders(&c.id).await?[0].record, earliest);
    Ok(())
}

pub async fn status_changes_follow_the_state_machine(store: Arc<dyn OrderStore>) -> ContractResult {
    let c = campaign("pay", 5)?;
    store.insert_campaign(&c).await?;
    let batch = orders(&c, 0..3)?;
    let ids: Vec<_> = batch
        .iter()
        .map(|r| {
            let LogRecord::Order(o) = r;
            o.order_id.clone()
        })
        .collect();
    let err = store.set_status(&ids[0], OrderStatus::Paid).await;
    assert!(matches!(err, Err(StoreError::NotFound(_))), "{err:?}");
    store.write_batch(&batch, None).await?;
    let id = &ids[0];
    assert_eq!(
        store.set_status(id, OrderStatus::Paid).await?,
        StatusChange::Changed
    );
    assert_eq!(
        store.set_status(id, OrderStatus::Paid).await?,
        StatusChange::Unchanged
    );
    assert_eq!(
        store.set_status(id, OrderStatus::Expired).await?,
        StatusChange::Refused {
            current: OrderStatus::Paid
        }
    );
    // No status may become `queued` again.
    assert_eq!(
        store.set_status(id, OrderStatus::Queued).await?,
        StatusChange::Refused {
            current: OrderStatus::Paid
        }
    );
    assert_eq!(
        store.set_status(&ids[1], OrderStatus::Expired).await?,
        StatusChange::Changed
    );
    assert_eq!(
        store.order(id).await?.map(|o| o.status),
        Some(OrderStatus::Paid)
    );
    // Counted per status, in the order of the status names.
    assert_eq!(
        store.count_by_status(&c.id).await?,
        vec![
            (OrderStatus::Confirmed, 1),
            (OrderStatus::Expired, 1),
            (OrderStatus::Paid, 1)
        ]
    );
    // The expired order's unit is not sold any more; paid and confirmed are.
    assert_eq!(store.sold(&c.id).await?, 2);
    Ok(())
}

pub async fn dead_letters_are_counted_once_per_source(
    store: Arc<dyn OrderStore>,
) -> ContractResult {
    let c = campaign("dl", 5)?;
    store.insert_campaign(&c).await?;
    assert_eq!(store.dead_letters(None).await?, 0);
    store
        .record_dead_letter("t/0/7", Some(&c.id), "refused 3 times")
        .await?;
    // A writer that crashed after sending but before recording retries.
    store
        .record_dead_letter("t/0/7", Some(&c.id), "refused 3 times")
        .await?;
    store
        .record_dead_letter("t/1/2", None, "undecodable")
        .await?;
    assert_eq!(store.dead_letters(Some(&c.id)).await?, 1);
    assert_eq!(store.dead_letters(None).await?, 2);
    Ok(())
}

/// A campaign's ledger generation starts at [`FIRST_LEDGER_GENERATION`] and
/// every call raises it; campaigns count independently; an unknown campaign
/// is `NotFound`.
pub async fn ledger_generations_rise_per_campaign(store: Arc<dyn OrderStore>) -> ContractResult {
    let a = campaign("a", 10)?;
    let b = campaign("b", 10)?;
    store.insert_campaign(&a).await?;
    store.insert_campaign(&b).await?;
    let first = FIRST_LEDGER_GENERATION;
    assert_eq!(store.next_ledger_generation(&a.id).await?, first + 1);
    assert_eq!(store.next_ledger_generation(&a.id).await?, first + 2);
    assert_eq!(store.next_ledger_generation(&b.id).await?, first + 1);
    assert_eq!(store.next_ledger_generation(&a.id).await?, first + 3);
    // A refused second insert of the campaign does not reset it.
    let err = store.insert_campaign(&a).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    assert_eq!(store.next_ledger_generation(&a.id).await?, first + 4);
    let missing = CampaignId::parse("nope")?;
    let err = store.next_ledger_generation(&missing).await;
    assert!(matches!(err, Err(StoreError::NotFound(_))), "{err:?}");
    // Orders and controls leave the generation alone.
    store.write_batch(&orders(&a, 0..3)?, None).await?;
    store.set_control(&a.id, Control::Paused).await?;
    assert_eq!(store.next_ledger_generation(&a.id).await?, first + 5);
    Ok(())
}
