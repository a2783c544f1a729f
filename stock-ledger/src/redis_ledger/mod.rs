//! `RedisLedger`: the production ledger, shared by many gateways.
//!
//! Each decision is a Lua script (sent with `EVALSHA`, re-sent on
//! `NOSCRIPT` by `redis::Script`) over the keys of one bucket, all sharing a
//! hash tag, so it is atomic on one server and runs unchanged on Redis
//! Cluster. A campaign has one bucket (`{<campaign>}`) or, when hot, several
//! (`{<campaign>#<b>}`) on different slots. Every user has a home bucket
//! (a stable hash) holding all their holds, so the per-user limit stays
//! exact; a grab whose home bucket is empty claims there, takes a unit from
//! another bucket and settles the claim, so no unit is left unsold while
//! any buyer still asks (see `slow_path`). A grab whose home has stock is
//! one `EVALSHA`.
//!
//! **Unknown outcomes.** A reply can be lost after the script ran (a
//! connection reset, a timeout), and redis-rs's cluster client re-sends a
//! request after a reset by itself. Every changing script is therefore
//! idempotent per request: each logical call carries a random request id,
//! and the script records what it did under a key of that id, so the same
//! request again answers the first outcome (see `scripts`). On an I/O error
//! the ledger re-sends the same call a few times, within
//! [`RESEND_WITHIN`], to learn the outcome; if it still cannot, it answers
//! `LedgerError::Unavailable` and leaves Redis as it is: a slow path's claim
//! whose take is unknown stays pending, listed by `holds()`, for
//! reconciliation (`remaining + holds == total` tells whether the unit
//! left).
//!
//! **News and generations.** Gateways learn "sold out" without asking Redis
//! per request: every script returns its bucket's stock with the data's
//! version, (generation, seq): `restore` writes the image's generation into
//! every bucket (`load` writes `FIRST_LEDGER_GENERATION`), `seq` counts
//! every change. Local flags take news in that order (a newer generation
//! replaces everything known about the campaign; see `flags`), and
//! `spawn_refresher` polls every bucket so other gateways' sales, releases
//! and restores show up here too.
//!
//! **Blocked campaigns.** A gateway stops selling a campaign (`NotLoaded`)
//! when a bucket's keys are gone (Redis restarted empty) until they are
//! back, and when a bucket's data went back in time (a failover to a
//! lagging replica, a restart from an older snapshot: a reply older than
//! what this gateway saw before sending its request) until a newer
//! generation shows up, i.e. until `restore` rebuilds the campaign from
//! durable records. A reservation made on data that went back in time is
//! answered `NotLoaded`: its hold lives only in the stale data, which the
//! restore replaces.

mod flags;
pub mod scripts;

use async_trait::async_trait;
use dashmap::DashMap;
use engine::ports::{
    Hold, LedgerError, LedgerImage, LedgerSnapshot, Reservation, StockLedger,
    FIRST_LEDGER_GENERATION,
};
use engine::{CampaignId, UserId};
use flags::CampaignFlags;
use redis::aio::ConnectionLike;
use redis::Script;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A single Redis server, through a connection that reconnects by itself
/// after the server restarts (a restarted-empty server then answers
/// `NotLoaded`, which blocks selling until a restore).
pub type RedisConn = redis::aio::ConnectionManager;
/// A Redis Cluster.
pub type RedisClusterConn = redis::cluster_async::ClusterConnection;

/// Most buckets a campaign may be split into.
pub const BUCKETS_MAX: u32 = 64;

/// Settings of the Redis ledger.
#[derive(Debug, Clone)]
pub struct RedisLedgerConfig {
    /// Namespace of every key (e.g. per environment).
    pub prefix: String,
    /// Buckets for campaigns loaded from now on that ask for none themselves
    /// (1 = one key, no split).
    pub buckets: u32,
}

struct Scripts {
    reserve: Script,
    claim: Script,
    take: Script,
    settle: Script,
    release: Script,
    restore: Script,
    peek: Script,
}

/// The Redis-backed ledger over one server (`RedisConn`) or a cluster
/// (`RedisClusterConn`).
pub struct RedisLedger<C> {
    conn: C,
    cfg: RedisLedgerConfig,
    campaigns: DashMap<CampaignId, Arc<CampaignFlags>>,
    scripts: Scripts,
}

impl<C> std::fmt::Debug for RedisLedger<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLedger")
            .field("cfg", &self.cfg)
            .field("campaigns", &self.campaigns.len())
            .finish_non_exhaustive()
    }
}

/// The keys of one bucket, all in one hash slot.
struct Keys {
    /// `<prefix>:{<tag>}:`, for the per-request keys.
    base: String,
    meta: String,
    stock: String,
    seq: String,
    last: String,
    active: String,
    holds: String,
    pending: String,
}

