//! `RedisLedger`: the production ledger, shared by many gateways.
//!
//! Each decision is one Lua script (sent with `EVALSHA`, re-sent on
//! `NOSCRIPT` by `redis::Script`), so the per-user check, the stock check,
//! the decrement and the record of the hold happen atomically in Redis. All
//! keys of a campaign share the hash tag `{<campaign>}`, so the scripts run
//! unchanged on Redis Cluster.
//!
//! Gateways learn "sold out" without asking Redis per request: every script
//! returns the campaign's change counter (`seq`) with the stock left, and a
//! local flag only accepts news newer than what it has seen. A refresher
//! polls the same pair for campaigns this gateway serves, so a unit released
//! through another gateway clears the flag here too.
//!
//! A campaign whose `meta` key is missing (Redis restarted empty, failover
//! lost writes) answers `NotLoaded`: selling stops until reconciliation
//! restores it from durable records.

use async_trait::async_trait;
use dashmap::DashMap;
use engine::ports::{Hold, LedgerError, LedgerSnapshot, Reservation, StockLedger};
use engine::{CampaignId, UserId};
use redis::aio::ConnectionLike;
use redis::Script;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A single Redis server or a Redis Cluster, behind one type.
pub type RedisConn = redis::aio::MultiplexedConnection;
pub type RedisClusterConn = redis::cluster_async::ClusterConnection;

const RESERVE: &str = r#"
-- KEYS: meta stock seq last active holds; ARGV: user limit
if redis.call('EXISTS', KEYS[1]) == 0 then return {3, 0, 0, 0} end
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
local active = tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0')
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
if active >= tonumber(ARGV[2]) then return {1, 0, stock, seq} end
if stock <= 0 then return {2, 0, 0, seq} end
stock = redis.call('DECR', KEYS[2])
seq = redis.call('INCR', KEYS[3])
local n = redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
redis.call('HINCRBY', KEYS[5], ARGV[1], 1)
redis.call('SADD', KEYS[6], n .. '|' .. ARGV[1])
return {0, n, stock, seq}
"#;

const RELEASE: &str = r#"
-- KEYS: meta stock seq active holds; ARGV: user n
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0} end
if redis.call('SREM', KEYS[5], ARGV[2] .. '|' .. ARGV[1]) == 0 then
  return {0, tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(redis.call('GET', KEYS[3]) or '0')}
end
redis.call('HINCRBY', KEYS[4], ARGV[1], -1)
local stock = redis.call('INCR', KEYS[2])
local seq = redis.call('INCR', KEYS[3])
return {1, stock, seq}
"#;

const LOAD: &str = r#"
-- KEYS: meta stock seq last active holds; ARGV: total
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2], KEYS[4], KEYS[5], KEYS[6])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'total', ARGV[1])
return 1
"#;

/// ARGV: total, then user, n pairs. Replaces the campaign wholesale.
const RESTORE: &str = r#"
-- KEYS: meta stock seq last active holds
local total = tonumber(ARGV[1])
local held = (#ARGV - 1) / 2
if held > total then return redis.error_reply('more holds than stock') end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4], KEYS[5], KEYS[6])
for i = 2, #ARGV, 2 do
  local user, n = ARGV[i], tonumber(ARGV[i + 1])
  if redis.call('SADD', KEYS[6], n .. '|' .. user) == 1 then
    redis.call('HINCRBY', KEYS[5], user, 1)
  else
    held = held - 1
  end
  local last = tonumber(redis.call('HGET', KEYS[4], user) or '0')
  if n > last then redis.call('HSET', KEYS[4], user, n) end
end
redis.call('SET', KEYS[2], total - held)
redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'total', total)
return total - held
"#;

const PEEK: &str = r#"
-- KEYS: meta stock seq
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0, 0} end
return {1, tonumber(redis.call('HGET', KEYS[1], 'total') or '0'),
        tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(redis.call('GET', KEYS[3]) or '0')}
"#;

/// The keys of one campaign, all in one hash slot.
struct Keys {
    meta: String,
    stock: String,
    seq: String,
    last: String,
    active: String,
    holds: String,
}

impl Keys {
    fn of(prefix: &str, c: &CampaignId) -> Self {
        let k = |name: &str| format!("{prefix}:{{{c}}}:{name}");
        Self {
            meta: k("meta"),
            stock: k("stock"),
            seq: k("seq"),
            last: k("last"),
            active: k("active"),
            holds: k("holds"),
        }
    }
}

/// The local view of one campaign's stock: `seq << 1 | sold_out`.
#[derive(Debug, Default)]
struct Flag(AtomicU64);

impl Flag {
    /// Applies news only if it is newer than what this gateway has seen.
    fn observe(&self, seq: u64, remaining: u64) {
        let next = (seq << 1) | u64::from(remaining == 0);
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
                (cur >> 1 < seq).then_some(next)
            });
    }

    fn sold_out(&self) -> bool {
        self.0.load(Ordering::Relaxed) & 1 == 1
    }
}

