-- Commit a new version of one account, atomically, if nobody else wrote it meanwhile.
-- Optionally: replace the ledger, record an event id as applied (idempotency), append a
-- history entry, index the next evaluation time, append notifications to the outbox, and
-- publish the new version so that every replica's near-cache drops its copy.
--
-- The account hash holds everything (store/record.py): data, v, l (ledger), h (history),
-- e (applied event ids that the ledger does not hold), s (seat changes: log_seats.lua). h and
-- e are entries each led by RS; beyond their byte budget, the oldest go to a side key. v is
-- `0_<version>` (record.VERSION_PREFIX).
--
-- KEYS[1] account hash                  KEYS[2] applied-events zset (e's overflow)
-- KEYS[3] bucket's due index zset       KEYS[4] bucket's outbox stream
-- KEYS[5] history archive list (h's overflow)
-- (all keys carry the account's bucket hash tag: one slot)
-- ARGV[1] expected version (0: must not exist)
-- ARGV[2] account JSON        ARGV[3] ledger text, or "" to leave it
-- ARGV[4] event id, or ""     ARGV[5] now (ms)
-- ARGV[6] next evaluation (ms), "" to leave the index, "-" to remove the account from it
-- ARGV[7] history entry, or ""
-- ARGV[8] invalidation channel   ARGV[9] account id   ARGV[10] idempotency retention (ms)
-- ARGV[11] event id escaped (record.escape)
-- ARGV[12..13] byte budgets of h, e
-- ARGV[14..] notification JSONs (each becomes one outbox entry)
-- Returns {status, version}: status is "ok", "conflict" (version moved on) or "duplicate".

local RS, US = '\30', '\31'
local id, eid = ARGV[4], ARGV[11]
local vtext = redis.call('HGET', KEYS[1], 'v')
local current = 0
if vtext then
  current = tonumber(string.sub(vtext, 3))
end
-- Only what this commit needs is copied into Lua (h can be hundreds of bytes).
local ledger, events, history = false, false, false
if id ~= '' then
  local got = redis.call('HMGET', KEYS[1], 'l', 'e')
  ledger, events = got[1], got[2]
end
if ARGV[7] ~= '' then history = redis.call('HGET', KEYS[1], 'h') end
local mark = RS .. eid .. US
if id ~= '' and ((events and string.find(events, mark, 1, true))
    or (ledger and string.find(ledger, mark, 1, true))
    or redis.call('ZSCORE', KEYS[2], id)) then
  return {'duplicate', current}
end
if current ~= tonumber(ARGV[1]) then
  return {'conflict', current}
end
local version = current + 1
local now = tonumber(ARGV[5])
local cutoff = now - tonumber(ARGV[10])

-- Drops entries from the front of s (oldest first) until it fits budget, handing each to spill.
local function cap(s, budget, spill)
  local pos = 1
  while #s - pos + 1 > budget do
    local nxt = string.find(s, RS, pos + 1, true) or (#s + 1)
    spill(string.sub(s, pos + 1, nxt - 1))
    pos = nxt
  end
  return string.sub(s, pos)
end

local function unescape(s)
  return (string.gsub(s, '%%(%x%x)', function(h) return string.char(tonumber(h, 16)) end))
end

local function spill_event(entry)
  local at = string.find(entry, US, 1, true)
  redis.call('ZADD', KEYS[2], tonumber(string.sub(entry, at + 1)),
             unescape(string.sub(entry, 1, at - 1)))
end

local function spill_history(entry) redis.call('RPUSH', KEYS[5], entry) end

local fields = {'data', ARGV[2], 'v', '0_' .. version}
local gone = {}
local function put(name, value)
  if value == '' then
    table.insert(gone, name)
  else
    table.insert(fields, name)
    table.insert(fields, value)
  end
end

local touched = {}
if ARGV[3] ~= '' then
  ledger = ARGV[3]
  touched.l = true
end
if touched.l then put('l', ledger) end

if id ~= '' then
  -- Trim by age from the front (entries are appended in commit order), then record the id
  -- unless the committed ledger holds it: the ledger is the record of its own events.
  local s = events or ''
  local pos = 1
  while pos <= #s do
    local nxt = string.find(s, RS, pos + 1, true) or (#s + 1)
    local ms = tonumber(string.match(string.sub(s, pos + 1, nxt - 1), US .. '(%d+)$'))
    if ms and ms > cutoff then break end
    pos = nxt
  end
  s = string.sub(s, pos)
  if not (ledger and string.find(ledger, mark, 1, true)) then
    s = s .. mark .. now
  end
  events = s
  touched.e = true
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
end
if touched.e then put('e', cap(events or '', tonumber(ARGV[13]), spill_event)) end

if ARGV[7] ~= '' then
  history = (history or '') .. RS .. ARGV[7]
  touched.h = true
end
if touched.h then put('h', cap(history, tonumber(ARGV[12]), spill_history)) end

redis.call('HSET', KEYS[1], unpack(fields))
if #gone > 0 then
  redis.call('HDEL', KEYS[1], unpack(gone))
end
if ARGV[6] == '-' then
  redis.call('ZREM', KEYS[3], ARGV[9])
elseif ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[3], tonumber(ARGV[6]), ARGV[9])
end
for i = 14, #ARGV do
  redis.call('XADD', KEYS[4], '*', 'account', ARGV[9], 'version', version, 'body', ARGV[i])
end
redis.call('PUBLISH', ARGV[8], ARGV[9] .. '\t' .. version)
return {'ok', version}
