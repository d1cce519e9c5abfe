-- Fenced write-back: store the value only while the caller still holds the
-- lease (the memcache lease token), then drop the lease and wake waiters.
-- KEYS[1] value key, KEYS[2] lock key (same hash slot)
-- ARGV[1] lease value, ARGV[2] entry bytes ('' stores nothing),
-- ARGV[3] value PX in ms, ARGV[4] channel, ARGV[5] message.
-- Returns 1 when the lease held, 0 when it had been lost.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
