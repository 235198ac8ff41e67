-- End a session; free its user's seat unless another live session of that user holds it.
--
-- KEYS[1] leases zset (take_seat.lua: sessions by expiry, seats by expiry + ARGV[5])
-- ARGV[1] now (ms)   ARGV[2] user id   ARGV[3] session member
-- ARGV[4] prefix of the user's session members (user id and separator)
-- ARGV[5] seat offset (keys.SEAT_OFFSET_MS)
-- Returns 1 when a live session was ended, 0 when it had ended or expired already.
-- Cost: O(live sessions of the account), to find the user's other sessions.
local now = tonumber(ARGV[1])
local offset = tonumber(ARGV[5])
local score = redis.call('ZSCORE', KEYS[1], ARGV[3])
local ended = 0
if score and tonumber(score) > now then
  ended = 1
end
redis.call('ZREM', KEYS[1], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[1], offset, offset + now)
local prefix = ARGV[4]
local latest = nil
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '(' .. offset, 'WITHSCORES')
for i = 1, #live, 2 do
  if string.sub(live[i], 1, #prefix) == prefix then
    local s = tonumber(live[i + 1])
    if latest == nil or s > latest then
      latest = s
    end
  end
end
local seat = redis.call('ZSCORE', KEYS[1], ARGV[2])
if seat then
  if latest == nil then
    redis.call('ZREM', KEYS[1], ARGV[2])
  elseif tonumber(seat) >= offset then
    redis.call('ZADD', KEYS[1], latest + offset, ARGV[2])
  else
    redis.call('ZADD', KEYS[1], latest, ARGV[2])
  end
end
return ended
