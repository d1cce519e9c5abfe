-- Compare-and-delete: KEYS[1] lock key, KEYS[2] its release marker (same
-- hash slot), ARGV[1] lease value.
-- Returns 1 if the caller held the lease and it was deleted, else 0.
--
-- Idempotent: the marker keeps the released value for what was left of the
-- lease, so a request re-sent after its reply was lost is told it released.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local ttl = redis.call('PTTL', KEYS[1])
  redis.call('DEL', KEYS[1])
  if ttl > 0 then
    redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
  end
  return 1
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  return 1
end
return 0
