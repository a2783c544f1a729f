//! Campaigns: what an operator creates, its validation, and the state a buyer
//! sees at a given instant.

use crate::ids::CampaignId;
use serde::{Deserialize, Serialize};

/// Largest stock one campaign may hold; bounds ledger and log sizes.
pub const STOCK_MAX: u64 = 10_000_000;
/// Largest per-user limit.
pub const PER_USER_LIMIT_MAX: u32 = 100;
/// Longest title, in characters.
pub const TITLE_LEN_MAX: usize = 200;
/// Largest price and instant a campaign may carry: the stores hold them as
/// signed 64-bit integers, so larger values are refused here, as bad input,
/// rather than failing in a store.
pub const INT_FIELD_MAX: u64 = i64::MAX as u64;
/// Most ledger buckets one campaign's stock may be split into.
pub const STOCK_BUCKETS_MAX: u32 = 64;
/// Default time a winner has to pay, in seconds.
pub const PAYMENT_WINDOW_S_DEFAULT: u32 = 900;
/// Longest payment window, in seconds (7 days).
pub const PAYMENT_WINDOW_S_MAX: u32 = 7 * 24 * 3600;
/// Questions in a quiz campaign's bank unless the operator says otherwise:
/// enough that a bot cannot cheaply learn the bank by heart, few enough to
/// render at preload in seconds.
pub const QUIZ_QUESTIONS_DEFAULT: u32 = 1_000;
/// Fewest and most questions a quiz bank may have.
pub const QUIZ_QUESTIONS_MIN: u32 = 10;
pub const QUIZ_QUESTIONS_MAX: u32 = 100_000;

/// What an operator sends to create a campaign (`POST /admin/v1/campaigns`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    #[serde(default, deserialize_with = "present")]
    pub id: Option<CampaignId>,
    pub title: String,
    pub price_cents: u64,
    pub stock: u64,
    pub starts_at_ms: u64,
    pub ends_at_ms: u64,
    #[serde(default, deserialize_with = "present")]
    pub per_user_limit: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub quiz: Option<bool>,
    /// Questions in the quiz bank (quiz campaigns only).
    #[serde(default, deserialize_with = "present")]
    pub quiz_questions: Option<u32>,
    /// Grab through a per-buyer signed path (`GET .../grab-path`) instead
    /// of the plain one.
    #[serde(default, deserialize_with = "present")]
    pub hidden_path: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub payment_window_s: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub load_test: Option<bool>,
    /// Split the stock over this many ledger buckets (hot items on Redis
    /// Cluster); absent leaves the choice to the ledger.
    #[serde(default, deserialize_with = "present")]
    pub stock_buckets: Option<u32>,
    /// Put buyers through a waiting room (`POST .../queue`) before the grab.
    #[serde(default, deserialize_with = "present")]
    pub waiting_room: Option<bool>,
    /// The room's settings (waiting-room campaigns only); absent ones take
    /// the defaults of [`crate::room`].
    #[serde(default, deserialize_with = "present")]
    pub admit_per_s: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub admitted_max: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub admit_ttl_s: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub stock_factor_pct: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub queue_max: Option<u64>,
}

/// An optional field that, when present, must hold a value of its type:
/// `null` is refused (400) rather than taken as absent, as the API document
/// says (absent fields take their defaults; no field is nullable). For
/// `#[serde(default, deserialize_with = "present")]`; the gateway's request
/// bodies use it too.
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Why a campaign spec was refused; each message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("title must be 1 to {TITLE_LEN_MAX} characters, without control or bidirectional-override characters")]
    Title,
    #[error("{0} must be at most {INT_FIELD_MAX}")]
    TooLarge(&'static str),
    #[error("stock must be between 1 and {STOCK_MAX}")]
    Stock,
    #[error("ends_at_ms must be after starts_at_ms")]
    Window,
    #[error("per_user_limit must be between 1 and {PER_USER_LIMIT_MAX}")]
    PerUserLimit,
    #[error("payment_window_s must be between 1 and {PAYMENT_WINDOW_S_MAX}")]
    PaymentWindow,
    #[error("stock_buckets must be between 1 and {STOCK_BUCKETS_MAX} and at most the stock")]
    StockBuckets,
    #[error("quiz_questions must be between {QUIZ_QUESTIONS_MIN} and {QUIZ_QUESTIONS_MAX}, and only with quiz")]
    QuizQuestions,
    /// A waiting-room setting out of range, or given without `waiting_room`.
    #[error("{0} is out of range or given without waiting_room: true (see the API document's waiting room)")]
    Room(&'static str),
}

/// The operator's kill switch, independent of the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    Active,
    Paused,
    Stopped,
}