/// The Redis-backed ledger over a single server (`RedisConn`) or a cluster
/// (`RedisClusterConn`).
pub struct RedisLedger<C> {
    conn: C,
    prefix: String,
    flags: DashMap<CampaignId, Arc<Flag>>,
    reserve: Script,
    release: Script,
    load: Script,
    restore: Script,
    peek: Script,
}

impl<C> std::fmt::Debug for RedisLedger<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLedger")
            .field("prefix", &self.prefix)
            .field("campaigns", &self.flags.len())
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> LedgerError {
    LedgerError::Unavailable(format!("redis: {e}"))
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl<C> RedisLedger<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// `prefix` namespaces the keys (e.g. per environment).
    pub fn new(conn: C, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            flags: DashMap::new(),
            reserve: Script::new(RESERVE),
            release: Script::new(RELEASE),
            load: Script::new(LOAD),
            restore: Script::new(RESTORE),
            peek: Script::new(PEEK),
        }
    }

    fn flag(&self, c: &CampaignId) -> Arc<Flag> {
        Arc::clone(&self.flags.entry(c.clone()).or_default())
    }

    /// Re-reads every known campaign's stock once, updating the local flags.
    pub async fn refresh(&self) -> Result<(), LedgerError> {
        let known: Vec<CampaignId> = self.flags.iter().map(|e| e.key().clone()).collect();
        for c in known {
            self.peek_campaign(&c).await?;
        }
        Ok(())
    }

    /// Polls Redis every `period` so flags follow other gateways' sales and
    /// releases; stops when the ledger is dropped.
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

    async fn peek_campaign(&self, c: &CampaignId) -> Result<Option<LedgerSnapshot>, LedgerError> {
        let k = Keys::of(&self.prefix, c);
        let (loaded, total, stock, seq): (i64, i64, i64, i64) = self
            .peek
            .key(&k.meta)
            .key(&k.stock)
            .key(&k.seq)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        if loaded == 0 {
            return Ok(None);
        }
        let (total, remaining) = (to_u64(total), to_u64(stock));
        self.flag(c).observe(to_u64(seq), remaining);
        Ok(Some(LedgerSnapshot {
            total,
            reserved: total.saturating_sub(remaining),
            remaining,
        }))
    }
}

#[async_trait]
impl<C> StockLedger for RedisLedger<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn load(&self, campaign: &CampaignId, total: u64) -> Result<bool, LedgerError> {
        let k = Keys::of(&self.prefix, campaign);
        let fresh: i64 = self
            .load
            .key(&k.meta)
            .key(&k.stock)
            .key(&k.seq)
            .key(&k.last)
            .key(&k.active)
            .key(&k.holds)
            .arg(total)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.peek_campaign(campaign).await?;
        Ok(fresh == 1)
    }

    async fn restore(
        &self,
        campaign: &CampaignId,
        total: u64,
        holds: &[Hold],
    ) -> Result<(), LedgerError> {
        let k = Keys::of(&self.prefix, campaign);
        let mut inv = self.restore.prepare_invoke();
        inv.key(&k.meta)
            .key(&k.stock)
            .key(&k.seq)
            .key(&k.last)
            .key(&k.active)
            .key(&k.holds)
            .arg(total);
        for h in holds {
            inv.arg(h.user.as_str()).arg(h.n);
        }
        let _: i64 = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.peek_campaign(campaign).await?;
        Ok(())
    }

    async fn reserve(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        limit: u32,
    ) -> Result<Reservation, LedgerError> {
        let k = Keys::of(&self.prefix, campaign);
        let (code, n, stock, seq): (i64, i64, i64, i64) = self
            .reserve
            .key(&k.meta)
            .key(&k.stock)
            .key(&k.seq)
            .key(&k.last)
            .key(&k.active)
            .key(&k.holds)
            .arg(user.as_str())
            .arg(limit)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        if code != 3 {
            self.flag(campaign).observe(to_u64(seq), to_u64(stock));
        }
        Ok(match code {
            0 => Reservation::Reserved {
                n: u32::try_from(n).map_err(|_| {
                    LedgerError::Unavailable(format!("redis returned hold number {n}"))
                })?,
            },
            1 => Reservation::AlreadyBought,
            2 => Reservation::SoldOut,
            _ => Reservation::NotLoaded,
        })
    }

    async fn release(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        n: u32,
    ) -> Result<bool, LedgerError> {
        let k = Keys::of(&self.prefix, campaign);
        let (released, stock, seq): (i64, i64, i64) = self
            .release
            .key(&k.meta)
            .key(&k.stock)
            .key(&k.seq)
            .key(&k.active)
            .key(&k.holds)
            .arg(user.as_str())
            .arg(n)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        if seq > 0 {
            self.flag(campaign).observe(to_u64(seq), to_u64(stock));
        }
        Ok(released == 1)
    }

    fn sold_out_hint(&self, campaign: &CampaignId) -> bool {
        self.flags.get(campaign).is_some_and(|f| f.sold_out())
    }

    async fn snapshot(&self, campaign: &CampaignId) -> Result<Option<LedgerSnapshot>, LedgerError> {
        self.peek_campaign(campaign).await
    }
}
