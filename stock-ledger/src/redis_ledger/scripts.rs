//! The Lua scripts of `RedisLedger`. Each runs on the keys of one bucket
//! (one hash slot), so each is atomic on a single server and on a cluster.
//!
//! Bucket keys (`<prefix>:{<tag>}:<name>`): `meta` (present while loaded:
//! the campaign `total`, read from bucket 0, the bucket count and `gen`, the
//! generation of the data), `stock` (units left here), `seq` (counts every
//! change of the bucket, never reset), `last` (user -> highest n handed
//! out), `active` (user -> holds), `holds` (set of `n|user`, including
//! pending claims), `pending` (claims whose unit is still being fetched from
//! another bucket). A user's holds always live in their home bucket, which
//! is what keeps the per-user limit exact across buckets.
//!
//! Every script answers with the bucket's version, `gen` and `seq`, so a
//! gateway can order the news (a newer generation replaces everything; in a
//! generation, a higher `seq` is newer) and notice data that went back in
//! time. Data loaded before generations existed counts as generation 1.
//!
//! **Idempotent per request.** A request whose reply is lost may be sent
//! again: by redis-rs's cluster client after a connection reset, or by the
//! ledger to learn the outcome. So every script that changes something
//! takes one more key, `<prefix>:{<tag>}:r:<request id>` (same slot; the id
//! is random per logical call), and records there what it answered when it
//! changed something; the same request again answers that record and changes
//! nothing. Refusals change nothing, so they are not recorded (running a
//! refused request again is just a new attempt). Records expire after an
//! hour (re-sends come within seconds), so memory stays bounded by the
//! changes of an hour.
//! `SETTLE_CLAIM` and `RESTORE` are idempotent by themselves (see each).
//!
//! Numbers go through Lua as doubles: generations, counts and stock must
//! stay below 2^53 (they are counters).

/// Lua helpers shared by the idempotent scripts: `replay(key)` returns the
/// recorded outcome of this request, if any; `record(key, out)` records it
/// (integers, written exactly) for an hour and returns it.
macro_rules! request_record {
    () => {
        r#"
local function replay(key)
  local done = redis.call('GET', key)
  if not done then return nil end
  local out = {}
  for v in string.gmatch(done, '[^,]+') do out[#out + 1] = tonumber(v) end
  return out
end
local function record(key, out)
  local parts = {}
  for i, v in ipairs(out) do parts[i] = string.format('%d', v) end
  redis.call('SET', key, table.concat(parts, ','), 'EX', 3600)
  return out
end
"#
    };
}

/// KEYS: meta stock seq last active holds request; ARGV: user limit
/// bucketed. Returns {code, n, stock, gen, seq}: 0 reserved, 1 already
/// bought, 2 sold out, 3 not loaded, 4 this bucket is empty (bucketed: try
/// the slow path). Only 0 is recorded.
pub const RESERVE: &str = concat!(
    request_record!(),
    r#"
local done = replay(KEYS[7])
if done then return done end
if redis.call('EXISTS', KEYS[1]) == 0 then return {3, 0, 0, 0, 0} end
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '1')
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
local active = tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0')
if active >= tonumber(ARGV[2]) then return {1, 0, stock, gen, seq} end
if stock <= 0 then
  if ARGV[3] == '1' then return {4, 0, 0, gen, seq} end
  return {2, 0, 0, gen, seq}
end
stock = redis.call('DECR', KEYS[2])
seq = redis.call('INCR', KEYS[3])
local n = redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
redis.call('HINCRBY', KEYS[5], ARGV[1], 1)
redis.call('SADD', KEYS[6], n .. '|' .. ARGV[1])
return record(KEYS[7], {0, n, stock, gen, seq})
"#
);

/// Slow path, step 1, on the home bucket: checks the limit and records a
/// pending hold (listed in `holds`, so reconciliation sees it) without
/// taking stock here. KEYS: meta stock seq last active holds pending
/// request; ARGV: user limit. Returns {code, n, stock, gen, seq}: 0 claimed
/// (recorded), 1 already bought, 3 not loaded.
pub const CLAIM: &str = concat!(
    request_record!(),
    r#"
local done = replay(KEYS[8])
if done then return done end
if redis.call('EXISTS', KEYS[1]) == 0 then return {3, 0, 0, 0, 0} end
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '1')
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
local active = tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0')
if active >= tonumber(ARGV[2]) then return {1, 0, stock, gen, seq} end
local n = redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
redis.call('HINCRBY', KEYS[5], ARGV[1], 1)
local member = n .. '|' .. ARGV[1]
redis.call('SADD', KEYS[6], member)
redis.call('HSET', KEYS[7], member, 1)
seq = redis.call('INCR', KEYS[3])
return record(KEYS[8], {0, n, stock, gen, seq})
"#
);

