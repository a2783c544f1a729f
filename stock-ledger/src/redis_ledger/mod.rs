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
//! any buyer still asks (see `slow_path`).
//!
//! Gateways learn "sold out" without asking Redis per request: every script
//! returns its bucket's change counter with the stock left, local flags only
//! accept newer news, and `spawn_refresher` polls every bucket so other
//! gateways' sales and releases show up here too. A bucket whose keys are
//! gone (Redis restarted empty) blocks the campaign (`NotLoaded`) until
//! `restore` rebuilds it from durable records.

mod flags;
mod scripts;

use async_trait::async_trait;
use dashmap::DashMap;
use engine::ports::{Hold, LedgerError, LedgerSnapshot, Reservation, StockLedger};
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
        let k = |name: &str| format!("{prefix}:{{{t}}}:{name}");
        Self {
            meta: k("meta"),
            stock: k("stock"),
            seq: k("seq"),
            last: k("last"),
            active: k("active"),
            holds: k("holds"),
            pending: k("pending"),
        }
    }
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
        self.write_buckets(campaign, total, buckets, &[]).await?;
        Ok(true)
    }

    async fn restore(
        &self,
        campaign: &CampaignId,
        total: u64,
        holds: &[Hold],
        buckets: Option<u32>,
    ) -> Result<(), LedgerError> {
        // The layout in force wins; after a data loss, the campaign's own ask.
        let buckets = match self.layout(campaign).await? {
            Some(f) => f.buckets,
            None => buckets
                .unwrap_or(self.cfg.buckets)
                .clamp(1, BUCKETS_MAX)
                .min(u32::try_from(total).unwrap_or(u32::MAX))
                .max(1),
        };
        self.write_buckets(campaign, total, buckets, holds).await
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
                flags.set_blocked(true);
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
        if seen.insert((h.user.clone(), h.n)) {
            out.entry(home(&h.user, buckets)).or_default().push(h);
        }
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
