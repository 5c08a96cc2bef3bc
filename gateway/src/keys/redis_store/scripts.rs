//! The store's changes as Lua scripts, each atomic on the server. Keys and
//! arguments are documented with each; the layout is in the module above.
//! Each change publishes its epoch and what it touched (`keys::change`).

use redis::Script;

const LOOKUP: &str = r"
local fields = redis.call('HGETALL', KEYS[1])
local partner = redis.call('HGET', KEYS[1], 'partner')
local suspended = 0
if partner then suspended = redis.call('SISMEMBER', KEYS[3], partner) end
return {fields, redis.call('GET', KEYS[2]) or '0', suspended}
";

/// Suspends (ARGV[2] = 1) or resumes a partner; a change like any other,
/// so every node drops its cache before the caller is told it is done.
const SUSPEND: &str = r"
if ARGV[2] == '1' then
  redis.call('SADD', KEYS[1], ARGV[1])
else
  redis.call('SREM', KEYS[1], ARGV[1])
end
local e = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[3], e .. ' partner ' .. ARGV[1])
return e
";

/// ARGV: slot, hash, partner, key_id, created_at, expires_at, self_rotated,
/// name, kind, totp (the partner's hash is keyed by slot, see `store::slot`).
const INSERT: &str = r"
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return redis.error_reply('CONFLICT') end
redis.call('HSET', KEYS[1], 'partner', ARGV[3], 'name', ARGV[8], 'key_id', ARGV[4], 'created_at', ARGV[5], 'expires_at', ARGV[6], 'self_rotated', ARGV[7], 'kind', ARGV[9], 'totp', ARGV[10])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
return 1
";

/// ARGV 1-10 as for INSERT, then prefix, channel and, when not empty, the
/// hash the slot's key must still have.
const REPLACE: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return redis.error_reply('NOTFOUND') end
if ARGV[13] ~= '' and old ~= ARGV[13] then return redis.error_reply('SUPERSEDED') end
local oldkey = ARGV[11] .. 'key:' .. old
local fields = redis.call('HGETALL', oldkey)
redis.call('DEL', oldkey)
redis.call('HSET', KEYS[3], 'partner', ARGV[3], 'name', ARGV[8], 'key_id', ARGV[4], 'created_at', ARGV[5], 'expires_at', ARGV[6], 'self_rotated', ARGV[7], 'kind', ARGV[9], 'totp', ARGV[10])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local e = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[12], e .. ' key ' .. old)
return {old, fields, e}
";

/// ARGV: slot, prefix, channel and, when not empty, the hash the slot's key
/// must still have.
const REMOVE: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return redis.error_reply('NOTFOUND') end
if ARGV[4] ~= '' and old ~= ARGV[4] then return redis.error_reply('SUPERSEDED') end
local oldkey = ARGV[2] .. 'key:' .. old
local fields = redis.call('HGETALL', oldkey)
redis.call('DEL', oldkey)
redis.call('HDEL', KEYS[1], ARGV[1])
local e = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[3], e .. ' key ' .. old)
return {old, fields, e}
";

/// Raises `last_used` of each existing key record KEYS[i] to ARGV[i].
const USE: &str = r"
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local cur = tonumber(redis.call('HGET', KEYS[i], 'last_used') or '0')
    if tonumber(ARGV[i]) > cur then redis.call('HSET', KEYS[i], 'last_used', ARGV[i]) end
  end
end
return 1
";

/// Renews this node's lease and reads the current epoch, on Redis's clock.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 600000)
return tonumber(redis.call('GET', KEYS[2]) or '0')
";

/// Counts live nodes that have not yet applied epoch ARGV[1], and how
/// long (ms) until the last of their leases runs out.
const PENDING: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf', 'WITHSCORES')
local pending, latest = 0, now
for i = 1, #live, 2 do
  local acked = tonumber(redis.call('HGET', KEYS[2], live[i]) or '0')
  if acked < tonumber(ARGV[1]) then
    pending = pending + 1
    latest = math.max(latest, tonumber(live[i + 1]))
  end
end
return {pending, latest - now}
";

pub(super) struct Scripts {
    pub(super) lookup: Script,
    pub(super) suspend: Script,
    pub(super) insert: Script,
    pub(super) replace: Script,
    pub(super) remove: Script,
    pub(super) renew: Script,
    pub(super) record_use: Script,
    pub(super) pending: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            lookup: Script::new(LOOKUP),
            suspend: Script::new(SUSPEND),
            insert: Script::new(INSERT),
            replace: Script::new(REPLACE),
            remove: Script::new(REMOVE),
            renew: Script::new(RENEW),
            record_use: Script::new(USE),
            pending: Script::new(PENDING),
        }
    }
}
