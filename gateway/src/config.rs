//! Settings of `seckill serve` and `seckill writer`: one TOML file
//! (`--config`), overridden by flags and `SECKILL_*` environment variables,
//! validated at start with errors that name the key.
//!
//! Two profiles exist, chosen by the backends: the embedded default
//! (memory ledger, file log, SQLite, one process) and production (Redis
//! ledger, Kafka log, MySQL store, many gateways). Mixing them is refused:
//! a per-process file log beside a shared Redis ledger would let one
//! gateway's restart rebuild shared stock from a partial log.

use order_store::WriterConfig;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Limits on what clients may make the server hold.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub body_bytes_max: usize,
    /// Time a client has to send a request's headers, from its first byte.
    pub header_read_timeout_ms: u64,
    /// Time a client has to send a request's body, once the server reads it;
    /// past it, 408 `request_timeout` and the connection is closed.
    pub body_read_timeout_ms: u64,
    /// A keep-alive connection with no request in flight and no byte of a
    /// new one for this long is closed.
    pub idle_timeout_ms: u64,
    /// A request not answered within this is answered 503 `overloaded`
    /// with `Retry-After` (a grab past its reservation still completes).
    pub request_timeout_ms: u64,
    /// Largest request head (request line plus headers), in bytes; past it, 431.
    pub head_bytes_max: usize,
    /// Most header fields in a request; past it, 431.
    pub headers_max: usize,
    /// Open connections at most; the accept loop waits for a free slot.
    pub connections_max: usize,
    /// Grabs between admission and answer at most; past it, 503 `overloaded`.
    pub grabs_inflight_max: usize,
    /// Time in-flight requests (and the writer's final drain) get after a shutdown signal.
    pub shutdown_grace_ms: u64,
    /// Reverse proxies (load balancers) whose `X-Forwarded-For` is believed;
    /// from any other peer the header is ignored, so a client cannot choose
    /// the address it is counted under.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes_max: 4 * 1024,
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            request_timeout_ms: 30_000,
            head_bytes_max: 16 * 1024,
            headers_max: 64,
            connections_max: 20_000,
            grabs_inflight_max: 20_000,
            shutdown_grace_ms: 10_000,
            trusted_proxies: Vec::new(),
        }
    }
}

/// The quiz of quiz campaigns (see `crate::quiz`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuizSettings {
    /// An answer sent sooner after its question was issued is refused:
    /// a person needs about a second to read the image, a script does not.
    pub min_answer_ms: u64,
    /// A question's token expires this long after it was issued.
    pub token_ttl_ms: u64,
    /// Threads that render a bank at preload; 0 = one per core.
    pub render_threads: usize,
}

impl Default for QuizSettings {
    fn default() -> Self {
        Self {
            min_answer_ms: 1_000,
            token_ttl_ms: 120_000,
            render_threads: 0,
        }
    }
}

/// Rate limits (GCRA token buckets, see `crate::limits`): `*_per_s` is
/// the sustained rate, `*_burst` how many may arrive at once (0 = the same
/// as the rate); a rate of 0 turns that limit off. `SECKILL_LIMITS=off`
/// turns them all off (never the body, header, connection or in-flight
/// limits).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Every buyer `/api/` request, per client address (IPv6: per /64).
    /// Generous: many buyers may share one address behind a NAT.
    pub ip_per_s: u32,
    pub ip_burst: u32,
    /// Per buyer (token `sub`): grab, grab path, quiz, order status, pay.
    /// Tight: a person clicks a few times a second at most.
    pub user_per_s: u32,
    pub user_burst: u32,
    /// This gateway's buyer requests in all (off by default).
    pub global_per_s: u32,
    pub global_burst: u32,
    /// Each campaign's grabs across every gateway sharing the state
    /// (Redis in production; off by default).
    pub campaign_per_s: u32,
    pub campaign_burst: u32,
    /// Most keys each keyed limiter (address, buyer) holds; a key that does
    /// not fit is not limited by that limiter (see `crate::limits`).
    pub keys_max: usize,
    /// How often idle keys are dropped.
    pub sweep_ms: u64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            ip_per_s: 200,
            ip_burst: 400,
            user_per_s: 5,
            user_burst: 10,
            global_per_s: 0,
            global_burst: 0,
            campaign_per_s: 0,
            campaign_burst: 0,
            keys_max: 250_000,
            sweep_ms: 1_000,
        }
    }
}

/// Hot items (see `crate::hot`): a campaign is hot when its requests per
/// second on this gateway reach `threshold_per_s` and `factor` times the
/// median of the other campaigns'; its grabs then queue for their own
/// share of the in-flight cap.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HotSettings {
    /// The sliding window requests are counted over.
    pub window_ms: u64,
    pub threshold_per_s: u32,
    pub factor: u32,
    /// A hot campaign's share of `limits.grabs_inflight_max`, in percent.
    pub inflight_percent: u32,
    /// Grabs of a hot campaign waiting for its share at most; past it, 503.
    pub waiters_max: usize,
    /// Longest such a grab waits before 503 `overloaded`.
    pub wait_ms: u64,
}