impl Control {
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Active => "active",
            Control::Paused => "paused",
            Control::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Control::Active),
            "paused" => Some(Control::Paused),
            "stopped" => Some(Control::Stopped),
            _ => None,
        }
    }
}

/// What a buyer sees: one of the five states of the API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    Scheduled,
    Live,
    SoldOut,
    Paused,
    Ended,
}

impl CampaignState {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Scheduled => "scheduled",
            CampaignState::Live => "live",
            CampaignState::SoldOut => "sold_out",
            CampaignState::Paused => "paused",
            CampaignState::Ended => "ended",
        }
    }
}

/// A validated campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: CampaignId,
    pub title: String,
    pub price_cents: u64,
    pub stock_total: u64,
    pub starts_at_ms: u64,
    pub ends_at_ms: u64,
    pub per_user_limit: u32,
    pub quiz: bool,
    /// Questions in the quiz bank; 0 when `quiz` is off.
    pub quiz_questions: u32,
    /// Buyers grab through their own signed path, never the plain one.
    pub hidden_path: bool,
    pub payment_window_s: u32,
    pub load_test: bool,
    pub control: Control,
    /// Ledger buckets asked for; `None` leaves the choice to the ledger.
    pub stock_buckets: Option<u32>,
    /// The waiting room's settings; `None`: no waiting room.
    pub waiting_room: Option<crate::room::RoomConfig>,
}

impl CampaignSpec {
    /// Validates the spec; `fallback_id` is used when the operator gave none.
    pub fn validate(self, fallback_id: CampaignId) -> Result<Campaign, SpecError> {
        // Hostile characters are refused anywhere, even where trimming
        // would drop them (a trailing newline), as the API document says.
        let title = self.title.trim().to_string();
        if title.is_empty()
            || title.chars().count() > TITLE_LEN_MAX
            || self.title.chars().any(is_hostile_char)
        {
            return Err(SpecError::Title);
        }
        for (field, value) in [
            ("price_cents", self.price_cents),
            ("starts_at_ms", self.starts_at_ms),
            ("ends_at_ms", self.ends_at_ms),
        ] {
            if value > INT_FIELD_MAX {
                return Err(SpecError::TooLarge(field));
            }
        }
        if self.stock == 0 || self.stock > STOCK_MAX {
            return Err(SpecError::Stock);
        }
        if self.ends_at_ms <= self.starts_at_ms {
            return Err(SpecError::Window);
        }
        let per_user_limit = self.per_user_limit.unwrap_or(1);
        if per_user_limit == 0 || per_user_limit > PER_USER_LIMIT_MAX {
            return Err(SpecError::PerUserLimit);
        }
        let payment_window_s = self.payment_window_s.unwrap_or(PAYMENT_WINDOW_S_DEFAULT);
        if payment_window_s == 0 || payment_window_s > PAYMENT_WINDOW_S_MAX {
            return Err(SpecError::PaymentWindow);
        }
        if let Some(b) = self.stock_buckets {
            if b == 0 || b > STOCK_BUCKETS_MAX || u64::from(b) > self.stock {
                return Err(SpecError::StockBuckets);
            }
        }
        let quiz = self.quiz.unwrap_or(false);
        let quiz_questions = match (quiz, self.quiz_questions) {
            (false, None) => 0,
            (false, Some(_)) => return Err(SpecError::QuizQuestions),
            (true, None) => QUIZ_QUESTIONS_DEFAULT,
            (true, Some(q)) if (QUIZ_QUESTIONS_MIN..=QUIZ_QUESTIONS_MAX).contains(&q) => q,
            (true, Some(_)) => return Err(SpecError::QuizQuestions),
        };
        let patch = crate::room::RoomPatch {
            admit_per_s: self.admit_per_s,
            admitted_max: self.admitted_max,
            admit_ttl_s: self.admit_ttl_s,
            stock_factor_pct: self.stock_factor_pct,
            queue_max: self.queue_max,
        };
        let waiting_room = if self.waiting_room.unwrap_or(false) {
            Some(
                patch
                    .apply(crate::room::RoomConfig::default())
                    .map_err(SpecError::Room)?,
            )
        } else if let Some(field) = patch.first_given() {
            return Err(SpecError::Room(field));
        } else {
            None
        };
        Ok(Campaign {
            id: self.id.unwrap_or(fallback_id),
            title,
            price_cents: self.price_cents,
            stock_total: self.stock,
            starts_at_ms: self.starts_at_ms,
            ends_at_ms: self.ends_at_ms,
            per_user_limit,
            quiz,
            quiz_questions,
            hidden_path: self.hidden_path.unwrap_or(false),
            payment_window_s,
            load_test: self.load_test.unwrap_or(false),
            control: Control::Active,
            stock_buckets: self.stock_buckets,
            waiting_room,
        })
    }
}

