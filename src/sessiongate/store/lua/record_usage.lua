-- Record one usage event for billing: the dedup claim and the append are one atomic step, so a
-- retried event counts once and a failed write is never remembered as done. Every check comes
-- before the first write (Redis does not roll back a script that fails half-way).
--
-- KEYS[1] usage-events zset (event id -> ms)   KEYS[2] the month's usage hash
-- KEYS[3] the usage stream (public name, consumed by billing with its own group)
-- ARGV[1] event id (prefixed)   ARGV[2] now (ms)   ARGV[3] idempotency retention (ms)
-- ARGV[4] feature   ARGV[5] quantity (at most 10^12: no counter can overflow)
-- ARGV[6] day "YYYY-MM-DD" of the event
-- ARGV[7..] stream entry: field, value, field, value ...
-- Returns 1 when recorded, 0 for a duplicate.
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
local wanted = {'zset', 'hash', 'stream'}
for i = 1, 3 do
  local t = redis.call('TYPE', KEYS[i])['ok']
  if t ~= 'none' and t ~= wanted[i] then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. t .. '; nothing written')
  end
end
redis.call('XADD', KEYS[3], '*', unpack(ARGV, 7))
redis.call('HINCRBY', KEYS[2], 't:' .. ARGV[4], ARGV[5])
redis.call('HINCRBY', KEYS[2], 'n:' .. ARGV[4], 1)
redis.call('HINCRBY', KEYS[2], 'd:' .. ARGV[6] .. ':' .. ARGV[4], ARGV[5])
local now = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
return 1
