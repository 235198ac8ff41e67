-- Open or renew a session, taking a seat for its user if needed: atomic, so that with N seats
-- M > N racing logins admit exactly N, on any number of replicas. A user holds at most one
-- seat, whatever the number of live sessions. Leases expire by their score compared with the
-- caller's clock (ARGV[1]), never by Redis TTLs, so that tests can move time.
--
-- KEYS[1] seats zset (user -> lease expiry ms)
-- KEYS[2] sessions zset (session member -> lease expiry ms)
-- KEYS[3] the month's usage hash (its field ARGV[6]: most seats held at once that day)
-- (all carry the account's bucket hash tag: one slot)
-- ARGV[1] now (ms)   ARGV[2] lease expiry (ms)   ARGV[3] user id
-- ARGV[4] session member   ARGV[5] seat limit (0: unlimited)   ARGV[6] the day's peak field
-- ARGV[7] housekeeping margin (ms): KEYS[1] and KEYS[2] expire that long after their latest
--         lease ends (never deciding a lease: scores do), so an idle account keeps none
-- Returns {admitted (1 or 0), seats held afterwards}.
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local limit = tonumber(ARGV[5])
if limit > 0 and not redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  local held = redis.call('ZCARD', KEYS[1])
  if held >= limit then
    return {0, held}
  end
end
-- GT: a renewal never shortens a lease; new members are added all the same.
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[4])
if ARGV[7] then
  local keep = tonumber(ARGV[2]) - now + tonumber(ARGV[7])
  for i = 1, 2 do
    if redis.call('PTTL', KEYS[i]) < keep then  -- never shortened; -1 (none) is extended too
      redis.call('PEXPIRE', KEYS[i], keep)
    end
  end
end
local held = redis.call('ZCARD', KEYS[1])
-- Utilization is measured against a limit: unlimited accounts (their seats are written by the
-- batch writer, not here) record no peak.
if limit > 0 and held > tonumber(redis.call('HGET', KEYS[3], ARGV[6]) or '0') then
  redis.call('HSET', KEYS[3], ARGV[6], held)
end
return {1, held}
