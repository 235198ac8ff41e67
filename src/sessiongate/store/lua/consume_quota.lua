-- Consume units of a metered feature in its current window: atomic, idempotent by event id.
-- A refused consumption (hard limit, overflow, conflicting event id) changes nothing and
-- claims no event id: every check comes before the first write.
--
-- KEYS[1] window counter (string)   KEYS[2] usage-events zset (event id -> ms), same slot
-- ARGV[1] quantity   ARGV[2] quota   ARGV[3] "1": hard limit, "0": soft
-- ARGV[4] event id (prefixed by the caller), or ""   ARGV[5] now (ms)
-- ARGV[6] idempotency retention (ms)   ARGV[7] counter lifetime (ms, past its window's end), or "" (never)
-- ARGV[8] the event's content digest
-- Returns {status, used}: "ok" (used after), "duplicate", "conflict" (the event id was
-- claimed with another digest), "exhausted" (used as it stands), or "overflow" (the counter
-- would pass 2^63-1, INCRBY's limit).
-- Digest members as in record_usage.lua: 'd:' .. claim .. US .. digest, and the marker 'd:'.
local text = redis.call('GET', KEYS[1]) or '0'
local used = tonumber(text)
local at = ARGV[4] ~= '' and redis.call('ZSCORE', KEYS[2], ARGV[4])
if at then
  local since = redis.call('ZSCORE', KEYS[2], 'd:')
  if redis.call('ZSCORE', KEYS[2], 'd:' .. ARGV[4] .. '\31' .. ARGV[8])
      or not since or tonumber(at) < tonumber(since) then
    return {'duplicate', used}
  end
  return {'conflict', used}
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
  local cutoff = now - tonumber(ARGV[6])
  redis.call('ZADD', KEYS[2], 'NX', now, 'd:')
  redis.call('ZADD', KEYS[2], now, ARGV[4], now, 'd:' .. ARGV[4] .. '\31' .. ARGV[8])
  local since = redis.call('ZSCORE', KEYS[2], 'd:')
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
  if tonumber(since) <= cutoff then redis.call('ZADD', KEYS[2], cutoff, 'd:') end
end
return {'ok', used}
