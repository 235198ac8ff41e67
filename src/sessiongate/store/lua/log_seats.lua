-- Append one seat change to the account hash's `s` (store/record.py); beyond its byte budget
-- the oldest entries go to the seat-change list, which readers read too.
--
-- KEYS[1] account hash   KEYS[2] seat-change list (one slot: the account's hash tag)
-- ARGV[1] entry `<v> US <ms> US <seat> US ...`   ARGV[2] byte budget of `s`
-- Returns the number of entries pushed out to the list.
local RS = '\30'
local s = (redis.call('HGET', KEYS[1], 's') or '') .. RS .. ARGV[1]
local budget = tonumber(ARGV[2])
local pos, spilled = 1, 0
while #s - pos + 1 > budget do
  local nxt = string.find(s, RS, pos + 1, true) or (#s + 1)
  redis.call('RPUSH', KEYS[2], string.sub(s, pos + 1, nxt - 1))
  spilled = spilled + 1
  pos = nxt
end
s = string.sub(s, pos)
if s == '' then
  redis.call('HDEL', KEYS[1], 's')
else
  redis.call('HSET', KEYS[1], 's', s)
end
return spilled
