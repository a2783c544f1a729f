//! Conversions between domain values and SQL rows, and the mapping of sqlx
//! errors onto [`StoreError`], for both SQL backends.
//!
//! Both databases store integers as signed 64-bit, so every `u64` crosses this
//! boundary through a checked conversion: a value that does not fit is
//! refused, never wrapped. Rows are read with `try_get` and validated again on
//! the way out, because a database can be edited or corrupted behind our back.

use engine::ports::StoreError;
use engine::{Campaign, CampaignId, Control, Order, OrderId, OrderRecord, OrderStatus, UserId};
use sqlx::error::ErrorKind;
use sqlx::mysql::{MySqlDatabaseError, MySqlRow};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use std::fmt::Display;

/// MySQL error numbers of values the schema cannot hold. Strict mode (which
/// `MysqlStore` turns on for its sessions) refuses them instead of truncating.
const MYSQL_BAD_VALUE_ERRORS: [u16; 5] = [
    1264, // ER_WARN_DATA_OUT_OF_RANGE: a number past the column's range.
    1265, // WARN_DATA_TRUNCATED
    1366, // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD: e.g. text not in the charset.
    1406, // ER_DATA_TOO_LONG: text longer than its VARCHAR.
    1690, // ER_DATA_OUT_OF_RANGE: arithmetic overflow, e.g. in `sold + ?`.
];

/// Maps an sqlx error; `context` names the operation for the message.
///
/// Constraint failures and values the schema refuses mean a write would break
/// a rule, which a retry cannot fix; decoding failures mean a stored row is
/// not what we wrote. Everything else (pool timeouts, I/O, a lost connection,
/// a locked database, a deadlock victim) is treated as the store being
/// unavailable, which the writer retries.
pub(crate) fn db_err(context: &str, e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) => {
            let bad_value = d
                .try_downcast_ref::<MySqlDatabaseError>()
                .is_some_and(|m| MYSQL_BAD_VALUE_ERRORS.contains(&m.number()));
            match d.kind() {
                ErrorKind::UniqueViolation
                | ErrorKind::ForeignKeyViolation
                | ErrorKind::NotNullViolation
                | ErrorKind::CheckViolation => StoreError::Invariant(format!("{context}: {e}")),
                _ if bad_value => StoreError::Invariant(format!("{context}: {e}")),
                _ => StoreError::Unavailable(format!("{context}: {e}")),
            }
        }
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

/// The three column types the stores read, for either driver's rows.
pub(crate) trait DbRow {
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn flag(&self, column: &str) -> Result<bool, StoreError>;
    fn text(&self, column: &str) -> Result<String, StoreError>;
}

impl DbRow for SqliteRow {
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.try_get(column).map_err(|e| db_err("reading a row", e))
    }
    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        self.try_get(column).map_err(|e| db_err("reading a row", e))
    }
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.try_get(column).map_err(|e| db_err("reading a row", e))
    }
}

impl DbRow for MySqlRow {
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.try_get(column).map_err(|e| db_err("reading a row", e))
    }
    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        self.try_get(column).map_err(|e| db_err("reading a row", e))
    }
    /// The schema's `utf8mb4_bin` columns arrive flagged BINARY, which sqlx
    /// refuses to decode as `String`; the bytes are checked as UTF-8 here.
    fn text(&self, column: &str) -> Result<String, StoreError> {
        let bytes: &[u8] = self
            .try_get(column)
            .map_err(|e| db_err("reading a row", e))?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| bad_value(column, e))
    }
}

pub(crate) fn get_u64(row: &impl DbRow, column: &str) -> Result<u64, StoreError> {
    let v = row.int(column)?;
    u64::try_from(v).map_err(|_| bad_value(column, format!("negative value {v}")))
}

pub(crate) fn get_u32(row: &impl DbRow, column: &str) -> Result<u32, StoreError> {
    let v = row.int(column)?;
    u32::try_from(v).map_err(|_| bad_value(column, format!("{v} is out of range")))
}

