-- Consume units of a metered feature in its current window: atomic, idempotent by event id.
-- A refused consumption (hard limit) changes nothing and claims no event id.
--
-- KEYS[1] window counter (string)   KEYS[2] usage-events zset (event id -> ms), same slot
-- ARGV[1] quantity   ARGV[2] quota   ARGV[3] "1": hard limit, "0": soft
-- ARGV[4] event id (prefixed by the caller), or ""   ARGV[5] now (ms)
-- ARGV[6] idempotency retention (ms)   ARGV[7] counter lifetime (ms, past its window's end), or "" (never)
-- Returns {status, used}: "ok" (used after), "duplicate" or "exhausted" (used as it stands).
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[4] ~= '' and redis.call('ZSCORE', KEYS[2], ARGV[4]) then
  return {'duplicate', used}
end
local qty = tonumber(ARGV[1])
if ARGV[3] == '1' and used + qty > tonumber(ARGV[2]) then
  return {'exhausted', used}
end
used = redis.call('INCRBY', KEYS[1], qty)
if ARGV[7] ~= '' then
  -- Housekeeping only: the window is named in the key, so expiry never decides a quota.
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
end
if ARGV[4] ~= '' then
  local now = tonumber(ARGV[5])
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[6]))
end
return {'ok', used}
