-- Append one notification to an outbox once: the first caller for a marker key wins.
-- The scheduled monthly report and the daily digest are built by every replica that runs the
-- job; only the one that sets the marker puts its notification in the outbox. Marker and
-- outbox share a slot (same bucket tag).
-- KEYS[1] marker (string)   KEYS[2] outbox stream
-- ARGV[1] marker TTL, seconds   ARGV[2] account id   ARGV[3] notification JSON
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  redis.call('XADD', KEYS[2], '*', 'account', ARGV[2], 'version', 0, 'body', ARGV[3])
  return 1
end
return 0