pub(crate) fn campaign_from_row(row: &impl DbRow) -> Result<Campaign, StoreError> {
    let id = row.text("id")?;
    let control = row.text("control")?;
    Ok(Campaign {
        id: CampaignId::parse(&id).map_err(|e| bad_value("campaigns.id", e))?,
        title: row.text("title")?,
        price_cents: get_u64(row, "price_cents")?,
        stock_total: get_u64(row, "stock_total")?,
        starts_at_ms: get_u64(row, "starts_at_ms")?,
        ends_at_ms: get_u64(row, "ends_at_ms")?,
        per_user_limit: get_u32(row, "per_user_limit")?,
        quiz: row.flag("quiz")?,
        quiz_questions: get_u32(row, "quiz_questions")?,
        hidden_path: row.flag("hidden_path")?,
        payment_window_s: get_u32(row, "payment_window_s")?,
        load_test: row.flag("load_test")?,
        control: Control::parse(&control)
            .ok_or_else(|| bad_value("campaigns.control", format!("unknown {control:?}")))?,
        // 0 is stored for "no preference".
        stock_buckets: Some(get_u32(row, "stock_buckets")?).filter(|&b| b > 0),
        waiting_room: room_from_text(&row.text("waiting_room")?)?,
    })
}

/// The `waiting_room` column: empty, or the settings as JSON.
pub(crate) fn room_to_text(room: Option<&engine::room::RoomConfig>) -> Result<String, StoreError> {
    room.map_or(Ok(String::new()), |r| {
        serde_json::to_string(r).map_err(|e| StoreError::Invariant(format!("waiting_room: {e}")))
    })
}

fn room_from_text(text: &str) -> Result<Option<engine::room::RoomConfig>, StoreError> {
    if text.is_empty() {
        return Ok(None);
    }
    let room: engine::room::RoomConfig =
        serde_json::from_str(text).map_err(|e| bad_value("campaigns.waiting_room", e))?;
    room.validate()
        .map_err(|field| bad_value("campaigns.waiting_room", format!("{field} out of range")))?;
    Ok(Some(room))
}

pub(crate) fn order_from_row(row: &impl DbRow) -> Result<Order, StoreError> {
    let order_id = row.text("order_id")?;
    let campaign_id = row.text("campaign_id")?;
    let user_id = row.text("user_id")?;
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
        status: status_from_row(row)?,
    })
}

/// The `status` column of a row, parsed.
pub(crate) fn status_from_row(row: &impl DbRow) -> Result<OrderStatus, StoreError> {
    let s = row.text("status")?;
    OrderStatus::parse(&s).ok_or_else(|| bad_value("orders.status", format!("unknown {s:?}")))
}

/// One row of `SELECT status, COUNT(*) AS count ... GROUP BY status`.
pub(crate) fn status_count_from_row(row: &impl DbRow) -> Result<(OrderStatus, u64), StoreError> {
    Ok((status_from_row(row)?, get_u64(row, "count")?))
}

/// An order record converted for storage, checked before any transaction
/// starts so a value that cannot be stored never leaves a half-written batch.
#[derive(Debug, Clone, Copy)]
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
     ends_at_ms, per_user_limit, quiz, payment_window_s, load_test, control, stock_buckets, \
     quiz_questions, hidden_path, waiting_room";

/// The order columns read back into an [`Order`].
pub(crate) const ORDER_COLUMNS: &str =
    "order_id, campaign_id, user_id, n, price_cents, created_at_ms, pay_by_ms, status";

/// One page of `orders_page`, bound as (campaign, after, limit): keyset
/// pagination on the primary key, served by the index `(campaign_id,
/// order_id)` of migration 0004, so each page costs its own rows only.
pub(crate) fn orders_page_sql() -> String {
    format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE campaign_id = ? AND order_id > ? \
         ORDER BY order_id LIMIT ?"
    )
}

/// The order columns `write_batch` inserts, in bind order.
pub(crate) const INSERT_ORDER_COLUMNS: &str = "order_id, campaign_id, user_id, n, price_cents, \
     created_at_ms, pay_by_ms, status, updated_at_ms";