fn tag(c: &CampaignId, bucket: u32, buckets: u32) -> String {
    if buckets <= 1 {
        c.to_string()
    } else {
        format!("{c}#{bucket}")
    }
}

impl Keys {
    fn of(prefix: &str, c: &CampaignId, bucket: u32, buckets: u32) -> Self {
        let t = tag(c, bucket, buckets);
        let base = format!("{prefix}:{{{t}}}:");
        let k = |name: &str| format!("{base}{name}");
        Self {
            meta: k("meta"),
            stock: k("stock"),
            seq: k("seq"),
            last: k("last"),
            active: k("active"),
            holds: k("holds"),
            pending: k("pending"),
            base,
        }
    }

    /// Where a script records the outcome of request `rid` (same slot).
    fn request(&self, rid: &str) -> String {
        format!("{}r:{rid}", self.base)
    }
}

/// A fresh request id: 128 random bits, in hex.
fn request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// How long the ledger keeps re-sending a call whose outcome is unknown
/// (after the first attempt failed).
const RESEND_WITHIN: Duration = Duration::from_millis(1_500);
/// Re-sends at most, after the first attempt.
const RESENDS: u32 = 5;
/// Pause before the second re-send; doubles after each (the first re-send
/// goes at once: the client reconnects first anyway).
const RESEND_PAUSE: Duration = Duration::from_millis(25);

/// Why a script call has no answer.
#[derive(Debug)]
enum CallError {
    /// Redis refused it or it was never sent: it did not run.
    Failed(LedgerError),
    /// It may have run; re-sending it did not tell.
    Unknown(LedgerError),
}

impl From<CallError> for LedgerError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Failed(e) | CallError::Unknown(e) => e,
        }
    }
}

/// Whether a failed request may have run: the connection failed after it
/// may have been sent. A refused connection never carried it; an error
/// reply is Redis's own answer.
fn outcome_unknown(e: &redis::RedisError) -> bool {
    (e.is_io_error() && !e.is_connection_refusal()) || e.is_timeout()
}

fn layout_key(prefix: &str, c: &CampaignId) -> String {
    format!("{prefix}:{{{c}}}:layout")
}

/// The user's home bucket: a stable hash (FNV-1a), the same on every gateway.
fn home(user: &UserId, buckets: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user.as_str().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(buckets.max(1))) as u32
}

/// `total` split over `buckets` as evenly as possible.
fn shares(total: u64, buckets: u32) -> Vec<u64> {
    let b = u64::from(buckets.max(1));
    (0..b)
        .map(|i| total / b + u64::from(i < total % b))
        .collect()
}

fn unavailable(e: redis::RedisError) -> LedgerError {
    LedgerError::Unavailable(format!("redis: {e}"))
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A hold member is `n|user`; `n` never contains `|`, users may.
fn parse_hold(member: &str) -> Result<Hold, LedgerError> {
    let bad = || LedgerError::Unavailable(format!("malformed hold {member:?} in redis"));
    let (n, user) = member.split_once('|').ok_or_else(bad)?;
    Ok(Hold {
        user: UserId::parse(user).map_err(|_| bad())?,
        n: n.parse().map_err(|_| bad())?,
    })
}

mod ops;

impl<C> RedisLedger<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    pub fn new(conn: C, cfg: RedisLedgerConfig) -> Self {
        Self {
            conn,
            cfg: RedisLedgerConfig {
                buckets: cfg.buckets.clamp(1, BUCKETS_MAX),
                ..cfg
            },
            campaigns: DashMap::new(),
            scripts: Scripts {
                reserve: Script::new(scripts::RESERVE),
                claim: Script::new(scripts::CLAIM),
                take: Script::new(scripts::TAKE),
                settle: Script::new(scripts::SETTLE_CLAIM),
                release: Script::new(scripts::RELEASE),
                restore: Script::new(scripts::RESTORE),
                peek: Script::new(scripts::PEEK),
            },
        }
    }

    /// Re-reads every known campaign once, updating the local flags.
    pub async fn refresh(&self) -> Result<(), LedgerError> {
        let known: Vec<CampaignId> = self.campaigns.iter().map(|e| e.key().clone()).collect();
        for c in known {
            self.peek_all(&c).await?;
        }
        Ok(())
    }

    /// Polls Redis every `period` so flags follow other gateways; stops
    /// when the ledger is dropped.
    pub fn spawn_refresher(self: &Arc<Self>, period: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(ledger) = weak.upgrade() else { return };
                if let Err(e) = ledger.refresh().await {
                    tracing::warn!(error = %e, "refreshing sold-out flags failed");
                }
            }
        })
    }
}