/// Slow path, step 2, on another bucket: takes one unit if any.
/// KEYS: meta stock seq request. Returns {taken, stock, gen, seq, loaded};
/// a take is recorded.
pub const TAKE: &str = concat!(
    request_record!(),
    r#"
local done = replay(KEYS[4])
if done then return done end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0, 0, 0} end
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '1')
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
if stock <= 0 then return {0, 0, gen, seq, 1} end
stock = redis.call('DECR', KEYS[2])
seq = redis.call('INCR', KEYS[3])
return record(KEYS[4], {1, stock, gen, seq, 1})
"#
);

/// Slow path, step 3, on the home bucket: the claim got its unit (finish)
/// or no bucket had one (undo). KEYS: meta stock seq active holds pending;
/// ARGV: user n undo. Returns {loaded, stock, gen, seq}.
///
/// Idempotent without a request record: it acts only when it removes the
/// claim from `pending`, which happens once, and a claim (`n|user`) is never
/// created again because `n` never repeats. So a repeat changes nothing.
pub const SETTLE_CLAIM: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0, 0} end
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '1')
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
local member = ARGV[2] .. '|' .. ARGV[1]
if redis.call('HDEL', KEYS[6], member) == 0 then
  return {1, stock, gen, tonumber(redis.call('GET', KEYS[3]) or '0')}
end
if ARGV[3] == '1' and redis.call('SREM', KEYS[5], member) == 1 then
  redis.call('HINCRBY', KEYS[4], ARGV[1], -1)
end
return {1, stock, gen, redis.call('INCR', KEYS[3])}
"#;

/// KEYS: meta stock seq active holds pending request; ARGV: user n. The
/// unit goes back to the stock of the bucket that held it (the user's home
/// bucket). A claim still pending is not released (its unit may never have
/// been taken; reconciliation settles it). Returns {released, stock, gen,
/// seq, loaded}; a release is recorded.
pub const RELEASE: &str = concat!(
    request_record!(),
    r#"
local done = replay(KEYS[7])
if done then return done end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0, 0, 0} end
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '1')
local member = ARGV[2] .. '|' .. ARGV[1]
if redis.call('HEXISTS', KEYS[6], member) == 1
    or redis.call('SREM', KEYS[5], member) == 0 then
  return {0, tonumber(redis.call('GET', KEYS[2]) or '0'), gen,
          tonumber(redis.call('GET', KEYS[3]) or '0'), 1}
end
redis.call('HINCRBY', KEYS[4], ARGV[1], -1)
local stock = redis.call('INCR', KEYS[2])
local seq = redis.call('INCR', KEYS[3])
return record(KEYS[7], {1, stock, gen, seq, 1})
"#
);

/// Replaces one bucket wholesale with generation `gen`. KEYS: meta stock
/// seq last active holds pending; ARGV: stock total buckets gen nholds, then
/// `nholds` (user, n) pairs of holds, then (user, n) pairs of retired units
/// (they only raise `last`). `total` is the campaign's (kept in every
/// bucket's meta, read from bucket 0). `seq` is kept counting, never reset.
/// Returns {1, gen, seq, stock}, or {0, gen in force, 0, 0} when the data
/// has a newer generation than `gen` (refused, nothing written).
///
/// Idempotent without a request record: the bucket's new state depends only
/// on the arguments (a repeat writes the same state again; only `seq`, a
/// counter, moves on), and the same generation is accepted again.
pub const RESTORE: &str = r#"
local cur = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  cur = tonumber(redis.call('HGET', KEYS[1], 'gen') or '1')
end
local gen = tonumber(ARGV[4])
if cur > gen then return {0, cur, 0, 0} end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
local holds_end = 5 + 2 * tonumber(ARGV[5])
for i = 6, holds_end, 2 do
  local user, n = ARGV[i], tonumber(ARGV[i + 1])
  if redis.call('SADD', KEYS[6], ARGV[i + 1] .. '|' .. user) == 1 then
    redis.call('HINCRBY', KEYS[5], user, 1)
  end
  local last = tonumber(redis.call('HGET', KEYS[4], user) or '0')
  if n > last then redis.call('HSET', KEYS[4], user, ARGV[i + 1]) end
end
for i = holds_end + 1, #ARGV, 2 do
  local user, n = ARGV[i], tonumber(ARGV[i + 1])
  local last = tonumber(redis.call('HGET', KEYS[4], user) or '0')
  if n > last then redis.call('HSET', KEYS[4], user, ARGV[i + 1]) end
end
redis.call('SET', KEYS[2], ARGV[1])
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'total', ARGV[2], 'buckets', ARGV[3], 'gen', ARGV[4])
return {1, gen, seq, tonumber(ARGV[1])}
"#;

/// KEYS: meta stock seq. Returns {loaded, total, stock, gen, seq}.
pub const PEEK: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0, 0, 0} end
return {1, tonumber(redis.call('HGET', KEYS[1], 'total') or '0'),
        tonumber(redis.call('GET', KEYS[2]) or '0'),
        tonumber(redis.call('HGET', KEYS[1], 'gen') or '1'),
        tonumber(redis.call('GET', KEYS[3]) or '0')}
"#;
