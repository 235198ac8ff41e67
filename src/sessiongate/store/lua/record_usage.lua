-- Record usage events of one account and month for billing: for each event the dedup claim
-- and the append are one atomic step, so a retried event counts once and a failed write is
-- never remembered as done. Every check comes before the first write (Redis does not roll
-- back a script that fails half-way). Many events per call: the per-call cost (a round trip,
-- packing the command) is shared, which is what makes RecordUsageStream fast.
--
-- KEYS[1] usage-events zset (event id -> ms)   KEYS[2] the month's usage hash
-- KEYS[3] the usage stream (public name, consumed by billing with its own group)
-- ARGV[1] now (ms)   ARGV[2] idempotency retention (ms)   ARGV[3] account id
-- ARGV[4] recorded_at (RFC 3339)
-- ARGV[5] the events, a JSON array of arrays of 7 strings: event id, user id, feature,
--   quantity (decimal, at most 10^12: no counter can overflow), occurred_at (RFC 3339),
--   day "YYYY-MM-DD", attributes (JSON text). One argument, not 7 per event: packing
--   arguments one by one was most of the client's cost of a call.
-- ARGV[6] the events' content digests, a JSON array of strings (one per event)
-- Returns one integer per event: 1 recorded, 0 a duplicate (of an earlier call or event),
-- 2 a conflicting duplicate (its id was recorded with another digest): nothing written.
-- A claim's digest is the member 'd:' .. claim .. US .. digest, scored as the claim; the
-- member 'd:' marks since when claims have one (a claim older, of the release before,
-- is compared by id only). consume_quota.lua keeps the same members.
local wanted = {'zset', 'hash', 'stream'}
for i = 1, 3 do
  local t = redis.call('TYPE', KEYS[i])['ok']
  if t ~= 'none' and t ~= wanted[i] then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. t .. '; nothing written')
  end
end
local now = tonumber(ARGV[1])
local out = {}
local digests, marked = cjson.decode(ARGV[6]), false
local function same(claim, at, digest)
  if redis.call('ZSCORE', KEYS[1], 'd:' .. claim .. '\31' .. digest) then return true end
  local since = redis.call('ZSCORE', KEYS[1], 'd:')
  return not since or tonumber(at) < tonumber(since)
end
for i, e in ipairs(cjson.decode(ARGV[5])) do
  local claim = 'u:' .. e[1]
  local at = redis.call('ZSCORE', KEYS[1], claim)
  if at then
    out[#out + 1] = same(claim, at, digests[i]) and 0 or 2
  else
    local feature, quantity = e[3], e[4]
    redis.call('XADD', KEYS[3], '*', 'event_id', e[1], 'account_id', ARGV[3],
      'user_id', e[2], 'feature', feature, 'quantity', quantity,
      'occurred_at', e[5], 'recorded_at', ARGV[4], 'attributes', e[7])
    redis.call('HINCRBY', KEYS[2], 't:' .. feature, quantity)
    redis.call('HINCRBY', KEYS[2], 'n:' .. feature, 1)
    redis.call('HINCRBY', KEYS[2], 'd:' .. e[6] .. ':' .. feature, quantity)
    if not marked then redis.call('ZADD', KEYS[1], 'NX', now, 'd:'); marked = true end
    redis.call('ZADD', KEYS[1], now, claim, now, 'd:' .. claim .. '\31' .. digests[i])
    out[#out + 1] = 1
  end
end
local cutoff = now - tonumber(ARGV[2])
local since = redis.call('ZSCORE', KEYS[1], 'd:')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
if since and tonumber(since) <= cutoff then redis.call('ZADD', KEYS[1], cutoff, 'd:') end
return out