#[async_trait]
impl<C> StockLedger for RedisLedger<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn load(
        &self,
        campaign: &CampaignId,
        total: u64,
        buckets: Option<u32>,
    ) -> Result<bool, LedgerError> {
        if self.layout(campaign).await?.is_some() {
            return Ok(false);
        }
        let buckets = buckets
            .unwrap_or(self.cfg.buckets)
            .clamp(1, BUCKETS_MAX)
            .min(u32::try_from(total).unwrap_or(u32::MAX))
            .max(1);
        self.write_buckets(campaign, total, buckets, &[], &[], FIRST_LEDGER_GENERATION)
            .await?;
        Ok(true)
    }

    async fn restore(&self, campaign: &CampaignId, image: &LedgerImage) -> Result<(), LedgerError> {
        let total = image.total;
        // The layout in force wins; after a data loss, the campaign's own ask.
        let buckets = match self.layout(campaign).await? {
            Some(f) => f.buckets,
            None => image
                .buckets
                .unwrap_or(self.cfg.buckets)
                .clamp(1, BUCKETS_MAX)
                .min(u32::try_from(total).unwrap_or(u32::MAX))
                .max(1),
        };
        self.write_buckets(
            campaign,
            total,
            buckets,
            &image.holds,
            &image.retired,
            image.generation,
        )
        .await
    }

    async fn reserve(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        limit: u32,
    ) -> Result<Reservation, LedgerError> {
        let Some(flags) = self.layout(campaign).await? else {
            return Ok(Reservation::NotLoaded);
        };
        if flags.blocked() {
            return Ok(Reservation::NotLoaded);
        }
        self.reserve_in(campaign, &flags, user, limit).await
    }

    async fn release(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        n: u32,
    ) -> Result<bool, LedgerError> {
        let Some(flags) = self.layout(campaign).await? else {
            return Ok(false);
        };
        self.release_in(campaign, &flags, user, n).await
    }

    fn sold_out_hint(&self, campaign: &CampaignId) -> bool {
        self.campaigns.get(campaign).is_some_and(|f| f.sold_out())
    }

    async fn snapshot(&self, campaign: &CampaignId) -> Result<Option<LedgerSnapshot>, LedgerError> {
        self.peek_all(campaign).await
    }

    async fn holds(&self, campaign: &CampaignId) -> Result<Option<Vec<Hold>>, LedgerError> {
        let Some(flags) = self.layout(campaign).await? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for b in 0..flags.buckets {
            let k = Keys::of(&self.cfg.prefix, campaign, b, flags.buckets);
            let mut conn = self.conn.clone();
            let loaded: bool = redis::cmd("EXISTS")
                .arg(&k.meta)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if !loaded {
                flags.mark_lost(b);
                return Ok(None);
            }
            let members: Vec<String> = redis::cmd("SMEMBERS")
                .arg(&k.holds)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            for m in &members {
                out.push(parse_hold(m)?);
            }
        }
        Ok(Some(out))
    }
}

/// Groups holds by home bucket (duplicates of (user, n) count once).
fn by_home(holds: &[Hold], buckets: u32) -> HashMap<u32, Vec<&Hold>> {
    let mut seen = std::collections::HashSet::new();
    let mut out: HashMap<u32, Vec<&Hold>> = HashMap::new();
    for h in holds {
        if seen.insert((&h.user, h.n)) {
            out.entry(home(&h.user, buckets)).or_default().push(h);
        }
    }
    out
}

/// Each user's highest retired `n`, grouped by home bucket: retired units
/// only move the user's numbering on.
fn retired_by_home(retired: &[Hold], buckets: u32) -> HashMap<u32, Vec<(&UserId, u32)>> {
    let mut highest: HashMap<&UserId, u32> = HashMap::new();
    for h in retired {
        let n = highest.entry(&h.user).or_default();
        *n = (*n).max(h.n);
    }
    let mut out: HashMap<u32, Vec<(&UserId, u32)>> = HashMap::new();
    for (user, n) in highest {
        out.entry(home(user, buckets)).or_default().push((user, n));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        for (total, b) in [(1_000u64, 8u32), (7, 8), (0, 3), (10, 1)] {
            let s = shares(total, b);
            assert_eq!(s.iter().sum::<u64>(), total);
            let (min, max) = (s.iter().min().copied(), s.iter().max().copied());
            assert!(max.unwrap_or(0) - min.unwrap_or(0) <= 1);
        }
    }

    #[test]
    fn home_is_stable_and_spread() {
        let u = UserId::parse("alice").unwrap();
        assert_eq!(home(&u, 8), home(&u, 8));
        let used: std::collections::HashSet<u32> = (0..200)
            .map(|i| home(&UserId::parse(&format!("u{i}")).unwrap(), 8))
            .collect();
        assert_eq!(used.len(), 8);
    }

    #[test]
    fn tags_put_buckets_on_their_own_slots() {
        let c = CampaignId::parse("hot").unwrap();
        assert_eq!(tag(&c, 0, 1), "hot");
        assert_eq!(tag(&c, 3, 8), "hot#3");
    }
}
