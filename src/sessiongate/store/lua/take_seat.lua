-- Open or renew a session, taking a seat for its user if needed: atomic, so that with N seats
-- M > N racing logins admit exactly N, on any number of replicas. A user holds at most one
-- seat, whatever the number of live sessions. Leases expire by their score compared with the
-- caller's clock (ARGV[1]), never by Redis TTLs, so that tests can move time.
--
-- One zset of leases (keys.leases): sessions `user US nonce` scored by their expiry, seats
-- `user` scored by their expiry + ARGV[8] (the seat offset), so live seats are one ZCOUNT.
-- Seats that the batch writer wrote (accounts without a seat limit) carry unshifted scores:
-- they still count as held by their user, not in the count (for one lease, if the account
-- gets a limit meanwhile).
--
-- KEYS[1] leases zset
-- KEYS[2] the month's usage hash (its field ARGV[6]: most seats held at once that day)
-- (both carry the account's bucket hash tag: one slot)
-- ARGV[1] now (ms)   ARGV[2] lease expiry (ms)   ARGV[3] user id
-- ARGV[4] session member   ARGV[5] seat limit (0: unlimited)   ARGV[6] the day's peak field
-- ARGV[7] housekeeping margin (ms): KEYS[1] expires that long after its latest lease ends
--         (never deciding a lease: scores do), so an idle account keeps none
-- ARGV[8] seat offset (keys.SEAT_OFFSET_MS)
-- ARGV[9..] optional: fields of KEYS[2] set to 1 if admitted (a login's `l:` and `a:` records,
--           written here with the seat rather than by the batch writer: no loss window)
-- Returns {admitted (1 or 0), seats held afterwards}.
local now = tonumber(ARGV[1])
local offset = tonumber(ARGV[8])
-- Ended leases are only housekeeping (every count and test below reads scores against `now`):
-- dropped on about one call in 8, chosen by the random last byte of the session's nonce.
if string.byte(ARGV[4], -1) % 8 == 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  redis.call('ZREMRANGEBYSCORE', KEYS[1], offset, offset + now)
end
local live_seats = '(' .. (offset + now)
local limit = tonumber(ARGV[5])
-- The user's live seat: scored past now + offset, or (the batch writer's) past now, unshifted.
local seat = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[3]))
local holds = seat ~= nil and (seat > offset + now or (seat < offset and seat > now))
local held = nil
if limit > 0 and not holds then
  held = redis.call('ZCOUNT', KEYS[1], live_seats, '+inf')
  if held >= limit then
    return {0, held}
  end
  held = held + 1  -- the seat taken below
end
-- GT: a renewal never shortens a lease; new members are added all the same.
redis.call('ZADD', KEYS[1], 'GT', tonumber(ARGV[2]) + offset, ARGV[3], ARGV[2], ARGV[4])
local keep = tonumber(ARGV[2]) - now + tonumber(ARGV[7])
if redis.call('PTTL', KEYS[1]) < keep then  -- never shortened; -1 (none) is extended too
  redis.call('PEXPIRE', KEYS[1], keep)
end
if held == nil then
  held = redis.call('ZCOUNT', KEYS[1], live_seats, '+inf')
end
-- One HSET for the day's peak (utilization is measured against a limit: unlimited accounts,
-- whose seats the batch writer writes, record none) and the login's fields.
local fields = {}
if limit > 0 and held > tonumber(redis.call('HGET', KEYS[2], ARGV[6]) or '0') then
  fields[1], fields[2] = ARGV[6], held
end
for i = 9, #ARGV do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = 1
end
if #fields > 0 then
  redis.call('HSET', KEYS[2], unpack(fields))
end
return {1, held}
