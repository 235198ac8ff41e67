-- Consume units of a metered feature in its current window: atomic, idempotent by event id.
-- A refused consumption (hard limit) changes nothing and claims no event id.
--
-- KEYS[1] window counter (string)   KEYS[2] usage-events zset (event id -> ms), same slot
-- ARGV[1] quantity   ARGV[2] quota   ARGV[3] "1": hard limit, "0": soft
-- ARGV[4] event id (prefixed by the caller), or ""   ARGV[5] now (ms)
-- ARGV[6] idempotency retention (ms)   ARGV[7] counter lifetime (ms, past its window's end), or "" (never)
-- Returns {status, used}: "ok" (used after), "duplicate" or "exhausted" (used as it stands),
-- "overflow" (the counter would pass 2^63-1, INCRBY's limit: refused before any write).
local text = redis.call('GET', KEYS[1]) or '0'
local used = tonumber(text)
if ARGV[4] ~= '' and redis.call('ZSCORE', KEYS[2], ARGV[4]) then
  return {'duplicate', used}
end
local qty = tonumber(ARGV[1])
if ARGV[3] == '1' and used + qty > tonumber(ARGV[2]) then
  return {'exhausted', used}
end
-- Exact in doubles (Lua's numbers) only below 2^53: a 19-digit count is summed as 7 + 12.
if #text >= 19 and string.sub(text, 1, 1) ~= '-' then
  local lo = tonumber(string.sub(text, 8)) + qty
  local hi = tonumber(string.sub(text, 1, 7)) + math.floor(lo / 1e12)
  if hi > 9223372 or (hi == 9223372 and lo % 1e12 > 36854775807) then
    return {'overflow', text}
  end
end
used = redis.call('INCRBY', KEYS[1], qty)
if used >= 2^53 then  -- not exact as a Lua number: the counter's own text instead
  used = redis.call('GET', KEYS[1])
end
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
