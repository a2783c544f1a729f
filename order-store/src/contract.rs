//! The store contract: behaviour every `OrderStore` backend must show.
//!
//! Each check is an async function over a fresh, empty store; the
//! [`store_contract_tests!`](crate::store_contract_tests) macro turns the
//! whole list into `#[tokio::test]`s for one backend. Checks return an error
//! for a broken store call and panic on a wrong answer, so a failure names
//! either the call or the assertion.
//!
//! - [`campaigns`]: campaigns, controls, exact text round trips, status moves.
//! - [`batches`]: idempotent batches, the sold guard, refusals, checkpoints.
//! - [`units`]: unit numbers against the per-user limit (active units count).
//! - [`pages`]: `orders_page`, keyset pages for exports.
//! - [`expiry`]: the sweeper's scans, release marks, `sold` counting active units.
//! - [`concurrency`]: several writers at once never double-count, oversell or
//!   pass the per-user limit, and ledger generations are never repeated.

pub mod batches;
pub mod campaigns;
pub mod concurrency;
pub mod expiry;
pub mod pages;
pub mod units;

pub use batches::{
    a_batch_spanning_campaigns_counts_each, checkpoint_commits_with_its_batch,
    duplicates_are_recognised_by_either_key, sold_guard_refuses_the_unit_past_the_stock,
    unknown_campaign_and_limit_breach_are_invariant_errors,
    values_past_i64_are_refused_not_wrapped, write_batch_is_idempotent,
};
pub use campaigns::{
    campaigns_round_trip_and_conflict_on_duplicate_id, dead_letters_are_counted_once_per_source,
    ids_are_exact_and_text_round_trips, ledger_generations_rise_per_campaign,
    set_control_updates_or_reports_not_found, status_changes_follow_the_state_machine,
    written_orders_read_back_confirmed,
};
pub use concurrency::{
    concurrent_batches_never_oversell, concurrent_ledger_generations_are_distinct,
    concurrent_overlapping_batches_land_once, concurrent_regrabs_land_one_active_unit_per_user,
    overlapping_writers,
};
pub use expiry::{
    an_expiry_gives_the_unit_back_to_the_sold_guard, payments_racing_expiries_end_one_way_each,
    the_sweeper_scans_and_release_marks,
};
pub use pages::orders_pages_cover_each_order_once_in_id_order;
pub use units::{
    a_unit_past_the_limit_lands_when_no_unit_is_active, an_active_unit_keeps_the_next_one_out,
};

use engine::ports::{LogRecord, OrderStore};
use engine::{Campaign, CampaignId, Control, OrderRecord, UserId};

/// A failed store call (or test setup) inside a check.
pub type ContractError = Box<dyn std::error::Error + Send + Sync>;
/// What a check returns.
pub type ContractResult = Result<(), ContractError>;

/// An active campaign with a per-user limit of 1.
pub fn campaign(id: &str, stock_total: u64) -> Result<Campaign, ContractError> {
    Ok(Campaign {
        id: CampaignId::parse(id)?,
        title: format!("Item {id}"),
        price_cents: 1_999,
        stock_total,
        starts_at_ms: 1_000,
        ends_at_ms: 9_000,
        per_user_limit: 1,
        quiz: false,
        quiz_questions: 0,
        hidden_path: false,
        payment_window_s: 900,
        load_test: false,
        control: Control::Active,
        stock_buckets: None,
        waiting_room: None,
    })
}

/// The first unit of `user` in `c`.
pub fn order(c: &Campaign, user: &str) -> Result<LogRecord, ContractError> {
    Ok(LogRecord::Order(OrderRecord::new(
        c,
        UserId::parse(user)?,
        1,
        1_500,
    )))
}

/// The first unit of each user `u{i}` for `i` in `users`.
pub fn orders(c: &Campaign, users: std::ops::Range<u32>) -> Result<Vec<LogRecord>, ContractError> {
    users.map(|u| order(c, &format!("u{u}"))).collect()
}

/// Rows stored for the campaigns, as the store lists them.
pub async fn stored_rows(
    store: &dyn OrderStore,
    campaigns: &[&Campaign],
) -> Result<u64, ContractError> {
    let mut rows = 0;
    for c in campaigns {
        rows += u64::try_from(store.orders(&c.id).await?.len())?;
    }
    Ok(rows)
}

/// Expands to one `#[tokio::test]` per contract check. `$make` is an
/// expression for an async factory returning `Result<(store, guard), E>`:
/// the store under test, fresh and empty, and whatever must live as long as
/// the test and be dropped after it (a temporary directory, a scratch
/// database), even when the check panics. The calling crate needs `tokio` and
/// `engine` as (dev-)dependencies.
#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        $crate::store_contract_tests!(@each $make;
            campaigns_round_trip_and_conflict_on_duplicate_id,
            set_control_updates_or_reports_not_found,
            ids_are_exact_and_text_round_trips,
            written_orders_read_back_confirmed,
            status_changes_follow_the_state_machine,
            write_batch_is_idempotent,
            duplicates_are_recognised_by_either_key,
            a_batch_spanning_campaigns_counts_each,
            sold_guard_refuses_the_unit_past_the_stock,
            unknown_campaign_and_limit_breach_are_invariant_errors,
            values_past_i64_are_refused_not_wrapped,
            checkpoint_commits_with_its_batch,
            concurrent_overlapping_batches_land_once,
            concurrent_batches_never_oversell,
            dead_letters_are_counted_once_per_source,
            a_unit_past_the_limit_lands_when_no_unit_is_active,
            an_active_unit_keeps_the_next_one_out,
            concurrent_regrabs_land_one_active_unit_per_user,
            orders_pages_cover_each_order_once_in_id_order,
            ledger_generations_rise_per_campaign,
            concurrent_ledger_generations_are_distinct,
            an_expiry_gives_the_unit_back_to_the_sold_guard,
            the_sweeper_scans_and_release_marks,
            payments_racing_expiries_end_one_way_each
        );
    };
    (@each $make:expr; $($name:ident),*) => {
        mod store_contract {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() -> $crate::contract::ContractResult {
                    let make = $make;
                    // The store moves into the check and is gone when it ends;
                    // the guard lives until this test returns or unwinds.
                    let (store, _guard) = make().await?;
                    let store: ::std::sync::Arc<dyn ::engine::ports::OrderStore> =
                        ::std::sync::Arc::new(store);
                    $crate::contract::$name(store).await
                }
            )*
        }
    };
}