impl Default for HotSettings {
    fn default() -> Self {
        Self {
            window_ms: 2_000,
            threshold_per_s: 200,
            factor: 4,
            inflight_percent: 25,
            waiters_max: 1_000,
            wait_ms: 500,
        }
    }
}

/// Buyer authentication (`[auth]`, see `crate::auth`): the one algorithm
/// accepted (`HS256` with `SECKILL_JWT_SECRET`, or `EdDSA` / `RS256` with a
/// public key in a PEM file, when the shop's identity service signs and the
/// gateway only verifies), the claims checked, and the demo identity
/// service's token lifetimes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub algorithm: String,
    pub public_key_file: Option<PathBuf>,
    /// `iss` every token must carry, when set.
    pub issuer: Option<String>,
    /// `aud` every token must carry, when set.
    pub audience: Option<String>,
    /// Longest accepted token lifetime (`exp - iat`, and `exp - now`).
    pub max_lifetime_s: u64,
    /// Lifetime of the demo identity service's access tokens.
    pub access_ttl_s: u64,
    /// Lifetime of its refresh tokens (and of their families).
    pub refresh_ttl_s: u64,
    /// `POST /api/v1/auth/login` and `/refresh`; absent: on in the embedded
    /// profile, off in production.
    pub demo_identity: Option<bool>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            algorithm: "HS256".into(),
            public_key_file: None,
            issuer: None,
            audience: None,
            max_lifetime_s: 7 * 24 * 3600,
            access_ttl_s: 600,
            refresh_ttl_s: 7 * 24 * 3600,
            demo_identity: None,
        }
    }
}

/// Where the shared stock lives in production.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Single(String),
    Cluster(Vec<String>),
}

/// The production backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Production {
    pub redis: RedisTarget,
    pub redis_key_prefix: String,
    /// Buckets per campaign loaded from now on (1 = no split; hot campaigns more).
    pub redis_buckets: u32,
    /// How often a gateway re-reads sold-out flags and campaign changes.
    pub refresh_ms: u64,
    pub kafka_brokers: String,
    pub kafka_topic: String,
    pub kafka_partitions: i32,
    pub kafka_delivery_wait_ms: u64,
    pub kafka_message_timeout_ms: u64,
    /// librdkafka's `linger.ms`: how long a record waits for others to
    /// join its batch before it is sent.
    pub kafka_linger_ms: u64,
    pub kafka_group_id: String,
    pub kafka_session_timeout_ms: u64,
    pub kafka_dead_letter_topic: String,
    pub mysql_url: String,
    pub mysql_pool_max: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backends {
    /// Memory ledger, file log and SQLite under `data_dir`.
    Embedded,
    Production(Box<Production>),
}

/// Everything a process needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Create the demo campaign at start-up when it does not exist yet.
    pub demo: bool,
    pub limits: Limits,
    pub writer: WriterConfig,
    pub backends: Backends,
    /// HS256 secret for buyer tokens; generated and kept in the data
    /// directory when absent, so tokens survive a restart.
    pub jwt_secret: Option<String>,
    /// The operator credential; generated per start when absent.
    pub admin_token: Option<String>,
    /// Key of quiz tokens and hidden grab paths, shared by every gateway;
    /// absent, it is derived from the JWT secret (domain-separated).
    pub funnel_secret: Option<String>,
    pub quiz: QuizSettings,
    pub rate_limits: RateLimitSettings,
    pub hot: HotSettings,
    /// `demo_identity` is resolved (always `Some`).
    pub auth: AuthSettings,
}

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config file {path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

pub(crate) fn invalid_key(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// The TOML file, section by section; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub demo: Option<bool>,
    pub limits: Limits,
    pub quiz: QuizSettings,
    pub rate_limits: RateLimitSettings,
    pub hot: HotSettings,
    pub auth: AuthSettings,
    pub writer: WriterSection,
    pub ledger: LedgerSection,
    pub order_log: LogSection,
    pub order_store: StoreSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriterSection {
    pub batch_rows_max: Option<usize>,
    pub batch_interval_ms: Option<u64>,
    pub rows_per_s_max: Option<u32>,
    pub group_id: Option<String>,
    pub dead_letter_topic: Option<String>,
    pub session_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerSection {
    /// `memory` (default) or `redis`.
    pub backend: Option<String>,
    pub redis_url: Option<String>,
    pub redis_cluster: Option<Vec<String>>,
    pub key_prefix: Option<String>,
    pub buckets: Option<u32>,
    pub refresh_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// `file` (default) or `kafka`.
    pub backend: Option<String>,
    pub brokers: Option<String>,
    pub topic: Option<String>,
    pub partitions: Option<i32>,
    pub delivery_wait_ms: Option<u64>,
    pub message_timeout_ms: Option<u64>,
    pub linger_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite` (default) or `mysql`.
    pub backend: Option<String>,
    pub mysql_url: Option<String>,
    pub pool_max: Option<u32>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }
}

pub use crate::config_resolve::{resolve, Overrides};
