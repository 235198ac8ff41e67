-- Commit a new version of one account, atomically, if nobody else wrote it meanwhile.
-- Optionally: replace the ledger, record an event id as applied (idempotency), append a
-- history entry, index the next evaluation time, append notifications to the outbox, and
-- publish the new version so that every replica's near-cache drops its copy.
--
-- KEYS[1] account hash (fields: data, v)     KEYS[2] ledger string
-- KEYS[3] history list                       KEYS[4] applied-events zset
-- KEYS[5] bucket's due index zset            KEYS[6] bucket's outbox stream
-- (all six keys carry the account's bucket hash tag: one slot)
-- ARGV[1] expected version (0: must not exist)
-- ARGV[2] account JSON        ARGV[3] ledger JSON, or "" to leave it
-- ARGV[4] event id, or ""     ARGV[5] now (ms)
-- ARGV[6] next evaluation (ms), "" to leave the index, "-" to remove the account from it
-- ARGV[7] history entry JSON, or ""
-- ARGV[8] invalidation channel   ARGV[9] account id   ARGV[10] idempotency retention (ms)
-- ARGV[11..] notification JSONs (each becomes one outbox entry)
-- Returns {status, version}: status is "ok", "conflict" (version moved on) or "duplicate".

local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if ARGV[4] ~= '' and redis.call('ZSCORE', KEYS[4], ARGV[4]) then
  return {'duplicate', current}
end
if current ~= tonumber(ARGV[1]) then
  return {'conflict', current}
end
local version = current + 1
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'v', version)
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[2], ARGV[3])
end
local now = tonumber(ARGV[5])
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[4], now, ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[10]))
end
if ARGV[7] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[7])
end
if ARGV[6] == '-' then
  redis.call('ZREM', KEYS[5], ARGV[9])
elseif ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[5], tonumber(ARGV[6]), ARGV[9])
end
for i = 11, #ARGV do
  redis.call('XADD', KEYS[6], '*', 'account', ARGV[9], 'version', version, 'body', ARGV[i])
end
redis.call('PUBLISH', ARGV[8], ARGV[9] .. '\t' .. version)
return {'ok', version}
