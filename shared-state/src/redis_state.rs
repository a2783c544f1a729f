//! `RedisSharedState`: one key per entry, each hash-tagged on its own key so
//! every operation touches one slot (Redis Cluster):
//!
//! - marks: `SET <prefix>:once:{<key>} 1 NX PX <ttl>`, OK only to the first
//!   setter while the key lives;
//! - rate buckets: `<prefix>:rl:{<key>}` holds the GCRA's theoretical arrival
//!   time (µs), stepped by one Lua script (`THROTTLE`, mirroring
//!   `gcra::step`) and expiring when the bucket is full again;
//! - compare-and-set values: `<prefix>:cas:{<key>}`, one Lua script (`CAS`).
//!
//! Expiry is Redis's own clock; memory is bounded by the entries' lifetimes.

use crate::gcra;
use async_trait::async_trait;
use engine::ports::{RateQuota, SharedState, SharedStateError, Swap, Throttle};
use redis::aio::ConnectionLike;
use redis::Script;

/// KEYS[1] bucket; ARGV now_us, interval_us, window_us. Returns {1,
/// remaining} or {0, retry_after_ms}. Numbers stay below 2^53 (µs since
/// the epoch), exact in Lua's doubles; `%.0f` keeps them out of exponent
/// notation.
const THROTTLE: &str = r"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local new_tat = tat + interval
local ahead = new_tat - now
if ahead <= window then
  local ttl_ms = math.max(1, math.ceil(ahead / 1000))
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
  return {1, math.floor((window - ahead) / interval)}
end
return {0, math.ceil((ahead - window) / 1000)}
";

/// KEYS[1] value; ARGV has_expected ('1'/'0'), expected, new, ttl_ms.
/// Returns {'done'}, {'none'} or {'cur', value}.
const CAS: &str = r"
local cur = redis.call('GET', KEYS[1])
local match
if ARGV[1] == '1' then match = (cur == ARGV[2]) else match = (cur == false) end
if match then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
  return {'done'}
end
if cur == false then return {'none'} end
return {'cur', cur}
";

/// State shared by every gateway on one Redis server or cluster.
pub struct RedisSharedState<C> {
    conn: C,
    prefix: String,
    throttle: Script,
    cas: Script,
}

impl<C> std::fmt::Debug for RedisSharedState<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSharedState")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl<C> RedisSharedState<C> {
    pub fn new(conn: C, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            throttle: Script::new(THROTTLE),
            cas: Script::new(CAS),
        }
    }
}

fn unavailable(e: redis::RedisError) -> SharedStateError {
    SharedStateError::Unavailable(format!("redis: {e}"))
}

/// An answer no script of ours gives: a bug or a foreign key, surfaced.
fn impossible(what: &str, reply: impl std::fmt::Debug) -> SharedStateError {
    SharedStateError::Unavailable(format!("redis: impossible {what} reply {reply:?}"))
}

#[async_trait]
impl<C> SharedState for RedisSharedState<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn use_once(
        &self,
        key: &str,
        ttl_ms: u64,
        _now_ms: u64,
    ) -> Result<bool, SharedStateError> {
        // A re-send after a lost reply would see its own mark and answer
        // false: the token is then refused, never accepted twice.
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}:once:{{{key}}}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn throttle(
        &self,
        key: &str,
        quota: RateQuota,
        now_ms: u64,
    ) -> Result<Throttle, SharedStateError> {
        let (interval_us, window_us) = gcra::shape(quota);
        let (allowed, n): (i64, i64) = self
            .throttle
            .key(format!("{}:rl:{{{key}}}", self.prefix))
            .arg(now_ms.saturating_mul(1000))
            .arg(interval_us)
            .arg(window_us)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        match (allowed, u64::try_from(n)) {
            (1, Ok(remaining)) => Ok(Throttle::Allowed {
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            }),
            (0, Ok(retry_after_ms)) if retry_after_ms > 0 => {
                Ok(Throttle::Limited { retry_after_ms })
            }
            _ => Err(impossible("throttle", (allowed, n))),
        }
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&str>,
        new: &str,
        ttl_ms: u64,
        _now_ms: u64,
    ) -> Result<Swap, SharedStateError> {
        // Not re-sent after a lost reply: a re-send would find its own value
        // and answer `Current(new)`, which a caller reads as a lost race
        // (for refresh families: a revoked family, the safe side).
        let reply: Vec<String> = self
            .cas
            .key(format!("{}:cas:{{{key}}}", self.prefix))
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or(""))
            .arg(new)
            .arg(ttl_ms.max(1))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        match reply.as_slice() {
            [tag] if tag == "done" => Ok(Swap::Done),
            [tag] if tag == "none" => Ok(Swap::Current(None)),
            [tag, cur] if tag == "cur" => Ok(Swap::Current(Some(cur.clone()))),
            _ => Err(impossible("compare_and_set", reply)),
        }
    }
}
