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
--   quantity (decimal, at most 10^12), occurred_at (RFC 3339),
--   day "YYYY-MM-DD", attributes (JSON text). One argument, not 7 per event: packing
--   arguments one by one was most of the client's cost of a call.
-- ARGV[6] the events' content digests, a JSON array of strings (one per event)
-- Returns one integer per event: 1 recorded, 0 a duplicate (of an earlier call or event),
-- 2 a conflicting duplicate (its id was recorded with another digest): nothing written.
-- A claim's digest is the member 'd:' .. claim .. US .. digest, scored as the claim; the
-- member 'd:' marks since when claims have one (a claim older, of the release before,
-- is compared by id only). consume_quota.lua keeps the same members.
-- A refused call writes nothing and answers an error led by its status (usage.py maps it):
-- `OUT_OF_RANGE <feature>` when a total would pass 2^63-1 (HINCRBY's limit),
-- `FAILED_PRECONDITION <why>` when a key holds the wrong type or a total is not an integer.
local wanted = {'zset', 'hash', 'stream'}
for i = 1, 3 do
  local t = redis.call('TYPE', KEYS[i])['ok']
  if t ~= 'none' and t ~= wanted[i] then
    return redis.error_reply('FAILED_PRECONDITION ' .. KEYS[i] .. ' holds a ' .. t)
  end
end

-- Whether HINCRBY takes text `n` as an integer (its own test: canonical, within 64 bits).
local function integer(n)
  if n == '0' then return true end
  local sign, digits = string.match(n, '^(%-?)([1-9]%d*)$')
  if not digits or #digits > 19 then return false end
  return #digits < 19 or digits <= (sign == '-' and '9223372036854775808'
                                     or '9223372036854775807')
end

-- Whether integer `n` plus `q` (0 <= q < 2^53) stays within 2^63-1, exactly: Lua's numbers
-- are doubles, so the 19-digit case is summed as 7 + 12 digits.
local function fits(n, q)
  if #n < 19 or string.sub(n, 1, 1) == '-' then return true end
  local lo = tonumber(string.sub(n, 8)) + q
  local hi = tonumber(string.sub(n, 1, 7)) + math.floor(lo / 1e12)
  lo = lo % 1e12
  return hi < 9223372 or (hi == 9223372 and lo <= 36854775807)
end

local events = cjson.decode(ARGV[5])
-- What the new events would add to each total: checked before the first write (an XADD
-- followed by a refused HINCRBY would bill an event that the caller then retries).
local adds, feature_of, seen = {}, {}, {}
for _, e in ipairs(events) do
  local claim = 'u:' .. e[1]
  if not seen[claim] and not redis.call('ZSCORE', KEYS[1], claim) then
    seen[claim] = true
    local q = tonumber(e[4])
    for field, n in pairs({['t:' .. e[3]] = q, ['n:' .. e[3]] = 1,
                           ['d:' .. e[6] .. ':' .. e[3]] = q}) do
      adds[field] = (adds[field] or 0) + n
      feature_of[field] = e[3]
    end
  end
end
for field, q in pairs(adds) do
  local v = redis.call('HGET', KEYS[2], field)
  if v then
    if not integer(v) then
      return redis.error_reply('FAILED_PRECONDITION ' .. field .. ' is not an integer')
    end
    if not fits(v, q) then
      return redis.error_reply('OUT_OF_RANGE ' .. feature_of[field])
    end
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
for i, e in ipairs(events) do
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
