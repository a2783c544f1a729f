//! The Lua scripts of `RedisLedger`. Each runs on the keys of one bucket
//! (one hash slot), so each is atomic on a single server and on a cluster.
//!
//! Bucket keys (`<prefix>:{<tag>}:<name>`): `meta` (present while loaded;
//! bucket 0's holds the campaign `total`), `stock` (units left here), `seq`
//! (counts every stock change, so gateways can order the news), `last`
//! (user -> highest n handed out), `active` (user -> holds), `holds` (set of
//! `n|user`), `pending` (claims whose unit is still being fetched from
//! another bucket). A user's holds always live in their home bucket, which
//! is what keeps the per-user limit exact across buckets.

/// KEYS: meta stock seq last active holds; ARGV: user limit bucketed.
/// Returns {code, n, stock, seq}: 0 reserved, 1 already bought, 2 sold out,
/// 3 not loaded, 4 this bucket is empty (bucketed: try the slow path).
pub const RESERVE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {3, 0, 0, 0} end
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
local active = tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0')
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
if active >= tonumber(ARGV[2]) then return {1, 0, stock, seq} end
if stock <= 0 then
  if ARGV[3] == '1' then return {4, 0, 0, seq} end
  return {2, 0, 0, seq}
end
stock = redis.call('DECR', KEYS[2])
seq = redis.call('INCR', KEYS[3])
local n = redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
redis.call('HINCRBY', KEYS[5], ARGV[1], 1)
redis.call('SADD', KEYS[6], n .. '|' .. ARGV[1])
return {0, n, stock, seq}
"#;

/// Slow path, step 1, on the home bucket: checks the limit and records a
/// pending hold without taking stock here. KEYS: meta last active holds
/// pending; ARGV: user limit. Returns {code, n}: 0 claimed, 1 already
/// bought, 3 not loaded.
pub const CLAIM: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {3, 0} end
local active = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if active >= tonumber(ARGV[2]) then return {1, 0} end
local n = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
local member = n .. '|' .. ARGV[1]
redis.call('SADD', KEYS[4], member)
redis.call('HSET', KEYS[5], member, 1)
return {0, n}
"#;

/// Slow path, step 2, on another bucket: takes one unit if any.
/// KEYS: meta stock seq. Returns {taken, stock, seq, loaded}.
pub const TAKE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0, 0} end
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
if stock <= 0 then return {0, 0, seq, 1} end
stock = redis.call('DECR', KEYS[2])
seq = redis.call('INCR', KEYS[3])
return {1, stock, seq, 1}
"#;

/// Slow path, step 3, on the home bucket: the claim got its unit (finish)
/// or no bucket had one (undo). KEYS: active holds pending; ARGV: user n
/// undo.
pub const SETTLE_CLAIM: &str = r#"
local member = ARGV[2] .. '|' .. ARGV[1]
redis.call('HDEL', KEYS[3], member)
if ARGV[3] == '1' and redis.call('SREM', KEYS[2], member) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
end
return 1
"#;

/// KEYS: meta stock seq active holds; ARGV: user n. The unit goes back to
/// the stock of the bucket that held it (the user's home bucket).
/// Returns {released, stock, seq}.
pub const RELEASE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0} end
if redis.call('SREM', KEYS[5], ARGV[2] .. '|' .. ARGV[1]) == 0 then
  return {0, tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(redis.call('GET', KEYS[3]) or '0')}
end
redis.call('HINCRBY', KEYS[4], ARGV[1], -1)
local stock = redis.call('INCR', KEYS[2])
local seq = redis.call('INCR', KEYS[3])
return {1, stock, seq}
"#;

/// Replaces one bucket wholesale. KEYS: meta stock seq last active holds
/// pending; ARGV: stock total buckets, then user, n pairs. `total` is the
/// campaign's (kept in every bucket's meta, read from bucket 0).
pub const RESTORE: &str = r#"
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
for i = 4, #ARGV, 2 do
  local user, n = ARGV[i], tonumber(ARGV[i + 1])
  if redis.call('SADD', KEYS[6], n .. '|' .. user) == 1 then
    redis.call('HINCRBY', KEYS[5], user, 1)
  end
  local last = tonumber(redis.call('HGET', KEYS[4], user) or '0')
  if n > last then redis.call('HSET', KEYS[4], user, n) end
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'total', ARGV[2], 'buckets', ARGV[3])
return 1
"#;

/// KEYS: meta stock seq. Returns {loaded, total, stock, seq}.
pub const PEEK: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0, 0} end
return {1, tonumber(redis.call('HGET', KEYS[1], 'total') or '0'),
        tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(redis.call('GET', KEYS[3]) or '0')}
"#;
