//! Conversions between domain values and SQLite rows, and the mapping of
//! sqlx errors onto [`StoreError`].
//!
//! SQLite integers are signed 64-bit, so every `u64` crosses this boundary
//! through a checked conversion: a value that does not fit is refused, never
//! wrapped. Rows are read with `try_get` and validated again on the way out,
//! because a database file can be edited or corrupted behind our back.

use engine::ports::StoreError;
use engine::{Campaign, CampaignId, Control, Order, OrderId, OrderRecord, OrderStatus, UserId};
use sqlx::error::ErrorKind;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use std::fmt::Display;

/// Maps an sqlx error; `context` names the operation for the message.
///
/// Constraint failures mean a write would break a rule of the schema, which a
/// retry cannot fix; decoding failures mean a stored row is not what we wrote.
/// Everything else (pool timeouts, I/O, a locked or full database) is treated
/// as the store being unavailable, which the writer retries.
pub(crate) fn db_err(context: &str, e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) => match d.kind() {
            ErrorKind::UniqueViolation
            | ErrorKind::ForeignKeyViolation
            | ErrorKind::NotNullViolation
            | ErrorKind::CheckViolation => StoreError::Invariant(format!("{context}: {e}")),
            _ => StoreError::Unavailable(format!("{context}: {e}")),
        },
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => {
            StoreError::Invariant(format!("{context}: bad row: {e}"))
        }
        _ => StoreError::Unavailable(format!("{context}: {e}")),
    }
}

/// Whether the error is a unique or primary key violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == ErrorKind::UniqueViolation)
}

/// A stored value that does not parse back into the domain.
fn bad_value(column: &str, detail: impl Display) -> StoreError {
    StoreError::Invariant(format!("bad row: column {column}: {detail}"))
}

/// Converts a `u64` for storage; values past `i64::MAX` are refused.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Invariant(format!(
            "{what} = {value} does not fit a signed 64-bit column"
        ))
    })
}

fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column).map_err(|e| db_err("reading a row", e))
}

pub(crate) fn get_u64(row: &SqliteRow, column: &str) -> Result<u64, StoreError> {
    let v: i64 = get(row, column)?;
    u64::try_from(v).map_err(|_| bad_value(column, format!("negative value {v}")))
}

fn get_u32(row: &SqliteRow, column: &str) -> Result<u32, StoreError> {
    let v: i64 = get(row, column)?;
    u32::try_from(v).map_err(|_| bad_value(column, format!("{v} is out of range")))
}

fn get_string(row: &SqliteRow, column: &str) -> Result<String, StoreError> {
    get(row, column)
}

pub(crate) fn campaign_from_row(row: &SqliteRow) -> Result<Campaign, StoreError> {
    let id = get_string(row, "id")?;
    let control = get_string(row, "control")?;
    Ok(Campaign {
        id: CampaignId::parse(&id).map_err(|e| bad_value("campaigns.id", e))?,
        title: get_string(row, "title")?,
        price_cents: get_u64(row, "price_cents")?,
        stock_total: get_u64(row, "stock_total")?,
        starts_at_ms: get_u64(row, "starts_at_ms")?,
        ends_at_ms: get_u64(row, "ends_at_ms")?,
        per_user_limit: get_u32(row, "per_user_limit")?,
        quiz: get(row, "quiz")?,
        payment_window_s: get_u32(row, "payment_window_s")?,
        load_test: get(row, "load_test")?,
        control: Control::parse(&control)
            .ok_or_else(|| bad_value("campaigns.control", format!("unknown {control:?}")))?,
    })
}

pub(crate) fn order_from_row(row: &SqliteRow) -> Result<Order, StoreError> {
    let order_id = get_string(row, "order_id")?;
    let campaign_id = get_string(row, "campaign_id")?;
    let user_id = get_string(row, "user_id")?;
    let status = get_string(row, "status")?;
    Ok(Order {
        record: OrderRecord {
            order_id: OrderId::parse(&order_id).map_err(|e| bad_value("orders.order_id", e))?,
            campaign_id: CampaignId::parse(&campaign_id)
                .map_err(|e| bad_value("orders.campaign_id", e))?,
            user_id: UserId::parse(&user_id).map_err(|e| bad_value("orders.user_id", e))?,
            n: get_u32(row, "n")?,
            price_cents: get_u64(row, "price_cents")?,
            created_at_ms: get_u64(row, "created_at_ms")?,
            pay_by_ms: get_u64(row, "pay_by_ms")?,
        },
        status: parse_status(&status)?,
    })
}

pub(crate) fn parse_status(s: &str) -> Result<OrderStatus, StoreError> {
    OrderStatus::parse(s).ok_or_else(|| bad_value("orders.status", format!("unknown {s:?}")))
}

/// An order record converted for storage, checked before any transaction
/// starts so a value that cannot be stored never leaves a half-written batch.
#[derive(Debug)]
pub(crate) struct OrderRow<'a> {
    pub order_id: &'a str,
    pub campaign_id: &'a str,
    pub user_id: &'a str,
    pub n: u32,
    pub price_cents: i64,
    pub created_at_ms: i64,
    pub pay_by_ms: i64,
}

impl<'a> OrderRow<'a> {
    pub(crate) fn new(r: &'a OrderRecord) -> Result<Self, StoreError> {
        let what = |field: &str| format!("order {} {field}", r.order_id);
        Ok(Self {
            order_id: r.order_id.as_str(),
            campaign_id: r.campaign_id.as_str(),
            user_id: r.user_id.as_str(),
            n: r.n,
            price_cents: to_i64(r.price_cents, &what("price_cents"))?,
            created_at_ms: to_i64(r.created_at_ms, &what("created_at_ms"))?,
            pay_by_ms: to_i64(r.pay_by_ms, &what("pay_by_ms"))?,
        })
    }
}

/// The campaign columns in insertion order, shared by insert and select.
pub(crate) const CAMPAIGN_COLUMNS: &str = "id, title, price_cents, stock_total, starts_at_ms, \
     ends_at_ms, per_user_limit, quiz, payment_window_s, load_test, control";

/// The order columns read back into an [`Order`].
pub(crate) const ORDER_COLUMNS: &str =
    "order_id, campaign_id, user_id, n, price_cents, created_at_ms, pay_by_ms, status";
