//! `RedisRoomStore`: a campaign's waiting room in Redis, shared by every
//! gateway. All keys of one room carry the hash tag `{<campaign>:room}`, so
//! each script touches one slot (Redis Cluster), apart from the ledger's:
//!
//! - `pre`: sorted set, user -> draw (the pre-queue);
//! - `seal`: the pre-queue's size, set once at the first join or count at
//!   or after the start (ranks 1..=seal by draw, `ZRANK` + 1);
//! - `seq`, `post`: later joiners' counter and hash user -> `rank:joined:eta`;
//! - `epoch`: set by the first touch; a room that lost its keys starts anew;
//! - `lease`, `state`: the cursor's leader (SET PX) and the cursor (JSON),
//!   written only by the lease holder;
//! - `claims`, `fin`: uses per rank and the finished ranks (sorted by rank).
//!
//! Every key lives `ROOM_TTL_MS` after its last write.

use async_trait::async_trait;
use engine::ports::{Entry, Join, QueueCounts, RoomError, RoomStore};
use engine::room::RoomState;
use engine::{CampaignId, UserId};
use redis::aio::ConnectionLike;
use redis::Script;

/// How long a room's keys outlive their last write (a week).
pub const ROOM_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// KEYS pre, post, seal, seq, epoch; ARGV user, draw, now, starts,
/// queue_max, epoch, ttl. Returns {epoch, 'pre'}, {epoch, 'ranked',
/// 'rank:joined:eta'} or {epoch, 'full'}.
const JOIN: &str = r"
local ep = redis.call('GET', KEYS[5])
if not ep then ep = ARGV[6]; redis.call('SET', KEYS[5], ep) end
for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], ARGV[7]) end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {ep, 'pre'} end
local p = redis.call('HGET', KEYS[2], ARGV[1])
if p then return {ep, 'ranked', p} end
local pre = redis.call('ZCARD', KEYS[1])
if pre + redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[5]) then return {ep, 'full'} end
local sealed = redis.call('GET', KEYS[3])
if tonumber(ARGV[3]) < tonumber(ARGV[4]) and not sealed then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  return {ep, 'pre'}
end
if not sealed then
  sealed = pre
  redis.call('SET', KEYS[3], pre, 'PX', ARGV[7])
end
local rank = tonumber(sealed) + redis.call('INCR', KEYS[4])
local v = string.format('%d:%s:', rank, ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], v)
redis.call('PEXPIRE', KEYS[2], ARGV[7])
redis.call('PEXPIRE', KEYS[4], ARGV[7])
return {ep, 'ranked', v}
";

/// KEYS post; ARGV user, eta. Returns the kept estimate.
const SET_ETA: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return ARGV[2] end
local r, j, e = string.match(v, '^(%d+):(%d+):(%d*)$')
if e and e ~= '' then return e end
redis.call('HSET', KEYS[1], ARGV[1], r .. ':' .. j .. ':' .. ARGV[2])
return ARGV[2]
";

/// KEYS pre, seal; ARGV user. Returns the rank or false.
const PRE_RANK: &str = r"
if not redis.call('GET', KEYS[2]) then return false end
local r = redis.call('ZRANK', KEYS[1], ARGV[1])
if not r then return false end
return r + 1
";

/// KEYS pre, post, seal, epoch; ARGV now, starts, epoch, ttl. Returns
/// {epoch, pre, sealed (0/1), queued}.
const COUNTS: &str = r"
local ep = redis.call('GET', KEYS[4])
if not ep then ep = ARGV[3]; redis.call('SET', KEYS[4], ep, 'PX', ARGV[4]) end
local pre = redis.call('ZCARD', KEYS[1])
local sealed = redis.call('GET', KEYS[3])
if not sealed and tonumber(ARGV[1]) >= tonumber(ARGV[2]) then
  sealed = pre
  redis.call('SET', KEYS[3], pre, 'PX', ARGV[4])
end
if not sealed then return {ep, pre, 0, 0} end
return {ep, pre, 1, tonumber(sealed) + redis.call('HLEN', KEYS[2])}
";

/// KEYS lease; ARGV owner, lease_ms. Returns 1 while the owner holds it.
const LEAD: &str = r"
local h = redis.call('GET', KEYS[1])
if h == false or h == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// KEYS lease, state; ARGV owner, state, ttl. Returns 1 if stored.
const PUT_STATE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
";

/// KEYS claims, fin; ARGV rank, limit, ttl. Returns 1 if granted.
const CLAIM: &str = r"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if n > tonumber(ARGV[2]) then
  redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
";

/// KEYS claims, fin; ARGV rank.
const UNCLAIM: &str = r"
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if n <= 1 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
end
return 1
";

/// Waiting rooms shared by every gateway on one Redis server or cluster.
pub struct RedisRoomStore<C> {
    conn: C,
    prefix: String,
    join: Script,
    set_eta: Script,
    pre_rank: Script,
    counts: Script,
    lead: Script,
    put_state: Script,
    claim: Script,
    unclaim: Script,
}

impl<C> std::fmt::Debug for RedisRoomStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRoomStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl<C> RedisRoomStore<C> {
    pub fn new(conn: C, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            join: Script::new(JOIN),
            set_eta: Script::new(SET_ETA),
            pre_rank: Script::new(PRE_RANK),
            counts: Script::new(COUNTS),
            lead: Script::new(LEAD),
            put_state: Script::new(PUT_STATE),
            claim: Script::new(CLAIM),
            unclaim: Script::new(UNCLAIM),
        }
    }

    fn key(&self, c: &CampaignId, what: &str) -> String {
        format!("{}:{{{}:room}}:{what}", self.prefix, c.as_str())
    }
}

