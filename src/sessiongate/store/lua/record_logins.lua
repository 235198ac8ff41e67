-- The batch writer's records of one account and one day (store/batch.py): the logins of an
-- account without a seat limit, written off the hot path. One call per (account, day) of a
-- batch, not two commands per login: the writer then formats one argument a login, not
-- thirteen (docs/performance.md, "Login records: one script call per account and day").
-- The same writes as two commands per login would make; a retried batch rewrites the same
-- members and fields (idempotent: nothing counted twice).
--
-- KEYS[1] leases zset (keys.leases)   KEYS[2] the month's usage hash (keys.usage)
-- (both carry the account's bucket hash tag: one slot)
-- ARGV[1] the earliest login's time (ms): leases that ended before it are dropped (nothing
--         else drops them for an account without a seat limit; take_seat.lua's seats score
--         above any time, so they stay)
-- ARGV[2] how long KEYS[1] must last (ms): its TTL is raised to it, never shortened
-- ARGV[3] the day's login field prefix (activity.login_field(day, ''))
-- ARGV[4] the day's active-user field prefix (activity.active_field(day, ''))
-- ARGV[5..] one login each: "<lease expiry ms>\31<user id>\31<nonce>" (ids hold no control
--           characters; the session's member is "<user id>\31<nonce>")
-- Returns the number of logins written.
-- The first write is ZADD, a command Redis refuses when out of memory: a script that wrote
-- first with one it allows (ZREMRANGEBYSCORE) would then be let write everything.
local zadd, hset = {}, {}
local n = 0
local function write()
  if n > 0 then
    redis.call('ZADD', KEYS[1], 'GT', unpack(zadd))
    redis.call('HSET', KEYS[2], unpack(hset))
    zadd, hset, n = {}, {}, 0
  end
end
for i = 5, #ARGV do
  local exp, user, nonce = string.match(ARGV[i], '^(%d+)\31([^\31]*)\31(.*)$')
  -- The session, and its user's seat (unshifted: unlimited accounts count no seats).
  local z = #zadd
  zadd[z + 1], zadd[z + 2], zadd[z + 3], zadd[z + 4] = exp, user, exp, user .. '\31' .. nonce
  local h = #hset
  hset[h + 1], hset[h + 2] = ARGV[3] .. nonce, 1
  hset[h + 3], hset[h + 4] = ARGV[4] .. user, 1
  n = n + 1
  if n == 1000 then  -- unpack's stack: at most ~8,000 values at once
    write()
  end
end
write()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])  -- the new leases end later
local keep = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) < keep then  -- -1 (none) is raised too
  redis.call('PEXPIRE', KEYS[1], keep)
end
return #ARGV - 4