/// Characters a title must not hold: control characters (they break logs,
/// CSV exports and terminals) and bidirectional overrides and isolates
/// (they make a title display as something else).
fn is_hostile_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

impl Campaign {
    /// The state at `now_ms`, given whether the ledger reports the stock gone.
    ///
    /// Precedence: a stopped campaign or a passed end is `ended` whatever
    /// else holds; before the start it is `scheduled`; a pause hides stock.
    pub fn state(&self, now_ms: u64, sold_out: bool) -> CampaignState {
        if self.control == Control::Stopped || now_ms >= self.ends_at_ms {
            CampaignState::Ended
        } else if now_ms < self.starts_at_ms {
            CampaignState::Scheduled
        } else if self.control == Control::Paused {
            CampaignState::Paused
        } else if sold_out {
            CampaignState::SoldOut
        } else {
            CampaignState::Live
        }
    }

    /// When an order created at `created_at_ms` must be paid by.
    pub fn pay_by_ms(&self, created_at_ms: u64) -> u64 {
        created_at_ms.saturating_add(u64::from(self.payment_window_s) * 1000)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn spec() -> CampaignSpec {
        CampaignSpec {
            id: None,
            title: "Phone".into(),
            price_cents: 99_900,
            stock: 10,
            starts_at_ms: 1_000,
            ends_at_ms: 2_000,
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
    }

    pub(crate) fn campaign() -> Campaign {
        spec().validate(CampaignId::parse("c1").unwrap()).unwrap()
    }

    #[test]
    fn quiz_banks_default_and_bound() {
        let c = CampaignSpec {
            quiz: Some(true),
            hidden_path: Some(true),
            ..spec()
        }
        .validate(CampaignId::parse("q").unwrap())
        .unwrap();
        assert!(c.quiz && c.hidden_path);
        assert_eq!(c.quiz_questions, QUIZ_QUESTIONS_DEFAULT);
        assert_eq!(campaign().quiz_questions, 0);
        assert!(!campaign().hidden_path);
    }

    #[test]
    fn waiting_rooms_take_defaults_and_overrides() {
        assert_eq!(campaign().waiting_room, None);
        let c = CampaignSpec {
            waiting_room: Some(true),
            admit_per_s: Some(50),
            ..spec()
        }
        .validate(CampaignId::parse("w").unwrap())
        .unwrap();
        let room = c.waiting_room.unwrap();
        assert_eq!(room.admit_per_s, 50);
        assert_eq!(room.admit_ttl_s, crate::room::ADMIT_TTL_S_DEFAULT);
    }

    #[test]
    fn defaults_are_applied() {
        let c = campaign();
        assert_eq!(c.per_user_limit, 1);
        assert_eq!(c.payment_window_s, PAYMENT_WINDOW_S_DEFAULT);
        assert_eq!(c.control, Control::Active);
        assert_eq!(c.id.as_str(), "c1");
    }

    #[test]
    fn invalid_specs_name_the_field() {
        let fid = || CampaignId::parse("x").unwrap();
        let cases: Vec<(CampaignSpec, SpecError)> = vec![
            (
                CampaignSpec {
                    title: " ".into(),
                    ..spec()
                },
                SpecError::Title,
            ),
            (CampaignSpec { stock: 0, ..spec() }, SpecError::Stock),
            (
                CampaignSpec {
                    title: "bell\u{7}".into(),
                    ..spec()
                },
                SpecError::Title,
            ),
            (
                CampaignSpec {
                    title: "Phone\n".into(),
                    ..spec()
                },
                SpecError::Title,
            ),
            (
                CampaignSpec {
                    title: "a\u{202E}b".into(),
                    ..spec()
                },
                SpecError::Title,
            ),
            (
                CampaignSpec {
                    price_cents: INT_FIELD_MAX + 1,
                    ..spec()
                },
                SpecError::TooLarge("price_cents"),
            ),
            (
                CampaignSpec {
                    ends_at_ms: u64::MAX,
                    ..spec()
                },
                SpecError::TooLarge("ends_at_ms"),
            ),
            (
                CampaignSpec {
                    stock: STOCK_MAX + 1,
                    ..spec()
                },
                SpecError::Stock,
            ),
            (
                CampaignSpec {
                    ends_at_ms: 1_000,
                    ..spec()
                },
                SpecError::Window,
            ),
            (
                CampaignSpec {
                    per_user_limit: Some(0),
                    ..spec()
                },
                SpecError::PerUserLimit,
            ),
            (
                CampaignSpec {
                    payment_window_s: Some(0),
                    ..spec()
                },
                SpecError::PaymentWindow,
            ),
            (
                CampaignSpec {
                    quiz_questions: Some(100),
                    ..spec()
                },
                SpecError::QuizQuestions,
            ),
            (
                CampaignSpec {
                    quiz: Some(true),
                    quiz_questions: Some(QUIZ_QUESTIONS_MIN - 1),
                    ..spec()
                },
                SpecError::QuizQuestions,
            ),
            (
                CampaignSpec {
                    quiz: Some(true),
                    quiz_questions: Some(QUIZ_QUESTIONS_MAX + 1),
                    ..spec()
                },
                SpecError::QuizQuestions,
            ),
            (
                CampaignSpec {
                    stock_buckets: Some(0),
                    ..spec()
                },
                SpecError::StockBuckets,
            ),
            (
                CampaignSpec {
                    stock_buckets: Some(11),
                    ..spec()
                },
                SpecError::StockBuckets,
            ),
            (
                CampaignSpec {
                    admit_per_s: Some(10),
                    ..spec()
                },
                SpecError::Room("admit_per_s"),
            ),
            (
                CampaignSpec {
                    waiting_room: Some(true),
                    admit_ttl_s: Some(1),
                    ..spec()
                },
                SpecError::Room("admit_ttl_s"),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(s.validate(fid()).unwrap_err(), want);
        }
    }

    /// `null` is not a value of any field: an optional field is either
    /// absent (its default) or of its documented type.
    #[test]
    fn null_fields_are_refused_not_defaulted() {
        let full = serde_json::json!({
            "id": "c1", "title": "Phone", "price_cents": 1, "stock": 2,
            "starts_at_ms": 1, "ends_at_ms": 2, "per_user_limit": 1, "quiz": true,
            "quiz_questions": 10, "hidden_path": true, "payment_window_s": 9,
            "load_test": true, "stock_buckets": 2, "waiting_room": true, "admit_per_s": 10,
            "admitted_max": 10, "admit_ttl_s": 60, "stock_factor_pct": 150, "queue_max": 100,
        });
        let parse = |v: &serde_json::Value| serde_json::from_value::<CampaignSpec>(v.clone());
        let spec = parse(&full).unwrap();
        assert_eq!(
            (spec.per_user_limit, spec.stock_buckets),
            (Some(1), Some(2))
        );
        let fields: Vec<String> = full.as_object().unwrap().keys().cloned().collect();
        assert_eq!(fields.len(), 19);
        for field in fields {
            let mut nulled = full.clone();
            nulled[&field] = serde_json::Value::Null;
            assert!(parse(&nulled).is_err(), "{field}: null accepted");
            let mut absent = full.clone();
            absent.as_object_mut().unwrap().remove(&field);
            let required = [
                "title",
                "price_cents",
                "stock",
                "starts_at_ms",
                "ends_at_ms",
            ];
            assert_eq!(
                parse(&absent).is_ok(),
                !required.contains(&field.as_str()),
                "{field} absent"
            );
        }
    }

    #[test]
    fn state_follows_clock_and_control() {
        let mut c = campaign();
        assert_eq!(c.state(999, false), CampaignState::Scheduled);
        assert_eq!(c.state(1_000, false), CampaignState::Live);
        assert_eq!(c.state(1_500, true), CampaignState::SoldOut);
        assert_eq!(c.state(2_000, false), CampaignState::Ended);
        c.control = Control::Paused;
        assert_eq!(c.state(1_500, true), CampaignState::Paused);
        assert_eq!(c.state(999, false), CampaignState::Scheduled);
        c.control = Control::Stopped;
        assert_eq!(c.state(999, false), CampaignState::Ended);
    }
}
