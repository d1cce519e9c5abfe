-- Fenced write-back: store the value only while the caller still holds the
-- lease (the memcache lease token), then drop the lease and wake waiters.
-- KEYS[1] value key, KEYS[2] lock key (same hash slot)
-- ARGV[1] lease value, ARGV[2] entry bytes ('' stores nothing),
-- ARGV[3] value PX in ms, ARGV[4] channel, ARGV[5] message.
-- Returns 1 when the lease held, 0 when it had been lost.
--
-- Idempotent: a request re-sent after its reply was lost finds its own
-- entry (the same write id, entry bytes 4-11) and reports it stored. A
-- refused write-back still publishes, as kind 'n', so that the sender's
-- message numbers show no gap to the other nodes.
if redis.pcall('GET', KEYS[2]) ~= ARGV[1] then
  if ARGV[2] ~= '' then
    local v = redis.pcall('GET', KEYS[1])
    if type(v) == 'string' and string.sub(v, 4, 11) == string.sub(ARGV[2], 4, 11) then
      return 1
    end
  end
  redis.call('PUBLISH', ARGV[4], 'n' .. string.sub(ARGV[5], 2))
  return 0
end
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
