-- Append one seat change to the account hash's `s` (store/record.py); beyond its byte budget
-- the oldest entries go to the seat-change list, which readers read too.
--
-- A change is a whole roster (an account's first entry) or a delta (`activity.py`). A delta
-- needs the seats it applies to: the first entry of a billing period (the newest entry is
-- older than the period) is preceded by a snapshot of the seats at the period's start, and
-- then whatever lies before the last whole entry at or before the oldest retained period's
-- start is dropped. So the log holds a roster per period with changes, plus the changes,
-- never more than the retained periods.
--
-- KEYS[1] account hash   KEYS[2] seat-change list (one slot: the account's hash tag)
-- ARGV[1] entry `<v> US <ms> US ...`   ARGV[2] byte budget of `s`
-- ARGV[3] "d" when the entry is a delta, "" when it is a whole roster
-- ARGV[4] start of the entry's period (ms)   ARGV[5] start of the oldest retained period (ms)
-- ARGV[6] snapshot entry of the seats at the period's start, or "" if not sent
-- Returns -1 and writes nothing when a snapshot is due and ARGV[6] is "" (call again with
-- it); else the number of entries pushed out to the list.
local RS, US, DELTA = '\30', '\31', '\28d'
local period = tonumber(ARGV[4])

-- (ms, is a delta) of an entry
local function parse(e)
  local a = string.find(e, US, 1, true)
  local b = a and string.find(e, US, a + 1, true)
  local ms = a and tonumber(string.sub(e, a + 1, (b or #e + 1) - 1)) or 0
  return ms, b ~= nil and string.sub(e, b + 1, b + 2) == DELTA
end

local s = redis.call('HGET', KEYS[1], 's') or ''
local newest = false
if s ~= '' then
  local last = 1
  while true do
    local nxt = string.find(s, RS, last + 1, true)
    if not nxt then break end
    last = nxt
  end
  newest = string.sub(s, last + 1)
else
  newest = redis.call('LINDEX', KEYS[2], -1)
end
local newest_ms = newest and parse(newest)
local new_period = not newest_ms or newest_ms < period
if new_period and ARGV[3] == 'd' then
  if ARGV[6] == '' then return -1 end
  s = s .. RS .. ARGV[6]
end
s = s .. RS .. ARGV[1]

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

if new_period then
  -- Entries are appended in (about) time order: scan from the oldest while they are at or
  -- before the cutoff, a few at a time (a whole roster can be a megabyte).
  local cutoff, keep, i, done = tonumber(ARGV[5]), 0, 0, false
  while not done do
    local chunk = redis.call('LRANGE', KEYS[2], i, i + 3)
    if #chunk == 0 then break end
    for j, e in ipairs(chunk) do
      local ms, delta = parse(e)
      if ms > cutoff then done = true break end
      if not delta then keep = i + j - 1 end
    end
    i = i + 4
  end
  if keep > 0 then redis.call('LTRIM', KEYS[2], keep, -1) end
end
return spilled