fn unavailable(e: redis::RedisError) -> RoomError {
    RoomError::Unavailable(format!("redis: {e}"))
}

fn impossible(what: &str, reply: impl std::fmt::Debug) -> RoomError {
    RoomError::Unavailable(format!("redis: impossible {what} reply {reply:?}"))
}

/// `rank:joined:eta` as the join script writes it.
fn parse_ranked(v: &str) -> Option<Entry> {
    let mut parts = v.split(':');
    let rank = parts.next()?.parse().ok()?;
    let joined_ms = parts.next()?.parse().ok()?;
    let eta = parts.next()?;
    let eta_s = if eta.is_empty() {
        None
    } else {
        Some(eta.parse().ok()?)
    };
    Some(Entry::Ranked {
        rank,
        joined_ms,
        eta_s,
    })
}

#[async_trait]
impl<C> RoomStore for RedisRoomStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn join(&self, j: &Join<'_>) -> Result<(u64, Entry), RoomError> {
        let c = j.campaign;
        let reply: Vec<String> = self
            .join
            .key(self.key(c, "pre"))
            .key(self.key(c, "post"))
            .key(self.key(c, "seal"))
            .key(self.key(c, "seq"))
            .key(self.key(c, "epoch"))
            .arg(j.user.as_str())
            .arg(j.draw.min(engine::room::DRAW_RANGE - 1))
            .arg(j.now_ms)
            .arg(j.starts_at_ms)
            .arg(j.queue_max)
            .arg(j.epoch)
            .arg(ROOM_TTL_MS)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let epoch = reply.first().and_then(|e| e.parse::<u64>().ok());
        match (epoch, reply.get(1).map(String::as_str), reply.get(2)) {
            (Some(e), Some("pre"), None) => Ok((e, Entry::Pre)),
            (Some(_), Some("full"), None) => Err(RoomError::Full),
            (Some(e), Some("ranked"), Some(v)) => parse_ranked(v)
                .map(|entry| (e, entry))
                .ok_or_else(|| impossible("join", &reply)),
            _ => Err(impossible("join", &reply)),
        }
    }

    async fn set_eta(&self, c: &CampaignId, user: &UserId, eta_s: u32) -> Result<u32, RoomError> {
        let kept: String = self
            .set_eta
            .key(self.key(c, "post"))
            .arg(user.as_str())
            .arg(eta_s)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        kept.parse().map_err(|_| impossible("set_eta", kept))
    }

    async fn pre_rank(&self, c: &CampaignId, user: &UserId) -> Result<Option<u64>, RoomError> {
        self.pre_rank
            .key(self.key(c, "pre"))
            .key(self.key(c, "seal"))
            .arg(user.as_str())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    async fn counts(
        &self,
        c: &CampaignId,
        now_ms: u64,
        starts_at_ms: u64,
        epoch: u64,
    ) -> Result<QueueCounts, RoomError> {
        let (epoch, pre, sealed, queued): (u64, u64, u8, u64) = self
            .counts
            .key(self.key(c, "pre"))
            .key(self.key(c, "post"))
            .key(self.key(c, "seal"))
            .key(self.key(c, "epoch"))
            .arg(now_ms)
            .arg(starts_at_ms)
            .arg(epoch)
            .arg(ROOM_TTL_MS)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(QueueCounts {
            epoch,
            pre,
            sealed: sealed == 1,
            queued,
        })
    }

    async fn lead(&self, c: &CampaignId, owner: u64, lease_ms: u64) -> Result<bool, RoomError> {
        let held: u8 = self
            .lead
            .key(self.key(c, "lease"))
            .arg(owner)
            .arg(lease_ms.max(1))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(held == 1)
    }

    async fn state(&self, c: &CampaignId) -> Result<Option<RoomState>, RoomError> {
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.key(c, "state"))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        raw.map(|bytes| {
            serde_json::from_slice(&bytes).map_err(|e| impossible("state", e.to_string()))
        })
        .transpose()
    }

    async fn put_state(
        &self,
        c: &CampaignId,
        owner: u64,
        s: &RoomState,
    ) -> Result<bool, RoomError> {
        let blob = serde_json::to_vec(s).map_err(|e| impossible("put_state", e.to_string()))?;
        let stored: u8 = self
            .put_state
            .key(self.key(c, "lease"))
            .key(self.key(c, "state"))
            .arg(owner)
            .arg(blob)
            .arg(ROOM_TTL_MS)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(stored == 1)
    }

    async fn claim(&self, c: &CampaignId, rank: u64, limit: u32) -> Result<bool, RoomError> {
        let granted: u8 = self
            .claim
            .key(self.key(c, "claims"))
            .key(self.key(c, "fin"))
            .arg(rank)
            .arg(limit)
            .arg(ROOM_TTL_MS)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(granted == 1)
    }

    async fn unclaim(&self, c: &CampaignId, rank: u64) -> Result<(), RoomError> {
        let _: u8 = self
            .unclaim
            .key(self.key(c, "claims"))
            .key(self.key(c, "fin"))
            .arg(rank)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn finished(&self, c: &CampaignId, above: u64) -> Result<(u64, u64), RoomError> {
        let fin = self.key(c, "fin");
        let (above, total): (u64, u64) = redis::pipe()
            .cmd("ZCOUNT")
            .arg(&fin)
            .arg(format!("({above}"))
            .arg("+inf")
            .cmd("ZCARD")
            .arg(&fin)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok((above, total))
    }
}
